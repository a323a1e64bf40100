"""The user's help request and caller verification on SQLite and PostgreSQL: the ticket, its
snapshot with the agent's open alerts, the limits per agent (help requests counted from the
tickets, wrong codes from the audit chain, both on a controllable clock), which tickets a code
belongs to, and the codes themselves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from rmm_common.errors import InvalidArgument
from rmm_common.helpdesk import (
    CODE_ALPHABET,
    CODE_LENGTH,
    MAX_SNAPSHOT_BYTES,
    code_problem,
    new_code,
    normalize_code,
    snapshot_lines,
)
from rmm_server.alerts.service import AlertService
from rmm_server.audit import AuditLog
from rmm_server.cluster import Cluster
from rmm_server.desk.help import HelpDesk, HelpLimits, open_alerts_of
from rmm_server.desk.places import Places
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.ratelimit import RateLimited
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.alerts import AlertRecord
from rmm_server.storage.audit import AuditStore

HOME = AgentRecord("a1", "h", "acme", "hq", 1.0, hostname="pc-anna")
NEIGHBOUR = AgentRecord("a2", "h", "acme", "hq", 1.0, hostname="pc-ben")
ELSEWHERE = AgentRecord("a3", "h", "globex", "hq", 1.0, hostname="pc-carl")
SNAPSHOT = json.dumps({"disks": [{"mountpoint": "/", "size_bytes": 100, "free_bytes": 5}]})
ALERT = AlertRecord(
    id="al1",
    fingerprint="f" * 64,
    rule_key="desk/DiskFull",
    rule_name="DiskFull",
    agent_id="a1",
    client="acme",
    site="hq",
    hostname="pc-anna",
    series_labels={"mountpoint": "/"},
    state="firing",
    severity="critical",
    tier="L1",
    started_at=1.0,
    last_active_at=1.0,
    updated_at=1.0,
    value=0.95,
    annotations={"summary": "/ is 95% full"},
)


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(db_url: str) -> Iterator[tuple[HelpDesk, Tickets, Clock]]:
    store: Store = open_store(db_url)
    clock = Clock()
    places = Places(store, Fleet(), Cluster("local"), clock)
    for client in ("acme", "globex"):
        places.create_client(client, "admin")
        places.create_site(client, "hq", "UTC", "admin")
    audit = AuditLog(AuditStore(store), clock)
    audit.prepare()
    tickets = Tickets(store, clock)
    desk = HelpDesk(
        tickets,
        audit,
        lambda agent_id: [ALERT] if agent_id == "a1" else [],
        HelpLimits(help_per_hour=2, wrong_codes_per_hour=3),
    )
    yield desk, tickets, clock
    store.close()


def test_a_help_request_opens_an_l1_ticket_with_the_snapshot_and_the_open_alerts(
    setup: tuple[HelpDesk, Tickets, Clock],
) -> None:
    desk, tickets, _clock = setup
    ticket = desk.request_help(HOME, "  the printer is offline ", SNAPSHOT.encode(), "anna")
    assert (ticket.tier, ticket.status, ticket.opened_by) == ("L1", "new", "user")
    assert (ticket.client, ticket.site, ticket.agent_id) == ("acme", "hq", "a1")
    assert ticket.title == "pc-anna: the printer is offline"
    assert len(ticket.verify_code) == CODE_LENGTH and not code_problem(ticket.verify_code)
    stored = json.loads(tickets.get(ticket.id).snapshot)
    assert stored["disks"][0]["free_bytes"] == 5
    assert [a["rule"] for a in stored["open_alerts"]] == ["DiskFull"]
    text = ticket.events[0].text
    assert "by local user anna: the printer is offline" in text
    assert "disks: / 5 B free of 100 B" in text and "DiskFull (critical, firing)" in text
    # A list leaves the snapshot out; the code is there.
    [listed] = tickets.find("acme")
    assert listed.snapshot == "" and listed.verify_code == ticket.verify_code
    entries = desk.audit.list(agent="a1")
    assert [(e.operator, e.action, e.outcome) for e in entries] == [
        ("agent:a1", "RequestHelp", "ok")
    ]


def test_help_requests_are_limited_per_agent_and_refusals_write_no_ticket(
    setup: tuple[HelpDesk, Tickets, Clock],
) -> None:
    desk, tickets, clock = setup
    desk.request_help(HOME, "one", b"{}", "anna")
    desk.request_help(HOME, "two", b"{}", "anna")
    with pytest.raises(RateLimited, match="asked for help 2 times in the last hour"):
        desk.request_help(HOME, "three", b"{}", "anna")
    desk.request_help(NEIGHBOUR, "mine works", b"{}", "ben")  # another agent's own limit
    bad = (
        ("", b"{}", "describe the problem"),
        ("x" * 1001, b"{}", "at most 1000"),
        ("printer \u202eenilno", b"{}", "U\\+202E"),
        ("fine", b"[1]", "not a JSON object"),
        ("fine", b"{oops", "not JSON"),
        ("fine", b"{}" + b" " * MAX_SNAPSHOT_BYTES, "over the"),
    )
    for text, snapshot, says in bad:
        with pytest.raises(InvalidArgument, match=says):
            desk.request_help(NEIGHBOUR, text, snapshot, "ben")
    with pytest.raises(InvalidArgument, match="local user name"):
        desk.request_help(NEIGHBOUR, "fine", b"{}", "ben\x1b[2J")
    assert len(tickets.find("acme")) == 3
    clock.now += 3601
    desk.request_help(HOME, "three, an hour later", b"{}", "anna")


def test_a_code_belongs_to_the_hosts_own_and_its_clients_open_tickets_only(
    setup: tuple[HelpDesk, Tickets, Clock],
) -> None:
    desk, tickets, _clock = setup
    own = desk.request_help(HOME, "printer", b"{}", "anna")
    neighbours = desk.request_help(NEIGHBOUR, "screen", b"{}", "ben")
    whole_client = tickets.open("acme", "VPN drops for everyone", "warning", "alice")
    other_client = tickets.open("globex", "VPN drops for everyone", "warning", "alice")
    typed = f" {own.verify_code[:3].lower()}-{own.verify_code[3:]} "
    found = desk.verify(HOME, typed)
    assert found is not None and found.id == own.id
    found = desk.verify(HOME, whole_client.verify_code)
    assert found is not None and found.id == whole_client.id
    assert desk.verify(HOME, neighbours.verify_code) is None
    tickets.assign(own.id, "alice", "alice")
    tickets.resolve(own.id, "cable", "alice")
    assert desk.verify(HOME, own.verify_code) is None  # resolved: not open any more
    assert desk.verify(ELSEWHERE, other_client.verify_code) is not None
    with pytest.raises(InvalidArgument, match="is not a verification code"):
        desk.verify(HOME, "I0O1L0")
    outcomes = [e.outcome for e in desk.audit.list(agent="a1") if e.action == "VerifyTicketCode"]
    assert outcomes == ["match", "match", "no match", "no match", "invalid code"]


def test_wrong_codes_are_limited_per_agent_even_for_the_right_code_then(
    setup: tuple[HelpDesk, Tickets, Clock],
) -> None:
    desk, _tickets, clock = setup
    own = desk.request_help(HOME, "printer", b"{}", "anna")
    wrong = "".join("A" if c != "A" else "B" for c in own.verify_code)
    for _ in range(3):
        assert desk.verify(HOME, wrong) is None
    with pytest.raises(RateLimited, match="3 wrong codes were tried on this computer"):
        desk.verify(HOME, own.verify_code)
    # Refusals do not add to the count, and another agent is not held back.
    assert desk.verify(NEIGHBOUR, wrong) is None
    clock.now += 3601
    found = desk.verify(HOME, own.verify_code)
    assert found is not None and found.id == own.id


def test_codes_are_short_unambiguous_and_typed_loosely() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) > 1990  # 887 million possible: a repeat in 2,000 is rare
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set(CODE_ALPHABET) & set("01OIL")
    assert normalize_code(" ab3-k7q ") == "AB3K7Q" and code_problem("ab3-k7q") is None
    assert code_problem("AB3K7") and code_problem("AB3K70") and code_problem("AB3K7QQ")


def test_a_snapshot_summary_escapes_what_cannot_be_seen_and_survives_odd_values() -> None:
    lines = snapshot_lines(
        {
            "disks": [{"mountpoint": "/mnt/\u202eevil", "size_bytes": 2**30, "free_bytes": "x"}],
            "failed_services": ["cups.service"],
            "reboot_required": True,
            "patches_pending": {"security": 2, "other": 1, "odd": "many"},
            "open_alerts": ["not an object"],
            "errors": [f"e{i}" for i in range(12)],
        }
    )
    text = "\n".join(lines)
    assert "/mnt/\\u202eevil ? free of 1.0 GiB" in text
    assert "failed services: cups.service" in text and "reboot pending: yes" in text
    assert "pending patches: 3 (other 1, security 2)" in text
    assert "open alerts: none" in text and "... and 2 more" in text
    assert snapshot_lines([1]) == ["snapshot: not readable"]
    assert "failed services: not collected" in "\n".join(snapshot_lines({}))


def test_open_alerts_are_read_from_the_database_too(db_url: str) -> None:
    """Another replica may evaluate the agent: its alerts in the database count."""
    store = open_store(db_url)
    try:
        service = AlertService(store, CollectorRegistry(), None)
        resolved = replace(ALERT, id="al0", fingerprint="e" * 64, state="resolved")
        other = replace(ALERT, id="al2", fingerprint="d" * 64, agent_id="a2")
        service.alert_store.save([ALERT, resolved, other])
        assert [a.id for a in open_alerts_of(service)("a1")] == ["al1"]
        assert open_alerts_of(service)("a9") == []
    finally:
        store.close()
