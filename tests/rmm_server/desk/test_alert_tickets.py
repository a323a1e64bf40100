"""Alerts drive tickets, on SQLite and PostgreSQL: a rule's `ticket:` tier (validated with
the policy), a firing alert opens a ticket carrying the alert, the agent and its latest
metrics; the ticket resolves with the alert and reopens when the same problem fires again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_server.cluster import Cluster
from rmm_server.desk.alert_tickets import AlertTickets
from rmm_server.desk.places import Places
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.policy import AgentContext, load_policy_dir, validate_path
from rmm_server.roles import Role
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.alerts import AlertRecord

RULES = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {{name: desk}}
scope: {{all: true}}
rules:
  - name: DiskFull
    expr: disk_usage_ratio > 0.9
    severity: critical
    ticket: {ticket}
"""


def test_a_rules_ticket_tier_is_validated_with_the_policy(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "desk.yaml").write_text(RULES.format(ticket="L2"))
    policies = load_policy_dir(tmp_path / "good")
    context = AgentContext(
        agent_id="a1",
        hostname="web01",
        client="acme",
        site="hq",
        tags=frozenset(),
        os="linux",
        interval_seconds=60.0,
        seconds_since_report=10.0,
        info={},
    )
    assert [(r.name, r.ticket) for r in policies.rules_for(context)] == [("DiskFull", "L2")]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "desk.yaml").write_text(RULES.format(ticket="L4"))
    [error] = validate_path(tmp_path / "bad")
    assert "rule 1 \"DiskFull\": ticket 'L4' is not a tier" in error, error
    assert "use L1|L2|L3" in error


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    Places(store, Fleet(), Cluster("local")).create_client("acme", "admin")
    yield store
    store.close()


def alert(alert_id: str, state: str = "firing") -> AlertRecord:
    return AlertRecord(
        id=alert_id,
        fingerprint="f" * 64,
        rule_key="desk/DiskFull",
        rule_name="DiskFull",
        agent_id="a1",
        client="acme",
        site="hq",
        hostname="web01",
        series_labels={"mountpoint": "/var"},
        state=state,
        severity="critical",
        tier="L1",
        started_at=1.0,
        last_active_at=1.0,
        updated_at=1.0,
        value=0.97,
        annotations={"summary": "/var is 97% full"},
    )


AGENT = AgentRecord(
    "a1",
    "h",
    "acme",
    "hq",
    1.0,
    hostname="web01",
    os_name="Debian",
    os_version="12",
    summary={"cpu_usage_ratio": 0.25, "memory_usage_ratio": 0.5},
)


def test_an_alert_opens_resolves_and_reopens_its_ticket(store: Store) -> None:
    clock = Clock()
    tickets = Tickets(store, clock)
    hook = AlertTickets(tickets).on_transition
    asyncio.run(hook(alert("al1"), "firing", "L1", AGENT))
    [ticket] = tickets.find("acme")
    assert (ticket.tier, ticket.priority, ticket.alert_id, ticket.agent_id, ticket.site) == (
        "L1",
        "critical",
        "al1",
        "a1",
        "hq",
    )
    assert ticket.title == "DiskFull on web01: /var is 97% full"
    facts = tickets.get(ticket.id).events[0].text
    for part in (
        "alert al1: rule DiskFull",
        "value 0.97",
        "agent a1 (web01, Debian 12)",
        "series: mountpoint=/var",
        "latest metrics: cpu_usage_ratio=0.25",
    ):
        assert part in facts, facts
    clock.now += 60
    asyncio.run(hook(alert("al1", "resolved"), "resolved", "", AGENT))
    resolved = tickets.get(ticket.id)
    assert (resolved.status, resolved.resolution) == ("resolved", "alert al1 (DiskFull) resolved")
    # The same problem again (a new alert episode, the same fingerprint): the ticket reopens.
    asyncio.run(hook(alert("al2"), "firing", "L1", AGENT))
    [again] = tickets.find("acme")
    assert (again.id, again.status, again.alert_id) == (ticket.id, "in-progress", "al2")
    assert tickets.get(ticket.id).events[-1].text.startswith("reopened: alert al2")
    # Firing while its ticket is open only notes it; a rule without a tier opens nothing.
    asyncio.run(hook(alert("al3"), "firing", "L1", AGENT))
    asyncio.run(hook(alert("al4"), "firing", "", AGENT))
    assert len(tickets.find("acme")) == 1
    assert tickets.get(ticket.id).events[-1].kind == "note"
    # Closed: the next episode opens a new ticket.
    tickets.resolve(ticket.id, "disk replaced", "l1")
    tickets.close(ticket.id, Role.TIER1, "l1")
    asyncio.run(hook(alert("al5"), "firing", "L2", AGENT))
    newest = tickets.find("acme")[0]
    assert (newest.id != ticket.id, newest.tier, newest.alert_id) == (True, "L2", "al5")
