"""What operators do with patches (`rmm patches ...`): the fleet view, approve and decline in
bulk, install now or in the next window, and the compliance report.

The servicer (grpc_api/patch_api.py) converts messages; the checks, the target and the waiting
live here. Installs go through the signed command path (commands.py): each agent gets one
InstallUpdates with the ids of its approved updates, audited as every command is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmm_common.agent_words import parse_agent_word
from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import commands_pb2, operator_pb2
from rmm_server.commands import CommandService, status_name
from rmm_server.fleet import Fleet
from rmm_server.patching.inventory import PatchInventory, scope_of
from rmm_server.patching.model import AGENT, APPROVE, DECLINE, EVERYWHERE
from rmm_server.patching.scheduling import describe_runs
from rmm_server.runs import RESULT_GRACE_SECONDS, summarize
from rmm_server.selection import describe_selector, resolve_agent, select_agents
from rmm_server.storage import AgentRecord
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.patch_runs import PatchRunStore
from rmm_server.storage.patches import (
    INSTALLED,
    STATES,
    AgentCompliance,
    FleetUpdate,
    PatchAgentRow,
    ResultRow,
    UpdateRow,
)

log = logging.getLogger(__name__)

DEFAULT_INSTALL_TIMEOUT = 3600.0
# `rmm patches runs --limit`: newest first, at most this many in one answer.
MAX_RUNS = 1000
MAX_INSTALL_TIMEOUT = 6 * 3600.0
MAX_PATTERNS = 1000
MAX_PATTERN_LENGTH = 400
# Outcomes of an agent's part of an install that are not a command's status.
MARKED = "marked"
NOTHING_APPROVED = "nothing-approved"
OFFLINE = "offline"


@dataclass(slots=True)
class AgentList:
    """One agent's pending updates and its install outcomes (`rmm patches list --agent`)."""

    agent: AgentRecord
    rows: list[UpdateRow]
    results: list[ResultRow]
    # Its per-agent patch state (an install request for the next window); None: nothing held.
    state: PatchAgentRow | None = None


@dataclass(slots=True)
class FleetList:
    """The central view over the agents asked about."""

    updates: list[FleetUpdate]
    agents: int
    without_list: int


@dataclass(slots=True)
class DecisionOutcome:
    """What an approve or decline stored and changed."""

    records: int
    changed: int
    scope: str
    unknown: list[str] = field(default_factory=list)


@dataclass(slots=True)
class InstallEvent:
    """One agent's part of an install."""

    agent: AgentRecord
    status: str
    command_id: str = ""
    result: commands_pb2.InstallUpdatesResult | None = None
    error: str = ""


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """Return the update ids or globs an operator gave, cleaned; raise InvalidArgument."""
    cleaned = [p.strip() for p in patterns if p.strip()]
    if not cleaned:
        raise InvalidArgument(
            "name at least one update: its id as `rmm patches list` shows it (apt:openssl), "
            "or a glob over ids (apt:linux-*)"
        )
    if len(cleaned) > MAX_PATTERNS:
        raise InvalidArgument(f"{len(cleaned)} updates in one call; give at most {MAX_PATTERNS}")
    for pattern in cleaned:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidArgument(f"update {pattern[:40]!r}...: ids are at most 400 characters")
        backend, colon, key = pattern.partition(":")
        if not colon or not backend or not key:
            raise InvalidArgument(
                f"update {pattern!r} is not an id: ids are <backend>:<key> (apt:openssl, "
                "winget:Git.Git); see `rmm patches list`"
            )
    return cleaned


class PatchOperations:
    """The operator side of patching, over the inventory, the fleet and the command service."""

    def __init__(
        self,
        inventory: PatchInventory,
        fleet: Fleet,
        commands: CommandService | None = None,
        consent_for: Callable[[AgentRecord], int] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inventory = inventory
        self.patches = inventory.patches
        self.fleet = fleet
        self.commands = commands
        self.consent_for = consent_for or (lambda _agent: commands_pb2.CONSENT_NOTIFY)
        self.clock = clock
        self.monotonic = monotonic

    def _selected(self, target: operator_pb2.TargetSelector | None) -> list[AgentRecord] | None:
        """Return the agents a target selects (None: no target, every agent)."""
        if target is None or not describe_selector(target):
            return None
        return select_agents(self.fleet, target, self.clock())

    # --- the view --------------------------------------------------------------------------

    async def fleet_list(self, target: operator_pb2.TargetSelector | None, state: str) -> FleetList:
        """Return one entry per update across the agents (those `state` counts, if given)."""
        if state and state not in STATES:
            raise InvalidArgument(f"state {state!r} is not one of {', '.join(STATES)}")
        selected = self._selected(target)
        ids = None if selected is None else [agent.id for agent in selected]
        if ids is None:
            # A revoked (or removed) agent's rows stay: when there are any, count only the
            # fleet's (slower: the agents are named, so their rows are read, not the index only).
            fleet_ids = {s.record.id for s in self.fleet.snapshot()}
            held = await asyncio.to_thread(self.patches.agent_states)
            if not fleet_ids.issuperset(held):
                ids = sorted(fleet_ids)
        updates = await asyncio.to_thread(self.patches.fleet_view, ids, self.clock())
        if state:
            updates = [u for u in updates if u.count(state)]
        if selected is None:
            live = [s.record for s in self.fleet.snapshot() if s.record.revoked_at is None]
        else:
            live = selected
        listed = await asyncio.to_thread(self.patches.count_listed, ids)
        without = max(0, len(live) - listed)
        return FleetList(updates, len(live), without)

    async def agent_list(self, word: str, state: str) -> AgentList:
        """Return one agent's pending updates (and install outcomes), by id, prefix or name."""
        if state and state not in STATES:
            raise InvalidArgument(f"state {state!r} is not one of {', '.join(STATES)}")
        known = [s.record for s in self.fleet.snapshot()]
        agent = resolve_agent(known, parse_agent_word(word))
        rows = await asyncio.to_thread(self.patches.agent_updates, agent.id)
        results = await asyncio.to_thread(self.patches.agent_results, agent.id)
        held = await asyncio.to_thread(self.patches.agent_state, agent.id)
        now = self.clock()
        if state == INSTALLED:
            rows = []
        elif state:
            rows = [row for row in rows if row.state(now) == state]
        if state and state != INSTALLED:
            results = []
        elif state == INSTALLED:
            results = [r for r in results if r.status == INSTALLED]
        return AgentList(agent, rows, results, held)

    # --- patch runs ---------------------------------------------------------------------

    async def runs(self, window: str, limit: int) -> list[dict[str, Any]]:
        """Return the newest patch runs (of one window when given) as operators read them:
        rings, and the agents that installed, failed, missed the window or were held."""
        if not 0 < limit <= MAX_RUNS:
            raise InvalidArgument(f"limit {limit} is outside 1..{MAX_RUNS}")
        found = await asyncio.to_thread(PatchRunStore(self.patches.store).recent, window, limit)
        return describe_runs(found)

    # --- approve and decline ---------------------------------------------------------------

    async def decide(
        self,
        action: str,
        patterns: Sequence[str],
        target: operator_pb2.TargetSelector | None,
        by: str,
        comment: str = "",
    ) -> DecisionOutcome:
        """Record approve or decline for updates in a target's scope and decide again.

        No target: everywhere. A target of only client (and site): that scope, which holds
        agents enrolled later too. Any other target: one record per selected agent.
        """
        if action not in (APPROVE, DECLINE):
            raise InvalidArgument(f"{action!r} is not approve or decline")
        cleaned = check_patterns(patterns)
        scopes, words = self._scopes(target)
        changed = await asyncio.to_thread(
            self.inventory.record_decisions, cleaned, action, scopes, by, comment
        )
        known = set(await asyncio.to_thread(self.patches.update_ids))
        unknown = [p for p in cleaned if not any(c in p for c in "*?[") and p not in known]
        log.info(
            "operator %s %sd %d updates %s (%d decisions changed)",
            by,
            action,
            len(cleaned),
            words,
            changed,
        )
        return DecisionOutcome(len(cleaned) * len(scopes), changed, words, unknown)

    def _scopes(
        self, target: operator_pb2.TargetSelector | None
    ) -> tuple[list[tuple[str, str]], str]:
        if (
            target is None
            or not describe_selector(target)
            or (target.all and not describe_selector(_without_all(target)))
        ):
            return [(EVERYWHERE, "")], "everywhere"
        narrowing = (target.agents, target.tag, target.os, target.status, target.all)
        if target.client and not any(narrowing):
            # Validate the names: a typo must not record a scope that holds nobody.
            select_agents(self.fleet, target, self.clock())
            scope, value = scope_of(target.client, target.site)
            return [(scope, value)], f"for {scope} {value}"
        agents = select_agents(self.fleet, target, self.clock())
        count = f"{len(agents)} agent" + ("" if len(agents) == 1 else "s")
        return [(AGENT, a.id) for a in agents], f"for {count} ({describe_selector(target)})"

    # --- install ---------------------------------------------------------------------------

    async def install(
        self,
        target: operator_pb2.TargetSelector,
        now: bool,
        by: str,
        timeout_seconds: float = 0.0,
    ) -> AsyncIterator[InstallEvent]:
        """Mark the target's agents for their next window, or (now) send each its approved
        updates and yield each agent's outcome as it comes."""
        if not describe_selector(target):
            raise InvalidArgument(
                "--target is required: give client=, site=, agents, or all for every agent"
            )
        agents = select_agents(self.fleet, target, self.clock())
        if not now:
            await asyncio.to_thread(
                self.patches.request_install, [a.id for a in agents], by, self.clock()
            )
            for agent in agents:
                yield InstallEvent(agent, MARKED)
            return
        timeout = timeout_seconds or DEFAULT_INSTALL_TIMEOUT
        if not 0 < timeout <= MAX_INSTALL_TIMEOUT:
            raise InvalidArgument(f"timeout {timeout:g}s is outside 1s..6h")
        if self.commands is None:
            raise InvalidArgument("this server sends no commands (no command service)")
        approved = await asyncio.to_thread(
            self.patches.approved_updates, [a.id for a in agents], self.clock()
        )
        sendable: list[tuple[AgentRecord, list[str]]] = []
        for agent in agents:
            ids = approved.get(agent.id, [])
            if not ids:
                yield InstallEvent(agent, NOTHING_APPROVED)
            elif not self.commands.is_connected(agent.id):
                yield InstallEvent(
                    agent,
                    OFFLINE,
                    error=f"offline: nothing sent; its {len(ids)} approved updates install "
                    "in its next window, or run this again when it is back",
                )
            else:
                sendable.append((agent, ids))
        async for event in self._send_and_wait(sendable, by, timeout):
            yield event

    async def _send_and_wait(
        self, sendable: list[tuple[AgentRecord, list[str]]], by: str, timeout: float
    ) -> AsyncIterator[InstallEvent]:
        assert self.commands is not None
        settled: asyncio.Queue[CommandRecord] = asyncio.Queue()
        records: list[CommandRecord] = []
        by_agent = {agent.id: agent for agent, _ in sendable}
        for agent, ids in sendable:
            records += await self.commands.issue(
                by,
                [agent],
                "install_updates",
                commands_pb2.InstallUpdates(update_ids=ids),
                timeout,
                timeout + 60.0,
                self.consent_for,
                summarize,
                watch=settled.put_nowait,
            )
        deadline = self.monotonic() + timeout + RESULT_GRACE_SECONDS
        waiting = {record.id: record for record in records}
        try:
            while waiting:
                remaining = deadline - self.monotonic()
                if remaining <= 0:
                    break
                try:
                    record = await asyncio.wait_for(settled.get(), remaining)
                except TimeoutError:
                    break
                if waiting.pop(record.id, None) is None:
                    continue
                yield _event_of(by_agent[record.agent_id], record)
        finally:
            self.commands.unwatch(list(waiting))
        for record in waiting.values():
            stored = await asyncio.to_thread(self.commands.commands.get, record.id)
            current = stored or record
            event = _event_of(by_agent[record.agent_id], current)
            if not current.final:
                event.error = (
                    f"no result within {timeout + RESULT_GRACE_SECONDS:.0f}s; the command stays "
                    f"{status_name(current.status)} (see `rmm commands show {record.id}`)"
                )
            yield event

    # --- report ----------------------------------------------------------------------------

    async def report(self, client: str) -> list[tuple[AgentRecord, AgentCompliance]]:
        """Return each agent's compliance (of one client, if given), by client, site, host."""
        agents = [
            s.record
            for s in self.fleet.snapshot()
            if s.record.revoked_at is None and (not client or s.record.client == client)
        ]
        if client and not agents:
            raise NotFound(f"no agent of client {client!r}: see `rmm agents list`")
        compliance = await asyncio.to_thread(
            self.patches.compliance, [a.id for a in agents], self.clock()
        )
        paired = list(zip(agents, compliance, strict=True))
        paired.sort(key=lambda p: (p[0].client, p[0].site, p[0].hostname, p[0].id))
        return paired


def _without_all(target: operator_pb2.TargetSelector) -> operator_pb2.TargetSelector:
    copy = operator_pb2.TargetSelector()
    copy.CopyFrom(target)
    copy.all = False
    return copy


def _event_of(agent: AgentRecord, record: CommandRecord) -> InstallEvent:
    """Return the install event a settled (or overdue) InstallUpdates command stands for."""
    result = None
    if record.result:
        decoded = commands_pb2.CommandResult.FromString(record.result)
        if decoded.HasField("install_updates"):
            result = decoded.install_updates
    return InstallEvent(agent, status_name(record.status), record.id, result, record.error)


def install_failed(event: InstallEvent) -> bool:
    """Say whether an agent's part of an install failed (for the CLI's exit status)."""
    if event.status in (MARKED, NOTHING_APPROVED):
        return False
    if event.status == OFFLINE or event.error:
        return True
    if event.result is None:
        return event.status != "succeeded"
    return any(u.status != commands_pb2.UPDATE_INSTALLED for u in event.result.updates)
