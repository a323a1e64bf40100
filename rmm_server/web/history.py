"""The bounded, downsampled history behind the agent page's charts: CPU, memory, fullest disk and
network rates, as 5-minute means for 24 hours.

Each report adds its values to the agent's open bucket in memory (a few additions); a bucket is
written when the agent's first report of a later bucket arrives, in batches by `flush` (one
transaction a minute for the whole fleet), and rows older than 24 h are pruned then. So the cost
per report is constant and the table holds at most 288 rows an agent. A server restart loses the
open bucket of each agent (at most 5 minutes of points), never a stored one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rmm_proto import agent_pb2
from rmm_server.reports import ReportSeries, report_series
from rmm_server.storage import AgentRecord
from rmm_server.storage.agent_history import AgentHistoryStore, HistoryPoint

log = logging.getLogger(__name__)
BUCKET_SECONDS = 300
KEEP_SECONDS = 24 * 3600
SERIES = (
    "cpu_ratio",
    "memory_ratio",
    "disk_ratio",
    "receive_bytes_per_second",
    "transmit_bytes_per_second",
)
# Interfaces left out of the network rate: traffic that never leaves the host.
LOOPBACK = ("lo", "lo0", "Loopback Pseudo-Interface 1")


@dataclass(slots=True)
class _Open:
    bucket: int
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: float | None) -> None:
        if value is None:
            return
        self.sums[name] = self.sums.get(name, 0.0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def point(self, agent_id: str) -> HistoryPoint:
        means = {name: self.sums[name] / self.counts[name] for name in self.sums}
        return HistoryPoint(agent_id, self.bucket, *(means.get(name) for name in SERIES))


_NETWORK_TOTALS = ("network_receive_bytes_total", "network_transmit_bytes_total")


def network_totals(series: ReportSeries) -> tuple[float, float] | None:
    """Return the received and sent byte counters of a report's validated series (ingest's, so
    the protobuf map of every sample is not read again) summed over real interfaces."""
    received = sent = 0.0
    found = False
    for samples in series:
        for name, labels, value in samples:
            if name not in _NETWORK_TOTALS:
                continue
            interface = next((v for k, v in labels if k == "interface"), "")
            if interface in LOOPBACK:
                continue
            if name == "network_receive_bytes_total":
                received += value
            else:
                sent += value
            found = True
    return (received, sent) if found else None


class ChartHistory:
    """Accumulate each agent's 5-minute means; write closed buckets and prune old ones."""

    def __init__(self, table: AgentHistoryStore, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.clock = clock
        self._open: dict[str, _Open] = {}
        self._closed: list[HistoryPoint] = []
        self._counters: dict[str, tuple[float, float, float]] = {}  # at, received, sent
        self._lock = threading.Lock()

    def observe(
        self,
        agent: AgentRecord,
        report: agent_pb2.Report,
        received_at: float,
        series: ReportSeries | None = None,
    ) -> None:
        """Add one report's values to its agent's open bucket. `series`: the report's validated
        series, as ingest has them (read from `report` when not given)."""
        bucket = int(received_at // BUCKET_SECONDS * BUCKET_SECONDS)
        summary = agent.summary
        rates = self._rates(
            agent.id, series if series is not None else report_series(report), received_at
        )
        with self._lock:
            current = self._open.get(agent.id)
            if current is None or current.bucket != bucket:
                if current is not None and current.sums:
                    self._closed.append(current.point(agent.id))
                current = self._open[agent.id] = _Open(bucket)
            current.add("cpu_ratio", _number(summary.get("cpu_usage_ratio")))
            current.add("memory_ratio", _number(summary.get("memory_used_ratio")))
            current.add("disk_ratio", _number(summary.get("disk_used_ratio_max")))
            if rates is not None:
                current.add("receive_bytes_per_second", rates[0])
                current.add("transmit_bytes_per_second", rates[1])

    def _rates(
        self, agent_id: str, series: ReportSeries, now: float
    ) -> tuple[float, float] | None:
        totals = network_totals(series)
        if totals is None:
            return None
        before = self._counters.get(agent_id)
        self._counters[agent_id] = (now, *totals)
        if before is None or now <= before[0]:
            return None
        elapsed = now - before[0]
        received, sent = totals[0] - before[1], totals[1] - before[2]
        if received < 0 or sent < 0:  # counters reset (a reboot): no rate for this interval
            return None
        return received / elapsed, sent / elapsed

    def after_store(self, then: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Return an ingestor after-store call that observes the report, then calls `then`."""

        async def both(
            agent: AgentRecord,
            report: agent_pb2.Report,
            added: tuple[str, ...],
            removed: tuple[str, ...],
            series: ReportSeries,
        ) -> None:
            try:
                self.observe(agent, report, self.clock(), series)
            except Exception:  # the charts must never cost alerting its evaluation
                log.exception("adding a report of agent %s to the charts failed", agent.id)
            await then(agent, report, added, removed, series)

        return both

    def points(self, agent_id: str) -> list[HistoryPoint]:
        """Return the agent's stored points of the last 24 h, then its buckets not yet stored."""
        since = int(self.clock()) - KEEP_SECONDS
        stored = self.table.points(agent_id, since)
        with self._lock:
            pending = [p for p in self._closed if p.agent_id == agent_id and p.bucket >= since]
            current = self._open.get(agent_id)
            if current is not None and current.sums:
                pending.append(current.point(agent_id))
        known = {p.bucket for p in pending}
        return sorted(
            [p for p in stored if p.bucket not in known] + pending, key=lambda p: p.bucket
        )

    def flush(self) -> int:
        """Write the closed buckets and prune points older than 24 h; return how many written.

        Blocking (database): run it in a thread. Points that fail to write are kept for the
        next flush.
        """
        now = self.clock()
        with self._lock:
            # Buckets that ended with no later report (an agent gone quiet) close here too.
            current_bucket = int(now // BUCKET_SECONDS * BUCKET_SECONDS)
            for agent_id, current in list(self._open.items()):
                if current.bucket < current_bucket:
                    if current.sums:
                        self._closed.append(current.point(agent_id))
                    del self._open[agent_id]
            closed, self._closed = self._closed, []
        try:
            self.table.write(closed)
        except Exception:
            with self._lock:
                self._closed[:0] = closed
            raise
        self.table.prune(int(now) - KEEP_SECONDS)
        return len(closed)

    async def flush_async(self) -> None:
        """`flush` in a worker thread; a failure is logged and retried at the next one."""
        try:
            await asyncio.to_thread(self.flush)
        except Exception as exc:
            log.warning("storing chart points failed, retrying at the next flush: %s", exc)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
