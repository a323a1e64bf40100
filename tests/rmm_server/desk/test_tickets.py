"""Tickets on SQLite and PostgreSQL: SLA timers from the contract on a controllable clock,
escalation when one runs out (once per breach, history kept), time entries drawing down block
hours with a warning, T&M billing, and who may close without resolution or archive."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rmm_common.errors import InvalidArgument, NotFound, PermissionDenied
from rmm_server.cluster import Cluster
from rmm_server.desk.contracts import (
    Contracts,
    ContractTerms,
    business_calendar,
    parse_business_hours,
)
from rmm_server.desk.places import Places
from rmm_server.desk.tickets import Tickets, business_deadline
from rmm_server.fleet import Fleet
from rmm_server.roles import Role
from rmm_server.storage import Store, open_store
from rmm_server.storage.desk import SlaTarget
from rmm_server.storage.tickets import TicketRecord

HOUR = 3600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = utc(2026, 11, 2, 9, 0)  # a Monday

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[Store]:
    store = open_store(db_url)
    places = Places(store, Fleet(), Cluster("local"), clock)
    for client in ("acme", "globex", "initech"):
        places.create_client(client, "admin")
    places.create_site("acme", "berlin", "Europe/Berlin", "admin")
    contracts = Contracts(store, clock)
    contracts.create(
        "acme",
        ContractTerms(
            type="block-hours",
            hours_per_period=10,
            warn_below_hours=2,
            sla={
                "critical": SlaTarget(0.5 * HOUR, 4 * HOUR, "24x7"),
                "warning": SlaTarget(HOUR, 8 * HOUR, "business"),
            },
        ),
        "admin",
    )
    contracts.create("globex", ContractTerms(type="time-and-materials", rate=90), "admin")
    yield store
    store.close()


@pytest.fixture
def tickets(store: Store, clock: Clock) -> tuple[Tickets, list[tuple[int, str, str]]]:
    told: list[tuple[int, str, str]] = []

    def tell(ticket: TicketRecord, reason: str) -> None:
        told.append((ticket.id, ticket.tier, reason))

    return Tickets(store, clock, on_escalated=[tell]), told


def test_an_unacknowledged_ticket_escalates_when_its_timer_runs_out_with_its_history(
    tickets: tuple[Tickets, list[tuple[int, str, str]]], clock: Clock
) -> None:
    desk, told = tickets
    ticket = desk.open("acme", "Exchange down", "critical", "l1-alice")
    assert (ticket.tier, ticket.status) == ("L1", "new")
    assert ticket.ack_due_at == clock.now + 0.5 * HOUR
    assert ticket.resolve_due_at == clock.now + 4 * HOUR
    desk.note(ticket.id, "users cannot send mail; server pings", "", "l1-alice")
    clock.now += 29 * 60
    assert desk.escalate_due() == [] and told == []
    clock.now += 2 * 60
    [escalated] = desk.escalate_due()
    assert escalated.tier == "L2"
    assert told == [(ticket.id, "L2", escalated.events[-1].text)]
    assert "the SLA target to acknowledge" in told[0][2]
    # L2 reads what L1 already did.
    assert [e.kind for e in escalated.events] == ["opened", "note", "escalate"]
    assert escalated.events[1].text == "users cannot send mail; server pings"
    # Once per breach: the next tick changes nothing.
    assert desk.escalate_due() == []
    desk.assign(ticket.id, "l2-bob", "l2-bob")
    clock.now = ticket.opened_at + 4 * HOUR + 1
    [again] = desk.escalate_due()
    assert again.tier == "L3" and again.sla_breaches == "acknowledge,resolve"
    assert desk.escalate_due() == []


def test_business_hours_timers_follow_the_sites_clock(
    tickets: tuple[Tickets, list[tuple[int, str, str]]], clock: Clock
) -> None:
    desk, _told = tickets
    clock.now = utc(2026, 11, 6, 16, 30)  # Friday 17:30 in Berlin: 30 minutes of business left
    ticket = desk.open("acme", "Printer", "warning", "l1", site="berlin")
    # Acknowledge: 30 min on Friday, 30 min from Monday 08:00 Berlin (07:00 UTC).
    assert ticket.ack_due_at == utc(2026, 11, 9, 7, 30)
    # Resolve: 8 business hours: 0.5 on Friday, then Monday 08:00-15:30 Berlin.
    assert ticket.resolve_due_at == utc(2026, 11, 9, 14, 30)
    hours = parse_business_hours("mon-fri 08:00-18:00")
    # Across the DST change (25 October 2026): the wall clock's hours, not UTC's.
    assert business_deadline(utc(2026, 10, 23, 15, 0), 2 * HOUR, hours, "Europe/Berlin") == utc(
        2026, 10, 26, 8, 0
    )


def test_a_business_timer_skips_the_weekend_and_a_holiday_and_escalates_on_it(
    tickets: tuple[Tickets, list[tuple[int, str, str]]], store: Store, clock: Clock
) -> None:
    desk, told = tickets
    Places(store, Fleet(), Cluster("local"), clock).create_site(
        "initech", "vienna", "Europe/Vienna", "admin"
    )
    Contracts(store, clock).create(
        "initech",
        ContractTerms(
            type="managed",
            business_hours="mon-fri 08:00-18:00; sat 09:00-12:00",
            holidays=("2026-12-25",),
            sla={"warning": SlaTarget(2 * HOUR, 6 * HOUR, "business")},
        ),
        "admin",
    )
    # Thursday 24 December 2026, 17:00 in Vienna (CET, UTC+1): one business hour left that day.
    clock.now = utc(2026, 12, 24, 16, 0)
    ticket = desk.open("initech", "Scanner", "warning", "l1", site="vienna")
    # By hand: Thu 17:00-18:00 = 1 h; Fri 25th a holiday = 0; Sat 09:00-12:00 = 3 h; Sun 0.
    # Acknowledge (2 h): 1 h Thursday + 1 h Saturday -> Sat 26th 10:00 Vienna = 09:00 UTC.
    assert ticket.ack_due_at == utc(2026, 12, 26, 9, 0)
    # Resolve (6 h): 1 + 3 = 4 h by Saturday noon, 2 h on Monday -> Mon 28th 10:00 = 09:00 UTC.
    assert ticket.resolve_due_at == utc(2026, 12, 28, 9, 0)
    # A ticket of no one site keeps the hours of the client's sites' zone (here one, Vienna).
    fax = desk.open("initech", "Fax", "warning", "l1")
    assert (fax.ack_due_at, fax.resolve_due_at) == (ticket.ack_due_at, ticket.resolve_due_at)
    hours = business_calendar(Contracts(store, clock).get("initech"))
    assert hours.elapsed(ticket.opened_at, utc(2026, 12, 28, 9, 0), "Europe/Vienna") == 6 * HOUR
    # The timer runs out on Saturday at 10:00, not before.
    clock.now = utc(2026, 12, 26, 8, 59)
    assert desk.escalate_due() == []
    clock.now = utc(2026, 12, 26, 9, 1)
    escalated = desk.escalate_due()
    assert sorted((t.id, t.tier) for t in escalated) == [(ticket.id, "L2"), (fax.id, "L2")]
    assert sorted(t[0] for t in told) == [ticket.id, fax.id]


def test_time_draws_down_block_hours_and_warns_under_the_threshold(
    tickets: tuple[Tickets, list[tuple[int, str, str]]], store: Store, clock: Clock
) -> None:
    desk, _told = tickets
    warned: list[str] = []
    desk.on_hours_low.append(lambda _ticket, text: warned.append(text))
    first = desk.open("acme", "Backups", "warning", "l1")
    second = desk.open("acme", "VPN", "critical", "l1")
    logged = desk.log_time(first.id, 300, "restore test", "l1")
    assert (logged.used_hours, logged.hours_left, logged.warning) == (5, 5, "")
    logged = desk.log_time(second.id, 210, "", "l2")
    assert (logged.used_hours, logged.hours_left) == (8.5, 1.5)
    assert "1.5 h of its 10 h block left for 2026-11, under its warning threshold of 2 h" in (
        logged.warning
    )
    assert warned == [logged.warning]
    over = desk.log_time(second.id, 120, "", "l2")
    assert "0.5 h over" in over.warning
    assert [t.minutes for t in desk.get(second.id).time] == [210, 120]
    # A new month starts a new block.
    clock.now = utc(2026, 12, 1, 9, 0)
    fresh = desk.log_time(first.id, 60, "", "l1")
    assert (fresh.used_hours, fresh.hours_left, fresh.warning) == (1, 9, "")
    # Bad entries: named, nothing written.
    with pytest.raises(InvalidArgument, match="more than 0"):
        desk.log_time(first.id, -30, "", "l1")
    desk.resolve(first.id, "restored", "l1")
    desk.close(first.id, Role.TIER1, "l1")
    with pytest.raises(InvalidArgument, match="is closed: time goes on an open or resolved"):
        desk.log_time(first.id, 30, "", "l1")
    assert len(desk.get(first.id).time) == 2


def test_time_and_materials_time_is_billable_at_the_rate(
    tickets: tuple[Tickets, list[tuple[int, str, str]]],
) -> None:
    desk, _told = tickets
    ticket = desk.open("globex", "New laptop", "info", "l1")
    assert ticket.ack_due_at is None  # the contract has no SLA for info
    logged = desk.log_time(ticket.id, 90, "imaging", "l1")
    assert (logged.billable_amount, logged.hours_left) == (135.0, None)
    assert "billable 135.00 USD" in logged.ticket.events[-1].text


def test_only_tier3_and_admin_close_unresolved_or_archive_and_nothing_is_deleted(
    tickets: tuple[Tickets, list[tuple[int, str, str]]],
) -> None:
    desk, _told = tickets
    ticket = desk.open("initech", "Stapler", "info", "l1")
    assert ticket.ack_due_at is None  # no contract: no timer
    with pytest.raises(PermissionDenied, match="without a resolution needs tier3"):
        desk.close(ticket.id, Role.TIER2, "l2")
    with pytest.raises(PermissionDenied, match="archiving a ticket needs tier3"):
        desk.archive(ticket.id, Role.TIER1, "l1")
    assert desk.get(ticket.id).status == "new"
    closed = desk.close(ticket.id, Role.TIER3, "l3")
    assert closed.events[-1].text == "closed without resolution"
    archived = desk.archive(ticket.id, Role.ADMIN, "boss")
    assert archived.archived_by == "boss"
    assert [t.id for t in desk.find("initech")] == []
    assert [t.id for t in desk.find("initech", archived=True)] == [ticket.id]
    assert [e.kind for e in desk.get(ticket.id).events] == ["opened", "status", "status"]
    with pytest.raises(InvalidArgument, match="is archived"):
        desk.reopen(ticket.id, "again", "l3")


def test_the_ticket_lifecycle_and_wrong_input(
    tickets: tuple[Tickets, list[tuple[int, str, str]]],
) -> None:
    desk, _told = tickets
    ticket = desk.open("acme", "Disk full", "critical", "l1")
    waiting = desk.note(ticket.id, "asked the user to empty the bin", "waiting", "l1")
    assert (waiting.status, waiting.acknowledged_at is not None) == ("waiting", True)
    desk.escalate(ticket.id, "needs a bigger disk", "l1")
    desk.escalate(ticket.id, "vendor case", "l2")
    with pytest.raises(InvalidArgument, match="highest tier"):
        desk.escalate(ticket.id, "more", "l3")
    resolved = desk.resolve(ticket.id, "disk replaced", "l3")
    assert (resolved.status, resolved.resolution) == ("resolved", "disk replaced")
    with pytest.raises(InvalidArgument, match="reopen it first"):
        desk.note(ticket.id, "x", "", "l1")
    reopened = desk.reopen(ticket.id, "full again", "l1")
    assert (reopened.status, reopened.resolved_at) == ("in-progress", None)
    assert [t.id for t in desk.find("acme", status="open", tier="L3")] == [ticket.id]
    with pytest.raises(NotFound, match="unknown client 'nobody'"):
        desk.open("nobody", "x", "info", "l1")
    with pytest.raises(InvalidArgument, match=r"priority 'urgent'.*tier 'L9'"):
        desk.open("acme", "x", "urgent", "l1", tier="L9")
    with pytest.raises(NotFound, match="there is no ticket 999"):
        desk.get(999)
    with pytest.raises(NotFound, match="client 'acme' has no site 'paris'"):
        desk.open("acme", "x", "info", "l1", site="paris")


def test_renames_follow_tickets(
    tickets: tuple[Tickets, list[tuple[int, str, str]]], store: Store, clock: Clock
) -> None:
    desk, _told = tickets
    ticket = desk.open("acme", "VPN", "info", "l1", site="berlin")
    places = Places(store, Fleet(), Cluster("local"), clock)
    asyncio.run(places.rename_client("acme", "Acme Inc", "admin"))
    asyncio.run(places.update_site("Acme Inc", "berlin", "berlin-mitte", "", "admin"))
    renamed = desk.get(ticket.id)
    assert (renamed.client, renamed.site) == ("Acme Inc", "berlin-mitte")
    assert [t.id for t in desk.find("Acme Inc")] == [ticket.id]
