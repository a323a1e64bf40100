"""Alerts persist through storage (SQLite and PostgreSQL): a restarted manager neither loses nor
re-announces them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from rmm_server.alerts.manager import AgentIdentity, AlertManager
from rmm_server.storage import open_store
from rmm_server.storage.alerts import AlertQuery, AlertStore
from rmm_server.storage.store import sqlite_url
from tests.rmm_server.alerts.fakes import Condition, Rule

AGENT = AgentIdentity("agent1", "web01", "acme", "hq")
RULE = Rule()


def disk(mountpoint: str, used: float) -> Condition:
    return Condition(
        RULE,
        {"mountpoint": mountpoint},
        used > 0.9,
        value=used,
        annotations={"summary": f"{mountpoint} at {used:.0%}"},
    )


def manager_at(db_url: str, now: list[float]) -> tuple[AlertManager, AlertStore]:
    alert_store = AlertStore(open_store(db_url))
    manager = AlertManager(alert_store, CollectorRegistry(), clock=lambda: now[0])
    manager.load()
    return manager, alert_store


def test_alerts_fire_persist_and_resolve_across_a_restart(db_url: str) -> None:
    now = [1000.0]
    manager, alert_store = manager_at(db_url, now)
    changed, transitions = manager.apply(AGENT, [disk("/", 0.95), disk("/boot", 0.2)], "report")
    alert_store.save(changed)
    assert [r.state for r in changed] == ["pending"] and transitions == []
    now[0] = 1061
    changed, transitions = manager.apply(AGENT, [disk("/", 0.96), disk("/boot", 0.2)], "report")
    alert_store.save(changed)
    assert [(t.event, t.record.series_labels) for t in transitions] == [
        ("firing", {"mountpoint": "/"})
    ]
    firing_id = transitions[0].record.id

    # A new manager on the same database: the alert is still firing and is not announced again.
    restarted, alert_store = manager_at(db_url, now)
    assert [(r.id, r.state) for r in restarted.open_alerts()] == [(firing_id, "firing")]
    now[0] = 1090
    changed, transitions = restarted.apply(AGENT, [disk("/", 0.97)], "report")
    assert transitions == []
    now[0] = 1120
    changed, transitions = restarted.apply(AGENT, [disk("/", 0.5)], "report")
    alert_store.save(changed)
    assert [(t.event, t.record.id) for t in transitions] == [("resolved", firing_id)]
    stored = alert_store.get(firing_id)
    assert stored is not None and stored.state == "resolved" and stored.resolved_at == 1120
    assert [h["event"] for h in stored.history] == ["pending", "firing", "resolved"]
    assert stored.annotations == {"summary": "/ at 50%"}
    assert stored.labels == {"team": "ops"}
    assert restarted.open_alerts() == []
    assert alert_store.query(AlertQuery(states=("firing",))) == []


def test_an_alert_whose_series_disappears_resolves(db_url: str) -> None:
    now = [0.0]
    manager, _ = manager_at(db_url, now)
    fast = Condition(Rule(for_seconds=0), {"mountpoint": "/mnt/usb"}, True, value=0.99)
    _, transitions = manager.apply(AGENT, [fast], "report")
    assert [t.event for t in transitions] == ["firing"]
    now[0] = 30
    _, transitions = manager.apply(AGENT, [], "report")
    assert [t.event for t in transitions] == ["resolved"]
    # The offline timer passes only its own verdicts and must not end other alerts.
    _, transitions = manager.apply(AGENT, [fast], "report")
    _, transitions = manager.apply(AGENT, [], "offline-check", resolve_missing=False)
    assert transitions == [] and len(manager.open_alerts()) == 1


def firing_gauge(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["severity"], s.labels["client"], s.labels["rule"]): s.value
        for family in registry.collect()
        if family.name == "rmm_alerts_firing"
        for s in family.samples
    }


def test_the_firing_gauge_counts_what_fires_when_scraped(tmp_path: Path) -> None:
    now = [1000.0]
    registry = CollectorRegistry()
    manager = AlertManager(
        AlertStore(open_store(sqlite_url(tmp_path))), registry, clock=lambda: now[0]
    )
    manager.load()
    other = AgentIdentity("agent2", "web02", "globex", "hq")
    manager.apply(AGENT, [disk("/", 0.95), disk("/var", 0.95)], "report")
    manager.apply(other, [disk("/", 0.95)], "report")
    assert firing_gauge(registry) == {}  # pending is not firing
    now[0] = 1061
    manager.apply(AGENT, [disk("/", 0.95), disk("/var", 0.95)], "report")
    manager.apply(other, [disk("/", 0.95)], "report")
    assert firing_gauge(registry) == {
        ("warning", "acme", "DiskLow"): 2.0,
        ("warning", "globex", "DiskLow"): 1.0,
    }
    manager.apply(AGENT, [disk("/", 0.5), disk("/var", 0.95)], "report")  # / resolves
    assert firing_gauge(registry) == {
        ("warning", "acme", "DiskLow"): 1.0,
        ("warning", "globex", "DiskLow"): 1.0,
    }
    manager.shows_firing = lambda: False  # another replica leads: it shows them
    assert firing_gauge(registry) == {}
    manager.shows_firing = lambda: True
    assert sum(firing_gauge(registry).values()) == 2.0
