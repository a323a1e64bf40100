"""Tickets, their events and time entries: records and storage (docs/desk.md).

Append-only where it matters: nothing here deletes a row. A change to a ticket and the event
that records it are written in one transaction, after the caller's check has seen the ticket
as it is inside that transaction (locked on PostgreSQL), so two operators at once cannot both
act on a state that one of them already changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from rmm_common.errors import NotFound
from rmm_server.storage import schema
from rmm_server.storage.store import Store

OPEN_STATUSES = ("new", "in-progress", "waiting")


@dataclass(slots=True)
class TicketEvent:
    at: float
    by: str
    kind: str
    text: str


@dataclass(slots=True)
class TimeEntry:
    at: float
    by: str
    minutes: float
    note: str
    period: str
    billable_amount: float | None = None


@dataclass(slots=True)
class TicketRecord:
    id: int
    client_id: str
    client: str  # the client's name
    site: str
    agent_id: str
    alert_id: str
    title: str
    tier: str
    priority: str
    status: str
    assignee: str
    opened_at: float
    opened_by: str
    updated_at: float
    acknowledged_at: float | None = None
    ack_due_at: float | None = None
    resolve_due_at: float | None = None
    sla_breaches: str = ""
    resolved_at: float | None = None
    resolution: str = ""
    closed_at: float | None = None
    archived_at: float | None = None
    archived_by: str = ""
    alert_fingerprint: str = ""
    verify_code: str = ""  # what the user checks a caller with (rmm-agent verify)
    snapshot: str = ""  # JSON: the diagnostic snapshot of a user's help request; "" otherwise
    category: str = ""  # what the problem is about (rmm tickets open --category); "" none
    events: list[TicketEvent] = field(default_factory=list)
    time: list[TimeEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TicketQuery:
    client_id: str = ""
    status: str = ""  # "" or "open": new, in-progress and waiting; or one status
    tier: str = ""
    archived: bool = False  # archived tickets only when asked
    limit: int = 500


_TICKET_FIELDS = [c for c in schema.tickets.c if c.name != "id"]
# A list leaves the snapshots out: up to 256 KiB each, read only when one ticket is shown.
_LIST_COLUMNS = [c for c in schema.tickets.c if c.name != "snapshot"]


def _ticket(row: Any) -> TicketRecord:
    values = {c.name: getattr(row, c.name) for c in _TICKET_FIELDS if c.name in row._fields}
    return TicketRecord(id=int(row.id), client=row.client_name, **values)


class TicketStore:
    """Reads and writes of tickets."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _select(self, columns: Any = None) -> Any:
        tickets, clients = schema.tickets, schema.clients
        chosen = columns if columns is not None else [tickets]
        return select(*chosen, clients.c.name.label("client_name")).join(
            clients, clients.c.id == tickets.c.client_id
        )

    def open(self, record: TicketRecord, event: TicketEvent) -> int:
        """Insert a ticket and its first event; return its number."""
        values = {c.name: getattr(record, c.name) for c in _TICKET_FIELDS}
        with self.store.transaction(f"open a ticket for {record.client}") as conn:
            ticket_id = int(
                conn.execute(
                    insert(schema.tickets).values(**values).returning(schema.tickets.c.id)
                ).scalar_one()
            )
            _append(conn, ticket_id, event)
        return ticket_id

    def get(self, ticket_id: int) -> TicketRecord:
        """Return ticket `ticket_id` with its events and time entries, or raise NotFound."""
        with self.store.transaction(f"read ticket {ticket_id}") as conn:
            record = self._locked(conn, ticket_id, lock=False)
            events = schema.ticket_events
            record.events = [
                TicketEvent(row.at, row.by, row.kind, row.text)
                for row in conn.execute(
                    select(events).where(events.c.ticket_id == ticket_id).order_by(events.c.id)
                )
            ]
            time_table = schema.ticket_time
            record.time = [
                TimeEntry(row.at, row.by, row.minutes, row.note, row.period, row.billable_amount)
                for row in conn.execute(
                    select(time_table)
                    .where(time_table.c.ticket_id == ticket_id)
                    .order_by(time_table.c.id)
                )
            ]
            return record

    def _locked(self, conn: Connection, ticket_id: int, lock: bool = True) -> TicketRecord:
        query = self._select().where(schema.tickets.c.id == ticket_id)
        if lock and self.store.dialect == "postgresql":
            query = query.with_for_update(of=schema.tickets)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"there is no ticket {ticket_id}: see `rmm tickets list`")
        return _ticket(row)

    def change(
        self,
        ticket_id: int,
        decide: Callable[[TicketRecord], tuple[dict[str, Any], TicketEvent]],
    ) -> TicketRecord:
        """Apply what `decide` returns (new values, the event saying why) to the ticket as it
        is inside the transaction; `decide` raises to refuse, and then nothing is written."""
        with self.store.transaction(f"change ticket {ticket_id}") as conn:
            current = self._locked(conn, ticket_id)
            values, event = decide(current)
            conn.execute(
                update(schema.tickets)
                .where(schema.tickets.c.id == ticket_id)
                .values(updated_at=event.at, **values)
            )
            _append(conn, ticket_id, event)
        return self.get(ticket_id)

    def log_time(
        self,
        ticket_id: int,
        decide: Callable[[TicketRecord, Connection], tuple[TimeEntry, TicketEvent]],
    ) -> tuple[TicketRecord, float]:
        """Add a time entry (with its event) as `decide` makes it from the locked ticket;
        return the ticket and the minutes its client has used in the entry's period."""
        with self.store.transaction(f"log time on ticket {ticket_id}") as conn:
            current = self._locked(conn, ticket_id)
            entry, event = decide(current, conn)
            conn.execute(
                insert(schema.ticket_time).values(
                    ticket_id=ticket_id,
                    client_id=current.client_id,
                    period=entry.period,
                    at=entry.at,
                    by=entry.by,
                    minutes=entry.minutes,
                    note=entry.note,
                    billable_amount=entry.billable_amount,
                )
            )
            conn.execute(
                update(schema.tickets)
                .where(schema.tickets.c.id == ticket_id)
                .values(updated_at=entry.at)
            )
            _append(conn, ticket_id, event)
            used = minutes_used(conn, current.client_id, entry.period)
        return self.get(ticket_id), used

    def find(self, query: TicketQuery) -> list[TicketRecord]:
        """Return the tickets `query` selects, newest first."""
        tickets = schema.tickets
        select_ = self._select(_LIST_COLUMNS)
        if query.client_id:
            select_ = select_.where(tickets.c.client_id == query.client_id)
        if query.status == "open":
            select_ = select_.where(tickets.c.status.in_(OPEN_STATUSES))
        elif query.status:
            select_ = select_.where(tickets.c.status == query.status)
        if query.tier:
            select_ = select_.where(tickets.c.tier == query.tier)
        archived = tickets.c.archived_at
        select_ = select_.where(archived.is_not(None) if query.archived else archived.is_(None))
        with self.store.transaction("list tickets") as conn:
            rows = conn.execute(select_.order_by(tickets.c.id.desc()).limit(query.limit)).all()
        return [_ticket(row) for row in rows]

    def latest_for_alert(self, fingerprint: str, alert_id: str = "") -> TicketRecord | None:
        """Return the newest unarchived ticket of an alert's fingerprint (of one alert episode
        of it when `alert_id` is given); found through the fingerprint's index."""
        tickets = schema.tickets
        query = self._select().where(
            tickets.c.archived_at.is_(None), tickets.c.alert_fingerprint == fingerprint
        )
        if alert_id:
            query = query.where(tickets.c.alert_id == alert_id)
        with self.store.transaction("find an alert's ticket") as conn:
            row = conn.execute(query.order_by(tickets.c.id.desc()).limit(1)).first()
        return _ticket(row) if row is not None else None

    def opened_since(self, agent_id: str, by: str, since: float) -> int:
        """Return how many tickets `by` opened for an agent at or after `since`."""
        tickets = schema.tickets
        query = select(func.count()).where(
            tickets.c.agent_id == agent_id, tickets.c.opened_by == by, tickets.c.opened_at >= since
        )
        with self.store.transaction("count an agent's help requests") as conn:
            return int(conn.execute(query).scalar_one())

    def open_for_host(self, client_id: str, agent_id: str) -> list[TicketRecord]:
        """Return the open, unarchived tickets of an agent and those of its client that name
        no agent (a problem of the whole client), oldest first, without their snapshots."""
        tickets = schema.tickets
        query = self._select(_LIST_COLUMNS).where(
            tickets.c.client_id == client_id,
            (tickets.c.agent_id == agent_id) | (tickets.c.agent_id == ""),
            tickets.c.status.in_(OPEN_STATUSES),
            tickets.c.archived_at.is_(None),
        )
        with self.store.transaction("find a host's open tickets") as conn:
            rows = conn.execute(query.order_by(tickets.c.id)).all()
        return [_ticket(row) for row in rows]

    def due(self, now: float) -> list[int]:
        """Return the open tickets one of whose SLA targets ran out without an escalation yet."""
        tickets = schema.tickets
        ack_due = (
            tickets.c.ack_due_at.is_not(None)
            & (tickets.c.ack_due_at <= now)
            & tickets.c.acknowledged_at.is_(None)
            & tickets.c.sla_breaches.not_like("%acknowledge%")
        )
        resolve_due = (
            tickets.c.resolve_due_at.is_not(None)
            & (tickets.c.resolve_due_at <= now)
            & tickets.c.sla_breaches.not_like("%resolve%")
        )
        query = select(tickets.c.id).where(
            tickets.c.status.in_(OPEN_STATUSES),
            tickets.c.archived_at.is_(None),
            ack_due | resolve_due,
        )
        with self.store.transaction("find tickets past their SLA") as conn:
            return [
                int(ticket_id) for ticket_id in conn.execute(query.order_by(tickets.c.id)).scalars()
            ]


def minutes_used(conn: Connection, client_id: str, period: str) -> float:
    """Return the minutes logged on a client's tickets in `period` (YYYY-MM)."""
    time_table = schema.ticket_time
    total = conn.execute(
        select(func.coalesce(func.sum(time_table.c.minutes), 0.0)).where(
            time_table.c.client_id == client_id, time_table.c.period == period
        )
    ).scalar_one()
    return float(total)


def _append(conn: Connection, ticket_id: int, event: TicketEvent) -> None:
    conn.execute(
        insert(schema.ticket_events).values(
            ticket_id=ticket_id, at=event.at, by=event.by, kind=event.kind, text=event.text
        )
    )
