"""Turn policy verdicts into alerts: one per (rule, agent, series), kept in memory and in storage.

Each report is evaluated against the rules in force for its agent; a timer evaluates the offline
rule for agents that stopped reporting (after a grace period following a server start, so a
restart or upgrade pages nobody). Every change is written through to storage, so a server restart
neither loses a firing alert nor notifies it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rmm_server.alerts.lifecycle import (
    Alert,
    AlertState,
    EndNow,
    Observation,
    RuleTiming,
    advance,
    fingerprint,
)
from rmm_server.storage.alerts import AlertRecord, AlertStore

log = logging.getLogger(__name__)
_FIRING = AlertState.FIRING.value


class RuleLike(RuleTiming, Protocol):
    """The parts of a policy rule the alert manager reads."""

    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def labels(self) -> Any: ...


class ConditionLike(Protocol):
    """One rule's verdict on one series of one agent (the policy engine's Condition)."""

    @property
    def rule(self) -> RuleLike: ...
    @property
    def series_labels(self) -> Any: ...
    @property
    def active(self) -> bool: ...
    @property
    def clear(self) -> bool | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def annotations(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    agent_id: str
    hostname: str
    client: str
    site: str


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert that changed state in a way people are told about."""

    record: AlertRecord
    event: str  # firing, resolved


class AlertMetrics:
    """Evaluation counters and the firing gauge, in the server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "rmm_policy_evaluations",
            "Agent evaluations against the policy set (one per report, one per offline check).",
            ["trigger"],
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "rmm_policy_evaluation_seconds",
            "Time to evaluate one agent against every rule in force for it.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=registry,
        )
        self.transitions = Counter(
            "rmm_alert_transitions",
            "Alerts that started firing or resolved.",
            ["event", "severity"],
            registry=registry,
        )
        self.firing = FiringAlerts()
        registry.register(self.firing)


class FiringAlerts(Collector):
    """The gauge of alerts firing now, by severity, client and rule, counted when scraped.

    Counting on every transition walked every open alert per report: at 10,000 agents with an
    alert open on each, 39 % of the event loop (py-spy, bench.ingest_scale). A scrape every
    15 s walks them once, in the metrics thread, over a copy."""

    NAME = "rmm_alerts_firing"
    HELP = "Alerts firing now, by severity, client and rule."
    LABELS = ("severity", "client", "rule")

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[AlertRecord]] = lambda: ()

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)

    def collect(self) -> Iterable[Metric]:
        counts: dict[tuple[str, str, str], int] = {}
        for record in self.source():
            if record.state == _FIRING:
                key = (record.severity, record.client, record.rule_name)
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)
        for labels, count in counts.items():
            family.add_metric(labels, count)
        yield family


class AlertManager:
    """Apply policy verdicts to the open alerts and persist every change."""

    def __init__(
        self,
        alert_store: AlertStore,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alert_store = alert_store
        self.clock = clock
        self.metrics = AlertMetrics(registry)
        self._open: dict[str, AlertRecord] = {}  # fingerprint -> pending or firing alert
        self._by_agent: dict[str, set[str]] = {}  # agent id -> fingerprints of its open alerts
        # With replicas every one holds every open alert: only the leader shows the fleet-wide
        # firing gauge, so summing it over replicas counts each alert once.
        self.shows_firing: Callable[[], bool] = lambda: True
        # Bumped whenever an open alert starts, changes state or severity, or ends: the
        # dashboard's live overview compares it instead of walking every open alert per poll.
        self.version = 0
        self.metrics.firing.source = self._firing_source

    def load(self) -> int:
        """Load open alerts from storage (at start-up); return how many."""
        self._open, self._by_agent = {}, {}
        self.version += 1
        for record in self.alert_store.open_alerts():
            self._keep_open(record)
        return len(self._open)

    def open_alerts(self) -> list[AlertRecord]:
        """Return the pending and firing alerts."""
        return list(self._open.values())

    def open_alerts_of(self, agent_id: str) -> list[AlertRecord]:
        """Return one agent's pending and firing alerts."""
        return [self._open[key] for key in self._by_agent.get(agent_id, ())]

    def apply(
        self,
        agent: AgentIdentity,
        conditions: Sequence[ConditionLike],
        trigger: str,
        resolve_missing: bool = True,
    ) -> tuple[list[AlertRecord], list[Transition]]:
        """Advance the agent's alerts with `conditions`; return (changed records, transitions).

        With `resolve_missing`, an open alert of this agent that no condition speaks of any
        more (its series disappeared, its rule was removed or switched off) ends as well.
        """
        now = self.clock()
        changed: list[AlertRecord] = []
        transitions: list[Transition] = []
        seen: set[str] = set()
        # Most agents have no open alert: then a condition that does not hold changes nothing
        # and needs no fingerprint (seen only matters for open alerts).
        has_open = agent.agent_id in self._by_agent
        for condition in conditions:
            if not has_open and not condition.active:
                continue
            rule = condition.rule
            key = fingerprint(rule.key, agent.agent_id, condition.series_labels)
            seen.add(key)
            previous = self._open.get(key)
            if previous is None and not condition.active:
                # No alert and a condition that does not hold: advance() keeps it that way
                # whatever the time (the steady state of most rules on most agents).
                continue
            if previous is not None and condition.active and previous.state == _FIRING:
                # Firing and still holding: all advance() and _record() do is note the time
                # and the value (time cannot end or move a firing alert whose condition holds).
                if previous.severity != rule.severity:
                    self.version += 1
                previous.last_active_at = now
                previous.value = condition.value
                if condition.annotations:
                    previous.annotations = dict(condition.annotations)
                previous.labels = dict(rule.labels)
                previous.severity = rule.severity
                continue
            labels = dict(condition.series_labels)
            before = _to_lifecycle(previous) if previous else None
            after = advance(
                before,
                rule,
                agent.agent_id,
                labels,
                Observation(condition.active, condition.clear, condition.value),
                now,
                dict(condition.annotations),
            )
            self._record(agent, rule, previous, after, now, changed, transitions)
            has_open = agent.agent_id in self._by_agent  # it may have just opened one
        if resolve_missing:
            for key in list(self._by_agent.get(agent.agent_id, ())):
                record = self._open[key]
                if key in seen:
                    continue
                gone = EndNow(record.rule_key)
                after = advance(
                    _to_lifecycle(record),
                    gone,
                    agent.agent_id,
                    record.series_labels,
                    Observation(False),
                    now,
                )
                self._record_gone(record, after, now, changed, transitions)
        self.metrics.evaluations.labels(trigger=trigger).inc()
        return changed, transitions

    def _record(
        self,
        agent: AgentIdentity,
        rule: RuleLike,
        previous: AlertRecord | None,
        after: Alert | None,
        now: float,
        changed: list[AlertRecord],
        transitions: list[Transition],
    ) -> None:
        if after is None:
            if previous is not None:  # a pending alert whose condition went away: forget it
                self._forget(previous)
                self.version += 1
                previous.state = "dropped"
                previous.updated_at = now
                changed.append(previous)
            return
        if previous is not None and previous.id != after.id:
            previous = None
        if previous is None and after.state is AlertState.RESOLVED:
            return  # an old incident that stays resolved
        record = previous or AlertRecord(
            id=after.id,
            fingerprint=after.fingerprint,
            rule_key=rule.key,
            rule_name=rule.name,
            agent_id=agent.agent_id,
            client=agent.client,
            site=agent.site,
            hostname=agent.hostname,
            series_labels=dict(after.series_labels),
            state=after.state.value,
            severity=rule.severity,
            tier=rule.tier,
            started_at=after.started_at,
            last_active_at=after.last_active_at,
            updated_at=now,
            history=[{"at": now, "event": after.state.value}],
        )
        old_state = previous.state if previous else None
        if old_state != after.state.value or record.severity != rule.severity:
            self.version += 1
        record.state = after.state.value
        record.last_active_at = after.last_active_at
        record.fired_at = after.fired_at
        record.resolved_at = after.resolved_at
        record.value = after.value
        record.annotations = dict(after.annotations)
        record.labels = dict(rule.labels)
        record.severity = rule.severity
        # A moving value alone is not written: it would cost a transaction per report.
        if old_state != record.state or previous is None:
            record.updated_at = now
            changed.append(record)
        if old_state is not None and old_state != record.state:
            record.history.append({"at": now, "event": record.state})
        self._track(record, old_state, transitions)

    def _record_gone(
        self,
        record: AlertRecord,
        after: Alert | None,
        now: float,
        changed: list[AlertRecord],
        transitions: list[Transition],
    ) -> None:
        old_state = record.state
        if after is None:
            record.state = "dropped"
        else:
            record.state = after.state.value
            record.resolved_at = after.resolved_at
        if record.state == old_state:
            return
        self.version += 1
        record.updated_at = now
        record.history.append({"at": now, "event": record.state, "detail": "rule or series gone"})
        changed.append(record)
        if record.state == "dropped":
            self._forget(record)
            return
        self._track(record, old_state, transitions)

    def _track(
        self, record: AlertRecord, old_state: str | None, transitions: list[Transition]
    ) -> None:
        if record.state in (AlertState.PENDING.value, AlertState.FIRING.value):
            self._keep_open(record)
        else:
            self._forget(record)
        if record.state == AlertState.FIRING.value and old_state != AlertState.FIRING.value:
            transitions.append(Transition(record, "firing"))
            self.metrics.transitions.labels(event="firing", severity=record.severity).inc()
        elif record.state == AlertState.RESOLVED.value and old_state == AlertState.FIRING.value:
            transitions.append(Transition(record, "resolved"))
            self.metrics.transitions.labels(event="resolved", severity=record.severity).inc()

    def _firing_source(self) -> list[AlertRecord]:
        """The open alerts as the firing gauge counts them: none where another replica leads.
        A copy (one C-level step under the GIL), since the scrape runs in another thread."""
        return list(self._open.values()) if self.shows_firing() else []

    def forget_agent(self, agent_id: str) -> Iterable[AlertRecord]:
        """Drop the open alerts of a removed agent; return them for storage."""
        gone = [self._open[key] for key in self._by_agent.get(agent_id, ())]
        for record in gone:
            self._forget(record)
        self.version += 1
        return gone

    def adopt(self, records: Iterable[AlertRecord]) -> None:
        """Take alerts another replica changed (read back from the database) as they stand."""
        self.version += 1
        for record in records:
            previous = self._open.get(record.fingerprint)
            if previous is not None and previous.id != record.id:
                continue  # a newer alert of the same fingerprint is open here already
            if record.state in (AlertState.PENDING.value, AlertState.FIRING.value):
                self._keep_open(record)
            else:
                self._forget(record)

    def _keep_open(self, record: AlertRecord) -> None:
        self._open[record.fingerprint] = record
        self._by_agent.setdefault(record.agent_id, set()).add(record.fingerprint)

    def _forget(self, record: AlertRecord) -> None:
        self._open.pop(record.fingerprint, None)
        keys = self._by_agent.get(record.agent_id)
        if keys is not None:
            keys.discard(record.fingerprint)
            if not keys:
                del self._by_agent[record.agent_id]


def _to_lifecycle(record: AlertRecord) -> Alert:
    return Alert(
        id=record.id,
        fingerprint=record.fingerprint,
        rule_key=record.rule_key,
        agent_id=record.agent_id,
        series_labels=record.series_labels,
        state=AlertState(record.state),
        started_at=record.started_at,
        last_active_at=record.last_active_at,
        value=record.value,
        fired_at=record.fired_at,
        resolved_at=record.resolved_at,
        annotations=record.annotations,
    )
