"""`rmm policy`: validate, explain, reload and test alert policies."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_table, shown
from rmm_common.boundedjson import load_json_bounded
from rmm_common.durations import format_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2


@click.group()
def policy() -> None:
    """Alert policies: validate, explain, reload, test."""


def _policy_engine() -> Any:
    try:
        import rmm_server.policy as engine  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(
            f"this command evaluates policies locally and needs the server extra "
            f"(pip install 'msp-rmm[server]'): {exc}",
            EXIT_USAGE,
        ) from None
    return engine


@policy.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def policy_validate(path: Path, output: str) -> None:
    """Check a policy file or directory; exit non-zero on any error (no server needed)."""
    errors = _policy_engine().validate_path(path)
    if output == "json":
        emit_json({"path": str(path), "ok": not errors, "errors": errors})
    else:
        for error in errors:
            click.echo(error, err=True)
        if not errors:
            click.echo(f"{path}: ok")
    if errors:
        sys.exit(1)


@policy.command("reload")
@OUTPUT_OPTION
@click.pass_obj
def policy_reload(conn: Connection, output: str) -> None:
    """Reload policies, scripts and notification config; a broken one is refused, the old kept."""
    response = conn.call(conn.stub().ReloadPolicies, operator_pb2.ReloadPoliciesRequest())
    notify_refused = response.notify_config and not response.notify_ok
    if output == "json":
        emit_json(
            {
                "ok": response.ok,
                "errors": list(response.errors),
                "policies": response.policies,
                "rules": response.rules,
                "other_replicas": response.other_replicas,
                "notify_config": (
                    {
                        "ok": response.notify_ok,
                        "errors": list(response.notify_errors),
                        "receivers": response.receivers,
                    }
                    if response.notify_config
                    else None
                ),
            }
        )
    else:
        if response.ok:
            click.echo(f"reloaded: {response.policies} policies, {response.rules} rules")
        else:
            for error in response.errors:
                click.echo(error, err=True)
            click.echo("reload refused; the previous policies stay in force", err=True)
        if notify_refused:
            for error in response.notify_errors:
                click.echo(error, err=True)
            click.echo(
                "notification config reload refused; the previous config stays in force",
                err=True,
            )
        elif response.notify_config:
            click.echo(f"reloaded: notification config, {response.receivers} receivers")
    if response.other_replicas and output != "json":
        click.echo(
            f"{response.other_replicas} other replicas reload from their own disks too; "
            "each logs its result",
            err=not response.ok or notify_refused,
        )
    if not response.ok or notify_refused:
        sys.exit(1)


@policy.command("explain")
@click.argument("agent")
@OUTPUT_OPTION
@click.pass_obj
def policy_explain(conn: Connection, agent: str, output: str) -> None:
    """Show every rule in force for an agent, its values and where each came from."""
    response = conn.call(conn.stub().ExplainPolicy, operator_pb2.ExplainPolicyRequest(agent=agent))
    rows = [
        {
            "key": r.key,
            "name": r.name,
            "policy": r.policy,
            "layer": r.layer,
            "source": r.source,
            "severity": r.severity,
            "tier": r.tier,
            "for_seconds": r.for_seconds,
            "keep_firing_for_seconds": r.keep_firing_for_seconds,
            "expr": r.expr,
            "clear": r.clear or None,
            "set_by": dict(r.set_by),
        }
        for r in response.rules
    ]
    patches = [
        {"name": p.name, "value": p.value, "set_by": list(p.set_by)}
        for p in response.patch_settings
    ]
    if output == "json":
        emit_json({"agent_id": response.agent_id, "rules": rows, "patch_settings": patches})
        return
    table = Table("RULE", "POLICY", "LAYER", "SEVERITY", "TIER", "FOR", "EXPR", "SET BY")
    for row in rows:
        # Policy files are text too (and an expression's `[` can read as markup): every cell
        # escaped, so the table shows exactly what the files say.
        table.add_row(
            shown(row["name"]),
            shown(row["policy"]),
            shown(row["layer"]),
            shown(row["severity"]),
            shown(row["tier"]),
            format_duration(row["for_seconds"]) if row["for_seconds"] else "-",
            escape(row["expr"]),  # whole, however long
            "\n".join(shown(f"{k}: {v}") for k, v in sorted(row["set_by"].items()))
            or shown(row["source"]),
        )
    print_table(table)
    if patches:
        patch_table = Table("PATCH SETTING", "VALUE", "SET BY")
        for item in patches:
            patch_table.add_row(
                shown(item["name"]),
                shown(item["value"]),
                "\n".join(shown(by) for by in item["set_by"]) or "(default)",
            )
        print_table(patch_table)


def _report_from_agent(conn: Connection, agent: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fetch an agent's latest report from the server as report JSON and its placement."""
    detail = conn.call(conn.stub().GetAgent, operator_pb2.GetAgentRequest(agent=agent))
    info = load_json_bounded(detail.info_json, "the agent's info") if detail.info_json else {}
    summary = detail.summary
    collectors: list[dict[str, Any]] = [
        {"name": name, "samples": [], "info": value} for name, value in info.items()
    ]
    collectors.append(
        {
            "name": "latest",
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in detail.samples
            ],
            "info": {},
        }
    )
    report = {"host": {"hostname": summary.hostname, "os": summary.os}, "collectors": collectors}
    placement = {
        "agent_id": summary.id,
        "client": summary.client,
        "site": summary.site,
        "tags": list(summary.tags),
        "interval_seconds": float(summary.interval_seconds or 30),
        "seconds_since_report": (time.time() - summary.last_seen) if summary.last_seen else None,
    }
    return report, placement


@policy.command("test")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--agent", help="Evaluate against this agent's latest report (needs the server).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A report from `rmm-agent collect --once --output json`.",
)
@click.option("--client", default="", help="With --report: the agent's client.")
@click.option("--site", default="", help="With --report: the agent's site.")
@click.option("--tag", "tags", multiple=True, help="With --report: the agent's tags.")
@click.option("--unit", is_flag=True, help="PATH is a policy unit-test file: run it.")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def policy_test(
    conn: Connection,
    path: Path,
    agent: str | None,
    report_path: Path | None,
    client: str,
    site: str,
    tags: tuple[str, ...],
    unit: bool,
    output: str,
) -> None:
    """Show which rules of PATH would fire for an agent, and the values that decided it."""
    engine = _policy_engine()
    if unit:
        from rmm_server.alerts.unittests import run_unit_test_file  # noqa: PLC0415

        results = run_unit_test_file(path)
        failed = [r for r in results if not r.passed]
        if output == "json":
            emit_json([r.as_dict() for r in results])
        else:
            for result in results:
                click.echo(result.describe())
            click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        if failed:
            sys.exit(1)
        return
    if (agent is None) == (report_path is None):
        raise CliError("give exactly one of --agent AGENT or --report FILE", EXIT_USAGE)
    try:
        policies = engine.load_policy_dir(path)
    except engine.PolicyError as exc:
        raise CliError(f"the policies do not load:\n{exc}", EXIT_USAGE) from None
    if report_path is not None:
        try:
            report = json.loads(report_path.read_text())
        except ValueError as exc:
            raise CliError(f"{report_path}: not JSON: {exc}", EXIT_USAGE) from None
        placement: dict[str, Any] = {"client": client, "site": site, "tags": list(tags)}
    else:
        report, placement = _report_from_agent(conn, agent or "")
    try:
        context, samples = engine.report_json_to_context(report, **placement)
    except InvalidArgument as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    conditions = policies.evaluate(context, samples)
    rows = [
        {
            "rule": c.rule.name,
            "policy": c.rule.policy,
            "severity": c.rule.severity,
            "labels": dict(c.series_labels),
            "active": c.active,
            "clear": c.clear,
            "value": c.value,
            "for_seconds": c.rule.for_seconds,
            "expr": c.rule.expr,
            "summary": c.annotations.get("summary", ""),
        }
        for c in conditions
    ]
    if output == "json":
        emit_json(rows)
        return
    table = Table("RULE", "SEVERITY", "LABELS", "VERDICT", "VALUE", "EXPR")
    for row in sorted(rows, key=lambda r: (not r["active"], r["rule"])):
        verdict = "[red]would fire[/]" if row["active"] else "ok"
        if row["active"] and row["for_seconds"]:
            verdict += f" after {format_duration(row['for_seconds'])}"
        # Labels are the agent's (a mountpoint named "[link=http://evil]x" is shown as such).
        table.add_row(
            shown(row["rule"]),
            shown(row["severity"]),
            shown(",".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))),
            verdict,
            "-" if row["value"] is None else f"{row['value']:g}",
            escape(row["expr"]),
        )
    print_table(table)
    active = sum(1 for row in rows if row["active"])
    click.echo(f"{len(rows)} checks, {active} would fire", err=True)
