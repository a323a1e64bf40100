"""Patching's Prometheus series, on the server's registry.

- rmm_patch_installs_total{result}: install outcomes this server stored, per update (installed,
  failed, skipped, locked, interrupted).
- rmm_patch_compliance_ratio{client,site}: of the site's agents whose update list the server
  holds, the share missing no approved update.
- rmm_reboot_pending{client,site,agent}: 1 while the agent waits for a reboot (its system
  collector says so, or an install said an update needs one), per agent with a patch state.

rmm_patches_pending{client,site,agent,classification} needs nothing here: it is the patches
collector's own sample, exported from each agent's fragments like every agent metric.

The two gauges come from the database, which every replica shares: they are computed at most
every `ttl_seconds` (a scrape of 10,000 agents x 50 updates would otherwise run the aggregate
each time) in the scrape's own thread (the exporter renders off the event loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from rmm_server.fleet import Fleet
from rmm_server.storage.patches import PatchStore

log = logging.getLogger(__name__)

RESULTS = ("installed", "failed", "skipped", "locked", "interrupted")
DEFAULT_TTL_SECONDS = 60.0


class PatchMetrics:
    """Count install outcomes and expose compliance and reboot state (a registry collector)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        patches: PatchStore,
        fleet: Fleet,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        self.installs = Counter(
            "rmm_patch_installs_total",
            "Update install outcomes stored by this server, by result.",
            ["result"],
            registry=registry,
        )
        for result in RESULTS:  # every result exported from the start, at zero
            self.installs.labels(result=result)
        self.patches = patches
        self.fleet = fleet
        self.clock = clock
        self.monotonic = monotonic
        self.ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        registry.register(self)

    def count(self, result: str) -> None:
        """Count one stored install outcome."""
        self.installs.labels(result=result if result in RESULTS else "failed").inc()

    def describe(self) -> list[Metric]:
        """Return nothing: the families are built at collect time (no query at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the compliance and reboot families, computed at most every ttl seconds."""
        with self._lock:
            now = self.monotonic()
            if self._cached is None or now - self._cached[0] >= self.ttl:
                try:
                    self._cached = (now, self._families())
                except Exception:  # a scrape must not fail for the database: the last values
                    log.exception("computing patch compliance for /metrics failed")
                    if self._cached is None:
                        return
            families = self._cached[1]
        yield from families

    def _families(self) -> list[Metric]:
        agents = {
            state.record.id: state.record
            for state in self.fleet.snapshot()
            if state.record.revoked_at is None
        }
        rows = self.patches.compliance(list(agents), self.clock())
        listed: dict[tuple[str, str], int] = defaultdict(int)
        compliant: dict[tuple[str, str], int] = defaultdict(int)
        ratio = GaugeMetricFamily(
            "rmm_patch_compliance_ratio",
            "Share of the site's agents with a known update list that miss no approved update.",
            labels=["client", "site"],
        )
        reboot = GaugeMetricFamily(
            "rmm_reboot_pending",
            "1 while the agent waits for a reboot (its report or an install said so).",
            labels=["client", "site", "agent"],
        )
        states = self.patches.agent_states()
        for row in rows:
            record = agents[row.agent_id]
            key = (record.client, record.site)
            if row.listed:
                listed[key] += 1
                compliant[key] += int(row.compliant)
            if row.agent_id in states:
                reboot.add_metric(
                    [record.client, record.site, record.id], float(row.reboot_pending)
                )
        for key, count in sorted(listed.items()):
            ratio.add_metric(list(key), compliant[key] / count)
        return [ratio, reboot]
