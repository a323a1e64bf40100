"""Alerts persist through storage (SQLite and PostgreSQL): a restarted manager neither loses nor
re-announces them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from rmm_server.alerts.manager import AgentIdentity, AlertManager
from rmm_server.storage import open_store
from rmm_server.storage.alerts import AlertQuery, AlertStore


@dataclass(frozen=True)
class Rule:
    key: str = "servers/DiskLow"
    name: str = "DiskLow"
    severity: str = "warning"
    tier: str = "L1"
    for_seconds: float = 60.0
    keep_firing_for_seconds: float = 0.0
    has_clear: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: {"team": "ops"})


@dataclass(frozen=True)
class Condition:
    rule: Rule
    series_labels: Mapping[str, str]
    active: bool
    clear: bool | None = None
    value: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


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
