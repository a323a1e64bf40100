"""`rmm agents`: enrolled agents, their state and latest metrics; move, tag, revoke."""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import click

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import (
    OUTPUT_OPTION,
    confirm_unless_yes,
    emit,
    emit_json,
    emit_json_texts,
    print_plain_table,
    print_table,
    ratio,
    sample_value,
    shown,
    when,
)
from rmm_common import agent_rows
from rmm_common.agent_words import printable_name, shown_hostname_flagged
from rmm_common.boundedjson import load_json_bounded
from rmm_common.durations import format_duration
from rmm_common.json_text import list_item_text

if TYPE_CHECKING:
    from rmm_proto import operator_pb2

# grpc, the protocol's messages and rich are imported inside the commands that use them: a
# group's module is imported to run any of its commands, and JSON output needs no rich.


@click.group()
def agents() -> None:
    """Enrolled agents: their state and latest metrics."""


# An agent's JSON row and status, shared with the server, which renders `agents list --output
# json` rows too; the other commands take them from here.
agent_row = agent_rows.agent_row
agent_status = agent_rows.agent_status

STATUS_STYLE = {
    "online": "[green]online[/]",
    "offline": "[red]offline[/]",
    "revoked": "[red]revoked[/]",
}


TABLE_PAGE = 100  # rows `rmm agents list` shows in a table unless --limit says otherwise
# Past this many rows a table is printed as plain aligned text: rich measures and wraps every
# cell, about 3 ms a row here, so 10,000 agents took half a minute.
PLAIN_TABLE_ROWS = 500
# Rows asked for a call when more than a table's page is wanted (the server caps it at its own
# largest page). Each next page is asked for before this one is printed, so the server reads
# page n+1 while this process prints page n: 10,000 agents in five calls.
FETCH_PAGE = 2000
# Rows asked for a call as JSON text: the server's largest page (its text is cut at a few MiB).
FETCH_JSON_PAGE = 5000


def agent_pages(
    conn: Connection,
    flt: operator_pb2.AgentFilter,
    limit: int,
    page_token: str,
    page_size: int = FETCH_PAGE,
    json_now: float | None = None,
) -> Generator[operator_pb2.ListAgentsResponse, None, None]:
    """Yield ListAgents pages from `page_token` until the last, or `limit` rows (0: all), at
    most `page_size` rows a call. With `json_now`, each page is asked for as the text of its
    rows (json_rows, last_seen_seconds_ago counted from `json_now`); a server older than that
    answers with messages all the same.

    The call for the next page is made before the current page is yielded.
    """
    from rmm_proto import operator_pb2  # noqa: PLC0415

    stub = conn.stub()
    as_json = json_now is not None

    def ask(token: str, fetched: int) -> Any:
        size = min(limit - fetched, page_size) if limit else page_size
        request = operator_pb2.ListAgentsRequest(
            filter=flt,
            limit=size,
            page_token=token,
            json_rows=as_json,
            json_now=json_now or 0.0,
        )
        return conn.call_future(stub.ListAgents, request)

    pending = ask(page_token, 0)
    fetched = 0
    try:
        while pending is not None:
            response: operator_pb2.ListAgentsResponse = conn.result(pending)
            fetched += len(response.agents) or response.json_row_count
            more = bool(response.next_page_token) and not (limit and fetched >= limit)
            pending = ask(response.next_page_token, fetched) if more else None
            yield response
    finally:
        if pending is not None:  # the reader stopped early (an error, a closed pipe)
            pending.cancel()


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
    from rmm_proto import operator_pb2  # noqa: PLC0415

    if limit is None:
        limit = 0 if output == "json" else TABLE_PAGE
    flt = operator_pb2.AgentFilter(client=client, site=site, tag=tag, status=status or "")
    now = time.time()
    if output == "json":
        # The server renders the rows' text (kept per agent, made again when the agent
        # changes): printed as it comes, undecoded, each page while the next is fetched.
        json_pages = agent_pages(conn, flt, limit, page_token, FETCH_JSON_PAGE, json_now=now)
        emit_json_texts(page_json(page, now) for page in json_pages)
        return
    pages = agent_pages(conn, flt, limit, page_token)
    rows: list[operator_pb2.AgentSummary] = []
    total = 0
    for page in pages:
        rows.extend(page.agents)
        total = page.total
        page_token = page.next_page_token
    if limit and len(rows) > limit:
        rows = rows[:limit]
    print_agent_table(rows, now)
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


def page_json(page: operator_pb2.ListAgentsResponse, now: float) -> bytes:
    """Return a page's rows as `--output json` prints them inside its list: the text the server
    rendered, or, from a server older than json_rows, the text of its messages."""
    if page.agents:
        return ",\n".join(list_item_text(agent_row(agent, now)) for agent in page.agents).encode()
    return page.json_rows


def print_agent_table(rows: Sequence[operator_pb2.AgentSummary], now: float) -> None:
    """Print agent summaries as a table: rich up to PLAIN_TABLE_ROWS, plain text past that."""
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
        return
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(*header)
    for row in cells:
        table.add_row(
            *(escape(cell) for cell in row[:6]),
            STATUS_STYLE[row[6]],
            *(escape(cell) for cell in row[7:]),
        )
    print_table(table)


def collector_dict(collector: operator_pb2.CollectorStatus) -> dict[str, Any]:
    """Return a collector's status as JSON-ready data, every field present."""
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415

    return MessageToDict(collector, always_print_fields_with_no_presence=True)


@agents.command("show")
@click.argument("agent")
@OUTPUT_OPTION
@click.pass_obj
def agents_show(conn: Connection, agent: str, output: str) -> None:
    """Show one agent (id, unique id prefix, or host=NAME for a hostname) in full."""
    from rmm_proto import operator_pb2  # noqa: PLC0415

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
                "collectors": [collector_dict(c) for c in detail.collectors],
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
    from rich.table import Table  # noqa: PLC0415

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
        facts.add_row(key, shown(str(value)))
    print_table(facts)
    collectors = Table("COLLECTOR", "STATUS", "TIME")
    for c in detail.collectors:
        collectors.add_row(
            shown(c.name),
            "[green]ok[/]" if c.ok else f"[red]{shown(c.error)}[/]",
            f"{c.duration_seconds * 1000:.1f} ms",
        )
    print_table(collectors)
    from rmm_common.logs import agent_text  # noqa: PLC0415

    services = info.get("services", {})
    if services.get("available") is False:
        reason = agent_text(services.get("reason", "unknown reason"))
        click.echo(f"services: not available ({reason})")
    elif services:
        failed = services.get("failed") or []
        named = ", ".join(agent_text(unit) for unit in failed)
        click.echo(f"failed services: {named or 'none'}")
    top = info.get("processes", {}).get("top_cpu") or []
    if top:
        processes = Table("PID", "PROCESS", "USER", "CPU", "RSS", title="top processes by CPU")
        for process in top[:5]:
            processes.add_row(
                str(process.get("pid", "")),
                shown(str(process.get("name", ""))),
                shown(str(process.get("user") or "-")),
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
    from rmm_proto import operator_pb2  # noqa: PLC0415

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
    from rmm_proto import operator_pb2  # noqa: PLC0415

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
    from rmm_proto import operator_pb2  # noqa: PLC0415

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
    from rmm_proto import operator_pb2  # noqa: PLC0415

    if not add_tags and not remove_tags:
        raise CliError("say what to change: --add TAG and/or --remove TAG", EXIT_USAGE)
    update_agent(
        conn,
        operator_pb2.UpdateAgentRequest(
            agent=agent, add_tags=list(add_tags), remove_tags=list(remove_tags)
        ),
        output,
    )
