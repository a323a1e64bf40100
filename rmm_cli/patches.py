"""`rmm patches`: the fleet's pending updates, approve and decline, install, compliance."""

from __future__ import annotations

import csv
import io
import sys
from collections import defaultdict
from typing import Any

import click

from rmm_cli.client import EXIT_FAILED, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, iso, print_plain_table, when
from rmm_cli.targets import TARGET, Target, option_duration
from rmm_common.logs import agent_text
from rmm_proto import commands_pb2, operator_pb2

STATES = ("pending", "approved", "declined", "failed", "installed")
INSTALL_WORDS = {
    commands_pb2.UPDATE_INSTALLED: "installed",
    commands_pb2.UPDATE_FAILED: "failed",
    commands_pb2.UPDATE_SKIPPED: "skipped",
    commands_pb2.UPDATE_LOCKED: "locked",
    commands_pb2.UPDATE_INTERRUPTED: "interrupted",
}
# An agent's part of an install that is no failure.
NOT_FAILED = ("marked", "nothing-approved")


@click.group()
def patches() -> None:
    """Patches: the fleet's pending updates, approval, installs and compliance."""


def _selector(target: Target | None) -> operator_pb2.TargetSelector | None:
    return target.selector if target is not None else None


def fleet_row(update: operator_pb2.PatchUpdate) -> dict[str, Any]:
    """Return one update of the fleet view as JSON-ready data."""
    return {
        "update_id": update.update_id,
        "name": update.name,
        "classification": update.classification,
        "backend": update.backend,
        "severity": update.severity,
        "available": update.available,
        "agents": update.agents,
        "pending": update.pending,
        "approved": update.approved,
        "declined": update.declined,
        "failed": update.failed,
        "installed": update.installed,
        "reboot_required": update.reboot_required,
    }


def agent_row(update: operator_pb2.AgentPatch) -> dict[str, Any]:
    """Return one agent's update as JSON-ready data."""
    return {
        "update_id": update.update_id,
        "name": update.name,
        "current": update.current or None,
        "available": update.available,
        "classification": update.classification,
        "severity": update.severity,
        "state": update.state,
        "why": update.why,
        "not_before": update.not_before or None,
        "published": update.published or None,
        "size_bytes": update.size_bytes or None,
        "reboot_required": update.reboot_required,
        "last_status": update.last_status or None,
        "last_message": update.last_message or None,
        "last_attempt_at": update.last_attempt_at or None,
    }


@patches.command("list")
@click.option("--target", "-t", type=TARGET, default=None, help="Only these agents (a TARGET).")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only updates in it.")
@click.option("--agent", default="", help="One agent's list: its id, an id prefix or hostname.")
@OUTPUT_OPTION
@click.pass_obj
def patches_list(
    conn: Connection, target: Target | None, state: str | None, agent: str, output: str
) -> None:
    """List pending updates across the fleet: one line per update with how many agents need it.

    With --agent, that agent's updates: each one's state and what decided it.
    """
    request = operator_pb2.ListPatchesRequest(state=state or "", agent=agent)
    selector = _selector(target)
    if selector is not None:
        request.target.CopyFrom(selector)
    response = conn.call(conn.stub().ListPatches, request)
    if agent:
        _print_agent(response, output)
        return
    if output == "json":
        emit_json(
            {
                "agents": response.agents,
                "agents_without_list": response.agents_without_list,
                "updates": [fleet_row(u) for u in response.updates],
            }
        )
        return
    rows = [
        [
            u.update_id,
            agent_text(u.available),
            u.classification,
            agent_text(u.severity) or "-",
            str(u.agents),
            str(u.pending),
            str(u.approved),
            str(u.declined),
            str(u.failed),
            str(u.installed),
        ]
        for u in response.updates
    ]
    header = [
        "UPDATE",
        "VERSION",
        "CLASS",
        "SEVERITY",
        "AGENTS",
        "PENDING",
        "APPROVED",
        "DECLINED",
        "FAILED",
        "INSTALLED",
    ]
    print_plain_table(header, rows)
    note = f"{len(rows)} updates over {response.agents} agents"
    if response.agents_without_list:
        note += (
            f"; {response.agents_without_list} agents have sent no update list yet (older "
            "agent, no update manager, or a list still on its way: it comes within 6 h)"
        )
    click.echo(note, err=True)


def _print_agent(response: operator_pb2.ListPatchesResponse, output: str) -> None:
    if output == "json":
        emit_json(
            {
                "agent_id": response.agent_id,
                "hostname": response.hostname,
                "install_requested_at": response.install_requested_at or None,
                "install_requested_by": response.install_requested_by or None,
                "updates": [agent_row(u) for u in response.agent_updates],
            }
        )
        return
    rows = [
        [
            u.update_id,
            agent_text(u.current) or "-",
            agent_text(u.available),
            u.classification,
            u.state + (f" ({u.last_status})" if u.last_status and u.state != u.last_status else ""),
            agent_text(u.why if u.state != "installed" else u.last_message) or "-",
        ]
        for u in response.agent_updates
    ]
    click.echo(f"{agent_text(response.hostname)} [{response.agent_id[:12]}]")
    if response.install_requested_at:
        click.echo(
            f"install requested by {agent_text(response.install_requested_by)} at "
            f"{iso(response.install_requested_at)}: its next patch window installs the approved"
        )
    print_plain_table(["UPDATE", "CURRENT", "AVAILABLE", "CLASS", "STATE", "WHY"], rows)


def _decide(verb: str) -> click.Command:
    @click.argument("updates", nargs=-1, required=True)
    @click.option(
        "--target",
        "-t",
        type=TARGET,
        default=None,
        help="Where the record holds: client=C[,site=S] (agents enrolled later too), or agents "
        "(each one). Default: everywhere.",
    )
    @click.option("--comment", default="", help="Why, for the audit log and `list --agent`.")
    @OUTPUT_OPTION
    @click.pass_obj
    def decide(
        conn: Connection,
        updates: tuple[str, ...],
        target: Target | None,
        comment: str,
        output: str,
    ) -> None:
        request = operator_pb2.PatchDecisionRequest(updates=list(updates), comment=comment)
        selector = _selector(target)
        if selector is not None:
            request.target.CopyFrom(selector)
        method = conn.stub().ApprovePatches if verb == "approve" else conn.stub().DeclinePatches
        response = conn.call(method, request)
        if output == "json":
            emit_json(
                {
                    "records": response.records,
                    "changed": response.changed,
                    "scope": response.scope,
                    "unknown": list(response.unknown),
                }
            )
            return
        click.echo(
            f"{verb}d {len(updates)} updates {response.scope}: {response.changed} agent "
            "decisions changed"
        )
        if response.unknown:
            click.echo(
                f"not listed by any agent now (recorded all the same): "
                f"{', '.join(response.unknown)}",
                err=True,
            )

    decide.__doc__ = (
        f"{verb.capitalize()} updates (ids or globs over ids, e.g. apt:linux-*) in a scope.\n\n"
        "An operator's record overrides policy rules; the narrowest scope wins (agent, site, "
        "client, everywhere). Every call is in the audit log."
    )
    return click.command(verb)(decide)


patches.add_command(_decide("approve"))
patches.add_command(_decide("decline"))


def event_row(event: operator_pb2.PatchInstallEvent) -> dict[str, Any]:
    """Return one agent's part of an install as JSON-ready data."""
    return {
        "agent_id": event.agent_id,
        "hostname": event.hostname,
        "status": event.status,
        "command_id": event.command_id or None,
        "error": event.error or None,
        "reboot_required": event.reboot_required,
        "updates": [
            {
                "update_id": u.update_id,
                "status": INSTALL_WORDS.get(u.status, "unknown"),
                "message": u.message or None,
                "version": u.version or None,
            }
            for u in event.updates
        ],
    }


def event_failed(event: operator_pb2.PatchInstallEvent) -> bool:
    """Say whether an agent's part of an install failed."""
    if event.status in NOT_FAILED:
        return False
    if event.error or event.status != "succeeded":
        return True
    return any(u.status != commands_pb2.UPDATE_INSTALLED for u in event.updates)


@patches.command("install")
@click.option("--target", "-t", type=TARGET, required=True, help="Which agents (a TARGET).")
@click.option("--now", is_flag=True, help="Install now and wait, instead of the next window.")
@click.option("--timeout", default=None, help="Per agent with --now (default 1h), e.g. 30m.")
@OUTPUT_OPTION
@click.pass_obj
def patches_install(
    conn: Connection, target: Target, now: bool, timeout: str | None, output: str
) -> None:
    """Install the approved updates of the agents TARGET selects.

    Without --now the agents are marked for their next patch window. With --now each gets its
    approved updates at once (a signed InstallUpdates command); each agent's per-update result
    is printed as it comes. Exits 1 when any agent or update failed.
    """
    request = operator_pb2.InstallPatchesRequest(
        target=target.selector,
        now=now,
        timeout_seconds=option_duration("--timeout", timeout) if timeout else 0.0,
    )
    events = []
    for event in conn.stream(conn.stub().InstallPatches, request):
        events.append(event)
        if output != "json":
            _print_event(event)
    failed = [e for e in events if event_failed(e)]
    if output == "json":
        emit_json([event_row(e) for e in events])
    elif not now:
        click.echo(f"{len(events)} agents marked to install their approved updates next window")
    if failed:
        names = ", ".join(agent_text(e.hostname or e.agent_id) for e in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        raise CliError(f"{len(failed)} of {len(events)} agents failed: {names}{more}", EXIT_FAILED)


def _print_event(event: operator_pb2.PatchInstallEvent) -> None:
    host = agent_text(event.hostname or event.agent_id)
    if event.status == "marked":
        return
    line = f"{host}: {event.status}"
    if event.error:
        line += f": {agent_text(event.error)}"
    if event.reboot_required:
        line += " (reboot required)"
    click.echo(line)
    for update in event.updates:
        word = INSTALL_WORDS.get(update.status, "unknown")
        detail = update.version if word == "installed" else update.message
        click.echo(f"  {update.update_id}: {word}" + (f" {agent_text(detail)}" if detail else ""))


def _group(agents: list[operator_pb2.PatchReportAgent], key: Any) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[operator_pb2.PatchReportAgent]] = defaultdict(list)
    for agent in agents:
        groups[key(agent)].append(agent)
    rows = []
    for names, members in sorted(groups.items()):
        listed = [a for a in members if a.listed]
        compliant = sum(1 for a in listed if a.compliant)
        rows.append(
            {
                "names": names,
                "agents": len(members),
                "listed": len(listed),
                "compliant": compliant,
                "compliance_ratio": compliant / len(listed) if listed else None,
                "approved_missing": sum(a.approved_missing for a in members),
                "failed": sum(a.failed for a in members),
                "reboot_pending": sum(1 for a in members if a.reboot_pending),
                "last_install_at": max((a.last_install_at for a in members), default=0.0) or None,
            }
        )
    return rows


def report_data(agents: list[operator_pb2.PatchReportAgent]) -> dict[str, Any]:
    """Return the compliance report per client, site and agent as JSON-ready data."""
    clients = _group(agents, lambda a: (a.client,))
    sites = _group(agents, lambda a: (a.client, a.site))
    return {
        "clients": [{"client": r.pop("names")[0], **r} for r in clients],
        "sites": [{"client": r["names"][0], "site": r.pop("names")[1], **r} for r in sites],
        "agents": [
            {
                "agent_id": a.agent_id,
                "hostname": a.hostname,
                "client": a.client,
                "site": a.site,
                "listed": a.listed,
                "compliant": a.compliant,
                "pending": a.pending,
                "approved_missing": a.approved_missing,
                "declined": a.declined,
                "failed": a.failed,
                "last_install_at": a.last_install_at or None,
                "reboot_pending": a.reboot_pending,
                "install_requested_at": a.install_requested_at or None,
            }
            for a in agents
        ],
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


@patches.command("report")
@click.option("--client", default="", help="One client only.")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people, json or csv (one row per agent) for scripts.",
)
@click.pass_obj
def patches_report(conn: Connection, client: str, output: str) -> None:
    """Patch compliance per client, site and agent: approved and missing, failed, last
    successful install, reboot pending."""
    response = conn.call(conn.stub().GetPatchReport, operator_pb2.PatchReportRequest(client=client))
    data = report_data(list(response.agents))
    if output == "json":
        emit_json(data)
        return
    if output == "csv":
        columns = list(data["agents"][0]) if data["agents"] else ["agent_id"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for row in data["agents"]:
            writer.writerow(
                {k: agent_text(str(v)) if isinstance(v, str) else v for k, v in row.items()}
            )
        sys.stdout.write(buffer.getvalue())
        return
    header = [
        "CLIENT",
        "SITE",
        "AGENTS",
        "COMPLIANT",
        "MISSING",
        "FAILED",
        "REBOOT",
        "LAST INSTALL",
    ]
    rows = [
        [
            agent_text(s["client"]),
            agent_text(s["site"]),
            str(s["agents"]),
            _ratio(s["compliance_ratio"]),
            str(s["approved_missing"]),
            str(s["failed"]),
            str(s["reboot_pending"]),
            when(s["last_install_at"] or 0.0),
        ]
        for s in data["sites"]
    ]
    print_plain_table(header, rows)
    click.echo("")
    agent_rows = [
        [
            agent_text(a["hostname"]),
            agent_text(a["client"]),
            agent_text(a["site"]),
            ("yes" if a["compliant"] else "no") if a["listed"] else "no list",
            str(a["approved_missing"]),
            str(a["failed"]),
            "yes" if a["reboot_pending"] else "-",
            iso(a["last_install_at"]) if a["last_install_at"] else "-",
            "next window" if a["install_requested_at"] else "-",
        ]
        for a in data["agents"]
    ]
    header = ["HOST", "CLIENT", "SITE", "COMPLIANT", "MISSING", "FAILED", "REBOOT"]
    print_plain_table([*header, "LAST INSTALL", "INSTALL"], agent_rows)


def run_row(run: operator_pb2.PatchRunInfo) -> dict[str, Any]:
    """Return one patch run as JSON-ready data."""
    return {
        "id": run.id,
        "window": run.window,
        "starts_at": run.starts_at,
        "ends_at": run.ends_at,
        "state": run.state,
        "rings": [
            {
                "name": r.name,
                "state": r.state,
                "held": r.held or None,
                "agents": r.agents,
                "installed": r.installed,
                "failed": r.failed,
                "missed": r.missed,
                "held_agents": r.held_agents,
            }
            for r in run.rings
        ],
        "steps": dict(sorted(run.steps.items())),
        "installed": list(run.installed),
        "failed": list(run.failed),
        "missed": list(run.missed),
        "held": list(run.held),
    }


@patches.command("runs")
@click.option("--window", default="", help="Only this window's runs (policy/schedule@zone).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def patches_runs(conn: Connection, window: str, limit: int, output: str) -> None:
    """The patch windows opened, newest first: each ring's state and its agents that
    installed, failed, missed the window or were held."""
    request = operator_pb2.ListPatchRunsRequest(window=window, limit=limit)
    response = conn.call(conn.stub().ListPatchRuns, request)
    rows = [run_row(run) for run in response.runs]
    if output == "json":
        emit_json(rows)
        return
    table = [
        [
            agent_text(run["window"]),
            iso(run["starts_at"]),
            run["state"],
            ring["name"],
            ring["state"] + (f" ({agent_text(ring['held'])})" if ring["held"] else ""),
            str(ring["agents"]),
            str(ring["installed"]),
            str(ring["failed"]),
            str(ring["missed"]),
            str(ring["held_agents"]),
        ]
        for run in rows
        for ring in run["rings"] or [_NO_RING]
    ]
    header = ["WINDOW", "STARTS", "STATE", "RING", "RING STATE", "AGENTS", "INSTALLED"]
    print_plain_table([*header, "FAILED", "MISSED", "HELD"], table)
    for run in rows:
        for step in ("missed", "failed", "held"):
            if run[step]:
                names = ", ".join(run[step][:20]) + (" ..." if len(run[step]) > 20 else "")
                click.echo(f"{agent_text(run['window'])} {iso(run['starts_at'])} {step}: {names}")
    if not rows:
        click.echo("no patch window has opened yet", err=True)


# A run without rings (its agents are in none): one line of zeros.
_NO_RING: dict[str, Any] = {
    "name": "-",
    "state": "-",
    "held": None,
    "agents": 0,
    "installed": 0,
    "failed": 0,
    "missed": 0,
    "held_agents": 0,
}
