"""Patch windows from the policies in force to stored jobs, and a fired job to a rollout run.

The server calls `refresh()` at start and after every policy reload or fleet change worth it;
`lead()` when this replica gains or loses the leadership; the window scheduler calls `open()`
when a window's job fires; the server's own scheduler calls `tick()` every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from rmm_common.errors import ConfigError
from rmm_server.patching.rollout import Rollout
from rmm_server.patching.windows import DEFAULT_ZONE, PatchScheduler, PatchWindow, plan_windows
from rmm_server.storage import AgentRecord

log = logging.getLogger(__name__)

# Returns the IANA time zone of an agent's site (schedules with time_zone "site" are read in it).
SiteZone = Callable[[AgentRecord], str]


def utc_sites(_record: AgentRecord) -> str:
    """Return UTC for every site (no site time zone is configured)."""
    return DEFAULT_ZONE


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
        if self.scheduler is not None:
            await self.scheduler.lead(leading)

    async def open(self, key: str) -> None:
        """Open window `key` if its occurrence is open now (a job fired, on time or late)."""
        window = self.windows.get(key)
        if window is None:
            # The job fired before the first plan of this process (a missed window at start).
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
