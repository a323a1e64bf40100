"""The install run of an opened patch window: rings in order, each agent's steps, report-back.

When a window opens (rmm_server/patching/windows.py) a run is stored (rmm_server/storage/
patch_runs.py) with the window's agents split into rings (PatchSettings.ring; agents in no ring
come last). The first ring starts at once; each agent in a started ring goes through

    pre-install scripts → InstallUpdates of its approved updates → post-install scripts → reboot

each step one signed command from the existing command path (CommandService: stored, audited,
queued for an offline agent), issued by operator "patching:<window>" with the run's id as its
run_id. Every command expires at the window's end: an agent that comes back while the window is
open gets it and installs, one that does not is listed as missed, and no agent starts an install
after the end (the agent itself refuses an expired command).

An update the agent answers "locked" (another apt or Windows Update run holds the lock) is asked
for again in the same window after LOCK_RETRY_SECONDS; one that failed stays approved and pending
in the per-agent state, so the next window asks for it again. A reboot follows the policy
(never / if-required / always) through the reboot action and its consent: a logged-in user may
decline up to max_deferrals times, each time the reboot is asked again after deferral_seconds;
after that it goes ahead with a warning only.

The next ring starts when the ring before it is healthy: its installs succeeded, every agent it
rebooted reported again, and no new critical alert fired on its agents, for the ring's soak time.
A ring that is not healthy holds the rings after it for this window (the run says why).

A maintenance window covering the run's agents opens with it, so expected reboots page nobody.
After the window, an agent that installed or rebooted must report again within the policy's
report_back_seconds, or the alert PatchReportBackMissing fires for it.

`tick()` advances every open run from the stored commands and the clock; the server calls it
every few seconds on the leading replica, tests call it after moving their clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rmm_common.errors import InvalidArgument, NotFound, StorageError
from rmm_common.logs import agent_label
from rmm_common.tokens import new_ident
from rmm_proto import commands_pb2
from rmm_server.commands import AuditFn, CommandService, decode_result, status_name
from rmm_server.patching.model import (
    REBOOT_ALWAYS,
    REBOOT_IF_REQUIRED,
    PatchSettings,
    RebootPolicy,
    ScriptStep,
)
from rmm_server.patching.windows import PatchWindow
from rmm_server.runs import summarize
from rmm_server.script_params import check_params
from rmm_server.scripts import ScriptLibrary
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.commands import FINAL_STATUSES, CommandRecord, CommandStore
from rmm_server.storage.patch_runs import CLOSED, OPEN, PatchRun, PatchRunStore
from rmm_server.storage.suppressions import MaintenanceWindow

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus

# An update answered "locked" is asked for again this long after, while the window is open.
LOCK_RETRY_SECONDS = 120.0
# At most this many install commands per agent and window (the first and the lock retries).
MAX_INSTALL_ATTEMPTS = 5
# An install started this close to the window's end has no time to finish: it is not started.
MIN_INSTALL_SECONDS = 60.0
# The maintenance window outlasts the patch window by this much (at most the report-back time):
# a reboot asked for near the end still pages nobody.
REBOOT_QUIET_SECONDS = 1800.0
REBOOT_TIMEOUT_SECONDS = 600.0
# A closed window's audit entry names at most this many agents per outcome.
MAX_LISTED_AGENTS = 100

# Each agent's step in a run.
WAITING = "waiting"  # its ring has not started
PRE = "pre"
INSTALL = "install"
RETRY = "retry"  # locked updates wait for retry_at
POST = "post"
REBOOT = "reboot"
REBOOT_DEFERRED = "reboot-deferred"
DONE = "done"
NOTHING = "nothing"  # nothing approved to install and no reboot asked
MISSED = "missed"  # offline (or unreachable) through the window, or its ring never started
FAILED = "failed"  # a pre-install script failed, or the install command itself did not run
HELD = "held"  # its ring was held by an unhealthy ring before it
FINAL_STEPS = frozenset({DONE, NOTHING, MISSED, FAILED, HELD})

# Per-update answers (commands.proto UpdateInstallStatus), as the per-agent state records them.
UPDATE_STATUS = {
    commands_pb2.UPDATE_INSTALLED: "installed",
    commands_pb2.UPDATE_FAILED: "failed",
    commands_pb2.UPDATE_SKIPPED: "skipped",
    commands_pb2.UPDATE_LOCKED: "locked",
    commands_pb2.UPDATE_INTERRUPTED: "interrupted",
}
REBOOT_CONSENT = {
    "unattended": commands_pb2.CONSENT_UNATTENDED,
    "warn": commands_pb2.CONSENT_NOTIFY,
    "ask": commands_pb2.CONSENT_ASK,
}
CRITICAL = "critical"


def shown_window(key: str) -> str:
    """Return the name a consent prompt gives a window: its schedule's, from its key
    ("policy/schedule@zone"; windows.window_key), the key itself when it is not one."""
    schedule = key.partition("/")[2].rpartition("@")[0]
    return schedule or key


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """One update's answer in an install result."""

    update_id: str
    status: str  # installed, failed, skipped, locked, interrupted (or the command's own failure)
    message: str = ""
    version: str = ""
    reboot_required: bool = False


class UpdateState(Protocol):
    """The per-agent update state (rmm_server/patching/inventory.py): what to install, outcomes."""

    def approved_updates(self, agent_id: str) -> list[str]:
        """Return the ids approved and still to install on the agent (never a declined one)."""
        ...

    def record_outcomes(self, records: Sequence[CommandRecord]) -> object:
        """Record the per-update outcomes of settled install_updates commands."""
        ...

    def install_request_met(self, agent_id: str) -> None:
        """Note that a window installed the agent's approved updates (it answered the install,
        or had nothing approved): an operator's `rmm patches install` without --now asked for
        exactly that, so the request is met. An agent the window missed keeps its request."""
        ...


class AlertsLike(Protocol):
    """The parts of AlertService the rollout uses."""

    async def add_window(self, window: MaintenanceWindow) -> MaintenanceWindow: ...

    async def raise_server_alert(
        self, record: AgentRecord, name: str, severity: str, summary: str
    ) -> None: ...

    def new_critical_alerts(self, agent_id: str, since: float) -> list[str]: ...


SettingsOf = Callable[[AgentRecord], PatchSettings | None]


def outcomes_of(record: CommandRecord) -> list[UpdateOutcome]:
    """Return an install command's per-update outcomes (every update failed when it did not run)."""
    result = decode_result(record)
    if result is not None and result.HasField("install_updates"):
        return [
            UpdateOutcome(
                u.update_id,
                UPDATE_STATUS.get(u.status, "failed"),
                u.message,
                u.version,
                u.reboot_required,
            )
            for u in result.install_updates.updates
        ]
    return []


def ring_order(settings: PatchSettings | None) -> tuple[int, str]:
    """Return (order, name) of an agent's ring; agents in no ring install last."""
    if settings is None or settings.ring is None:
        return (1_000_000, "default")
    return (settings.ring.order, settings.ring.name)


class Rollout:
    """Open patch windows as runs and drive each run's rings and agents to the end."""

    def __init__(
        self,
        store: Store,
        commands: CommandService,
        agents: Callable[[str], AgentRecord | None],
        settings_of: SettingsOf,
        state: UpdateState,
        scripts: Callable[[], ScriptLibrary],
        alerts: AlertsLike | None = None,
        audit: AuditFn | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runs = PatchRunStore(store)
        self.command_store = CommandStore(store)
        self.commands = commands
        self.agents = agents
        self.settings_of = settings_of
        self.state = state
        self.scripts = scripts
        self.alerts = alerts
        self.audit = audit
        self.clock = clock
        self._lock = asyncio.Lock()
        # The open runs, kept while this replica leads (None: read them at the next tick).
        self._open: dict[str, PatchRun] | None = None

    # --- opening --------------------------------------------------------------------------

    async def open(self, window: PatchWindow, start: float, end: float) -> PatchRun:
        """Store the run of this occurrence (once), open its maintenance window, start ring 0."""
        async with self._lock:
            now = self.clock()
            # A schedule changed while its window was open (a reload) gives the same window a
            # new start: the run still open goes on, and no second one asks the same agents.
            for run_id, began, ends in await asyncio.to_thread(
                self.runs.open_occurrences, window.key
            ):
                if began != start and ends > now:
                    log.warning(
                        "patch window %s: not opened again at its new start; run %s (until "
                        "%s) goes on",
                        window.key,
                        run_id,
                        time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ends)),
                    )
                    found = await asyncio.to_thread(self.runs.get, run_id)
                    if found is not None:
                        return found
            rings: dict[tuple[int, str], list[str]] = {}
            report_back = 0.0
            for agent_id in window.agent_ids:
                record = self.agents(agent_id)
                if record is None or record.revoked_at is not None:
                    continue
                settings = self.settings_of(record)
                if settings is None or not settings.enabled:
                    continue
                report_back = max(report_back, settings.report_back_seconds)
                rings.setdefault(ring_order(settings), []).append(agent_id)
            ordered = sorted(rings.items())
            progress: dict[str, Any] = {
                "rings": [
                    {"name": name, "order": order, "agents": ids, "state": WAITING}
                    for (order, name), ids in ordered
                ],
                "agents": {
                    agent_id: {"ring": index, "step": WAITING}
                    for index, (_key, ids) in enumerate(ordered)
                    for agent_id in ids
                },
                "report_back_seconds": report_back,
            }
            candidate = PatchRun(new_ident(16), window.key, start, end, OPEN, progress, now)
            run = await asyncio.to_thread(self.runs.create, candidate)
            if run.id != candidate.id:
                log.info("patch window %s (opened at %.0f) is already running", window.key, start)
                return run
            log.info(
                "patch window %s open until %s: %d agents in %d rings",
                window.key,
                time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(end)),
                len(progress["agents"]),
                len(ordered),
            )
            await self._audit("patch.window.opened", window.key, run, "opened")
            await self._open_maintenance(run, report_back)
            await self._advance(run, now)
            await asyncio.to_thread(self.runs.save, run)
            if self._open is not None:
                self._open[run.id] = run
            return run

    async def missed(self, window: PatchWindow, scheduled: float) -> None:
        """Say that a window's occurrence could not open in time (its end passed)."""
        log.warning(
            "patch window %s (due %s) was not opened before its end: its agents missed it",
            window.key,
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(scheduled)),
        )
        if self.audit is not None:
            await asyncio.to_thread(
                self.audit,
                [("patching", "patch.window.missed", window.key, {"due": scheduled}, "missed")],
            )

    async def _open_maintenance(self, run: PatchRun, report_back: float) -> None:
        if self.alerts is None or not run.progress["agents"]:
            return
        quiet = min(report_back, REBOOT_QUIET_SECONDS) if report_back else REBOOT_QUIET_SECONDS
        window = MaintenanceWindow.create(
            id=new_ident(),
            name=f"patch window {run.window}",
            start_at=run.starts_at,
            duration_seconds=run.ends_at - run.starts_at + quiet,
            timezone="UTC",
            agents=tuple(sorted(run.progress["agents"])),
            created_by=f"patching:{run.window}",
            created_at=self.clock(),
            comment=f"opened by patch run {run.id}: installs and reboots expected",
        )
        await self.alerts.add_window(window)
        run.progress["maintenance_window"] = window.id

    # --- advancing ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Advance every open run: settle finished commands, issue next steps, promote rings."""
        async with self._lock:
            if self._open is None:
                try:
                    runs = await asyncio.to_thread(self.runs.open_runs)
                except StorageError as exc:
                    log.error("cannot read the open patch runs, will retry: %s", exc)
                    return
                self._open = {run.id: run for run in runs}
            for run in list(self._open.values()):
                try:
                    if await self._advance(run, self.clock()):
                        # Encoded and written only when something moved: most ticks most
                        # agents only wait.
                        text = await asyncio.to_thread(run.progress_json)
                        if run.state != OPEN or text != run.stored:
                            await asyncio.to_thread(self.runs.save, run, text)
                except StorageError as exc:
                    log.error("patch run %s of %s: %s; will retry", run.id, run.window, exc)
                    self._open = None  # read again: what was saved is what counts
                    return
                if run.state != OPEN:
                    self._open.pop(run.id, None)

    def forget(self) -> None:
        """Drop the open runs kept in memory (leadership changed: read them again)."""
        self._open = None

    async def _advance(self, run: PatchRun, now: float) -> bool:
        """Move the run on; return whether anything may have changed."""
        agents: dict[str, dict[str, Any]] = run.progress["agents"]
        # Most commands are still on their way most ticks: the run's statuses are read (no
        # blobs), and only the commands that settled are read whole.
        statuses = await asyncio.to_thread(self.runs.run_command_statuses, run.id)
        moved = False
        due: set[str] = set()
        settled: list[str] = []
        for agent_id, progress in agents.items():
            command_id = progress.get("cmd", "")
            status = statuses.get(command_id) if command_id else None
            if status is not None and not progress.get("cmd_final"):
                queued = status == Status.COMMAND_QUEUED
                if progress.get("undelivered") != queued:
                    progress["undelivered"] = queued
                    moved = True
                if status in FINAL_STATUSES:
                    settled.append(command_id)
                    due.add(agent_id)
            if progress["step"] in (RETRY, REBOOT_DEFERRED) and now >= progress["retry_at"]:
                due.add(agent_id)
        commands = await asyncio.to_thread(self.command_store.get_many, settled)
        before = [ring["state"] for ring in run.progress["rings"]]
        for index, ring in enumerate(run.progress["rings"]):
            if ring["state"] == WAITING and self._may_start(run, index, now):
                ring["state"] = "running"
                ring["started_at"] = now
                await self._audit("patch.ring.started", run.window, run, ring["name"])
            if ring["state"] in (WAITING, HELD):
                if now >= run.ends_at or ring["state"] == HELD:
                    # Those never started (a held ring's own agents keep their outcomes).
                    for agent_id in ring["agents"]:
                        if agents[agent_id]["step"] == WAITING:
                            agents[agent_id]["step"] = HELD if ring["state"] == HELD else MISSED
                continue
            moved = await self._begin_ring(run, ring, now) or moved
            for agent_id in ring["agents"]:
                if agent_id in due or agents[agent_id]["step"] == WAITING:
                    moved = True
                    await self._step(run, agent_id, agents[agent_id], commands, now)
            self._judge_ring(run, index, now)
        if now >= run.ends_at:
            await self._report_back(run, now)
            moved = True
        run.updated_at = now
        return moved or before != [ring["state"] for ring in run.progress["rings"]]

    def _may_start(self, run: PatchRun, index: int, now: float) -> bool:
        if now >= run.ends_at:
            return False
        if index == 0:
            return True
        before = run.progress["rings"][index - 1]
        if before["state"] == HELD or before.get("held"):
            run.progress["rings"][index]["state"] = HELD
            run.progress["rings"][index]["held"] = f"ring {before['name']} is held"
            return False
        return bool(before["state"] == "healthy")

    def _judge_ring(self, run: PatchRun, index: int, now: float) -> None:
        """Mark a finished ring healthy after its soak time, or held when it is not healthy."""
        ring = run.progress["rings"][index]
        if ring["state"] not in ("running", "soaking"):
            return
        agents = [run.progress["agents"][a] for a in ring["agents"]]
        # An agent whose install still waits undelivered (offline) does not hold its ring: it
        # installs when it comes back, or is listed as missed at the end.
        busy = [a for a in agents if a["step"] not in FINAL_STEPS and not a.get("undelivered")]
        if busy:
            return
        problems, waiting = self._ring_problems(ring, agents)
        if problems:
            ring["state"] = HELD
            ring["held"] = "; ".join(problems)
            log.warning(
                "patch window %s: ring %s is held: %s", run.window, ring["name"], ring["held"]
            )
            return
        if ring["state"] == "running":
            ring["state"] = "soaking"
            ring["done_at"] = now
        soak = ring.get("soak_seconds", self._soak_of(ring))
        ring["soak_seconds"] = soak
        ring["waiting_for"] = waiting
        if now >= ring["done_at"] + soak and not waiting:
            ring["state"] = "healthy"
            ring["healthy_at"] = now
            log.info("patch window %s: ring %s is healthy", run.window, ring["name"])

    def _soak_of(self, ring: Mapping[str, Any]) -> float:
        for agent_id in ring["agents"]:
            record = self.agents(agent_id)
            settings = self.settings_of(record) if record is not None else None
            if settings is not None and settings.ring is not None:
                return settings.ring.soak_seconds
        return 0.0

    def _ring_problems(
        self, ring: Mapping[str, Any], agents: Sequence[Mapping[str, Any]]
    ) -> tuple[list[str], list[str]]:
        """Return what holds the ring (failures, new critical alerts) and what it waits for
        (rebooted agents that have not reported again yet)."""
        problems: list[str] = []
        waiting: list[str] = []
        failed = [
            agent_id
            for agent_id, a in zip(ring["agents"], agents, strict=True)
            if a["step"] == FAILED or a.get("failed")
        ]
        if failed:
            problems.append(f"installs failed on {len(failed)} agents ({', '.join(failed[:5])})")
        for agent_id, a in zip(ring["agents"], agents, strict=True):
            rebooted = a.get("rebooted_at")
            record = self.agents(agent_id)
            if rebooted and (record is None or (record.last_seen or 0.0) <= rebooted):
                waiting.append(f"agent {agent_id} to report again after its reboot")
            if self.alerts is not None and ring.get("started_at") is not None:
                names = self.alerts.new_critical_alerts(agent_id, ring["started_at"])
                if names:
                    problems.append(f"new critical alert on {agent_id}: {', '.join(names)}")
        return problems, waiting

    # --- one agent ------------------------------------------------------------------------

    async def _step(
        self,
        run: PatchRun,
        agent_id: str,
        progress: dict[str, Any],
        commands: Mapping[str, CommandRecord],
        now: float,
    ) -> None:
        step = progress["step"]
        if step in FINAL_STEPS:
            return
        record = self.agents(agent_id)
        if record is None or record.revoked_at is not None:
            progress["step"] = MISSED
            progress["why"] = "the agent was removed or revoked"
            return
        if step == WAITING:
            await self._begin(run, record, self._settings(record), progress, now)
            return
        if step in (RETRY, REBOOT_DEFERRED):
            if now >= progress.get("retry_at", 0.0):
                if step == RETRY:
                    await self._install(run, record, progress, progress["locked"], now)
                else:
                    await self._reboot(run, record, self._settings(record).reboot, progress, now)
            return
        command = commands.get(progress.get("cmd", ""))
        if command is None or not command.final:
            return  # most agents wait here most ticks: no policy is evaluated for them
        settings = self._settings(record)
        progress["cmd_final"] = True
        progress.pop("undelivered", None)
        if step == PRE:
            await self._pre_done(run, record, settings, progress, command, now)
        elif step == INSTALL:
            await self._install_done(run, record, settings, progress, command, now)
        elif step == POST:
            await self._post_done(run, record, settings, progress, command, now)
        elif step == REBOOT:
            await self._reboot_done(run, record, settings.reboot, progress, command, now)

    async def _begin_ring(self, run: PatchRun, ring: Mapping[str, Any], now: float) -> bool:
        """Start every waiting agent of a started ring: their approved updates read in one
        go, and one batch of signed commands for all those that go straight to installing."""
        agents: dict[str, dict[str, Any]] = run.progress["agents"]
        waiting = [a for a in ring["agents"] if agents[a]["step"] == WAITING]
        if not waiting:
            return False
        records = {a: r for a in waiting if (r := self.agents(a)) is not None}

        def read() -> dict[str, list[str]]:
            return {a: self.state.approved_updates(a) for a in records}

        approved = await asyncio.to_thread(read)
        batch: list[tuple[AgentRecord, dict[str, Any], list[str]]] = []
        for agent_id, record in records.items():
            progress = agents[agent_id]
            settings = self._settings(record)
            if record.revoked_at is not None or now >= run.ends_at - MIN_INSTALL_SECONDS:
                continue  # _step says why, one by one
            updates = approved[agent_id]
            if updates and not settings.pre_install:
                progress["updates"] = updates
                batch.append((record, progress, updates))
            else:
                await self._begin(run, record, settings, progress, now, updates)
        if batch:
            await self._install_many(run, batch, now)
        return True

    async def _begin(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        now: float,
        updates: list[str] | None = None,
    ) -> None:
        if now >= run.ends_at - MIN_INSTALL_SECONDS:
            progress["step"] = MISSED
            progress["why"] = "its ring started too close to the window's end"
            return
        if updates is None:
            updates = await asyncio.to_thread(self.state.approved_updates, record.id)
        progress["updates"] = updates
        if not updates:
            # Nothing approved to install: an operator's request for this window is met.
            await asyncio.to_thread(self.state.install_request_met, record.id)
        if not updates and settings.reboot.mode != REBOOT_ALWAYS:
            progress["step"] = NOTHING
            return
        if settings.pre_install:
            await self._script(run, record, settings.pre_install, 0, PRE, progress, now)
        else:
            await self._install_or_go_on(run, record, settings, progress, updates, now)

    async def _pre_done(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        command: CommandRecord,
        now: float,
    ) -> None:
        if command.status != Status.COMMAND_SUCCEEDED:
            missed = command.status == Status.COMMAND_EXPIRED
            progress["step"] = MISSED if missed else FAILED
            progress["why"] = (
                f"pre-install script {progress['script']} {status_name(command.status)}"
                + (f": {command.error}" if command.error else "")
            )
            return
        index = progress["script_index"] + 1
        if index < len(settings.pre_install):
            await self._script(run, record, settings.pre_install, index, PRE, progress, now)
        else:
            await self._install_or_go_on(run, record, settings, progress, progress["updates"], now)

    async def _install_or_go_on(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        updates: Sequence[str],
        now: float,
    ) -> None:
        """Once the pre-install scripts ran: install what is approved, or, with nothing
        approved, go on to what follows an install (post-install scripts, the reboot)."""
        if updates:
            await self._install(run, record, progress, updates, now)
        else:
            await self._after_install(run, record, settings, progress, now)

    async def _install_done(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        command: CommandRecord,
        now: float,
    ) -> None:
        outcomes = outcomes_of(command)
        asked = progress["asking"]
        if command.status == Status.COMMAND_EXPIRED:
            progress["step"] = MISSED
            progress["why"] = "offline until the window closed: the install was never delivered"
            return
        if not outcomes:
            # Refused, timed out before answering, or a result without the per-update list.
            why = f"install {status_name(command.status)}" + (
                f": {command.error}" if command.error else ""
            )
            outcomes = [UpdateOutcome(uid, "failed", why) for uid in asked]
        await asyncio.to_thread(self.state.record_outcomes, [command])
        # The agent answered this window's install: an operator's request is met (what failed
        # stays approved, and the next window asks for it again).
        await asyncio.to_thread(self.state.install_request_met, record.id)
        for outcome in outcomes:
            key = {"installed": "installed", "locked": "locked_now"}.get(outcome.status, "failed")
            if outcome.status == "skipped":
                key = "skipped"
            progress.setdefault(key, [])
            if outcome.update_id not in progress[key]:
                progress[key].append(outcome.update_id)
        locked = progress.pop("locked_now", [])
        progress["reboot_required"] = progress.get("reboot_required", False) or any(
            o.reboot_required and o.status == "installed" for o in outcomes
        )
        if locked and progress["attempts"] < MAX_INSTALL_ATTEMPTS:
            retry_at = now + LOCK_RETRY_SECONDS
            if retry_at < run.ends_at - MIN_INSTALL_SECONDS:
                progress["step"] = RETRY
                progress["locked"] = locked
                progress["retry_at"] = retry_at
                return
        if locked:
            progress["locked"] = locked  # still locked at the end: the next window asks again
        await self._after_install(run, record, settings, progress, now)

    async def _after_install(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        now: float,
    ) -> None:
        if settings.post_install:
            await self._script(run, record, settings.post_install, 0, POST, progress, now)
        else:
            await self._reboot_or_done(run, record, settings.reboot, progress, now)

    async def _post_done(
        self,
        run: PatchRun,
        record: AgentRecord,
        settings: PatchSettings,
        progress: dict[str, Any],
        command: CommandRecord,
        now: float,
    ) -> None:
        if command.status != Status.COMMAND_SUCCEEDED:
            progress.setdefault("script_failures", []).append(
                f"post-install script {progress['script']} {status_name(command.status)}"
            )
        index = progress["script_index"] + 1
        if index < len(settings.post_install):
            await self._script(run, record, settings.post_install, index, POST, progress, now)
        else:
            await self._reboot_or_done(run, record, settings.reboot, progress, now)

    async def _reboot_or_done(
        self,
        run: PatchRun,
        record: AgentRecord,
        policy: RebootPolicy,
        progress: dict[str, Any],
        now: float,
    ) -> None:
        wanted = policy.mode == REBOOT_ALWAYS or (
            policy.mode == REBOOT_IF_REQUIRED and progress.get("reboot_required", False)
        )
        if wanted:
            await self._reboot(run, record, policy, progress, now)
        else:
            self._finish(progress, now)

    async def _reboot_done(
        self,
        run: PatchRun,
        record: AgentRecord,
        policy: RebootPolicy,
        progress: dict[str, Any],
        command: CommandRecord,
        now: float,
    ) -> None:
        if command.status == Status.COMMAND_DECLINED:
            progress["deferrals"] = progress.get("deferrals", 0) + 1
            progress["step"] = REBOOT_DEFERRED
            progress["retry_at"] = now + policy.deferral_seconds
            log.info(
                "patch window %s: %s deferred its reboot (%d of %d)",
                run.window,
                agent_label(record.hostname, record.id),
                progress["deferrals"],
                policy.max_deferrals,
            )
            return
        if command.status == Status.COMMAND_SUCCEEDED:
            progress["rebooted_at"] = command.finished_at or now
        else:
            progress["reboot_error"] = f"reboot {status_name(command.status)}: {command.error}"
        self._finish(progress, now)

    def _finish(self, progress: dict[str, Any], now: float) -> None:
        progress["step"] = DONE
        progress["finished_at"] = now
        for key in ("retry_at", "cmd_final"):
            progress.pop(key, None)

    # --- issuing --------------------------------------------------------------------------

    async def _issue(
        self,
        run: PatchRun,
        record: AgentRecord,
        action: str,
        request: Any,
        timeout: float,
        consent: int,
        progress: dict[str, Any],
        step: str,
        now: float,
    ) -> None:
        # Expires at the window's end: an offline agent installs on its return while the window
        # is open, and none starts after it (the agent refuses an expired command itself).
        expires_in = max(1.0, run.ends_at - now)
        (command,) = await self.commands.issue(
            f"patching:{run.window}",
            [record],
            action,
            request,
            timeout,
            expires_in,
            lambda _agent: consent,
            summarize,
            run_id=run.id,
            maintenance_window=shown_window(run.window),
        )
        progress["cmd"] = command.id
        progress["step"] = step
        progress.pop("cmd_final", None)
        progress["undelivered"] = command.status == Status.COMMAND_QUEUED

    async def _install(
        self,
        run: PatchRun,
        record: AgentRecord,
        progress: dict[str, Any],
        updates: Sequence[str],
        now: float,
    ) -> None:
        if now >= run.ends_at - MIN_INSTALL_SECONDS:
            progress["step"] = DONE if progress.get("installed") else MISSED
            progress["why"] = "no time left in the window to start an install"
            return
        progress["attempts"] = progress.get("attempts", 0) + 1
        progress["asking"] = list(updates)
        # The install may run until the window's end, not beyond: a started install is not
        # cut short by the end, but none that could not finish is begun.
        timeout = max(MIN_INSTALL_SECONDS, run.ends_at - now)
        await self._issue(
            run,
            record,
            "install_updates",
            commands_pb2.InstallUpdates(update_ids=list(updates)),
            timeout,
            # An install inside a window is announced to logged-in users, never waits for a yes.
            commands_pb2.CONSENT_NOTIFY,
            progress,
            INSTALL,
            now,
        )

    async def _install_many(
        self,
        run: PatchRun,
        batch: Sequence[tuple[AgentRecord, dict[str, Any], list[str]]],
        now: float,
    ) -> None:
        """Ask many agents for their updates at once: one signed command each, one batch."""
        wanted = {record.id: (progress, updates) for record, progress, updates in batch}
        for progress, updates in wanted.values():
            progress["attempts"] = progress.get("attempts", 0) + 1
            progress["asking"] = list(updates)

        def shape(agent: AgentRecord, command: commands_pb2.Command) -> None:
            command.install_updates.update_ids.extend(wanted[agent.id][1])

        issued = await self.commands.issue(
            f"patching:{run.window}",
            [record for record, _, _ in batch],
            "install_updates",
            commands_pb2.InstallUpdates(),
            max(MIN_INSTALL_SECONDS, run.ends_at - now),
            max(1.0, run.ends_at - now),
            lambda _agent: commands_pb2.CONSENT_NOTIFY,
            summarize,
            run_id=run.id,
            shape=shape,
            maintenance_window=shown_window(run.window),
        )
        for command in issued:
            progress = wanted[command.agent_id][0]
            progress["cmd"] = command.id
            progress["step"] = INSTALL
            progress.pop("cmd_final", None)
            progress["undelivered"] = command.status == Status.COMMAND_QUEUED

    async def _script(
        self,
        run: PatchRun,
        record: AgentRecord,
        steps: Sequence[ScriptStep],
        index: int,
        step: str,
        progress: dict[str, Any],
        now: float,
    ) -> None:
        wanted = steps[index]
        progress["script"] = wanted.script
        progress["script_index"] = index
        try:
            script = self.scripts().get(wanted.script)
            given = dict(wanted.params)
            # Checked at load too; again here, as `rmm run` does: the library may have changed.
            env = check_params(script.name, script.params, given, "params.")
        except (NotFound, InvalidArgument) as exc:
            if step == PRE:
                progress["step"] = FAILED
                progress["why"] = str(exc)
            else:
                progress.setdefault("script_failures", []).append(str(exc))
                progress["step"] = POST
                progress["cmd_final"] = True
                await self._reboot_or_done(
                    run, record, self._settings(record).reboot, progress, now
                )
            return
        await self._issue(
            run,
            record,
            "run_script",
            commands_pb2.RunScript(
                shell=script.shell,
                body=script.body,
                args=list(wanted.args),
                library_name=script.name,
                params=given,
                env=env,
            ),
            min(wanted.timeout_seconds, max(1.0, run.ends_at - now)),
            commands_pb2.CONSENT_NOTIFY,
            progress,
            step,
            now,
        )

    async def _reboot(
        self,
        run: PatchRun,
        record: AgentRecord,
        policy: RebootPolicy,
        progress: dict[str, Any],
        now: float,
    ) -> None:
        deferrals = progress.get("deferrals", 0)
        # The policy's word was checked at load (one of model.REBOOT_CONSENT, each mapped here:
        # tests/rmm_server/patching/test_rollout.py), so no unknown word is quietly "warn".
        consent = REBOOT_CONSENT[policy.consent]
        if deferrals >= policy.max_deferrals and consent == commands_pb2.CONSENT_ASK:
            # Deferred as often as the policy allows: the reboot goes ahead, with a warning.
            consent = commands_pb2.CONSENT_NOTIFY
        reason = f"updates installed in patch window {run.window}"
        if deferrals:
            reason += f" (deferred {deferrals} of {policy.max_deferrals} times)"
        await self._issue(
            run,
            record,
            "reboot",
            commands_pb2.Reboot(delay_seconds=0, reason=reason),
            REBOOT_TIMEOUT_SECONDS,
            consent,
            progress,
            REBOOT,
            now,
        )
        # A reboot may come back after the window's end: its command lives until then at least.

    def _settings(self, record: AgentRecord) -> PatchSettings:
        return self.settings_of(record) or PatchSettings(agent_id=record.id)

    # --- after the window -----------------------------------------------------------------

    async def _report_back(self, run: PatchRun, now: float) -> None:
        """Alert for agents that installed or rebooted and have not reported since; close."""
        waiting = False
        for agent_id, progress in run.progress["agents"].items():
            if progress["step"] not in FINAL_STEPS:
                if progress.get("undelivered"):
                    # Never delivered, and expired now: the agent refuses it if it comes back.
                    progress["step"] = MISSED
                    progress["why"] = "offline until the window closed"
                    continue
                waiting = True  # an install or reboot started before the end is still running
                continue
            acted = progress.get("installed") or progress.get("rebooted_at")
            if not acted or progress.get("reported_back") or progress.get("report_alerted"):
                continue
            since = max(progress.get("finished_at") or 0.0, progress.get("rebooted_at") or 0.0)
            record = self.agents(agent_id)
            if record is not None and (record.last_seen or 0.0) > since:
                progress["reported_back"] = True
                continue
            deadline = max(run.ends_at, since) + run.progress.get("report_back_seconds", 0.0)
            if now < deadline:
                waiting = True
                continue
            progress["report_alerted"] = now
            if self.alerts is not None and record is not None:
                await self.alerts.raise_server_alert(
                    record,
                    "PatchReportBackMissing",
                    CRITICAL,
                    f"{agent_label(record.hostname, record.id)} installed updates or rebooted "
                    f"in patch window {run.window} and has not reported since",
                )
        for progress in run.progress["agents"].values():
            if progress["step"] == WAITING:
                progress["step"] = MISSED
        if not waiting:
            run.state = CLOSED
            steps = sorted(progress["step"] for progress in run.progress["agents"].values())
            counts = {step: steps.count(step) for step in dict.fromkeys(steps)}
            run.progress["summary"] = counts
            log.info("patch window %s closed: %s", run.window, counts)
            # Who missed the window, failed or was held: listed for the operator, bounded.
            listed = {
                step: sorted(a for a, p in run.progress["agents"].items() if p["step"] == step)[
                    :MAX_LISTED_AGENTS
                ]
                for step in (MISSED, FAILED, HELD)
                if counts.get(step)
            }
            await self._audit("patch.window.closed", run.window, run, str(counts), listed)

    async def _audit(
        self,
        action: str,
        target: str,
        run: PatchRun,
        outcome: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if self.audit is None:
            return
        details = {"run_id": run.id, "starts_at": run.starts_at, "ends_at": run.ends_at}
        details.update(extra or {})
        await asyncio.to_thread(
            self.audit, [(f"patching:{run.window}", action, target, details, outcome)]
        )
