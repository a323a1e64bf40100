"""Record when agents go offline and come back, for contract reports (docs/desk.md).

The leader's offline check (every `--offline-check-interval`) calls `check` with the fleet: an
agent that missed its report intervals (AgentRecord.online) is recorded offline from its last
report (or its enrolment, when it never reported), and an agent recorded offline that reports
again is recorded back from its first report after the outage. Gaps shorter than the missed
intervals are not outages. Nothing of this runs on the report path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.availability import AvailabilityStore

log = logging.getLogger(__name__)


class OfflineRecorder:
    """Turn the fleet's online/offline state into stored offline periods."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        not_before: float = 0.0,
    ) -> None:
        self.records = AvailabilityStore(store)
        self.clock = clock
        # Until then (the server's start plus the offline grace) agents reconnecting after the
        # server's own restart are not taken for outages: no period begins.
        self.not_before = not_before

    def check(self, agents: Sequence[AgentRecord]) -> tuple[int, int]:
        """Record who went offline and who came back; return how many of each."""
        now = self.clock()
        offline = self.records.open_periods()  # read each time: the leader may have changed
        began: list[tuple[str, float]] = []
        back: list[tuple[str, float]] = []
        for agent in agents:
            if agent.revoked_at is not None:
                continue  # a report caps its time at the revocation
            since = offline.get(agent.id)
            if agent.online(now):
                if since is not None:
                    first = self.records.first_report_after(agent.id, since)
                    back.append((agent.id, first if first is not None else agent.last_seen or now))
            elif since is None and now >= self.not_before:
                began.append((agent.id, agent.last_seen or agent.enrolled_at))
        self.records.begin(began)
        self.records.end(back)
        if began or back:
            log.info("availability: %d agents went offline, %d came back", len(began), len(back))
        return len(began), len(back)
