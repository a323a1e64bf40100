"""Tickets (work orders): tiers, status, SLA timers from the client's contract, escalation when
a timer runs out, notes, assignment, time entries that draw down block hours (docs/desk.md).

Every change is one transaction with the event that records it, and the ticket's whole story
(events, time) stays on it, so the next tier reads what was already done. Nothing is deleted:
closing and archiving are states, and only tier3 and admin may close a ticket that was never
resolved, or archive one. The clock is a parameter, so SLA timers run on a controllable one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rmm_common.durations import format_duration
from rmm_common.errors import InvalidArgument, NotFound, PermissionDenied
from rmm_common.helpdesk import new_code
from rmm_common.tokens import new_ident
from rmm_proto import commands_pb2
from rmm_server.commands import decode_result
from rmm_server.desk.contracts import (
    BLOCK_HOURS,
    SEVERITIES,
    TIME_AND_MATERIALS,
    BusinessHours,
    business_calendar,
)
from rmm_server.roles import Role
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.alerts import AlertRecord
from rmm_server.storage.desk import ContractRecord, DeskStore, SiteRecord
from rmm_server.storage.tickets import (
    OPEN_STATUSES,
    TicketEvent,
    TicketQuery,
    TicketRecord,
    TicketStore,
    TimeEntry,
)

log = logging.getLogger(__name__)

TIERS = ("L1", "L2", "L3")
STATUSES = ("new", "in-progress", "waiting", "resolved", "closed")
SETTABLE = ("in-progress", "waiting")  # what a note may move a ticket to
MAX_TITLE = 500
MAX_CATEGORY = 100
MAX_TEXT = 20_000
MAX_ENTRY_MINUTES = 24 * 60
MAX_LIST = 5000
ALERT_BY = "alert"  # who opens, reopens and resolves a ticket an alert drives
FACT_METRICS = 20  # the agent's latest metrics copied onto a ticket an alert opens


def business_deadline(start: float, seconds: float, hours: BusinessHours, zone: str) -> float:
    """Return when `seconds` of business time after `start` have passed, on the local clock of
    `zone` (business hours are wall-clock hours: a DST change moves them with it; holidays
    have none)."""
    return hours.deadline(start, seconds, zone)


def client_zone(sites: Iterable[SiteRecord]) -> str:
    """Return the time zone a client keeps when no one site is meant (a ticket of no site, a
    contract report): the one its sites share, else its site with the most agents' (by name
    on a tie), UTC without sites."""
    busiest = min(sites, key=lambda site: (-site.agents, site.name), default=None)
    return busiest.time_zone if busiest is not None else "UTC"


def alert_facts(alert: AlertRecord, agent: AgentRecord) -> str:
    """Return what L1 needs to start from: the alert and the agent's latest metrics."""
    lines = [
        f"alert {alert.id}: rule {alert.rule_name} ({alert.rule_key}), severity "
        f"{alert.severity}, value {alert.value}",
        f"agent {agent.id} ({agent.hostname}, {agent.os_name or agent.os} "
        f"{agent.os_version}), {agent.client}/{agent.site}",
    ]
    lines.extend(f"{name}: {text}" for name, text in sorted(alert.annotations.items()))
    if alert.series_labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.series_labels.items()))
        lines.append(f"series: {labels}")
    metrics = sorted(agent.summary.items())[:FACT_METRICS]
    if metrics:
        lines.append("latest metrics: " + ", ".join(f"{k}={v}" for k, v in metrics))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class TimeLogged:
    """A time entry's outcome: the ticket, and what it did to the client's contract."""

    ticket: TicketRecord
    used_hours: float  # in the entry's period, on all the client's tickets
    hours_left: float | None  # block hours only
    warning: str  # "" unless the client's block hours are under its threshold
    billable_amount: float | None  # time and materials only


EscalationHook = Callable[[TicketRecord, str], None]
AuditHook = Callable[[str, str, str, Mapping[str, Any]], object]


class Tickets:
    """Open, change and read tickets."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        on_escalated: list[EscalationHook] | None = None,
        on_hours_low: list[Callable[[TicketRecord, str], None]] | None = None,
        audit: AuditHook | None = None,
        on_event: list[Callable[[TicketRecord, TicketEvent], None]] | None = None,
    ) -> None:
        self.records = TicketStore(store)
        self.desk = DeskStore(store)
        self.clock = clock
        # Told of every escalation (the ticket at its new tier, the reason): how that tier hears.
        self.on_escalated = on_escalated if on_escalated is not None else []
        self.on_hours_low = on_hours_low if on_hours_low is not None else []
        # Writes the audit entry of a change no operator call made (an alert's, the SLA's):
        # operator calls are audited by the gRPC guard.
        self.audit = audit
        # Told each event as it is written, with the ticket as it is then (the PSA webhook).
        self.on_event = on_event if on_event is not None else []

    def _emit(self, ticket: TicketRecord) -> TicketRecord:
        """Hand the ticket's newest event to the on_event hooks (the PSA webhook); return it."""
        if ticket.events:
            for hook in self.on_event:
                try:
                    hook(ticket, ticket.events[-1])
                except Exception:  # a hook's failure must not undo or hide the change
                    log.exception("an event hook failed for ticket %d", ticket.id)
        return ticket

    def _audited(self, action: str, ticket: TicketRecord, details: dict[str, Any]) -> None:
        if self.audit is not None:
            try:
                self.audit(
                    ALERT_BY if action != "TicketSlaEscalation" else "sla",
                    action,
                    str(ticket.id),
                    details,
                )
            except Exception:  # the change is made; its entry's loss is logged loudly
                log.exception("AUDIT ENTRY LOST: %s on ticket %d", action, ticket.id)

    # --- opening ---------------------------------------------------------------------------

    def open(
        self,
        client: str,
        title: str,
        priority: str,
        by: str,
        tier: str = "L1",
        site: str = "",
        agent_id: str = "",
        alert_id: str = "",
        alert_fingerprint: str = "",
        facts: str = "",
        snapshot: str = "",
        category: str = "",
    ) -> TicketRecord:
        """Open a ticket for `client`, its SLA timers set from the client's contract; `facts`
        (an alert and the agent's latest metrics) go on its first event, `snapshot` (a user's
        help request's diagnostics, JSON) is kept with it. Every ticket gets its verification
        code, which the user checks a caller with (rmm-agent verify)."""
        client, title, site = client.strip(), title.strip(), site.strip()
        priority, tier = priority.strip().lower() or "warning", tier.strip().upper() or "L1"
        problems = []
        if not title or len(title) > MAX_TITLE:
            problems.append(f"a ticket needs a title of 1-{MAX_TITLE} characters")
        if priority not in SEVERITIES:
            problems.append(f"priority {priority!r} is not one of {', '.join(SEVERITIES)}")
        if tier not in TIERS:
            problems.append(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        category = category.strip()
        if len(category) > MAX_CATEGORY or not category.isprintable():
            problems.append(
                f"a category is at most {MAX_CATEGORY} printable characters, e.g. printing"
            )
        if problems:
            raise InvalidArgument("ticket not opened: " + "; ".join(problems))
        client_id = self.desk.client_id(client)
        if site:
            zone = self.desk.get_site(client, site).time_zone
        else:
            zone = client_zone(self.desk.list_sites(client))
        now = self.clock()
        ack_due, resolve_due = self._dues(client, priority, now, zone)
        record = TicketRecord(
            id=0,
            client_id=client_id,
            client=client,
            site=site,
            agent_id=agent_id,
            alert_id=alert_id,
            title=title,
            tier=tier,
            priority=priority,
            status="new",
            assignee="",
            opened_at=now,
            opened_by=by,
            updated_at=now,
            ack_due_at=ack_due,
            resolve_due_at=resolve_due,
            alert_fingerprint=alert_fingerprint,
            verify_code=new_code(),
            snapshot=snapshot,
            category=category,
        )
        sla = (
            f"; SLA: acknowledge by {_utc(ack_due)}, resolve by {_utc(resolve_due)}"
            if ack_due is not None and resolve_due is not None
            else "; no SLA target (no contract, or none for this priority)"
        )
        text = f"opened at {tier}, {priority}: {title}{sla}" + (f"\n{facts}" if facts else "")
        ticket_id = self.records.open(record, TicketEvent(now, by, "opened", text))
        log.info("ticket %d opened for %s by %s at %s", ticket_id, client, by, tier)
        return self._emit(self.records.get(ticket_id))

    def _dues(
        self, client: str, priority: str, now: float, zone: str
    ) -> tuple[float | None, float | None]:
        try:
            contract = self.desk.get_contract(client)
        except NotFound:
            return None, None
        target = contract.sla.get(priority)
        if target is None:
            return None, None
        if target.clock == "business":
            hours = business_calendar(contract)
            return (
                business_deadline(now, target.acknowledge_seconds, hours, zone),
                business_deadline(now, target.resolve_seconds, hours, zone),
            )
        return now + target.acknowledge_seconds, now + target.resolve_seconds

    # --- commands run for a ticket (`rmm run --ticket N`) -----------------------------------

    def check_open(self, ticket_id: int) -> TicketRecord:
        """Return the ticket when work may be done for it, or raise saying why not."""
        ticket = self.records.get(ticket_id)
        _still_open(ticket, "run a command for")
        return ticket

    def run_started(self, ticket_id: int, run: Any, by: str) -> TicketRecord:
        """Write on the ticket what a run sends, to which agents, with its command ids."""
        what = run.action
        payload = run.payload
        if run.action == "run_script":
            name = getattr(payload, "library_name", "")
            body = getattr(payload, "body", "")
            what = f"library script {name}" if name else f"script {body.strip()[:200]!r}"
        targets = ", ".join(
            f"{t.agent.hostname or t.agent.id} ({t.command_id or 'not sent'})" for t in run.targets
        )
        text = f"run {run.id}: {what} on {len(run.targets)} agent(s): {targets or 'none'}"
        return self._command_event(ticket_id, text, by)

    def run_ended(self, ticket_id: int, run_id: str, outcomes: list[Any], by: str) -> TicketRecord:
        """Write each agent's outcome of a run on the ticket (`rmm commands show ID`: output)."""
        parts = []
        for outcome in outcomes:
            status = commands_pb2.CommandStatus.Name(outcome.status).removeprefix("COMMAND_")
            exit_code = ""
            result = decode_result(outcome.record) if outcome.record is not None else None
            if result is not None and result.WhichOneof("result") == "script":
                exit_code = f", exit {result.script.exit_code}"
            error = f": {outcome.error}" if outcome.error else ""
            parts.append(
                f"{outcome.hostname or outcome.agent_id} {status.lower()}{exit_code}{error}"
            )
        text = f"run {run_id} ended: " + ("; ".join(parts) or "no outcome")
        return self._command_event(ticket_id, text, by)

    def _command_event(self, ticket_id: int, text: str, by: str) -> TicketRecord:
        def decide(_ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            return {}, TicketEvent(self.clock(), by, "command", text[:MAX_TEXT])

        return self._emit(self.records.change(ticket_id, decide))

    # --- alerts ----------------------------------------------------------------------------

    def alert_fired(self, alert: AlertRecord, tier: str, agent: AgentRecord) -> TicketRecord:
        """Open a ticket for a firing alert at `tier`, or reopen (or note on) the ticket of
        the same problem (rule, agent, series) when it has one that is not closed."""
        now = self.clock()
        said = f"alert {alert.id} ({alert.rule_name}, {alert.severity}) fired on {alert.hostname}"
        existing = self.records.latest_for_alert(alert.fingerprint)
        if existing is not None and existing.status in (*OPEN_STATUSES, "resolved"):

            def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
                values: dict[str, Any] = {"alert_id": alert.id}
                if ticket.status == "resolved":
                    values.update(status="in-progress", resolved_at=None)
                    return values, TicketEvent(now, ALERT_BY, "status", f"reopened: {said} again")
                return values, TicketEvent(now, ALERT_BY, "note", f"{said} again")

            changed = self._emit(self.records.change(existing.id, decide))
            self._audited(
                "TicketFromAlert", changed, {"alert": alert.id, "event": changed.events[-1].text}
            )
            return changed
        summary = alert.annotations.get("summary", "")
        title = f"{alert.rule_name} on {alert.hostname}" + (f": {summary}" if summary else "")
        # Every name an agent carries has its records; an agent enrolled before a record was
        # made for its client keeps working too.
        self.desk.ensure_place(alert.client, alert.site, ALERT_BY, now, new_ident)
        opened = self.open(
            alert.client,
            title[:MAX_TITLE],
            alert.severity,
            ALERT_BY,
            tier,
            alert.site,
            alert.agent_id,
            alert.id,
            alert.fingerprint,
            facts=alert_facts(alert, agent),
        )
        self._audited(
            "TicketFromAlert", opened, {"alert": alert.id, "event": "opened", "tier": tier}
        )
        return opened

    def alert_resolved(self, alert: AlertRecord) -> TicketRecord | None:
        """Resolve the open ticket an alert opened, when the alert resolves."""
        ticket = self.records.latest_for_alert(alert.fingerprint, alert.id)
        if ticket is None or ticket.status not in OPEN_STATUSES:
            return None
        now = self.clock()

        def decide(current: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            if current.status not in OPEN_STATUSES:
                raise _NothingDue
            text = f"alert {alert.id} ({alert.rule_name}) resolved"
            values = {
                "status": "resolved",
                "resolved_at": now,
                "resolution": text,
                **_acknowledged(current, now),
            }
            return values, TicketEvent(now, ALERT_BY, "status", f"resolved: {text}")

        try:
            resolved = self._emit(self.records.change(ticket.id, decide))
        except _NothingDue:
            return None
        self._audited("TicketFromAlert", resolved, {"alert": alert.id, "event": "resolved"})
        return resolved

    # --- reading ---------------------------------------------------------------------------

    def get(self, ticket_id: int) -> TicketRecord:
        """Return a ticket with its whole story."""
        return self.records.get(ticket_id)

    def find(
        self,
        client: str = "",
        status: str = "",
        tier: str = "",
        archived: bool = False,
        limit: int = 500,
    ) -> list[TicketRecord]:
        """Return tickets, newest first."""
        status, tier = status.strip().lower(), tier.strip().upper()
        if status and status != "open" and status not in STATUSES:
            raise InvalidArgument(f"status {status!r} is not open or one of {', '.join(STATUSES)}")
        if tier and tier not in TIERS:
            raise InvalidArgument(f"tier {tier!r} is not one of {', '.join(TIERS)}")
        client_id = self.desk.client_id(client.strip()) if client.strip() else ""
        limit = min(max(limit, 1), MAX_LIST)
        return self.records.find(TicketQuery(client_id, status, tier, archived, limit))

    # --- changes ---------------------------------------------------------------------------

    def note(self, ticket_id: int, text: str, status: str, by: str) -> TicketRecord:
        """Add a note; with `status`, move the ticket to in-progress or waiting too."""
        text, status = text.strip(), status.strip().lower()
        if not text or len(text) > MAX_TEXT:
            raise InvalidArgument(f"a note needs 1-{MAX_TEXT} characters of text")
        if status and status not in SETTABLE:
            raise InvalidArgument(
                f"a note may set status {' or '.join(SETTABLE)}, not {status!r} (resolve with "
                "`rmm tickets resolve`)"
            )

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            _still_open(ticket, "add a note to")
            now = self.clock()
            values: dict[str, Any] = {}
            said = text
            if status and status != ticket.status:
                values = {"status": status, **_acknowledged(ticket, now)}
                said = f"[{ticket.status} -> {status}] {text}"
            return values, TicketEvent(now, by, "note", said)

        return self._emit(self.records.change(ticket_id, decide))

    def assign(self, ticket_id: int, assignee: str, by: str) -> TicketRecord:
        """Give the ticket to an operator; a new ticket moves to in-progress."""
        assignee = assignee.strip()
        if not assignee:
            raise InvalidArgument("name the operator to assign the ticket to (--to NAME)")

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            _still_open(ticket, "assign")
            now = self.clock()
            values: dict[str, Any] = {"assignee": assignee, **_acknowledged(ticket, now)}
            if ticket.status == "new":
                values["status"] = "in-progress"
            return values, TicketEvent(now, by, "assign", f"assigned to {assignee}")

        return self._emit(self.records.change(ticket_id, decide))

    def escalate(self, ticket_id: int, reason: str, by: str) -> TicketRecord:
        """Move the ticket up one tier, by hand, saying why; tell that tier."""
        reason = reason.strip()
        if not reason:
            raise InvalidArgument("say why the ticket goes up a tier (--reason TEXT)")

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            _still_open(ticket, "escalate")
            if ticket.tier == TIERS[-1]:
                raise InvalidArgument(
                    f"ticket {ticket.id} is at {ticket.tier}, the highest tier: there is no one "
                    "above to escalate to"
                )
            higher = TIERS[TIERS.index(ticket.tier) + 1]
            text = f"escalated {ticket.tier} -> {higher}: {reason}"
            return {"tier": higher}, TicketEvent(self.clock(), by, "escalate", text)

        changed = self._emit(self.records.change(ticket_id, decide))
        self._tell(changed, changed.events[-1].text)
        return changed

    def escalate_due(self) -> list[TicketRecord]:
        """Escalate every open ticket one of whose SLA timers ran out (each breach once)."""
        now = self.clock()
        escalated = []
        for ticket_id in self.records.due(now):

            def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
                breaches = [b for b in ticket.sla_breaches.split(",") if b]
                ran_out = []
                if (
                    ticket.ack_due_at is not None
                    and ticket.ack_due_at <= now
                    and ticket.acknowledged_at is None
                    and "acknowledge" not in breaches
                ):
                    ran_out.append(("acknowledge", ticket.ack_due_at))
                if (
                    ticket.resolve_due_at is not None
                    and ticket.resolve_due_at <= now
                    and "resolve" not in breaches
                ):
                    ran_out.append(("resolve", ticket.resolve_due_at))
                if not ran_out or ticket.status not in OPEN_STATUSES:
                    raise _NothingDue
                values: dict[str, Any] = {
                    "sla_breaches": ",".join([*breaches, *(name for name, _ in ran_out)])
                }
                missed = " and ".join(f"to {name} (due {_utc(due)})" for name, due in ran_out)
                if ticket.tier != TIERS[-1]:
                    higher = TIERS[TIERS.index(ticket.tier) + 1]
                    values["tier"] = higher
                    text = f"escalated {ticket.tier} -> {higher}: the SLA target {missed} ran out"
                else:
                    text = f"SLA target {missed} ran out at {ticket.tier}, the highest tier"
                return values, TicketEvent(now, "sla", "escalate", text)

            try:
                changed = self._emit(self.records.change(ticket_id, decide))
            except _NothingDue:
                continue  # acknowledged or resolved between the query and the lock
            self._audited(
                "TicketSlaEscalation",
                changed,
                {"tier": changed.tier, "event": changed.events[-1].text},
            )
            self._tell(changed, changed.events[-1].text)
            escalated.append(changed)
        return escalated

    def _tell(self, ticket: TicketRecord, reason: str) -> None:
        log.warning(
            "TICKET ESCALATED: ticket %d (%s) of %s is at %s: %s",
            ticket.id,
            ticket.title,
            ticket.client,
            ticket.tier,
            reason,
            extra={"ticket": ticket.id, "tier": ticket.tier},
        )
        for hook in self.on_escalated:
            try:
                hook(ticket, reason)
            except Exception:  # a failing notifier must not undo or stop the escalation
                log.exception("telling %s of ticket %d failed", ticket.tier, ticket.id)

    def resolve(self, ticket_id: int, resolution: str, by: str) -> TicketRecord:
        """Resolve the ticket, saying how."""
        resolution = resolution.strip()
        if not resolution or len(resolution) > MAX_TEXT:
            raise InvalidArgument("say how the problem was resolved (--resolution TEXT)")

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            _still_open(ticket, "resolve")
            now = self.clock()
            values = {
                "status": "resolved",
                "resolved_at": now,
                "resolution": resolution,
                **_acknowledged(ticket, now),
            }
            return values, TicketEvent(now, by, "status", f"resolved: {resolution}")

        return self._emit(self.records.change(ticket_id, decide))

    def reopen(self, ticket_id: int, reason: str, by: str) -> TicketRecord:
        """Reopen a resolved or closed ticket (not an archived one), saying why."""
        reason = reason.strip()
        if not reason:
            raise InvalidArgument("say why the ticket is reopened (--reason TEXT)")

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            if ticket.archived_at is not None:
                raise InvalidArgument(f"ticket {ticket.id} is archived: open a new one")
            if ticket.status in OPEN_STATUSES:
                raise InvalidArgument(f"ticket {ticket.id} is {ticket.status}: it is open already")
            values = {"status": "in-progress", "resolved_at": None, "closed_at": None}
            return values, TicketEvent(self.clock(), by, "status", f"reopened: {reason}")

        return self._emit(self.records.change(ticket_id, decide))

    def close(self, ticket_id: int, role: Role, by: str) -> TicketRecord:
        """Close a resolved ticket; closing one never resolved needs tier3 or admin."""

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            if ticket.archived_at is not None or ticket.status == "closed":
                raise InvalidArgument(f"ticket {ticket.id} is closed already")
            if ticket.status != "resolved" and role < Role.TIER3:
                raise PermissionDenied(
                    f"operator {by!r} has role {role.name.lower()}; closing ticket {ticket.id} "
                    f"without a resolution needs tier3 or higher: resolve it first "
                    f"(`rmm tickets resolve {ticket.id} --resolution ...`)"
                )
            now = self.clock()
            how = "closed" if ticket.status == "resolved" else "closed without resolution"
            return {"status": "closed", "closed_at": now}, TicketEvent(now, by, "status", how)

        return self._emit(self.records.change(ticket_id, decide))

    def archive(self, ticket_id: int, role: Role, by: str) -> TicketRecord:
        """Archive a ticket (tier3 and admin only): hidden from lists, never deleted."""
        if role < Role.TIER3:
            raise PermissionDenied(
                f"operator {by!r} has role {role.name.lower()}; archiving a ticket needs tier3 "
                "or higher"
            )

        def decide(ticket: TicketRecord) -> tuple[dict[str, Any], TicketEvent]:
            if ticket.archived_at is not None:
                raise InvalidArgument(f"ticket {ticket.id} is archived already")
            now = self.clock()
            values = {"archived_at": now, "archived_by": by}
            if ticket.status != "closed":
                values["status"] = "closed"
                values["closed_at"] = now
            return values, TicketEvent(now, by, "status", "archived")

        return self._emit(self.records.change(ticket_id, decide))

    def log_time(self, ticket_id: int, minutes: float, note: str, by: str) -> TimeLogged:
        """Log work on a ticket; it draws down block hours or is billed at the T&M rate."""
        note = note.strip()
        if not math.isfinite(minutes) or minutes <= 0 or minutes > MAX_ENTRY_MINUTES:
            raise InvalidArgument(
                f"a time entry is more than 0 and at most {MAX_ENTRY_MINUTES} minutes, not "
                f"{minutes:g}: log a longer job as one entry a day"
            )
        ticket = self.records.get(ticket_id)
        try:
            contract: ContractRecord | None = self.desk.get_contract(ticket.client)
        except NotFound:
            contract = None
        now = self.clock()
        period = datetime.fromtimestamp(now, UTC).strftime("%Y-%m")
        amount = None
        if contract is not None and contract.type == TIME_AND_MATERIALS and contract.rate:
            amount = round(minutes / 60 * contract.rate, 2)

        def decide(current: TicketRecord, _conn: Any) -> tuple[TimeEntry, TicketEvent]:
            if current.archived_at is not None or current.status == "closed":
                raise InvalidArgument(
                    f"ticket {current.id} is closed: time goes on an open or resolved ticket "
                    f"(reopen it with `rmm tickets reopen {current.id}`)"
                )
            billed = f", billable {amount:.2f} {contract.currency}" if amount and contract else ""
            text = f"{format_duration(minutes * 60)} logged{billed}" + (f": {note}" if note else "")
            return (
                TimeEntry(now, by, minutes, note, period, amount),
                TicketEvent(now, by, "time", text),
            )

        changed, used = self.records.log_time(ticket_id, decide)
        self._emit(changed)
        left = None
        warning = ""
        if contract is not None and contract.type == BLOCK_HOURS and contract.hours_per_period:
            left = contract.hours_per_period - used / 60
            threshold = contract.warn_below_hours
            if left < 0:
                warning = (
                    f"client {contract.client!r} has used {used / 60:g} h of its "
                    f"{contract.hours_per_period:g} h block for {period}: {-left:g} h over"
                )
            elif threshold is not None and left < threshold:
                warning = (
                    f"client {contract.client!r} has {left:g} h of its "
                    f"{contract.hours_per_period:g} h block left for {period}, under its "
                    f"warning threshold of {threshold:g} h"
                )
        if warning:
            log.warning("BLOCK HOURS LOW: %s (ticket %d)", warning, ticket_id)
            for hook in self.on_hours_low:
                try:
                    hook(changed, warning)
                except Exception:  # a failing notifier must not lose the time entry
                    log.exception("warning of low block hours failed for ticket %d", ticket_id)
        return TimeLogged(changed, used / 60, left, warning, amount)


class _NothingDue(Exception):
    """Raised inside a change to leave a ticket that needs no escalation any more untouched."""


def _still_open(ticket: TicketRecord, doing: str) -> None:
    if ticket.archived_at is not None:
        raise InvalidArgument(f"ticket {ticket.id} is archived: cannot {doing} it")
    if ticket.status not in OPEN_STATUSES:
        raise InvalidArgument(
            f"ticket {ticket.id} is {ticket.status}: reopen it first (`rmm tickets reopen "
            f"{ticket.id} --reason ...`) to {doing} it"
        )


def _acknowledged(ticket: TicketRecord, now: float) -> dict[str, Any]:
    return {} if ticket.acknowledged_at is not None else {"acknowledged_at": now}


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
