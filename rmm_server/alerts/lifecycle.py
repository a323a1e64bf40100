"""The life of one alert: pending → firing → resolved, as a pure function of time and conditions.

One alert exists per (rule, agent, series labels). Each evaluation brings, for every rule in
force, whether its condition holds now; `advance` moves the alert one step:

- condition true, no alert: a new alert starts *pending* (or *firing* at once when `for` is 0);
- pending and still true for `for` seconds: *firing*;
- pending and false: dropped silently (it never fired, nobody is told);
- firing and false: *resolved* when the hysteresis allows it: with a `clear` expression only once
  that expression is true; with `keep_firing_for` only once the condition has been false that
  long; otherwise at once;
- resolved and true again: a new alert (new id), so history stays per incident.

No clock is read here: `now` is passed in, so tests and `rmm policy test --unit` control time.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class RuleTiming(Protocol):
    """What the lifecycle needs to know of a rule."""

    @property
    def key(self) -> str: ...
    @property
    def for_seconds(self) -> float: ...
    @property
    def keep_firing_for_seconds(self) -> float: ...
    @property
    def has_clear(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class EndNow:
    """Timing for an alert whose rule no longer speaks of it: it ends without hysteresis."""

    key: str
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    has_clear: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    """One rule's verdict on one series of one agent at one time."""

    active: bool
    clear: bool | None = None  # the clear expression's verdict; None when the rule has none
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident of one rule on one series of one agent."""

    id: str
    fingerprint: str
    rule_key: str
    agent_id: str
    series_labels: Mapping[str, str]
    state: AlertState
    started_at: float  # when the condition first held
    last_active_at: float  # last evaluation at which the condition held
    value: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def fingerprint(rule_key: str, agent_id: str, series_labels: Mapping[str, str]) -> str:
    """Return the identity of an alert: the same rule, agent and series give the same one."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(series_labels.items()))
    return hashlib.sha256(f"{rule_key}\x00{agent_id}\x00{labels}".encode()).hexdigest()[:32]


def new_alert_id() -> str:
    """Return a short random id for a new alert (what operators type in `rmm alerts ack`)."""
    return secrets.token_hex(6)


def advance(
    alert: Alert | None,
    rule: RuleTiming,
    agent_id: str,
    series_labels: Mapping[str, str],
    seen: Observation,
    now: float,
    annotations: Mapping[str, str] | None = None,
) -> Alert | None:
    """Return the alert after one evaluation (None when there is no alert any more)."""
    if alert is None or alert.state is AlertState.RESOLVED:
        if not seen.active:
            return alert
        state = AlertState.FIRING if rule.for_seconds <= 0 else AlertState.PENDING
        return Alert(
            id=new_alert_id(),
            fingerprint=fingerprint(rule.key, agent_id, series_labels),
            rule_key=rule.key,
            agent_id=agent_id,
            series_labels=dict(series_labels),
            state=state,
            started_at=now,
            last_active_at=now,
            value=seen.value,
            fired_at=now if state is AlertState.FIRING else None,
            annotations=dict(annotations or {}),
        )
    current = replace(alert, annotations=dict(annotations)) if annotations else alert
    if alert.state is AlertState.PENDING:
        if not seen.active:
            return None
        updated = replace(current, last_active_at=now, value=seen.value)
        if now - alert.started_at >= rule.for_seconds:
            return replace(updated, state=AlertState.FIRING, fired_at=now)
        return updated
    # Firing.
    if seen.active:
        return replace(current, last_active_at=now, value=seen.value)
    if rule.has_clear and not seen.clear:
        # Below the firing threshold but not yet past the clearing one: keep firing.
        return replace(current, value=seen.value if seen.value is not None else current.value)
    if now - alert.last_active_at < rule.keep_firing_for_seconds:
        return replace(current, value=seen.value if seen.value is not None else current.value)
    return replace(current, state=AlertState.RESOLVED, resolved_at=now, value=seen.value)
