"""Each agent's pending updates on the server: taken from its reports when its list changed,
decided (approval.py) when the list, a manual record or the policies change, and closed by
install outcomes.

The patches collector sends a digest of its list in every report and the list itself only when
it changed (or every 6 h, rmm_agent/collectors/patches.py). `observe` is called once per stored
report: when the digest is the one held, it costs one dict lookup and a small JSON parse; the
database is touched only on a change. A report with an unknown digest and no list (the one that
carried it was lost, or this server's database is new) is noted; the agent's periodic resend
brings the list within 6 h. A server restart needs no resend: the lists are in the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rmm_common.logs import agent_label
from rmm_proto import agent_pb2, commands_pb2
from rmm_server.keyed_locks import KeyedLocks
from rmm_server.patching.approval import ManualIndex, compile_rules, decide, decide_for
from rmm_server.patching.model import (
    AGENT,
    APPROVE,
    CLIENT,
    DECLINE,
    EVERYWHERE,
    MANUAL_SCOPES,
    SITE,
    Decision,
    ManualDecision,
    PatchSettings,
    UpdateFacts,
)
from rmm_server.patching.policy import PatchPolicySet
from rmm_server.policy.model import AgentContext
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.patches import DecisionRow, PatchStore, ResultRow, UpdateRow

log = logging.getLogger(__name__)

COLLECTOR = "patches"
REBOOT_SAMPLE = ("system", "system_reboot_required")
# Column widths of patch_updates (an agent's text longer than these is cut, not refused).
WIDTHS = {
    "update_id": 400,
    "name": 400,
    "current": 200,
    "available": 200,
    "backend": 64,
    "source": 400,
    "severity": 64,
    "classification": 32,
    "hardware_ids": 4000,
}
# InstallUpdatesResult statuses by their stored word.
INSTALL_WORDS = {
    commands_pb2.UPDATE_INSTALLED: "installed",
    commands_pb2.UPDATE_FAILED: "failed",
    commands_pb2.UPDATE_SKIPPED: "skipped",
    commands_pb2.UPDATE_LOCKED: "locked",
    commands_pb2.UPDATE_INTERRUPTED: "interrupted",
}

SettingsFor = Callable[[AgentRecord], PatchSettings]
AgentOf = Callable[[str], AgentRecord | None]
# Called with each install outcome's word (installed, failed, ...): the metrics count them.
OutcomeSink = Callable[[str], None]


def list_digest(updates: Any, truncated: bool) -> str:
    """Return the digest the agent gives its list (rmm_agent.collectors.patches.list_digest),
    for agents older than the digest, which send their list every time."""
    listed = {"updates": updates, "truncated": bool(truncated)}
    text = json.dumps(listed, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def no_policy(agent: AgentRecord) -> PatchSettings:
    """Return the settings of an agent no patch policy covers: only operators approve."""
    return PatchSettings(agent_id=agent.id)


def settings_from(policies: Callable[[], PatchPolicySet | None]) -> SettingsFor:
    """Return the settings function over the patch policies in force (read at each call, so a
    reload is seen at once)."""

    def settings_for(agent: AgentRecord) -> PatchSettings:
        found = policies()
        if found is None:
            return no_policy(agent)
        context = AgentContext(
            agent_id=agent.id,
            hostname=agent.hostname,
            client=agent.client,
            site=agent.site,
            tags=frozenset(agent.tags),
            os=agent.os,
            interval_seconds=float(agent.interval_seconds),
            seconds_since_report=None,
            info={},
        )
        return found.settings_for(context)

    return settings_for


def _cut(value: str, column: str) -> str:
    return value[: WIDTHS[column]]


def parse_updates(entries: Sequence[Any]) -> tuple[list[UpdateFacts], list[str]]:
    """Return the updates of an agent's list and what was wrong with the entries left out."""
    facts: dict[str, UpdateFacts] = {}
    problems: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            problems.append(f"entry {index}: not an object with a string id")
            continue
        try:
            update = UpdateFacts.from_dict(entry)
        except (TypeError, ValueError) as error:
            problems.append(f"entry {index} ({entry['id'][:80]!r}): {error}")
            continue
        facts[update.id] = update  # a repeated id: the later entry stands
    return list(facts.values()), problems


def to_row(agent_id: str, update: UpdateFacts, first_seen: float, decision: Decision) -> UpdateRow:
    """Return the stored row of one update on one agent."""
    return UpdateRow(
        agent_id=agent_id,
        update_id=_cut(update.id, "update_id"),
        name=_cut(update.name, "name"),
        current=None if update.current is None else _cut(update.current, "current"),
        available=_cut(update.available, "available"),
        classification=_cut(update.classification, "classification"),
        backend=_cut(update.backend, "backend"),
        source=_cut(update.source, "source"),
        severity=_cut(update.severity, "severity"),
        published=update.published,
        size_bytes=update.size_bytes,
        reboot_required=update.reboot_required,
        first_seen=first_seen,
        decision=decision.state,
        why=decision.why,
        not_before=decision.not_before,
        hardware_ids=_cut(join_hardware_ids(update.hardware_ids), "hardware_ids"),
    )


def join_hardware_ids(ids: Sequence[str]) -> str:
    """Return hardware ids as stored: one a line (a line break inside one cannot split it)."""
    return "\n".join(" ".join(i.split()) for i in ids if i.strip())


def row_facts(row: UpdateRow) -> UpdateFacts:
    """Return the update a stored row describes."""
    return UpdateFacts(
        id=row.update_id,
        name=row.name,
        current=row.current,
        available=row.available,
        classification=row.classification,
        backend=row.backend,
        severity=row.severity,
        published=row.published,
        size_bytes=row.size_bytes,
        reboot_required=row.reboot_required,
        source=row.source,
        hardware_ids=tuple(row.hardware_ids.splitlines()),
    )


def to_manual(row: DecisionRow) -> ManualDecision:
    """Return a stored approve/decline record as approval.py reads it."""
    return ManualDecision(
        update=row.update_pattern,
        action=row.action,
        scope=row.scope,
        target=row.target,
        by=row.decided_by,
        at=row.decided_at,
        comment=row.comment,
    )


class PatchInventory:
    """Keep each agent's pending updates and their decisions in the database."""

    def __init__(
        self,
        store: Store,
        agent_of: AgentOf,
        settings_for: SettingsFor = no_policy,
        clock: Callable[[], float] = time.time,
        on_outcome: OutcomeSink | None = None,
        agents: Callable[[], Iterable[AgentRecord]] | None = None,
    ) -> None:
        self.patches = PatchStore(store)
        # Every agent (revoked ones too: their rows stay until they are removed).
        self.agents = agents
        self.agent_of = agent_of
        self.settings_for = settings_for
        self.clock = clock
        self.on_outcome = on_outcome
        # The digest of the list held per agent, loaded once from the database.
        self._held: dict[str, str] | None = None
        self._load_lock = asyncio.Lock()
        # The digest each agent last reported without its list (noted once per digest).
        self._lacking: dict[str, str] = {}
        # Whether each agent waits for a reboot, as its latest report said.
        self._reboot: dict[str, bool] = {}
        self._observing = KeyedLocks()

    # --- ingest ----------------------------------------------------------------------------

    def chained(
        self, after_store: Callable[..., Awaitable[None]]
    ) -> Callable[..., Awaitable[None]]:
        """Return the ingestor's after-store call: `after_store` (alerts), then `observe`, each
        failure its own (a patch list that cannot be stored must not stop alerting)."""

        async def both(agent: AgentRecord, report: agent_pb2.Report, *rest: Any) -> None:
            try:
                await after_store(agent, report, *rest)
            finally:
                try:
                    await self.observe(agent, report)
                except Exception:
                    log.exception(
                        "storing the pending updates of %s failed (kept until its list changes "
                        "or is resent)",
                        agent_label(agent.hostname, agent.id),
                    )

        return both

    async def observe(self, agent: AgentRecord, report: agent_pb2.Report) -> None:
        """Take what a stored report says about the agent's updates and reboot; cheap when
        nothing changed. What writes is done one report of an agent at a time, in the order
        they came (a resent batch is processed side by side: two lists stored at once could
        leave the older one held)."""
        reboot = _reboot_required(report)
        listed = _listed(_collector_info(report))
        held = await self._held_digests()
        if (
            agent.id not in self._observing  # else it waits its turn behind the earlier one
            and (reboot is None or self._reboot.get(agent.id) == reboot)
            and (listed is None or held.get(agent.id) == listed.digest)
        ):
            return  # the usual report: nothing to write
        async with self._observing.hold(agent.id):
            await self._take(agent, reboot, listed)

    async def _take(self, agent: AgentRecord, reboot: bool | None, listed: _Listed | None) -> None:
        if reboot is not None and self._reboot.get(agent.id) != reboot:
            await asyncio.to_thread(self.patches.set_reboot_pending, agent.id, reboot)
            self._reboot[agent.id] = reboot
        if listed is None:
            return
        held = await self._held_digests()
        if held.get(agent.id) == listed.digest:
            return
        if listed.updates is None:
            await self._lacking_list(agent, listed.digest)
            return
        await asyncio.to_thread(
            self._store_list, agent, listed.updates, listed.digest, listed.truncated
        )
        held[agent.id] = listed.digest
        self._lacking.pop(agent.id, None)

    async def _held_digests(self) -> dict[str, str]:
        if self._held is None:
            async with self._load_lock:
                if self._held is None:
                    self._held = await asyncio.to_thread(self.patches.digests)
        return self._held

    async def _lacking_list(self, agent: AgentRecord, digest: str) -> None:
        """Note a digest reported without its list: another replica may hold it; else wait."""
        if self._lacking.get(agent.id) == digest:
            return
        self._lacking[agent.id] = digest
        state = await asyncio.to_thread(self.patches.agent_state, agent.id)
        if state is not None and state.digest == digest:  # stored by another replica
            assert self._held is not None
            self._held[agent.id] = digest
            return
        await asyncio.to_thread(self.patches.note_reported_digest, agent.id, digest)
        log.info(
            "agent %s reported a list of pending updates this server does not hold (digest "
            "%s...) without the list: the report that carried it was lost or this database "
            "is new; the agent sends it again within 6 h",
            agent_label(agent.hostname, agent.id),
            digest[:12],
        )

    def _store_list(
        self, agent: AgentRecord, entries: list[Any], digest: str, truncated: bool
    ) -> None:
        now = self.clock()
        facts, problems = parse_updates(entries)
        if problems:
            log.warning(
                "agent %s listed %d pending updates the server cannot read (left out): %s",
                agent_label(agent.hostname, agent.id),
                len(problems),
                "; ".join(problems[:5]),
            )
        old = {row.update_id: row for row in self.patches.agent_updates(agent.id)}
        manual = ManualIndex(to_manual(r) for r in self.patches.decision_records())
        settings = self.settings_for(agent)
        upserts: list[UpdateRow] = []
        for update in facts:
            previous = old.get(update.id)
            first_seen = previous.first_seen if previous is not None else now
            decision = decide_for(
                update, settings, manual, agent.client, agent.site, now, first_seen
            )
            row = to_row(agent.id, update, first_seen, decision)
            if previous is not None and previous.same_facts(row):
                continue  # unchanged: its decision and last outcome stay
            upserts.append(row)
        listed = {_cut(update.id, "update_id") for update in facts}
        removed = [update_id for update_id in old if update_id not in listed]
        self.patches.write_list(agent.id, upserts, removed, digest, truncated, now)
        log.debug(
            "agent %s: %d pending updates (%d new or changed, %d gone)",
            agent.id,
            len(facts),
            len(upserts),
            len(removed),
        )

    # --- decisions -------------------------------------------------------------------------

    def record_decisions(
        self,
        update_patterns: Sequence[str],
        action: str,
        scopes: Sequence[tuple[str, str]],
        by: str,
        comment: str = "",
    ) -> int:
        """Store approve/decline records for each pattern in each (scope, target) and give the
        agents' rows the records' decision; return how many rows changed.

        A manual record overrides every rule (approval.py), so no rule is consulted: the rows
        it decides are its scope's agents but those held by a record that outranks it (a
        narrower scope, or an exact id over a glob, at the same scope). Without the list of
        agents (`agents`), every row of the updates is decided again instead (slower).
        """
        if action not in (APPROVE, DECLINE):
            raise ValueError(f"action {action!r} is not approve or decline")
        now = self.clock()
        rows = []
        for pattern in update_patterns:
            for scope, target in scopes:
                if scope not in MANUAL_SCOPES:
                    raise ValueError(f"scope {scope!r} is not one of {MANUAL_SCOPES}")
                rows.append(DecisionRow(pattern, scope, target, action, by, now, comment))
        self.patches.put_decision_records(rows)
        if self.agents is None:
            return self.redecide(update_patterns)
        agents = list(self.agents())
        every = [to_manual(r) for r in self.patches.decision_records()]
        ids = self.patches.update_ids()
        changed = 0
        for record in (to_manual(r) for r in rows):
            matched = [i for i in ids if record.matches(i)] if record.is_glob else [record.update]
            for update_id in matched:
                changed += self._apply_record(record, update_id, agents, every, now)
        return changed

    def _apply_record(
        self,
        record: ManualDecision,
        update_id: str,
        agents: Sequence[AgentRecord],
        every: Sequence[ManualDecision],
        now: float,
    ) -> int:
        rank = _rank(record)
        stronger = [m for m in every if _rank(m) > rank and m.matches(update_id)]
        held = [a for a in agents if record.applies_to(a.id, a.client, a.site)]
        excluded = [
            a.id for a in held if any(m.applies_to(a.id, a.client, a.site) for m in stronger)
        ]
        # What the record decides, in approval.py's words, for an agent its scope holds.
        client, _, site = record.target.partition("/")
        holder = {
            AGENT: (record.target, "", ""),
            SITE: ("", client, site),
            CLIENT: ("", record.target, ""),
        }.get(record.scope, ("", "", ""))
        probe = UpdateFacts(update_id, "", None, "", "", "")
        decision = decide(probe, _NO_RULES, ManualIndex([record]).for_agent(*holder), now)
        in_scope = None if record.scope == EVERYWHERE else [a.id for a in held]
        return self.patches.apply_manual(
            update_id, in_scope, excluded, decision.state, decision.why
        )

    def redecide(self, update_patterns: Iterable[str] | None = None) -> int:
        """Decide again the rows of the updates the patterns name (None: every row, after a
        policy reload or when a deferral may have ended); return how many changed."""
        now = self.clock()
        if update_patterns is None:
            rows = self.patches.all_rows()
        else:
            probe = [
                ManualDecision(pattern, APPROVE, EVERYWHERE, "", "", 0.0)
                for pattern in update_patterns
            ]
            ids = [i for i in self.patches.update_ids() if any(p.matches(i) for p in probe)]
            rows = self.patches.rows_of_updates(ids)
        manual = ManualIndex(to_manual(r) for r in self.patches.decision_records())
        settings: dict[str, PatchSettings | None] = {}
        changes: list[tuple[str, str, str, str, float | None]] = []
        for row in rows:
            agent = self.agent_of(row.agent_id)
            if agent is None:
                continue
            if row.agent_id not in settings:
                settings[row.agent_id] = self.settings_for(agent)
            found = settings[row.agent_id]
            assert found is not None
            decision = decide_for(
                row_facts(row), found, manual, agent.client, agent.site, now, row.first_seen
            )
            if (decision.state, decision.why, decision.not_before) != (
                row.decision,
                row.why,
                row.not_before,
            ):
                changes.append(
                    (row.agent_id, row.update_id, decision.state, decision.why, decision.not_before)
                )
        self.patches.set_decisions(changes)
        return len(changes)

    # --- install outcomes ------------------------------------------------------------------

    def record_outcomes(self, records: Sequence[CommandRecord]) -> int:
        """Store the per-update outcomes of settled InstallUpdates commands; return how many
        outcomes were stored (hooked where command results are settled)."""
        rows: list[ResultRow] = []
        reboot: dict[str, bool] = {}
        for record in records:
            if record.action != "install_updates" or not record.result:
                continue
            result = commands_pb2.CommandResult.FromString(record.result)
            if not result.HasField("install_updates"):
                continue
            at = result.finished_at or self.clock()
            for item in result.install_updates.updates:
                word = INSTALL_WORDS.get(item.status, "failed")
                rows.append(
                    ResultRow(
                        agent_id=record.agent_id,
                        update_id=_cut(item.update_id, "update_id"),
                        status=word,
                        message=item.message[:2000],
                        version=_cut(item.version, "available"),
                        command_id=record.id,
                        at=at,
                    )
                )
            if result.install_updates.reboot_required:
                reboot[record.agent_id] = True
        if rows or reboot:
            self.patches.record_results(rows, reboot)
            for agent_id in reboot:
                self._reboot[agent_id] = True
        if self.on_outcome is not None:
            for row in rows:
                self.on_outcome(row.status)
        return len(rows)


_NO_RULES = compile_rules(())
_SCOPE_RANK = {scope: rank for rank, scope in enumerate(MANUAL_SCOPES)}


def _rank(record: ManualDecision) -> tuple[int, int, float]:
    """Return how strongly a record holds (approval.py's order: scope, exact over glob, time)."""
    return (_SCOPE_RANK[record.scope], 0 if record.is_glob else 1, record.at)


def _collector_info(report: agent_pb2.Report) -> dict[str, Any] | None:
    """Return the patches collector's info in the report, or None."""
    for result in report.collectors:
        if result.name == COLLECTOR:
            if not result.ok or not result.info_json:
                return None
            try:
                info = json.loads(result.info_json)
            except ValueError:
                return None
            return info if isinstance(info, dict) else None
    return None


@dataclass(frozen=True, slots=True)
class _Listed:
    """What a report's patches collector says of the pending updates."""

    digest: str
    updates: list[Any] | None  # None: the digest alone (the list is unchanged, or resent later)
    truncated: bool


def _listed(info: dict[str, Any] | None) -> _Listed | None:
    """Return the list (or its digest alone) the patches collector's info carries, or None."""
    if info is None:
        return None
    updates = info.get("updates")
    updates = updates if isinstance(updates, list) else None
    truncated = bool(info.get("truncated"))
    digest = info.get("digest")
    if not isinstance(digest, str) or not digest:
        if updates is None:
            return None
        digest = list_digest(updates, truncated)
    return _Listed(digest, updates, truncated)


def _reboot_required(report: agent_pb2.Report) -> bool | None:
    """Return whether the report says the host waits for a reboot (None: it does not say)."""
    collector, name = REBOOT_SAMPLE
    for result in report.collectors:
        if result.name == collector and result.ok:
            for sample in result.samples:
                if sample.name == name:
                    return sample.value >= 1
    return None


def scope_of(selector_client: str, selector_site: str) -> tuple[str, str]:
    """Return the manual scope a client (and site) names."""
    if selector_site:
        return SITE, f"{selector_client}/{selector_site}"
    if selector_client:
        return CLIENT, selector_client
    return EVERYWHERE, ""
