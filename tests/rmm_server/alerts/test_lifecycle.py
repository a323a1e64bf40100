"""Firing and clearing under a controlled clock: `for`, `clear` and `keep_firing_for`."""

from __future__ import annotations

from dataclasses import dataclass

from rmm_server.alerts.lifecycle import Alert, AlertState, Observation, advance, fingerprint


@dataclass(frozen=True)
class Rule:
    key: str = "servers/DiskLow"
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    has_clear: bool = False


LABELS = {"mountpoint": "/"}


def run(rule: Rule, steps: list[tuple[float, Observation]]) -> list[Alert | None]:
    alert: Alert | None = None
    history = []
    for now, seen in steps:
        alert = advance(alert, rule, "agent1", LABELS, seen, now)
        history.append(alert)
    return history


def states(history: list[Alert | None]) -> list[str | None]:
    return [a.state.value if a else None for a in history]


def test_for_keeps_an_alert_pending_until_the_condition_held_long_enough() -> None:
    on, off = Observation(True, value=0.95), Observation(False, value=0.5)
    history = run(Rule(for_seconds=60), [(0, on), (30, on), (60, on), (90, on), (120, off)])
    assert states(history) == ["pending", "pending", "firing", "firing", "resolved"]
    fired = history[2]
    assert fired is not None and fired.fired_at == 60 and fired.started_at == 0
    assert history[4] is not None and history[4].resolved_at == 120
    assert len({a.id for a in history if a}) == 1, "one incident keeps one id"


def test_a_blip_shorter_than_for_never_fires() -> None:
    on, off = Observation(True), Observation(False)
    assert states(run(Rule(for_seconds=60), [(0, on), (30, off), (40, on)])) == [
        "pending",
        None,
        "pending",
    ]


def test_clear_expression_gives_hysteresis() -> None:
    # fires above 0.90, clears only below 0.85: 0.88 keeps it firing.
    def seen(value: float) -> Observation:
        return Observation(value > 0.90, clear=value < 0.85, value=value)

    values = [0.91, 0.89, 0.91, 0.88, 0.86, 0.84, 0.89]
    history = run(Rule(has_clear=True), [(i * 10.0, seen(v)) for i, v in enumerate(values)])
    assert states(history) == ["firing"] * 5 + ["resolved", "resolved"]
    assert history[4] is not None and history[4].value == 0.86


def test_keep_firing_for_bridges_short_gaps() -> None:
    on, off = Observation(True), Observation(False)
    history = run(
        Rule(keep_firing_for_seconds=60),
        [(0, on), (30, off), (60, on), (90, off), (110, off), (130, off)],
    )
    assert states(history) == ["firing", "firing", "firing", "firing", "firing", "resolved"]


def test_a_new_incident_after_resolution_gets_a_new_id() -> None:
    on, off = Observation(True), Observation(False)
    history = run(Rule(), [(0, on), (10, off), (20, on)])
    assert states(history) == ["firing", "resolved", "firing"]
    first, last = history[0], history[2]
    assert first is not None and last is not None
    assert first.id != last.id and first.fingerprint == last.fingerprint


def test_fingerprint_depends_on_rule_agent_and_labels_only() -> None:
    assert fingerprint("r", "a", {"x": "1", "y": "2"}) == fingerprint(
        "r", "a", {"y": "2", "x": "1"}
    )
    assert fingerprint("r", "a", {"x": "1"}) != fingerprint("r", "a", {"x": "2"})
    assert fingerprint("r", "a", {}) != fingerprint("r", "b", {})
    assert AlertState("firing") is AlertState.FIRING
