"""`rmm tickets`: work orders with tiers, SLA timers, notes and time (docs/desk.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, iso, print_plain_table, when
from rmm_proto import operator_pb2


@click.group()
def tickets() -> None:
    """Tickets: work orders with tiers, SLA timers, notes and time."""


def ticket_row(ticket: operator_pb2.TicketInfo, story: bool = True) -> dict[str, Any]:
    """Return a ticket as JSON-ready data (times as unix seconds; null where unset)."""

    def at(value: float) -> float | None:
        return value or None

    row: dict[str, Any] = {
        "id": ticket.id,
        "client": ticket.client,
        "site": ticket.site,
        "agent_id": ticket.agent_id,
        "alert_id": ticket.alert_id,
        "title": ticket.title,
        "tier": ticket.tier,
        "priority": ticket.priority,
        "status": ticket.status,
        "assignee": ticket.assignee,
        "opened_at": ticket.opened_at,
        "opened_by": ticket.opened_by,
        "updated_at": ticket.updated_at,
        "acknowledged_at": at(ticket.acknowledged_at),
        "ack_due_at": at(ticket.ack_due_at),
        "resolve_due_at": at(ticket.resolve_due_at),
        "sla_breaches": [b for b in ticket.sla_breaches.split(",") if b],
        "resolved_at": at(ticket.resolved_at),
        "resolution": ticket.resolution,
        "closed_at": at(ticket.closed_at),
        "archived_at": at(ticket.archived_at),
        "archived_by": ticket.archived_by,
        "verify_code": ticket.verify_code,
        "category": ticket.category,
    }
    if story:
        row["snapshot"] = _snapshot(ticket)
        row["events"] = [
            {"at": e.at, "by": e.by, "kind": e.kind, "text": e.text} for e in ticket.events
        ]
        row["time"] = [
            {
                "at": t.at,
                "by": t.by,
                "minutes": t.minutes,
                "note": t.note,
                "period": t.period,
                "billable_amount": t.billable_amount if t.HasField("billable_amount") else None,
            }
            for t in ticket.time
        ]
    return row


def _snapshot(ticket: operator_pb2.TicketInfo) -> Any:
    """Return a help request's snapshot as data (None when the ticket has none)."""
    if not ticket.snapshot_json:
        return None
    try:
        return json.loads(ticket.snapshot_json)
    except ValueError:
        return {"unreadable": ticket.snapshot_json[:200]}


def _line(ticket: operator_pb2.TicketInfo) -> str:
    who = f", assigned to {ticket.assignee}" if ticket.assignee else ""
    return (
        f"ticket {ticket.id} ({ticket.client}) {ticket.status} at {ticket.tier}, "
        f"{ticket.priority}{who}: {ticket.title}"
    )


def _show(ticket: operator_pb2.TicketInfo) -> None:
    lines = [_line(ticket)]
    if ticket.ack_due_at:
        lines.append(
            f"  SLA: acknowledge by {iso(ticket.ack_due_at)}, resolve by "
            f"{iso(ticket.resolve_due_at)}"
            + (f" (ran out: {ticket.sla_breaches})" if ticket.sla_breaches else "")
        )
    if ticket.agent_id:
        lines.append(f"  agent {ticket.agent_id}")
    if ticket.verify_code:
        lines.append(
            f"  verification code {ticket.verify_code} (tell it to the user when you call: "
            "`rmm-agent verify CODE` on their computer confirms it)"
        )
    snapshot = _snapshot(ticket)
    if snapshot is not None:
        taken = snapshot.get("collected_at") if isinstance(snapshot, dict) else None
        at = f" collected {iso(taken)}" if isinstance(taken, int | float) else ""
        # The opening event holds the summary (the PSA webhook and the story carry it too).
        lines.append(
            f"  diagnostic snapshot{at}: summarised in the opening event below; "
            "--output json has all of it"
        )
    for event in ticket.events:
        lines.append(f"  {iso(event.at)}  {event.by:<12} {event.kind:<8} {event.text}")
    total = sum(t.minutes for t in ticket.time)
    if ticket.time:
        lines.append(f"  time logged: {total / 60:g} h in {len(ticket.time)} entries")
    click.echo("\n".join(lines))


def _changed(output: str, ticket: operator_pb2.TicketInfo, what: str) -> None:
    emit(output, ticket_row(ticket), f"{what}: {_line(ticket)}")


@tickets.command("open")
@click.option("--client", default="", help="The client (or give --agent).")
@click.option("--agent", default="", help="The agent it concerns: id, id prefix or host=NAME.")
@click.option("--site", default="", help="The site (default: the agent's).")
@click.option("--title", required=True, help="What is wrong, in one line.")
@click.option(
    "--priority",
    type=click.Choice(["critical", "warning", "info"]),
    default="warning",
    show_default=True,
)
@click.option("--tier", type=click.Choice(["L1", "L2", "L3"]), default="L1", show_default=True)
@click.option(
    "--category", default="", help="What it is about, e.g. printing (rmm reports trends counts it)."
)
@OUTPUT_OPTION
@click.pass_obj
def tickets_open(
    conn: Connection,
    client: str,
    agent: str,
    site: str,
    title: str,
    priority: str,
    tier: str,
    category: str,
    output: str,
) -> None:
    """Open a ticket; its SLA timers come from the client's contract."""
    ticket = conn.call(
        conn.stub().OpenTicket,
        operator_pb2.OpenTicketRequest(
            client=client,
            agent=agent,
            site=site,
            title=title,
            priority=priority,
            tier=tier,
            category=category,
        ),
    )
    _changed(output, ticket, "opened")


@tickets.command("list")
@click.option("--client", default="", help="Only this client's tickets.")
@click.option(
    "--status",
    type=click.Choice(["open", "new", "in-progress", "waiting", "resolved", "closed"]),
    default=None,
    help="open: new, in-progress and waiting.",
)
@click.option("--tier", type=click.Choice(["L1", "L2", "L3"]), default=None)
@click.option("--archived", is_flag=True, help="Archived tickets instead.")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def tickets_list(
    conn: Connection,
    client: str,
    status: str | None,
    tier: str | None,
    archived: bool,
    limit: int,
    output: str,
) -> None:
    """List tickets, newest first."""
    response = conn.call(
        conn.stub().ListTickets,
        operator_pb2.ListTicketsRequest(
            client=client, status=status or "", tier=tier or "", archived=archived, limit=limit
        ),
    )
    if output == "json":
        emit_json([ticket_row(t, story=False) for t in response.tickets])
        return
    print_plain_table(
        ("ID", "CLIENT", "TIER", "PRIORITY", "STATUS", "ASSIGNEE", "OPENED", "TITLE"),
        [
            (
                str(t.id),
                t.client,
                t.tier,
                t.priority,
                t.status,
                t.assignee or "-",
                when(t.opened_at),
                t.title,
            )
            for t in response.tickets
        ],
    )


@tickets.command("show")
@click.argument("ticket_id", type=int)
@OUTPUT_OPTION
@click.pass_obj
def tickets_show(conn: Connection, ticket_id: int, output: str) -> None:
    """Show a ticket with everything done on it."""
    ticket = conn.call(conn.stub().GetTicket, operator_pb2.GetTicketRequest(id=ticket_id))
    if output == "json":
        emit_json(ticket_row(ticket))
    else:
        _show(ticket)


@tickets.command("note")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.option("--status", type=click.Choice(["in-progress", "waiting"]), default=None)
@OUTPUT_OPTION
@click.pass_obj
def tickets_note(
    conn: Connection, ticket_id: int, text: str, status: str | None, output: str
) -> None:
    """Add a note (what was found or done); optionally set in-progress or waiting."""
    ticket = conn.call(
        conn.stub().NoteTicket,
        operator_pb2.NoteTicketRequest(id=ticket_id, text=text, status=status or ""),
    )
    _changed(output, ticket, "noted")


@tickets.command("assign")
@click.argument("ticket_id", type=int)
@click.option("--to", "assignee", required=True, help="The operator who takes it.")
@OUTPUT_OPTION
@click.pass_obj
def tickets_assign(conn: Connection, ticket_id: int, assignee: str, output: str) -> None:
    """Give a ticket to an operator."""
    ticket = conn.call(
        conn.stub().AssignTicket,
        operator_pb2.AssignTicketRequest(id=ticket_id, assignee=assignee),
    )
    _changed(output, ticket, "assigned")


@tickets.command("escalate")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why the next tier needs it.")
@OUTPUT_OPTION
@click.pass_obj
def tickets_escalate(conn: Connection, ticket_id: int, reason: str, output: str) -> None:
    """Move a ticket up one tier and tell that tier."""
    ticket = conn.call(
        conn.stub().EscalateTicket, operator_pb2.EscalateTicketRequest(id=ticket_id, reason=reason)
    )
    _changed(output, ticket, "escalated")


@tickets.command("resolve")
@click.argument("ticket_id", type=int)
@click.option("--resolution", required=True, help="How the problem was solved.")
@OUTPUT_OPTION
@click.pass_obj
def tickets_resolve(conn: Connection, ticket_id: int, resolution: str, output: str) -> None:
    """Resolve a ticket."""
    ticket = conn.call(
        conn.stub().ResolveTicket,
        operator_pb2.ResolveTicketRequest(id=ticket_id, resolution=resolution),
    )
    _changed(output, ticket, "resolved")


@tickets.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why it is not solved.")
@OUTPUT_OPTION
@click.pass_obj
def tickets_reopen(conn: Connection, ticket_id: int, reason: str, output: str) -> None:
    """Reopen a resolved or closed ticket."""
    ticket = conn.call(
        conn.stub().ReopenTicket, operator_pb2.ReopenTicketRequest(id=ticket_id, reason=reason)
    )
    _changed(output, ticket, "reopened")


@tickets.command("close")
@click.argument("ticket_id", type=int)
@OUTPUT_OPTION
@click.pass_obj
def tickets_close(conn: Connection, ticket_id: int, output: str) -> None:
    """Close a resolved ticket (one never resolved: tier3 and admin only)."""
    ticket = conn.call(conn.stub().CloseTicket, operator_pb2.CloseTicketRequest(id=ticket_id))
    _changed(output, ticket, "closed")


@tickets.command("archive")
@click.argument("ticket_id", type=int)
@OUTPUT_OPTION
@click.pass_obj
def tickets_archive(conn: Connection, ticket_id: int, output: str) -> None:
    """Archive a ticket: hidden from lists, never deleted (tier3 and admin only)."""
    ticket = conn.call(conn.stub().ArchiveTicket, operator_pb2.ArchiveTicketRequest(id=ticket_id))
    _changed(output, ticket, "archived")


@tickets.command("log-time")
@click.argument("ticket_id", type=int)
@click.option("--minutes", type=float, required=True, help="Time spent, in minutes.")
@click.option("--note", default="", help="What the time went on.")
@OUTPUT_OPTION
@click.pass_obj
def tickets_log_time(
    conn: Connection, ticket_id: int, minutes: float, note: str, output: str
) -> None:
    """Log time on a ticket: drawn from block hours, or billable at the T&M rate."""
    response = conn.call(
        conn.stub().LogTicketTime,
        operator_pb2.LogTicketTimeRequest(id=ticket_id, minutes=minutes, note=note),
    )
    data = {
        "ticket": ticket_row(response.ticket),
        "used_hours": response.used_hours,
        "hours_left": response.hours_left if response.HasField("hours_left") else None,
        "warning": response.warning,
        "billable_amount": (
            response.billable_amount if response.HasField("billable_amount") else None
        ),
    }
    left = f", {response.hours_left:g} h left" if response.HasField("hours_left") else ""
    if response.HasField("billable_amount"):
        left += f", billable {response.billable_amount:.2f}"
    emit(
        output,
        data,
        f"logged {minutes:g} min on ticket {ticket_id}: client used {response.used_hours:g} h "
        f"this month{left}",
    )
    if response.warning:
        click.echo(f"warning: {response.warning}", err=True)
