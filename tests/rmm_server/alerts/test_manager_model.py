"""The alert manager against the lifecycle it applies: over random sequences of conditions (rules
with `for:`, `keep_firing_for:` and `clear`, series coming and going, time moving unevenly), every
open alert is what lifecycle.advance() makes of its fingerprint's history, step by step. The
manager's shortcuts (no alert and nothing holding; firing and still holding) must not show."""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry

from rmm_server.alerts.lifecycle import Alert, AlertState, EndNow, Observation, advance
from rmm_server.alerts.manager import AgentIdentity, AlertManager
from rmm_server.storage import open_store
from rmm_server.storage.alerts import AlertStore
from rmm_server.storage.store import sqlite_url
from tests.rmm_server.alerts.fakes import Condition, Rule

RULES = (
    Rule("t/Now", "Now", for_seconds=0.0, labels={}),
    Rule("t/For", "For", for_seconds=60.0, labels={}),
    Rule("t/Keep", "Keep", for_seconds=0.0, keep_firing_for_seconds=90.0, labels={}),
    Rule("t/Clear", "Clear", for_seconds=30.0, has_clear=True, labels={}),
)
AGENT = AgentIdentity("a1", "web01", "acme", "hq")


def test_the_manager_is_the_lifecycle_step_by_step(tmp_path: Path) -> None:
    now = [1000.0]
    manager = AlertManager(
        AlertStore(open_store(sqlite_url(tmp_path))), CollectorRegistry(), clock=lambda: now[0]
    )
    manager.load()
    rng = random.Random(16)
    pairs: dict[str, str] = {}  # the model's alert id -> the manager's
    model: dict[tuple[str, str], Alert] = {}  # (rule key, mountpoint) -> alert, as advance() has it
    for step in range(4000):
        now[0] += rng.choice([1.0, 10.0, 30.0, 30.0, 45.0])
        conditions = []
        for rule in RULES:
            for mount in rng.sample(["/", "/data"], rng.randint(0, 2)):
                active = rng.random() < 0.6
                value = rng.choice([0.5, 0.95, 0.99])
                clear = (rng.random() < 0.5) if rule.has_clear else None
                notes = rng.choice([{}, {"summary": f"{mount} at {value}"}])
                conditions.append(
                    Condition(rule, {"mountpoint": mount}, active, clear, value, notes)
                )
        manager.apply(AGENT, conditions, "report")
        spoken = set()
        for c in conditions:
            key = (c.rule.key, c.series_labels["mountpoint"])
            spoken.add(key)
            before = model.get(key)
            if before is not None and before.state is AlertState.RESOLVED:
                before = None
            after = advance(
                before,
                c.rule,
                AGENT.agent_id,
                dict(c.series_labels),
                Observation(c.active, c.clear, c.value),
                now[0],
                dict(c.annotations),
            )
            _keep(model, key, after)
        for key, alert in list(model.items()):
            if key not in spoken and alert.state is not AlertState.RESOLVED:
                gone = advance(
                    alert,
                    EndNow(key[0]),
                    AGENT.agent_id,
                    alert.series_labels,
                    Observation(False),
                    now[0],
                )
                _keep(model, key, gone)
        expected = {
            (a.rule_key, a.series_labels["mountpoint"]): (
                a.state.value,
                a.started_at,
                a.last_active_at,
                a.fired_at,
                a.value,
                dict(a.annotations),
            )
            for a in model.values()
            if a.state is not AlertState.RESOLVED
        }
        got = {
            (r.rule_key, r.series_labels["mountpoint"]): (
                r.state,
                r.started_at,
                r.last_active_at,
                r.fired_at,
                r.value,
                dict(r.annotations),
            )
            for r in manager.open_alerts_of(AGENT.agent_id)
        }
        assert got == expected, step
        # The same incidents: a new alert (id) in the model is a new one in the manager too.
        ids = {(r.rule_key, r.series_labels["mountpoint"]): r.id for r in manager.open_alerts()}
        for key, alert in model.items():
            if alert.state is AlertState.RESOLVED:
                continue
            paired = pairs.setdefault(alert.id, ids[key])
            assert paired == ids[key], step
        assert len(set(pairs.values())) == len(pairs)


def _keep(model: dict[tuple[str, str], Alert], key: tuple[str, str], alert: Alert | None) -> None:
    if alert is None:
        model.pop(key, None)
    else:
        model[key] = alert
