"""`rmm`: the operator's command line."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2

OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=str))


def print_table(table: Table) -> None:
    """Print a rich table, at full width when stdout is not a terminal."""
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)


def when(ts: float, now: float | None = None) -> str:
    """Return a short relative time for a unix timestamp ("-" for none)."""
    if not ts:
        return "-"
    delta = (now or time.time()) - ts
    if delta >= 0:
        return f"{format_duration(delta)} ago"
    return f"in {format_duration(-delta)}"


def ratio(value: float) -> str:
    """Return a 0..1 ratio as a percentage ("-" when unknown)."""
    return "-" if math.isnan(value) else f"{value * 100:.0f}%"


def finite_or_none(value: float) -> float | None:
    """Return JSON-safe numbers: NaN becomes null."""
    return None if math.isnan(value) else value


@click.group()
@click.option("--server", envvar="RMM_SERVER", default="", help="Server HOST:PORT [RMM_SERVER].")
@click.option("--token", envvar="RMM_TOKEN", default="", help="Operator token [RMM_TOKEN].")
@click.option(
    "--insecure",
    envvar="RMM_INSECURE",
    is_flag=True,
    help="Plaintext gRPC (loopback and tests) [RMM_INSECURE=1].",
)
@click.option(
    "--ca-cert",
    envvar="RMM_CA_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CA certificate that signed the server's [RMM_CA_CERT].",
)
@click.version_option(package_name="rmm")
@click.pass_context
def main(ctx: click.Context, server: str, token: str, insecure: bool, ca_cert: Path | None) -> None:
    """Operate the RMM: enrollment tokens, agents, and more."""
    connection = Connection(server=server, token=token.strip(), insecure=insecure, ca_cert=ca_cert)
    ctx.obj = connection
    ctx.call_on_close(connection.close)


# --- tokens --------------------------------------------------------------------------------


@main.group()
def tokens() -> None:
    """Enrollment tokens: how new agents join a client and site."""


def token_row(token: operator_pb2.EnrollmentToken) -> dict[str, Any]:
    """Return a token as JSON-ready data."""
    return {
        "id": token.id,
        "client": token.client,
        "site": token.site,
        "state": token.state,
        "uses": token.uses,
        "max_uses": token.max_uses or None,
        "created_at": token.created_at,
        "created_by": token.created_by,
        "expires_at": token.expires_at or None,
        "revoked_at": token.revoked_at or None,
    }


@tokens.command("create")
@click.option("--client", required=True, help="The client new agents belong to.")
@click.option("--site", required=True, help="The client's site new agents belong to.")
@click.option("--expires", help="Lifetime, e.g. 7d or 12h (default: never).")
@click.option("--uses", type=click.IntRange(min=1), help="How many agents may enroll with it.")
@OUTPUT_OPTION
@click.pass_obj
def tokens_create(
    conn: Connection, client: str, site: str, expires: str | None, uses: int | None, output: str
) -> None:
    """Create an enrollment token; its secret is shown once."""
    try:
        expires_in = parse_duration(expires) if expires else 0.0
    except InvalidArgument as exc:
        raise CliError(f"--expires: {exc}", EXIT_USAGE) from None
    response = conn.call(
        conn.stub().CreateEnrollmentToken,
        operator_pb2.CreateEnrollmentTokenRequest(
            client=client, site=site, expires_in_seconds=expires_in, max_uses=uses or 0
        ),
    )
    if output == "json":
        emit_json({**token_row(response.token), "token": response.secret})
        return
    click.echo(response.secret)
    detail = [f"token {response.token.id} for {client}/{site}"]
    if response.token.expires_at:
        detail.append(f"expires {when(response.token.expires_at)}")
    if response.token.max_uses:
        detail.append(f"{response.token.max_uses} uses")
    click.echo("; ".join(detail) + " (the secret above is not shown again)", err=True)


@tokens.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include expired, used and revoked.")
@OUTPUT_OPTION
@click.pass_obj
def tokens_list(conn: Connection, include_inactive: bool, output: str) -> None:
    """List enrollment tokens (never their secrets)."""
    response = conn.call(
        conn.stub().ListEnrollmentTokens,
        operator_pb2.ListEnrollmentTokensRequest(include_inactive=include_inactive),
    )
    if output == "json":
        emit_json([token_row(token) for token in response.tokens])
        return
    table = Table("ID", "CLIENT", "SITE", "STATE", "USES", "EXPIRES", "CREATED", "BY")
    for token in response.tokens:
        table.add_row(
            token.id,
            token.client,
            token.site,
            token.state,
            f"{token.uses}/{token.max_uses}" if token.max_uses else str(token.uses),
            when(token.expires_at) if token.expires_at else "never",
            when(token.created_at),
            token.created_by,
        )
    print_table(table)


@tokens.command("revoke")
@click.argument("token_id")
@OUTPUT_OPTION
@click.pass_obj
def tokens_revoke(conn: Connection, token_id: str, output: str) -> None:
    """Revoke an enrollment token so nobody enrolls with it any more."""
    token = conn.call(
        conn.stub().RevokeEnrollmentToken,
        operator_pb2.RevokeEnrollmentTokenRequest(id=token_id),
    )
    if output == "json":
        emit_json(token_row(token))
    else:
        click.echo(f"token {token.id} ({token.client}/{token.site}) revoked")


# --- agents --------------------------------------------------------------------------------


@main.group()
def agents() -> None:
    """Enrolled agents: their state and latest metrics."""


def agent_row(agent: operator_pb2.AgentSummary, now: float) -> dict[str, Any]:
    """Return an agent summary as JSON-ready data."""
    return {
        "id": agent.id,
        "hostname": agent.hostname,
        "client": agent.client,
        "site": agent.site,
        "tags": list(agent.tags),
        "os": agent.os,
        "os_name": agent.os_name,
        "os_version": agent.os_version,
        "agent_version": agent.agent_version,
        "status": "online" if agent.online else "offline",
        "enrolled_at": agent.enrolled_at,
        "last_seen": agent.last_seen or None,
        "last_seen_seconds_ago": (now - agent.last_seen) if agent.last_seen else None,
        "interval_seconds": agent.interval_seconds,
        "last_sequence": agent.last_sequence,
        "cpu_usage_ratio": finite_or_none(agent.cpu_usage_ratio),
        "memory_used_ratio": finite_or_none(agent.memory_used_ratio),
        "disk_used_ratio_max": finite_or_none(agent.disk_used_ratio_max),
        "disk_used_ratio_max_mountpoint": agent.disk_used_ratio_max_mountpoint or None,
        "uptime_seconds": finite_or_none(agent.uptime_seconds),
        "collector_errors": agent.collector_errors,
    }


@agents.command("list")
@click.option("--client", default="", help="Only this client.")
@click.option("--site", default="", help="Only this site.")
@click.option("--tag", default="", help="Only agents with this tag.")
@click.option("--status", type=click.Choice(["online", "offline"]), help="Only online or offline.")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many (0: all).")
@OUTPUT_OPTION
@click.pass_obj
def agents_list(
    conn: Connection,
    client: str,
    site: str,
    tag: str,
    status: str | None,
    limit: int,
    output: str,
) -> None:
    """List agents with their status and key metrics."""
    stub = conn.stub()
    rows: list[operator_pb2.AgentSummary] = []
    page_token = ""
    while True:
        page_size = min(limit - len(rows), 5000) if limit else 0
        response = conn.call(
            stub.ListAgents,
            operator_pb2.ListAgentsRequest(
                filter=operator_pb2.AgentFilter(
                    client=client, site=site, tag=tag, status=status or ""
                ),
                limit=page_size,
                page_token=page_token,
            ),
        )
        rows.extend(response.agents)
        page_token = response.next_page_token
        if not page_token or (limit and len(rows) >= limit):
            break
    now = time.time()
    if output == "json":
        emit_json([agent_row(agent, now) for agent in rows])
        return
    table = Table(
        "ID",
        "HOSTNAME",
        "CLIENT",
        "SITE",
        "TAGS",
        "OS",
        "STATUS",
        "LAST SEEN",
        "CPU",
        "MEM",
        "DISK",
        "UPTIME",
    )
    for agent in rows:
        table.add_row(
            agent.id[:12],
            agent.hostname,
            agent.client,
            agent.site,
            ",".join(agent.tags),
            f"{agent.os_name} {agent.os_version}".strip(),
            "[green]online[/]" if agent.online else "[red]offline[/]",
            when(agent.last_seen, now),
            ratio(agent.cpu_usage_ratio),
            ratio(agent.memory_used_ratio),
            ratio(agent.disk_used_ratio_max),
            "-" if math.isnan(agent.uptime_seconds) else format_duration(agent.uptime_seconds),
        )
    print_table(table)
    if not rows:
        click.echo("no agents match", err=True)


@agents.command("show")
@click.argument("agent")
@OUTPUT_OPTION
@click.pass_obj
def agents_show(conn: Connection, agent: str, output: str) -> None:
    """Show one agent (id, unique id prefix, or hostname) in full."""
    detail = conn.call(conn.stub().GetAgent, operator_pb2.GetAgentRequest(agent=agent))
    now = time.time()
    info = json.loads(detail.info_json) if detail.info_json else {}
    inventory = json.loads(detail.inventory_json) if detail.inventory_json else {}
    if output == "json":
        emit_json(
            {
                **agent_row(detail.summary, now),
                "kernel": detail.kernel,
                "arch": detail.arch,
                "first_sequence": detail.first_sequence or None,
                "last_sequence": detail.summary.last_sequence,
                "reports_stored": detail.reports_stored,
                "collectors": [
                    MessageToDict(c, always_print_fields_with_no_presence=True)
                    for c in detail.collectors
                ],
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value}
                    for s in detail.samples
                ],
                "info": info,
                "inventory_hash": detail.inventory_hash,
                "inventory_updated_at": detail.inventory_updated_at or None,
                "inventory": inventory,
            }
        )
        return
    summary = detail.summary
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in (
        ("id", summary.id),
        ("hostname", summary.hostname),
        ("client / site", f"{summary.client} / {summary.site}"),
        ("tags", ", ".join(summary.tags) or "-"),
        ("os", f"{summary.os_name} {summary.os_version} ({summary.os}, {detail.arch})"),
        ("kernel", detail.kernel or "-"),
        ("agent version", summary.agent_version or "-"),
        ("status", "online" if summary.online else "offline"),
        ("last seen", when(summary.last_seen, now)),
        ("enrolled", when(summary.enrolled_at, now)),
        (
            "reports",
            f"{detail.reports_stored} stored, sequence {detail.first_sequence}"
            f"..{summary.last_sequence}",
        ),
        ("cpu", ratio(summary.cpu_usage_ratio)),
        ("memory", ratio(summary.memory_used_ratio)),
        (
            "fullest disk",
            f"{ratio(summary.disk_used_ratio_max)} {summary.disk_used_ratio_max_mountpoint}",
        ),
        (
            "uptime",
            "-" if math.isnan(summary.uptime_seconds) else format_duration(summary.uptime_seconds),
        ),
        (
            "inventory",
            f"{detail.inventory_hash[:12] or '-'} updated {when(detail.inventory_updated_at, now)}",
        ),
    ):
        facts.add_row(key, str(value))
    print_table(facts)
    collectors = Table("COLLECTOR", "STATUS", "TIME")
    for c in detail.collectors:
        collectors.add_row(
            c.name,
            "[green]ok[/]" if c.ok else f"[red]{c.error}[/]",
            f"{c.duration_seconds * 1000:.1f} ms",
        )
    print_table(collectors)
    services = info.get("services", {})
    if services.get("available") is False:
        click.echo(f"services: not available ({services.get('reason', 'unknown reason')})")
    elif services:
        failed = services.get("failed") or []
        click.echo(f"failed services: {', '.join(failed) if failed else 'none'}")
    top = info.get("processes", {}).get("top_cpu") or []
    if top:
        processes = Table("PID", "PROCESS", "USER", "CPU", "RSS", title="top processes by CPU")
        for process in top[:5]:
            processes.add_row(
                str(process.get("pid", "")),
                str(process.get("name", "")),
                str(process.get("user") or "-"),
                f"{float(process.get('cpu_ratio') or 0) * 100:.1f}%",
                f"{float(process.get('rss_bytes') or 0) / 2**20:.0f} MiB",
            )
        print_table(processes)


# --- alerts --------------------------------------------------------------------------------


@main.group()
def alerts() -> None:
    """Alerts raised by the policies."""


def alert_row(alert: operator_pb2.AlertInfo) -> dict[str, Any]:
    """Return an alert as JSON-ready data."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "rule_key": alert.rule_key,
        "state": alert.state,
        "severity": alert.severity,
        "tier": alert.tier,
        "agent_id": alert.agent_id,
        "hostname": alert.hostname,
        "client": alert.client,
        "site": alert.site,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": finite_or_none(alert.value),
        "started_at": alert.started_at,
        "fired_at": alert.fired_at or None,
        "resolved_at": alert.resolved_at or None,
        "acknowledged_by": alert.acknowledged_by or None,
        "acknowledged_at": alert.acknowledged_at or None,
        "ack_comment": alert.ack_comment or None,
    }


@alerts.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["pending", "firing", "resolved"]),
    help="Only these states (repeatable; default: pending and firing).",
)
@click.option("--client", default="", help="Only this client.")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default=None)
@click.option("--agent", default="", help="Only this agent (id).")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many.")
@OUTPUT_OPTION
@click.pass_obj
def alerts_list(
    conn: Connection,
    states: tuple[str, ...],
    client: str,
    severity: str | None,
    agent: str,
    limit: int,
    output: str,
) -> None:
    """List alerts, most recently changed first."""
    response = conn.call(
        conn.stub().ListAlerts,
        operator_pb2.ListAlertsRequest(
            states=list(states), client=client, severity=severity or "", agent=agent, limit=limit
        ),
    )
    if output == "json":
        emit_json([alert_row(alert) for alert in response.alerts])
        return
    now = time.time()
    table = Table(
        "ID",
        "STATE",
        "SEVERITY",
        "TIER",
        "RULE",
        "CLIENT/SITE",
        "HOST",
        "LABELS",
        "VALUE",
        "SINCE",
        "SUMMARY",
    )
    colours = {"critical": "red", "warning": "yellow", "info": "blue"}
    for alert in response.alerts:
        colour = colours.get(alert.severity, "white")
        table.add_row(
            alert.id,
            alert.state,
            f"[{colour}]{alert.severity}[/]",
            alert.tier,
            alert.rule,
            f"{alert.client}/{alert.site}",
            alert.hostname,
            ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items())),
            "-" if math.isnan(alert.value) else f"{alert.value:g}",
            when(alert.fired_at or alert.started_at, now),
            alert.annotations.get("summary", ""),
        )
    print_table(table)
    if not response.alerts:
        click.echo("no alerts match", err=True)
