"""The alerting side of the server: policies in force, alerts, suppression, notification and
escalation, behind the calls that ingest, the timers and the operator API make."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from rmm_common.errors import ConfigError, InvalidArgument, NotFound, PolicyError, StorageError
from rmm_common.tokens import new_ident
from rmm_proto import agent_pb2, commands_pb2
from rmm_server.alerts.lifecycle import AlertState
from rmm_server.alerts.manager import AgentIdentity, AlertManager, Transition
from rmm_server.notify.model import AlertNotice
from rmm_server.policy import PolicySet, load_policy_dir
from rmm_server.policy.model import (
    AgentContext,
    Condition,
    EffectiveRule,
    Inhibit,
    Provenance,
    Remediate,
    SeriesSample,
)
from rmm_server.reports import LazyInfo, ReportSeries, report_series
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.alerts import AlertQuery, AlertRecord, AlertStore
from rmm_server.storage.suppressions import (
    MaintenanceWindow,
    NotificationFailure,
    Silence,
    SuppressionStore,
    check_silence_scope,
    parse_matchers,
)

log = logging.getLogger(__name__)
# Agents evaluated by one offline check between two yields to the event loop.
OFFLINE_CHECK_SLICE = 100

Submit = Callable[[AlertNotice], Any]
RemediateHook = Callable[[AlertRecord, Remediate, AgentRecord], Awaitable[None]]
TicketHook = Callable[[AlertRecord, str, str, AgentRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """When an unacknowledged alert moves to the next tier."""

    ack_timeout: Callable[[str], float | None]
    next_tier: Callable[[str], str | None]


def agent_context(
    record: AgentRecord,
    report: agent_pb2.Report | None,
    now: float,
    inventory_added: tuple[str, ...] = (),
    inventory_removed: tuple[str, ...] = (),
    series: ReportSeries | None = None,
    needed: Callable[[AgentContext], frozenset[str]] | None = None,
) -> tuple[AgentContext, list[SeriesSample]]:
    """Return what the policy engine needs of an agent and its latest report (`series`: its
    samples as validate_report() returned them, read from the report when not given;
    `needed`: the metric names the agent's rules read (PolicySet.metrics_for), so that only
    those samples are built; all of them when not given)."""
    lazy = LazyInfo(report) if report is not None else None
    info: Mapping[str, Any] = lazy if lazy is not None else {}
    context = AgentContext(
        agent_id=record.id,
        hostname=record.hostname,
        client=record.client,
        site=record.site,
        tags=frozenset(record.tags),
        os=record.os,
        interval_seconds=float(record.interval_seconds),
        seconds_since_report=None if record.last_seen is None else max(0.0, now - record.last_seen),
        info=info,
        inventory_added=inventory_added,
        inventory_removed=inventory_removed,
        info_raw=lazy.raw if lazy is not None else {},
    )
    samples: list[SeriesSample] = []
    if report is not None:
        if series is None:
            series = report_series(report)
        wanted = needed(context) if needed is not None else None
        samples = [
            SeriesSample(name, dict(labels), value)
            for collector in series
            for name, labels, value in collector
            if wanted is None or name in wanted
        ]
    return context, samples


# History events of notifications about an alert, and how many of them an alert keeps.
NOTIFY_EVENTS = ("delivered", "notify_failed")
MAX_NOTIFY_ENTRIES = 50


def alert_fields(alert: AlertRecord) -> dict[str, str]:
    """Return the fields silences and inhibitions match on: alert facts and all labels."""
    return {
        **alert.labels,
        **alert.series_labels,
        "rule": alert.rule_name,
        "client": alert.client,
        "site": alert.site,
        "agent": alert.agent_id,
        "hostname": alert.hostname,
        "severity": alert.severity,
        "tier": alert.tier,
    }


def to_notice(alert: AlertRecord, escalated_from: str | None = None) -> AlertNotice:
    """Return what the notifiers are told about an alert."""
    return AlertNotice(
        alert_id=alert.id,
        rule=alert.rule_name,
        status="resolved" if alert.state == AlertState.RESOLVED.value else "firing",
        severity=alert.severity,
        tier=alert.tier,
        client=alert.client,
        site=alert.site,
        agent_id=alert.agent_id,
        hostname=alert.hostname,
        labels={**alert.labels, **alert.series_labels},
        annotations=dict(alert.annotations),
        value=alert.value,
        starts_at=alert.fired_at or alert.started_at,
        ends_at=alert.resolved_at,
        escalated_from=escalated_from,
        acknowledged_by=alert.acknowledged_by,
    )


class AlertService:
    """Evaluate agents against the policy set and act on what changes."""

    def __init__(
        self,
        store: Store,
        registry: CollectorRegistry,
        policies_dir: Path | None,
        offline_grace_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.alert_store = AlertStore(store)
        self.suppressions = SuppressionStore(store)
        self.manager = AlertManager(self.alert_store, registry, clock)
        self.policies_dir = policies_dir
        self.policies: PolicySet | None = None
        # As Prometheus reports its own configuration reloads: a refused reload leaves the old
        # rules in force, silently for whoever did not run `rmm policy reload` themselves.
        self._rules_gauge = Gauge(
            "rmm_policy_rules", "Alert rules in force on this server.", registry=registry
        )
        self._rules_gauge.set_function(
            lambda: len(self.policies) if self.policies is not None else 0
        )
        self._reload_ok = Gauge(
            "rmm_policy_last_reload_successful",
            "1 when the last policy load or reload succeeded, 0 when it was refused and the "
            "previous rules stay in force.",
            registry=registry,
        )
        self._reload_ok.set(1)  # nothing refused yet (a start with broken policies fails)
        self._reload_time = Gauge(
            "rmm_policy_last_reload_success_timestamp_seconds",
            "When this server last loaded its policies successfully (unix time).",
            registry=registry,
        )
        self.offline_grace_seconds = offline_grace_seconds
        self.clock = clock
        self.started_at = clock()
        self.silences: list[Silence] = []
        self.windows: list[MaintenanceWindow] = []
        self.submit: Submit | None = None
        self.escalation: EscalationPolicy | None = None
        # Runs a firing rule's `remediate` script (set when the server sends commands).
        self.remediate: RemediateHook | None = None
        # Told of each firing and resolved alert with the tier its rule opens tickets at ("":
        # none): the desk opens, reopens and resolves tickets (docs/desk.md).
        self.ticket_hook: TicketHook | None = None
        # Which of some script names the script library lacks: a rule whose `remediate` names
        # no script is refused when the policies load, not found out when the alert fires.
        self.unknown_scripts: Callable[[Iterable[str]], list[str]] | None = None
        # Why a patch policy script step's params do not fit its script (ScriptLibrary's).
        self.script_params_problem: Callable[[str, Mapping[str, str], str], str | None] | None = (
            None
        )
        self._inhibitors: dict[str, tuple[Inhibit, ...]] = {}  # rule key -> its inhibitions
        # Changed alerts wait here and one writer saves them in batches: a report's
        # acknowledgement never waits for alert bookkeeping, and the latest state of an alert
        # is the one written.
        self._dirty: dict[str, AlertRecord] = {}
        self._writer: asyncio.Task[None] | None = None
        # Told the ids of alerts just written (replicas: the others read them back).
        self.saved: Callable[[list[str]], None] | None = None
        # Told that a silence or maintenance window was added or ended (replicas: the others
        # read them again at once).
        self.suppressions_changed: Callable[[], None] | None = None

    # --- start-up and reload -----------------------------------------------------------------

    def load(self) -> None:
        """Load policies, open alerts, silences and windows (in a worker thread at start-up)."""
        if self.policies_dir is not None:
            try:
                self.policies = self._load_policies(self.policies_dir)
            except PolicyError as exc:
                raise ConfigError(f"policies in {self.policies_dir} are invalid:\n{exc}") from exc
            self._loaded(True)
        self.manager.load()
        self.silences = self.suppressions.silences()
        self.windows = self.suppressions.windows()

    def reload_policies(self) -> tuple[bool, list[str]]:
        """Load the policy directory again; on any error keep the set in force."""
        if self.policies_dir is None:
            return False, ["the server runs without --policies: there is nothing to reload"]
        try:
            policies = self._load_policies(self.policies_dir)
        except PolicyError as exc:
            errors = list(getattr(exc, "errors", [])) or [str(exc)]
            log.error("policy reload refused, the previous set stays in force:\n%s", exc)
            self._loaded(False)
            return False, errors
        self.policies = policies
        self._loaded(True)
        log.info("policies reloaded from %s: %d rules", self.policies_dir, len(policies))
        return True, []

    def _loaded(self, ok: bool) -> None:
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reload_time.set(self.clock())

    def _load_policies(self, directory: Path) -> PolicySet:
        policies = load_policy_dir(directory)
        if self.unknown_scripts is not None:
            references = policies.remediation_scripts()
            # A patch policy's pre_install / post_install steps are library scripts too.
            steps = policies.patches.library_scripts()
            unknown = set(self.unknown_scripts(name for _, name in references + steps))
            errors = [
                f"{where}: remediate.script {name!r} names no script in the server's script "
                "library (`rmm scripts list` shows them; add the script there or fix the name)"
                for where, name in references
                if name in unknown
            ] + [
                f"{where}: patch policy script {name!r} names no script in the server's script "
                "library (`rmm scripts list` shows them; add the script there or fix the name)"
                for where, name in steps
                if name in unknown
            ]
            errors += self._script_param_errors(policies)
            if errors:
                raise PolicyError(errors)
        return policies

    def _script_param_errors(self, policies: PolicySet) -> list[str]:
        """Return an error (file:line:col) per patch script step whose params do not fit the
        parameters its library script declares (a required one missing, an unknown name, a
        value of the wrong type), so a bad policy is refused at load, not in a window."""
        if self.script_params_problem is None:
            return []
        errors = []
        for key, step in policies.patches.script_steps():
            problem = self.script_params_problem(step.script, dict(step.params), "params.")
            if problem is not None:
                errors.append(f"{step.source}: {key} {problem}")
        return errors

    # --- evaluation ----------------------------------------------------------------------------

    async def on_report(
        self,
        record: AgentRecord,
        report: agent_pb2.Report,
        inventory_added: tuple[str, ...] = (),
        inventory_removed: tuple[str, ...] = (),
        series: ReportSeries | None = None,
    ) -> None:
        """Evaluate an agent's new report and act on what changed."""
        if self.policies is None:
            return
        now = self.clock()
        started = time.perf_counter()
        context, samples = agent_context(
            record,
            report,
            now,
            inventory_added,
            inventory_removed,
            series,
            needed=self.policies.metrics_for,
        )
        conditions = self.policies.evaluate(context, samples, reuse=True)
        self.manager.metrics.evaluation_seconds.observe(time.perf_counter() - started)
        await self._apply(record, conditions, "report", resolve_missing=True)

    async def check_offline(self, agents: Sequence[AgentRecord]) -> None:
        """Evaluate the agents that stopped reporting (after the start-up grace period)."""
        if self.policies is None:
            return
        now = self.clock()
        if now - self.started_at < self.offline_grace_seconds:
            return
        for index, record in enumerate(agents):
            if index % OFFLINE_CHECK_SLICE == OFFLINE_CHECK_SLICE - 1:
                # Thousands of agents offline at once (a site's network is down) must not hold
                # the event loop: reports and operator calls go on between slices.
                await asyncio.sleep(0)
            if record.last_seen is None or record.online(now) or record.revoked_at is not None:
                continue
            context, _ = agent_context(record, None, now)
            # Without a report there are no samples: only agent-level rules (offline) speak, and
            # alerts they do not mention are left as they are.
            conditions = self.policies.evaluate(context, [])
            await self._apply(record, conditions, "offline-check", resolve_missing=False)

    async def _apply(
        self,
        record: AgentRecord,
        conditions: Sequence[Condition],
        trigger: str,
        resolve_missing: bool,
    ) -> None:
        for condition in conditions:
            if condition.rule.inhibits:
                self._inhibitors[condition.rule.key] = condition.rule.inhibits
        identity = AgentIdentity(record.id, record.hostname, record.client, record.site)
        changed, transitions = self.manager.apply(
            identity, conditions, trigger, resolve_missing=resolve_missing
        )
        notices = [self._decide(t, frozenset(record.tags)) for t in transitions]
        await self._persist(changed)
        for notice in notices:
            if notice is not None and self.submit is not None:
                await self._submit(notice)
        if self.remediate is not None and any(t.event == "firing" for t in transitions):
            remedies = {c.rule.key: c.rule.remediate for c in conditions if c.rule.remediate}
            for transition in transitions:
                remedy = remedies.get(transition.record.rule_key)
                if transition.event == "firing" and remedy is not None:
                    try:
                        await self.remediate(transition.record, remedy, record)
                    except Exception:  # a failed remediation must never stop evaluation
                        log.exception("remediation for alert %s failed", transition.record.id)
        if self.ticket_hook is not None and transitions:
            await self._tickets(transitions, conditions, record)

    async def _tickets(
        self, transitions: Sequence[Transition], conditions: Sequence[Condition], agent: AgentRecord
    ) -> None:
        assert self.ticket_hook is not None
        tiers = {c.rule.key: c.rule.ticket for c in conditions if c.rule.ticket}
        for transition in transitions:
            tier = tiers.get(transition.record.rule_key, "")
            if transition.event == "firing" and not tier:
                continue
            try:
                await self.ticket_hook(transition.record, transition.event, tier, agent)
            except Exception:  # a ticket problem must never stop evaluation
                log.exception("the ticket of alert %s was not updated", transition.record.id)

    async def note(self, alert_id: str, event: str, detail: str, by: str = "") -> None:
        """Add an entry to an alert's history (e.g. a remediation's outcome) and save it."""
        alert = next((a for a in self.manager.open_alerts() if a.id == alert_id), None)
        if alert is None:
            alert = await asyncio.to_thread(self.alert_store.get, alert_id)
        if alert is None:
            return
        now = self.clock()
        entry: dict[str, Any] = {"at": now, "event": event, "detail": detail}
        if by:
            entry["by"] = by
        alert.history.append(entry)
        alert.updated_at = now
        await self._persist([alert])

    async def find(self, ident: str) -> AlertRecord:
        """Return the alert with this id, or the one open alert whose id starts with `ident`."""
        if not ident:
            raise InvalidArgument("name an alert by its id (`rmm alerts list` shows them)")
        open_alerts = self.manager.open_alerts()
        alert = next((a for a in open_alerts if a.id == ident), None)
        if alert is None:
            alert = await asyncio.to_thread(self.alert_store.get, ident)
        if alert is not None:
            return alert
        starting = sorted(a.id for a in open_alerts if a.id.startswith(ident))
        if len(starting) == 1:
            return next(a for a in open_alerts if a.id == starting[0])
        if starting:
            raise InvalidArgument(
                f"{ident!r} starts {len(starting)} open alerts' ids ({', '.join(starting[:5])}"
                f"{', ...' if len(starting) > 5 else ''}): give more of the id"
            )
        raise NotFound(
            f"no alert {ident!r}: `rmm alerts list` shows open ones; a resolved alert needs its "
            "whole id (`rmm alerts list --state resolved`)"
        )

    def matching_silences(self, alert: AlertRecord) -> list[Silence]:
        """Return every silence (active, pending or expired) whose matchers match `alert`."""
        fields = alert_fields(alert)
        return [s for s in self.silences if all(m.matches(fields) for m in s.matchers)]

    async def note_notification(
        self,
        alert_ids: Sequence[str],
        receiver: str,
        notifier: str,
        status: str,
        group_key: str,
        error: str = "",
    ) -> None:
        """Add a notification's outcome (delivered, or failed after every retry with `error`)
        to the history of each alert it carried, for `rmm alerts show`."""
        now = self.clock()
        open_alerts = {alert.id: alert for alert in self.manager.open_alerts()}
        changed: list[AlertRecord] = []
        for alert_id in alert_ids:
            alert = open_alerts.get(alert_id)
            if alert is None:
                alert = await asyncio.to_thread(self.alert_store.get, alert_id)
            if alert is None:
                continue
            entry: dict[str, Any] = {
                "at": now,
                "event": "notify_failed" if error else "delivered",
                "detail": f"{receiver} ({notifier}): {error or status}",
                "receiver": receiver,
                "notifier": notifier,
                "status": status,
                "group_key": group_key,
            }
            if error:
                entry["error"] = error
            alert.history.append(entry)
            # History is stored with the alert, and a busy group is sent again at every change
            # of any of its alerts: keep the newest entries of this kind only.
            ours = [i for i, e in enumerate(alert.history) if e.get("event") in NOTIFY_EVENTS]
            for index in reversed(ours[:-MAX_NOTIFY_ENTRIES]):
                del alert.history[index]
            alert.updated_at = now
            changed.append(alert)
        await self._persist(changed)

    async def _persist(self, records: Sequence[AlertRecord]) -> None:
        for record in records:
            self._dirty[record.id] = record
        if self._dirty and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write_dirty())

    async def _write_dirty(self) -> None:
        while self._dirty:
            batch = list(self._dirty.values())
            self._dirty.clear()
            try:
                await asyncio.to_thread(self.alert_store.save, batch)
            except StorageError as exc:
                log.error("saving %d alerts failed, will retry: %s", len(batch), exc)
                for record in batch:
                    self._dirty.setdefault(record.id, record)
                await asyncio.sleep(1.0)
            else:
                if self.saved is not None:
                    self.saved([record.id for record in batch])

    async def flush(self) -> None:
        """Wait until every changed alert is written."""
        while self._writer is not None and not self._writer.done():
            await self._writer
        if self._dirty:
            await self._persist([])
            if self._writer is not None:
                await self._writer

    async def _submit(self, notice: AlertNotice) -> None:
        assert self.submit is not None
        try:
            result = self.submit(notice)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a notifier problem must never stop evaluation
            log.exception("handing alert %s to the notifiers failed", notice.alert_id)

    def _decide(self, transition: Transition, tags: frozenset[str]) -> AlertNotice | None:
        alert = transition.record
        now = self.clock()
        if transition.event == "resolved":
            if not any(entry.get("event") == "notified" for entry in alert.history):
                return None  # never announced, so nothing to take back
            alert.history.append({"at": now, "event": "notified", "detail": "resolved"})
            return to_notice(alert)
        reason = self.suppressed_by(alert, now, tags)
        if reason:
            alert.history.append({"at": now, "event": "suppressed", "detail": reason})
            return None
        alert.history.append({"at": now, "event": "notified", "detail": f"tier {alert.tier}"})
        return to_notice(alert)

    def suppressed_by(
        self, alert: AlertRecord, now: float, tags: frozenset[str] | None = None
    ) -> str:
        """Return why nobody is told about `alert` now, or "" when notifications go out."""
        fields = alert_fields(alert)
        for silence in self.silences:
            if silence.silences(fields, now):
                return f"silence:{silence.id}"
        for window in self.windows:
            covered = window.covers(alert.client, alert.site, alert.agent_id, tags or frozenset())
            if covered and window.current(now) is not None:
                return f"maintenance:{window.id}"
        if not self._inhibitors:
            return ""
        # Every shipped inhibition is per agent (`equal: [agent]`): then only the alert's own
        # agent's alerts can inhibit it, and this stays cheap with thousands of open alerts
        # (scanning them all made `rmm alerts list` and a fleet going offline quadratic).
        per_agent = all(
            "agent" in inhibit.equal
            for inhibits in self._inhibitors.values()
            for inhibit in inhibits
        )
        candidates = (
            self.manager.open_alerts_of(alert.agent_id) if per_agent else self.manager.open_alerts()
        )
        firing = AlertState.FIRING.value
        for other in candidates:
            # Most rules inhibit nothing: one dict lookup skips their alerts. Checked first, so
            # a report that fires thousands of alerts is not quadratic in Enum lookups.
            inhibits = self._inhibitors.get(other.rule_key)
            if not inhibits or other.state != firing or other.id == alert.id:
                continue
            for inhibit in inhibits:
                same = all(_same(other, alert, key) for key in inhibit.equal)
                if same and inhibit.targets(alert.rule_name, fields, own_name=other.rule_name):
                    return f"inhibited:{other.rule_name}"
        return ""

    # --- escalation --------------------------------------------------------------------------

    async def escalate_overdue(self) -> None:
        """Move firing, unacknowledged alerts past their tier's ack timeout to the next tier."""
        if self.escalation is None:
            return
        now = self.clock()
        notices: list[AlertNotice] = []
        changed: list[AlertRecord] = []
        for alert in self.manager.open_alerts():
            if alert.state != AlertState.FIRING.value or alert.acknowledged_by:
                continue
            timeout = self.escalation.ack_timeout(alert.tier)
            following = self.escalation.next_tier(alert.tier)
            if timeout is None or following is None:
                continue
            since = max(
                [alert.fired_at or alert.started_at]
                + [e["at"] for e in alert.history if e.get("event") == "escalated"]
            )
            if now - since < timeout:
                continue
            previous = alert.tier
            alert.tier = following
            alert.updated_at = now
            alert.history.append(
                {"at": now, "event": "escalated", "detail": f"{previous} -> {following}"}
            )
            changed.append(alert)
            if not self.suppressed_by(alert, now):
                alert.history.append(
                    {"at": now, "event": "notified", "detail": f"tier {following}"}
                )
                notices.append(to_notice(alert, escalated_from=previous))
        await self._persist(changed)
        for notice in notices:
            if self.submit is not None:
                await self._submit(notice)

    # --- operator actions ----------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, operator: str, comment: str) -> AlertRecord:
        """Record who took an alert on; it stops escalating."""
        if not comment.strip():
            raise InvalidArgument("--comment is required: say what you are doing about it")
        alert = next((a for a in self.manager.open_alerts() if a.id == alert_id), None)
        if alert is None:
            stored = await asyncio.to_thread(self.alert_store.get, alert_id)
            if stored is None:
                raise NotFound(f"alert {alert_id!r} does not exist: see `rmm alerts list`")
            raise InvalidArgument(f"alert {alert_id} is {stored.state}; only open alerts")
        now = self.clock()
        alert.acknowledged_by = operator
        alert.acknowledged_at = now
        alert.ack_comment = comment
        alert.updated_at = now
        alert.history.append(
            {"at": now, "event": "acknowledged", "by": operator, "detail": comment}
        )
        await self._persist([alert])
        return alert

    async def create_silence(
        self, matchers: str, duration: float, comment: str, operator: str, starts_at: float = 0
    ) -> Silence:
        """Silence alerts matching `matchers` for `duration` seconds."""
        if duration <= 0:
            raise InvalidArgument("--for must be a positive duration, e.g. 2h")
        if not comment.strip():
            raise InvalidArgument("--comment is required: say why these alerts are silenced")
        parsed = parse_matchers(matchers)
        check_silence_scope(parsed)
        now = self.clock()
        begin = starts_at or now
        silence = Silence(
            id=new_ident(),
            matchers=tuple(parsed),
            starts_at=begin,
            ends_at=begin + duration,
            created_by=operator,
            comment=comment,
            created_at=now,
        )
        await asyncio.to_thread(self.suppressions.add_silence, silence)
        self.silences.insert(0, silence)
        self._announce_suppressions()
        return silence

    async def expire_silence(self, silence_id: str) -> Silence:
        """End a silence now."""
        now = self.clock()
        for index, silence in enumerate(self.silences):
            if silence.id == silence_id:
                await asyncio.to_thread(self.suppressions.expire_silence, silence_id, now)
                if silence.ends_at > now:
                    self.silences[index] = replace(silence, ends_at=now)
                self._announce_suppressions()
                return self.silences[index]
        raise NotFound(f"silence {silence_id!r} does not exist: see `rmm silences list`")

    async def add_window(self, window: MaintenanceWindow) -> MaintenanceWindow:
        """Store and apply a new maintenance window."""
        await asyncio.to_thread(self.suppressions.add_window, window)
        self.windows.insert(0, window)
        self._announce_suppressions()
        return window

    async def end_window(self, window_id: str) -> MaintenanceWindow:
        """End a maintenance window for good."""
        now = self.clock()
        for index, window in enumerate(self.windows):
            if window.id == window_id:
                await asyncio.to_thread(self.suppressions.end_window, window_id, now)
                if window.ended_at is None:
                    self.windows[index] = replace(window, ended_at=now)
                self._announce_suppressions()
                return self.windows[index]
        raise NotFound(
            f"maintenance window {window_id!r} does not exist: see `rmm maintenance list`"
        )

    def _announce_suppressions(self) -> None:
        if self.suppressions_changed is not None:
            self.suppressions_changed()

    async def reload_suppressions(self) -> None:
        """Read silences and maintenance windows again (another replica changed them)."""
        try:
            self.silences, self.windows = await asyncio.to_thread(
                lambda: (self.suppressions.silences(), self.suppressions.windows())
            )
        except StorageError as exc:
            log.error("cannot read silences and maintenance windows, will retry: %s", exc)

    def query(self, query: AlertQuery) -> list[tuple[AlertRecord, str]]:
        """Return alerts with the reason each is suppressed now ("" when it is not)."""
        now = self.clock()
        # Open alerts' values move with every report but are written only on state changes:
        # show the live record for those.
        live = {alert.id: alert for alert in self.manager.open_alerts()}
        alerts = [live.get(alert.id, alert) for alert in self.alert_store.query(query)]
        return [
            (alert, self.suppressed_by(alert, now) if alert.state != "resolved" else "")
            for alert in alerts
        ]

    async def raise_server_alert(
        self, record: AgentRecord, name: str, severity: str, summary: str
    ) -> None:
        """Fire an alert the server raises itself (not a policy rule's), e.g. patching's
        PatchReportBackMissing; the agent's next report resolves it (no rule keeps it)."""
        rule = EffectiveRule(
            key=f"server/{name}",
            name=name,
            policy="server",
            source="rmm_server",
            layer="server",
            severity=severity,
            tier="L1",
            for_seconds=0.0,
            keep_firing_for_seconds=0.0,
            has_clear=False,
            labels={},
            annotations={"summary": summary},
            inhibits=(),
            remediate=None,
            provenance=(),
            expr="",
            clear=None,
            value=None,
            match=(),
            params={},
        )
        condition = Condition(rule, {}, True, None, None, {"summary": summary})
        await self._apply(record, [condition], "server", resolve_missing=False)

    def new_critical_alerts(self, agent_id: str, since: float) -> list[str]:
        """Return the names of an agent's open critical alerts that started at or after `since`."""
        return [
            alert.rule_name
            for alert in self.manager.open_alerts_of(agent_id)
            if alert.severity == "critical" and alert.started_at >= since
        ]

    def consent_for(self, record: AgentRecord) -> int:
        """Return the consent mode (rmm.v1.ConsentMode) the policies set for an agent."""
        if self.policies is None:
            return commands_pb2.CONSENT_NOTIFY
        context, _ = agent_context(record, None, self.clock())
        return self.policies.consent_for(context).number

    def explain(self, record: AgentRecord) -> list[EffectiveRule]:
        """Return every rule in force for an agent, with where each value came from."""
        if self.policies is None:
            return []
        context, _ = agent_context(record, None, self.clock())
        return self.policies.explain(context)

    def explain_patches(self, record: AgentRecord) -> list[tuple[str, str, list[Provenance]]]:
        """Return the agent's patch settings as (setting, value, who set it), none without
        policies (PatchPolicy documents load and reload with the alert policies)."""
        if self.policies is None:
            return []
        context, _ = agent_context(record, None, self.clock())
        return self.policies.patches.explain(context)

    def record_failure(self, failure: NotificationFailure) -> None:
        """Persist a notification that failed for good (called from the dispatcher)."""
        self.suppressions.record_failure(failure)


def _same(one: AlertRecord, other: AlertRecord, key: str) -> bool:
    # Site names repeat across clients ("hq"), so a site is the same only within one client.
    if key == "agent":
        return one.agent_id == other.agent_id
    if key == "site":
        return (one.client, one.site) == (other.client, other.site)
    if key == "client":
        return one.client == other.client
    if key == "hostname":
        # A hostname is what an agent says of itself: any agent of any client can say another's.
        # The same host is the same hostname within one client and site, never across them.
        return (one.client, one.site, one.hostname) == (other.client, other.site, other.hostname)
    return alert_fields(one).get(key) == alert_fields(other).get(key)
