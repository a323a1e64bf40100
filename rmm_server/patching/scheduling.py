"""Patch windows from the policies in force to stored jobs, and a fired job to a rollout run.

The server calls `refresh()` at start and after every policy reload or fleet change worth it;
`lead()` when this replica gains or loses the leadership; the window scheduler calls `open()`
when a window's job fires; the server's own scheduler calls `tick()` every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rmm_common.errors import ConfigError
from rmm_server.alerts.service import AlertService, agent_context
from rmm_server.commands import AuditFn, CommandService
from rmm_server.fleet import Fleet
from rmm_server.patching.inventory import PatchInventory, no_policy
from rmm_server.patching.model import PatchSettings
from rmm_server.patching.rollout import Rollout
from rmm_server.patching.windows import DEFAULT_ZONE, PatchScheduler, PatchWindow, plan_windows
from rmm_server.scripts import ScriptLibrary
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.desk import DeskStore
from rmm_server.storage.patch_runs import PatchRun

log = logging.getLogger(__name__)

# Returns the IANA time zone of an agent's site (schedules with time_zone "site" are read in it).
SiteZone = Callable[[AgentRecord], str]


def utc_sites(_record: AgentRecord) -> str:
    """Return UTC for every site (no site time zone is configured)."""
    return DEFAULT_ZONE


class InventoryState:
    """The rollout's view of the per-agent update state (rollout.UpdateState) over the inventory."""

    def __init__(
        self,
        inventory: PatchInventory,
        clock: Callable[[], float] = time.time,
        recorded_on_settle: bool = False,
    ) -> None:
        self.inventory = inventory
        self.clock = clock
        # The server records every install's outcomes where command results settle (its
        # settled hook): the rollout then must not record them a second time.
        self.recorded_on_settle = recorded_on_settle

    def approved_updates(self, agent_id: str) -> list[str]:
        """Return the agent's approved updates still to install (failed ones included)."""
        found = self.inventory.patches.approved_updates([agent_id], self.clock())
        return found.get(agent_id, [])

    def install_request_met(self, agent_id: str) -> None:
        """Clear the agent's request to install in its next window: a window installed."""
        self.inventory.patches.clear_install_requests([agent_id])

    def record_outcomes(self, records: Sequence[CommandRecord]) -> object:
        """Store the per-update outcomes of settled install commands (unless already stored)."""
        if self.recorded_on_settle:
            return 0
        return self.inventory.record_outcomes(records)


class PatchWindows:
    """Keep the window jobs in line with the policies and open the windows they fire."""

    def __init__(
        self,
        scheduler: PatchScheduler | None,
        rollout: Rollout,
        agents: Callable[[], Iterable[AgentRecord]],
        site_zone: SiteZone = utc_sites,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.rollout = rollout
        self.agents = agents
        self.site_zone = site_zone
        self.clock = clock
        self.windows: dict[str, PatchWindow] = {}
        if scheduler is not None:
            scheduler.opener = self.open

    def plan(self) -> dict[str, PatchWindow]:
        """Return the windows the policies now define for the fleet."""
        assignments = []
        for record in self.agents():
            if record.revoked_at is not None:
                continue
            settings = self.rollout.settings_of(record)
            if settings is None or not settings.enabled or settings.schedule is None:
                continue
            try:
                zone = self.site_zone(record)
            except ConfigError as exc:
                log.error("agent %s: %s; its patch schedule is read in UTC", record.id, exc)
                zone = DEFAULT_ZONE
            assignments.append((record.id, settings.schedule, zone))
        windows, problems = plan_windows(assignments)
        for problem in problems:
            log.error("%s; that window is not scheduled", problem)
        return windows

    async def refresh(self) -> None:
        """Plan the windows again and update the stored jobs (on the leader)."""
        self.windows = await asyncio.to_thread(self.plan)
        if self.scheduler is not None:
            await self.scheduler.set_windows(self.windows)

    async def lead(self, leading: bool) -> None:
        """Run the window jobs while this replica leads."""
        # Runs kept in memory by a leader are read again by the next one (and by this one when
        # it leads again: another may have moved them meanwhile).
        self.rollout.forget()
        if self.scheduler is not None:
            await self.scheduler.lead(leading)

    async def open(self, key: str) -> None:
        """Open window `key` if its occurrence is open now (a job fired, on time or late)."""
        # Planned again now: the agents under the schedule are those of this moment (enrolled,
        # moved or retagged since the last plan).
        self.windows = await asyncio.to_thread(self.plan)
        window = self.windows.get(key)
        if window is None:
            log.warning("patch window %s fired, but no policy schedules it any more", key)
            return
        now = self.clock()
        occurrence = window.current(now)
        if occurrence is None:
            await self.rollout.missed(window, now)
            return
        start, end = occurrence
        await self.rollout.open(window, start, end)

    async def tick(self) -> None:
        """Advance the open runs (server scheduler job, leader only)."""
        await self.rollout.tick()


def build_patch_windows(
    store: Store,
    commands: CommandService,
    fleet: Fleet,
    alerts: AlertService,
    audit: AuditFn | None,
    scripts: Callable[[], ScriptLibrary],
    site_zones: Mapping[str, str] | None = None,
    inventory: PatchInventory | None = None,
    clock: Callable[[], float] = time.time,
) -> PatchWindows:
    """Return the server's patch windows over its store, commands, fleet, policies and alerts.

    `site_zones` maps "client/site" to an IANA zone for schedules read in the site's zone (UTC
    where a site has none); `inventory` is the server's PatchInventory when it runs one (which
    records install outcomes where command results settle).
    """
    zones = SiteZones(store, site_zones or {}, clock)

    def settings_of(record: AgentRecord) -> PatchSettings | None:
        policies = alerts.policies
        if policies is None:
            return None
        context, _ = agent_context(record, None, clock())
        return policies.patches.settings_for(context)

    recorded_on_settle = inventory is not None
    if inventory is None:
        inventory = PatchInventory(
            store, fleet.get, lambda record: settings_of(record) or no_policy(record), clock
        )
    rollout = Rollout(
        store,
        commands,
        fleet.get,
        settings_of,
        InventoryState(inventory, clock, recorded_on_settle),
        scripts,
        alerts=alerts,
        audit=audit,
        clock=clock,
    )
    return PatchWindows(
        PatchScheduler(store.engine, lambda _key: asyncio.sleep(0)),
        rollout,
        lambda: [state.record for state in fleet.snapshot()],
        site_zone=zones,
        clock=clock,
    )


class SiteZones:
    """The time zone a site's windows are read in: `--site-time-zone` first, then the site's
    record (`rmm sites update --time-zone`), else UTC.

    The records are read again at most every REFRESH_SECONDS: windows are planned for every
    agent at once (at start, on reload, every few minutes), not a query per agent.
    """

    REFRESH_SECONDS = 60.0

    def __init__(
        self, store: Store, overrides: Mapping[str, str], clock: Callable[[], float]
    ) -> None:
        self.sites = DeskStore(store)
        self.overrides = dict(overrides)
        self.clock = clock
        self._zones: dict[str, str] = {}
        self._read_at: float | None = None

    def __call__(self, record: AgentRecord) -> str:
        key = f"{record.client}/{record.site}"
        if key in self.overrides:
            return self.overrides[key]
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.REFRESH_SECONDS:
            self._zones = {f"{s.client}/{s.name}": s.time_zone for s in self.sites.list_sites()}
            self._read_at = now
        return self._zones.get(key) or DEFAULT_ZONE


def _ring_counts(members: Iterable[str], agents: Mapping[str, Any]) -> dict[str, int]:
    """Return how many of a ring's agents installed, failed, missed it or were held."""
    progress = [agents.get(a, {}) for a in members]
    return {
        "agents": len(progress),
        "installed": sum(1 for p in progress if p.get("installed")),
        "failed": sum(1 for p in progress if p.get("step") == "failed"),
        "missed": sum(1 for p in progress if p.get("step") == "missed"),
        "held_agents": sum(1 for p in progress if p.get("step") == "held"),
    }


def describe_runs(runs: Iterable[PatchRun]) -> list[dict[str, Any]]:
    """Return each run as operators read it: its window and times, its rings' states, how many
    agents ended in each step, and which agents missed it, failed or were held."""
    described: list[dict[str, Any]] = []
    for run in runs:
        agents: dict[str, dict[str, Any]] = run.progress.get("agents", {})
        steps: dict[str, list[str]] = {}
        for agent_id, progress in sorted(agents.items()):
            steps.setdefault(str(progress.get("step", "")), []).append(agent_id)
        # An agent installed in this run when any update of it did (its step may be done,
        # rebooting, or failed for another update).
        installed = sorted(a for a, p in agents.items() if p.get("installed"))
        described.append(
            {
                "id": run.id,
                "window": run.window,
                "starts_at": run.starts_at,
                "ends_at": run.ends_at,
                "state": run.state,
                "rings": [
                    {
                        "name": ring["name"],
                        "state": ring["state"],
                        "held": ring.get("held", ""),
                        **_ring_counts(ring.get("agents", []), agents),
                    }
                    for ring in run.progress.get("rings", [])
                ],
                "agents": {step: len(ids) for step, ids in sorted(steps.items())},
                "installed": installed,
                "missed": steps.get("missed", []),
                "failed": steps.get("failed", []),
                "held": steps.get("held", []),
            }
        )
    return described
