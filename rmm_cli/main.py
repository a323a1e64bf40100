"""`rmm`: the operator's command line."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_common import __version__  # one version constant, no metadata read at start-up
from rmm_common.agent_words import printable_name, shown_hostname_flagged
from rmm_common.boundedjson import load_json_bounded
from rmm_common.cliparams import checked, server_address
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_common.oneliner import (
    DEFAULT_PACKAGE,
    INSTALLER_PLATFORMS,
    Enrollment,
    ca_fingerprint,
    installer_command,
)
from rmm_common.pinning import normalize_fingerprint
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


def confirm_unless_yes(yes: bool, asks_before: str, question: str) -> None:
    """Ask `question` on the terminal unless --yes; without a terminal, --yes is required.

    `asks_before` completes "rmm ... asks before ...", e.g. "rmm reboot asks before rebooting".
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"{asks_before} and there is no terminal to ask on: pass --yes", EXIT_USAGE
        )
    click.confirm(question, abort=True)


def emit(output: str, data: Any, line: str) -> None:
    """Print `data` as JSON for scripts, or one line for people."""
    if output == "json":
        emit_json(data)
    else:
        click.echo(line)


def print_table(table: Table) -> None:
    """Print a rich table, at full width when stdout is not a terminal."""
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)


def print_plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as plain columns padded to their widest cell: fast for thousands of rows."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    click.echo("\n".join(lines))


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
    """Return JSON-safe numbers: NaN and infinities become null."""
    return value if math.isfinite(value) else None


def sample_value(value: float) -> float | str:
    """Return a sample's value for JSON: NaN and infinities as Prometheus writes them."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


@click.group()
@click.option(
    "--server",
    envvar="RMM_SERVER",
    default="",
    callback=checked(server_address),
    help="Server HOST:PORT [RMM_SERVER].",
)
@click.option("--token", envvar="RMM_TOKEN", default="", help="Operator token [RMM_TOKEN].")
@click.option(
    "--insecure",
    envvar="RMM_INSECURE",
    is_flag=True,
    help="Plaintext gRPC (loopback and tests) [RMM_INSECURE=1].",
)
@click.option(
    "--allow-plaintext-beyond-loopback",
    "allow_plaintext",
    envvar="RMM_ALLOW_PLAINTEXT_BEYOND_LOOPBACK",
    is_flag=True,
    help="With --insecure, talk plaintext to a server beyond loopback too (a trusted network "
    "only: your token crosses it readable) [RMM_ALLOW_PLAINTEXT_BEYOND_LOOPBACK=1].",
)
@click.option(
    "--ca-cert",
    envvar="RMM_CA_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CA certificate that signed the server's [RMM_CA_CERT].",
)
@click.option(
    "--ca-fingerprint",
    envvar="RMM_CA_FINGERPRINT",
    default="",
    callback=checked(lambda value, _flag: normalize_fingerprint(value)),
    help="sha256:<hex> of the server's CA, to trust it without a file [RMM_CA_FINGERPRINT].",
)
@click.version_option(__version__, package_name="msp-rmm")
@click.pass_context
def main(
    ctx: click.Context,
    server: str,
    token: str,
    insecure: bool,
    allow_plaintext: bool,
    ca_cert: Path | None,
    ca_fingerprint: str,
) -> None:
    """Operate the RMM: enrollment tokens, agents, and more."""
    if sum(bool(x) for x in (insecure, ca_cert, ca_fingerprint)) > 1:
        raise CliError(
            "--insecure, --ca-cert and --ca-fingerprint exclude each other: pick one", EXIT_USAGE
        )
    connection = Connection(
        server=server,
        token=token.strip(),
        insecure=insecure,
        ca_cert=ca_cert,
        ca_fingerprint=ca_fingerprint.strip(),
        allow_plaintext=allow_plaintext,
    )
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
@click.option(
    "--installer",
    type=click.Choice(INSTALLER_PLATFORMS),
    help="Also print a one-line command that installs, enrolls and starts an agent there.",
)
@click.option(
    "--package-url",
    default=DEFAULT_PACKAGE,
    show_default=True,
    help="What the installer gives pip: a requirement, a wheel URL or an index's package.",
)
@OUTPUT_OPTION
@click.pass_obj
def tokens_create(
    conn: Connection,
    client: str,
    site: str,
    expires: str | None,
    uses: int | None,
    installer: str | None,
    package_url: str,
    output: str,
) -> None:
    """Create an enrollment token; its secret is shown once."""
    try:
        expires_in = parse_duration(expires) if expires else 0.0
    except InvalidArgument as exc:
        raise CliError(f"--expires: {exc}", EXIT_USAGE) from None
    try:  # check what the installer needs before a token is spent on it
        enrollment = Enrollment(
            server=conn.server,
            token="unset",
            package=package_url,
            ca_pem=conn.ca_cert.read_text() if conn.ca_cert and installer else "",
            insecure=conn.insecure,
            allow_plaintext=conn.allow_plaintext,
        )
        if installer is not None:
            enrollment.check()
    except (InvalidArgument, OSError) as exc:
        raise CliError(f"--installer: {exc}", EXIT_USAGE) from None
    response = conn.call(
        conn.stub().CreateEnrollmentToken,
        operator_pb2.CreateEnrollmentTokenRequest(
            client=client, site=site, expires_in_seconds=expires_in, max_uses=uses or 0
        ),
    )
    command = None
    if installer is not None:
        enrollment = dataclasses.replace(
            enrollment, token=response.secret, ca_fingerprint=response.ca_fingerprint
        )
        command = installer_command(enrollment, installer)
    if output == "json":
        extra = {"installer": command} if command is not None else {}
        emit_json(
            {
                **token_row(response.token),
                "token": response.secret,
                "ca_fingerprint": response.ca_fingerprint or None,
                **extra,
            }
        )
        return
    click.echo(response.secret)
    if command is not None:
        where = "PowerShell as Administrator" if installer == "windows" else "a root shell"
        click.echo(f"# run this in {where} on the new {installer} host:", err=True)
        click.echo(command)
        if enrollment.ca_fingerprint:
            click.echo(f"# it pins the server's CA, {enrollment.ca_fingerprint}", err=True)
        elif enrollment.ca_pem:
            fingerprint = ca_fingerprint(enrollment.ca_pem)
            click.echo(f"# it pins the server's CA, SHA-256 {fingerprint}", err=True)
    if response.ca_fingerprint:
        click.echo(
            f"server CA {response.ca_fingerprint}: enroll with "
            f"`rmm-agent enroll --ca-fingerprint {response.ca_fingerprint} ...`",
            err=True,
        )
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
    emit(output, token_row(token), f"token {token.id} ({token.client}/{token.site}) revoked")


# --- agents --------------------------------------------------------------------------------


@main.group()
def agents() -> None:
    """Enrolled agents: their state and latest metrics."""


def agent_status(agent: operator_pb2.AgentSummary) -> str:
    """Return revoked, online or offline."""
    if agent.revoked_at:
        return "revoked"
    return "online" if agent.online else "offline"


STATUS_STYLE = {
    "online": "[green]online[/]",
    "offline": "[red]offline[/]",
    "revoked": "[red]revoked[/]",
}


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
        "status": agent_status(agent),
        "revoked_at": agent.revoked_at or None,
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


TABLE_PAGE = 100  # rows `rmm agents list` shows in a table unless --limit says otherwise
# Past this many rows a table is printed as plain aligned text: rich measures and wraps every
# cell, about 3 ms a row here, so 10,000 agents took half a minute.
PLAIN_TABLE_ROWS = 500


@agents.command("list")
@click.option("--client", default="", help="Only this client.")
@click.option("--site", default="", help="Only this site.")
@click.option("--tag", default="", help="Only agents with this tag.")
@click.option("--status", type=click.Choice(["online", "offline"]), help="Only online or offline.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most this many; 0: all [default: all with --output json, {TABLE_PAGE} in a table].",
)
@click.option(
    "--page-token",
    default="",
    help="Start where an earlier list stopped (the token it printed under the table).",
)
@OUTPUT_OPTION
@click.pass_obj
def agents_list(
    conn: Connection,
    client: str,
    site: str,
    tag: str,
    status: str | None,
    limit: int | None,
    page_token: str,
    output: str,
) -> None:
    """List agents with their status and key metrics, by client, site and hostname."""
    if limit is None:
        limit = 0 if output == "json" else TABLE_PAGE
    stub = conn.stub()
    rows: list[operator_pb2.AgentSummary] = []
    total = 0
    while True:
        # The server's largest page: 10,000 agents in two calls rather than twenty.
        page_size = min(limit - len(rows), 5000) if limit else 5000
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
        total = response.total
        page_token = response.next_page_token
        if not page_token or (limit and len(rows) >= limit):
            break
    now = time.time()
    if output == "json":
        emit_json([agent_row(agent, now) for agent in rows])
        return
    header = (
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
    cells = [
        (
            agent.id[:12],
            shown_hostname_flagged(agent.hostname),  # the agent's own word: never trusted
            agent.client,
            agent.site,
            ",".join(agent.tags),
            f"{agent.os_name} {agent.os_version}".strip(),
            agent_status(agent),
            when(agent.last_seen, now),
            ratio(agent.cpu_usage_ratio),
            ratio(agent.memory_used_ratio),
            ratio(agent.disk_used_ratio_max),
            "-" if math.isnan(agent.uptime_seconds) else format_duration(agent.uptime_seconds),
        )
        for agent in rows
    ]
    if len(cells) > PLAIN_TABLE_ROWS:
        print_plain_table(header, cells)
    else:
        table = Table(*header)
        for row in cells:
            table.add_row(
                *(escape(cell) for cell in row[:6]),
                STATUS_STYLE[row[6]],
                *(escape(cell) for cell in row[7:]),
            )
        print_table(table)
    if not rows:
        click.echo("no agents match", err=True)
    elif page_token:
        shown = f"{len(rows):,} of {total:,} agents"
        click.echo(
            f"{shown}; the next {min(limit, total - len(rows)):,}: rmm agents list "
            f"--page-token {page_token} (same filters), all: --limit 0, or narrow with "
            "--client, --site, --tag, --status",
            err=True,
        )


@agents.command("show")
@click.argument("agent")
@OUTPUT_OPTION
@click.pass_obj
def agents_show(conn: Connection, agent: str, output: str) -> None:
    """Show one agent (id, unique id prefix, or host=NAME for a hostname) in full."""
    detail = conn.call(conn.stub().GetAgent, operator_pb2.GetAgentRequest(agent=agent))
    now = time.time()
    # Bounded: an older server passes stored documents as they are, and one nested a thousand
    # deep must print a placeholder, not a RecursionError.
    info = load_json_bounded(detail.info_json, "the agent's info") if detail.info_json else {}
    inventory = (
        load_json_bounded(detail.inventory_json, "the agent's inventory")
        if detail.inventory_json
        else {}
    )
    if output == "json":
        emit_json(
            {
                **agent_row(detail.summary, now),
                "kernel": detail.kernel,
                "arch": detail.arch,
                "first_sequence": detail.first_sequence or None,
                "last_sequence": detail.summary.last_sequence,
                "reports_stored": detail.reports_stored,
                "dropped_reports": detail.dropped_reports,
                "skipped_sequences": detail.skipped_sequences,
                "conflicting_reports": detail.conflicting_reports,
                "collectors": [
                    MessageToDict(c, always_print_fields_with_no_presence=True)
                    for c in detail.collectors
                ],
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": sample_value(s.value)}
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
        ("hostname", f"{shown_hostname_flagged(summary.hostname)} (as the agent reports it)"),
        ("client / site", f"{summary.client} / {summary.site}"),
        ("tags", ", ".join(summary.tags) or "-"),
        ("os", f"{summary.os_name} {summary.os_version} ({summary.os}, {detail.arch})"),
        ("kernel", detail.kernel or "-"),
        ("agent version", summary.agent_version or "-"),
        ("status", agent_status(summary)),
        ("last seen", when(summary.last_seen, now)),
        ("enrolled", when(summary.enrolled_at, now)),
        (
            "reports",
            f"{detail.reports_stored} stored, sequence {detail.first_sequence}"
            f"..{summary.last_sequence}"
            + (
                f", {detail.dropped_reports} dropped by the agent (its spool was full)"
                if detail.dropped_reports
                else ""
            )
            + (
                f", {detail.skipped_sequences} sequence numbers skipped (unclean agent stops)"
                if detail.skipped_sequences
                else ""
            )
            + (
                f", {detail.conflicting_reports} REFUSED: sequence reused with other content"
                if detail.conflicting_reports
                else ""
            ),
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


@agents.command("revoke")
@click.argument("agent")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (needed without a terminal).")
@OUTPUT_OPTION
@click.pass_obj
def agents_revoke(conn: Connection, agent: str, yes: bool, output: str) -> None:
    """Revoke an agent for good: its credential stops working and its streams are cut at once.

    AGENT is an id, a unique start of one, or host=NAME. The agent stops; to bring the host
    back, enroll it again with a new token.
    """
    confirm_unless_yes(
        yes,
        "rmm agents revoke asks before revoking",
        f"Revoke agent {agent!r}? It stops at once and must enroll again to come back",
    )
    summary = conn.call(conn.stub().RevokeAgent, operator_pb2.RevokeAgentRequest(agent=agent))
    emit(
        output,
        agent_row(summary, time.time()),
        f"agent {summary.id} ({printable_name(summary.hostname)}) revoked; its connections were "
        "cut",
    )


@agents.command("rotate")
@click.argument("agent")
@OUTPUT_OPTION
@click.pass_obj
def agents_rotate(conn: Connection, agent: str, output: str) -> None:
    """Ask an agent to replace its credential at its next report.

    The old credential keeps working until the agent first uses the new one, so an agent that
    is offline or crashes half-way is never locked out.
    """
    summary = conn.call(
        conn.stub().RotateAgentCredential,
        operator_pb2.RotateAgentCredentialRequest(agent=agent),
    )
    emit(
        output,
        {**agent_row(summary, time.time()), "rotation_requested": True},
        f"agent {summary.id} ({printable_name(summary.hostname)}) will replace its credential at "
        "its next report",
    )


def update_agent(conn: Connection, request: operator_pb2.UpdateAgentRequest, output: str) -> None:
    """Send one UpdateAgent call and print where the agent is now."""
    summary = conn.call(conn.stub().UpdateAgent, request)
    emit(
        output,
        agent_row(summary, time.time()),
        f"agent {summary.id} ({printable_name(summary.hostname)}) is in "
        f"{summary.client}/{summary.site}, tags: {', '.join(summary.tags) or 'none'}",
    )


@agents.command("move")
@click.argument("agent")
@click.option("--client", default="", help="The client it belongs to from now on.")
@click.option("--site", default="", help="Its site from now on [default: the same site name].")
@OUTPUT_OPTION
@click.pass_obj
def agents_move(conn: Connection, agent: str, client: str, site: str, output: str) -> None:
    """Move an agent to another client or site without enrolling it again (tier3).

    AGENT is an id, a unique start of one, or host=NAME. /metrics shows the new labels at once;
    the new client's and site's alert policies apply from its next report.
    """
    if not client.strip() and not site.strip():
        raise CliError("say where to: --client CLIENT and/or --site SITE", EXIT_USAGE)
    update_agent(
        conn, operator_pb2.UpdateAgentRequest(agent=agent, client=client, site=site), output
    )


@agents.command("tag")
@click.argument("agent")
@click.option("--add", "add_tags", multiple=True, help="A tag to add (repeatable).")
@click.option("--remove", "remove_tags", multiple=True, help="A tag to remove (repeatable).")
@OUTPUT_OPTION
@click.pass_obj
def agents_tag(
    conn: Connection,
    agent: str,
    add_tags: tuple[str, ...],
    remove_tags: tuple[str, ...],
    output: str,
) -> None:
    """Add or remove an agent's tags without enrolling it again (tier3).

    Policies scoped by tag apply (or stop applying) from its next report.
    """
    if not add_tags and not remove_tags:
        raise CliError("say what to change: --add TAG and/or --remove TAG", EXIT_USAGE)
    update_agent(
        conn,
        operator_pb2.UpdateAgentRequest(
            agent=agent, add_tags=list(add_tags), remove_tags=list(remove_tags)
        ),
        output,
    )


# --- alerts --------------------------------------------------------------------------------


@main.group()
def alerts() -> None:
    """Alerts raised by the policies."""


def alert_row(alert: operator_pb2.AlertInfo) -> dict[str, Any]:
    """Return an alert as JSON-ready data."""
    return {
        "id": alert.id,
        "suppressed_by": alert.suppressed_by or None,
        "history": json.loads(alert.history_json) if alert.history_json else [],
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
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most this many; 0: the server's most (1,000) [default: 1,000 with --output json, "
    f"{TABLE_PAGE} in a table].",
)
@OUTPUT_OPTION
@click.pass_obj
def alerts_list(
    conn: Connection,
    states: tuple[str, ...],
    client: str,
    severity: str | None,
    agent: str,
    limit: int | None,
    output: str,
) -> None:
    """List alerts, most recently changed first."""
    if limit is None:
        limit = 0 if output == "json" else TABLE_PAGE
    response = conn.call(
        conn.stub().ListAlerts,
        operator_pb2.ListAlertsRequest(
            states=list(states),
            client=client,
            severity=severity or "",
            agent=agent,
            # One more than shown says whether more match.
            limit=limit + 1 if limit and output != "json" else limit,
        ),
    )
    if output == "json":
        emit_json([alert_row(alert) for alert in response.alerts])
        return
    more = bool(limit) and len(response.alerts) > limit
    shown = list(response.alerts)[:limit] if limit else list(response.alerts)
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
        "QUIET",
        "ACK",
        "SUMMARY",
    )
    colours = {"critical": "red", "warning": "yellow", "info": "blue"}
    for alert in shown:
        colour = colours.get(alert.severity, "white")
        table.add_row(
            alert.id,
            alert.state,
            f"[{colour}]{alert.severity}[/]",
            alert.tier,
            alert.rule,
            f"{alert.client}/{alert.site}",
            escape(f"{printable_name(alert.hostname)} [{alert.agent_id[:12]}]"),
            ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items())),
            "-" if math.isnan(alert.value) else f"{alert.value:g}",
            when(alert.fired_at or alert.started_at, now),
            alert.suppressed_by or "-",
            alert.acknowledged_by or "-",
            alert.annotations.get("summary", ""),
        )
    print_table(table)
    if not response.alerts:
        click.echo("no alerts match", err=True)
    elif more:
        click.echo(
            f"the {limit:,} most recently changed shown; more match: a larger --limit, or narrow "
            "with --state, --client, --severity, --agent",
            err=True,
        )


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--comment", required=True, help="What you are doing about it.")
@OUTPUT_OPTION
@click.pass_obj
def alerts_ack(conn: Connection, alert_id: str, comment: str, output: str) -> None:
    """Acknowledge an alert: you own it, and it stops escalating."""
    alert = conn.call(
        conn.stub().AckAlert, operator_pb2.AckAlertRequest(id=alert_id, comment=comment)
    )
    emit(
        output,
        alert_row(alert),
        f"alert {alert.id} ({alert.rule} on {printable_name(alert.hostname)} "
        f"[{alert.agent_id[:12]}]) acknowledged",
    )


@alerts.command("show")
@click.argument("alert_id")
@OUTPUT_OPTION
@click.pass_obj
def alerts_show(conn: Connection, alert_id: str, output: str) -> None:
    """Everything about one alert: rule, agent, labels, history, silences and notifications.

    ALERT_ID is its id, or a unique start of an open alert's id.
    """
    detail = conn.call(conn.stub().GetAlert, operator_pb2.GetAlertRequest(id=alert_id))
    alert = detail.alert
    notifications = [
        {
            "at": n.at,
            "receiver": n.receiver,
            "notifier": n.notifier,
            "status": n.status,
            "delivered": n.delivered,
            "error": n.error or None,
            "group_key": n.group_key,
        }
        for n in detail.notifications
    ]
    data = {
        **alert_row(alert),
        "rule_now": (
            {"expr": detail.expr, "for_seconds": detail.for_seconds, "source": detail.rule_source}
            if detail.expr
            else None
        ),
        "agent": agent_row(detail.agent, time.time()) if detail.HasField("agent") else None,
        "silences": [silence_row(s) for s in detail.silences],
        "notifications": notifications,
    }
    if output == "json":
        emit_json(data)
        return
    now = time.time()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    agent_line = (
        f"{printable_name(alert.hostname)} [{alert.agent_id[:12]}] in {alert.client}/{alert.site}"
    )
    moved = (detail.agent.client, detail.agent.site) != (alert.client, alert.site)
    if detail.HasField("agent") and moved:
        agent_line += f" (now in {detail.agent.client}/{detail.agent.site})"
    rows: list[tuple[str, str]] = [
        ("alert", alert.id),
        ("rule", f"{alert.rule} ({alert.rule_key})"),
        ("expr", f"{detail.expr}  for {format_duration(detail.for_seconds)}  [{detail.rule_source}]"
         if detail.expr else "- (the policies in force no longer have this rule for the agent)"),
        ("agent", agent_line if detail.HasField("agent") else f"{agent_line} (agent gone)"),
        ("state", f"{alert.state}, {alert.severity}, tier {alert.tier}"),
        ("value", "-" if math.isnan(alert.value) else f"{alert.value:g}"),
        ("started", when(alert.started_at, now)),
        ("fired", when(alert.fired_at, now)),
        ("resolved", when(alert.resolved_at, now)),
        ("acknowledged", f"by {alert.acknowledged_by} {when(alert.acknowledged_at, now)}: "
         f"{alert.ack_comment}" if alert.acknowledged_by else "no"),
        ("quiet", alert.suppressed_by or "no: notifications go out"),
    ]  # fmt: skip
    rows += [(f"label {k}", v) for k, v in sorted(alert.labels.items())]
    rows += [(f"annotation {k}", v) for k, v in sorted(alert.annotations.items())]
    for key, value in rows:
        facts.add_row(escape(key), escape(value))
    print_table(facts)
    history = Table("WHEN", "EVENT", "BY", "DETAIL", title="history")
    for entry in data["history"]:
        history.add_row(
            when(float(entry.get("at", 0)), now),
            escape(str(entry.get("event", ""))),
            escape(str(entry.get("by", ""))),
            escape(str(entry.get("detail", ""))),
        )
    print_table(history)
    silenced = Table("SILENCE", "STATE", "MATCHERS", "BY", "COMMENT", title="matching silences")
    for silence in detail.silences:
        silenced.add_row(
            silence.id,
            silence.state,
            escape(silence.matchers),
            escape(silence.created_by),
            escape(silence.comment),
        )
    print_table(silenced)
    told = Table("WHEN", "RECEIVER", "NOTIFIER", "STATUS", "OUTCOME", title="notifications")
    for n in detail.notifications:
        told.add_row(
            when(n.at, now),
            escape(n.receiver),
            n.notifier,
            n.status,
            "delivered" if n.delivered else escape(f"FAILED: {n.error}"),
        )
    print_table(told)


@alerts.command("silence")
@click.option(
    "--match",
    "matchers",
    required=True,
    help="Matchers, e.g. 'rule=DiskLow,client=acme' (=, != and =~ regex).",
)
@click.option("--for", "duration", required=True, help="How long, e.g. 2h.")
@click.option("--comment", required=True, help="Why.")
@OUTPUT_OPTION
@click.pass_obj
def alerts_silence(
    conn: Connection, matchers: str, duration: str, comment: str, output: str
) -> None:
    """Silence notifications of matching alerts for a while (they still show)."""
    try:
        seconds = parse_duration(duration)
    except InvalidArgument as exc:
        raise CliError(f"--for: {exc}", EXIT_USAGE) from None
    silence = conn.call(
        conn.stub().CreateSilence,
        operator_pb2.CreateSilenceRequest(
            matchers=matchers, duration_seconds=seconds, comment=comment
        ),
    )
    emit(
        output,
        silence_row(silence),
        f"silence {silence.id} on {silence.matchers} until {when(silence.ends_at)}",
    )


@main.group()
def silences() -> None:
    """Silences: ad-hoc quiet for matching alerts."""


def silence_row(silence: operator_pb2.SilenceInfo) -> dict[str, Any]:
    """Return a silence as JSON-ready data."""
    return {
        "id": silence.id,
        "matchers": silence.matchers,
        "state": silence.state,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "created_by": silence.created_by,
        "comment": silence.comment,
    }


@silences.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@OUTPUT_OPTION
@click.pass_obj
def silences_list(conn: Connection, include_expired: bool, output: str) -> None:
    """List silences."""
    response = conn.call(
        conn.stub().ListSilences,
        operator_pb2.ListSilencesRequest(include_expired=include_expired),
    )
    if output == "json":
        emit_json([silence_row(s) for s in response.silences])
        return
    table = Table("ID", "STATE", "MATCHERS", "ENDS", "BY", "COMMENT")
    for s in response.silences:
        table.add_row(s.id, s.state, s.matchers, when(s.ends_at), s.created_by, s.comment)
    print_table(table)


@silences.command("expire")
@click.argument("silence_id")
@OUTPUT_OPTION
@click.pass_obj
def silences_expire(conn: Connection, silence_id: str, output: str) -> None:
    """End a silence now."""
    silence = conn.call(conn.stub().ExpireSilence, operator_pb2.ExpireSilenceRequest(id=silence_id))
    emit(output, silence_row(silence), f"silence {silence.id} expired")


# --- maintenance windows -------------------------------------------------------------------


@main.group()
def maintenance() -> None:
    """Maintenance windows: scheduled quiet for a scope of agents."""


def window_row(window: operator_pb2.MaintenanceInfo) -> dict[str, Any]:
    """Return a maintenance window as JSON-ready data."""
    return {
        "id": window.id,
        "name": window.name,
        "schedule": window.schedule or None,
        "start_at": window.start_at or None,
        "duration_seconds": window.duration_seconds,
        "timezone": window.timezone,
        "clients": list(window.clients),
        "sites": list(window.sites),
        "agents": list(window.agents),
        "tags": list(window.tags),
        "active_now": window.active_now,
        "current_end": window.current_end or None,
        "next_start": window.next_start or None,
        "ended_at": window.ended_at or None,
        "created_by": window.created_by,
        "comment": window.comment,
    }


@maintenance.command("add")
@click.option("--name", required=True)
@click.option("--schedule", default="", help="Cron in the time zone, e.g. '0 2 * * sun'.")
@click.option("--start", "start", default="", help="One-off: 'now' or a unix time.")
@click.option("--duration", required=True, help="e.g. 2h.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of the site.")
@click.option("--client", "clients", multiple=True)
@click.option("--site", "sites", multiple=True)
@click.option("--agent", "agents", multiple=True)
@click.option("--tag", "tags", multiple=True)
@click.option("--comment", default="")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_add(
    conn: Connection,
    name: str,
    schedule: str,
    start: str,
    duration: str,
    timezone: str,
    clients: tuple[str, ...],
    sites: tuple[str, ...],
    agents: tuple[str, ...],
    tags: tuple[str, ...],
    comment: str,
    output: str,
) -> None:
    """Add a recurring (--schedule) or one-off (--start) maintenance window."""
    try:
        seconds = parse_duration(duration)
    except InvalidArgument as exc:
        raise CliError(f"--duration: {exc}", EXIT_USAGE) from None
    start_at = 0.0
    if start:
        try:
            start_at = time.time() if start == "now" else float(start)
        except ValueError:
            raise CliError("--start takes 'now' or a unix time", EXIT_USAGE) from None
    window = conn.call(
        conn.stub().AddMaintenance,
        operator_pb2.AddMaintenanceRequest(
            name=name,
            schedule=schedule,
            start_at=start_at,
            duration_seconds=seconds,
            timezone=timezone,
            clients=clients,
            sites=sites,
            agents=agents,
            tags=tags,
            comment=comment,
        ),
    )
    state = "in force now" if window.active_now else f"next {when(window.next_start)}"
    emit(
        output, window_row(window), f"maintenance window {window.id} ({window.name}) added, {state}"
    )


@maintenance.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Include ended windows.")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_list(conn: Connection, include_ended: bool, output: str) -> None:
    """List maintenance windows and whether each is in force now."""
    response = conn.call(
        conn.stub().ListMaintenance,
        operator_pb2.ListMaintenanceRequest(include_ended=include_ended),
    )
    if output == "json":
        emit_json([window_row(w) for w in response.windows])
        return
    table = Table("ID", "NAME", "SCHEDULE", "DURATION", "TZ", "SCOPE", "NOW", "NEXT")
    for w in response.windows:
        scope = (
            " ".join(
                [f"client={c}" for c in w.clients]
                + [f"site={s}" for s in w.sites]
                + [f"agent={a}" for a in w.agents]
                + [f"tag={t}" for t in w.tags]
            )
            or "everyone"
        )
        table.add_row(
            w.id,
            w.name,
            w.schedule or "one-off",
            format_duration(w.duration_seconds),
            w.timezone,
            scope,
            f"until {when(w.current_end)}" if w.active_now else "-",
            when(w.next_start) if w.next_start else "-",
        )
    print_table(table)


@maintenance.command("end")
@click.argument("window_id")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_end(conn: Connection, window_id: str, output: str) -> None:
    """End a maintenance window for good."""
    window = conn.call(conn.stub().EndMaintenance, operator_pb2.EndMaintenanceRequest(id=window_id))
    emit(output, window_row(window), f"maintenance window {window.id} ({window.name}) ended")


# --- notifications ---------------------------------------------------------------------------


@main.group()
def notifications() -> None:
    """Notification delivery."""


@notifications.command("failed")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def notifications_failed(conn: Connection, limit: int, output: str) -> None:
    """List notifications that could not be delivered after their retries."""
    response = conn.call(
        conn.stub().ListFailedNotifications,
        operator_pb2.ListFailedNotificationsRequest(limit=limit),
    )
    rows = [
        {
            "at": f.at,
            "receiver": f.receiver,
            "notifier": f.notifier,
            "status": f.status,
            "error": f.error,
            "alert_ids": list(f.alert_ids),
            "group_key": f.group_key,
        }
        for f in response.failures
    ]
    if output == "json":
        emit_json(rows)
        return
    table = Table("WHEN", "RECEIVER", "NOTIFIER", "STATUS", "ALERTS", "ERROR")
    for row in rows:
        table.add_row(
            when(row["at"]),
            row["receiver"],
            row["notifier"],
            row["status"],
            str(len(row["alert_ids"])),
            row["error"],
        )
    print_table(table)


# --- policies --------------------------------------------------------------------------------


@main.group()
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
    if output == "json":
        emit_json({"agent_id": response.agent_id, "rules": rows})
        return
    table = Table("RULE", "POLICY", "LAYER", "SEVERITY", "TIER", "FOR", "EXPR", "SET BY")
    for row in rows:
        table.add_row(
            row["name"],
            row["policy"],
            row["layer"],
            row["severity"],
            row["tier"],
            format_duration(row["for_seconds"]) if row["for_seconds"] else "-",
            row["expr"],
            "\n".join(f"{k}: {v}" for k, v in sorted(row["set_by"].items())) or row["source"],
        )
    print_table(table)


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
        table.add_row(
            row["rule"],
            row["severity"],
            ",".join(f"{k}={v}" for k, v in sorted(row["labels"].items())),
            verdict,
            "-" if row["value"] is None else f"{row['value']:g}",
            row["expr"],
        )
    print_table(table)
    active = sum(1 for row in rows if row["active"])
    click.echo(f"{len(rows)} checks, {active} would fire", err=True)


import rmm_cli.actions  # noqa: E402  (`rmm services|processes|reboot|files|commands`)
import rmm_cli.admin  # noqa: E402  (`rmm operators`, `rmm audit`: register themselves)
import rmm_cli.run  # noqa: E402  (`rmm run`: registers itself on `main`)
import rmm_cli.scripts  # noqa: E402, F401  (`rmm scripts`: registers itself on `main`)
