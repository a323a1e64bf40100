"""Collect CPU usage, time per mode, load average, frequency and counts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors._common import PsutilModule, is_finite
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)


def split_times(times: Any) -> tuple[float, float]:
    """Return (total, busy) seconds of one psutil cpu_times() reading."""
    values: dict[str, float] = {k: float(v) for k, v in times._asdict().items()}
    total = sum(values.values())
    # Linux counts guest time inside user (and guest_nice inside nice): do not count it twice.
    total -= values.get("guest", 0.0) + values.get("guest_nice", 0.0)
    # Waiting for I/O is idle CPU, as psutil.cpu_percent() and top count it.
    busy = total - values.get("idle", 0.0) - values.get("iowait", 0.0)
    return total, busy


def busy_ratio(before: Any, after: Any) -> float:
    """Return the fraction of CPU time spent busy between two cpu_times() readings."""
    total_before, busy_before = split_times(before)
    total_after, busy_after = split_times(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        return 0.0
    return min(1.0, max(0.0, (busy_after - busy_before) / elapsed))


class CpuCollector:
    """Report CPU usage from the difference between two readings of CPU times."""

    name: ClassVar[str] = "cpu"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.CPU

    def __init__(
        self,
        *,
        psutil_module: PsutilModule = psutil,
        prime_seconds: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._psutil = psutil_module
        self._prime_seconds = prime_seconds
        self._sleep = sleep
        self._previous: Any = None
        self._previous_per_core: Sequence[Any] = ()
        self._logical: int | None = None
        self._physical: int | None = None

    def collect(self) -> CollectorOutput:
        """Read CPU times, load, frequency and counts; prime a first reading if there is none."""
        ps = self._psutil
        if self._previous is None:
            # Without a previous reading there is no interval to measure: take one and wait a
            # little so that the very first collection (`collect --once`) reports a real number.
            self._previous = ps.cpu_times()
            self._previous_per_core = ps.cpu_times(percpu=True)
            self._sleep(self._prime_seconds)
        now = ps.cpu_times()
        now_per_core = ps.cpu_times(percpu=True)

        samples = [Sample("cpu_usage_ratio", busy_ratio(self._previous, now))]
        if len(now_per_core) == len(self._previous_per_core):
            pairs = zip(self._previous_per_core, now_per_core, strict=True)
            for core, (before, after) in enumerate(pairs):
                ratio = busy_ratio(before, after)
                samples.append(Sample("cpu_core_usage_ratio", ratio, {"core": str(core)}))
        else:
            # A CPU went on- or offline: indexes no longer match, skip one round of per-core data.
            log.debug(
                "cpu: core count changed %d -> %d", len(self._previous_per_core), len(now_per_core)
            )
        self._previous, self._previous_per_core = now, now_per_core

        for mode, seconds in now._asdict().items():
            samples.append(Sample("cpu_seconds_total", float(seconds), {"mode": mode}))
        samples.extend(self._load(ps))
        samples.extend(self._frequency(ps))
        logical = ps.cpu_count(logical=True)
        if logical != self._logical:
            # Counting cores walks sysfs topology (0.15 ms): do it again only on CPU hotplug.
            self._logical, self._physical = logical, ps.cpu_count(logical=False)
        for metric, count in (
            ("cpu_logical_cores", logical),
            ("cpu_physical_cores", self._physical),
        ):
            if count:
                samples.append(Sample(metric, float(count)))
        return CollectorOutput(samples=samples)

    @staticmethod
    def _load(ps: PsutilModule) -> list[Sample]:
        """Return load average samples, or none where the platform has no load average."""
        try:
            loads = ps.getloadavg()
        except (OSError, AttributeError) as exc:
            log.debug("cpu: no load average: %s", exc)
            return []
        names = ("cpu_load1", "cpu_load5", "cpu_load15")
        return [Sample(n, float(v)) for n, v in zip(names, loads, strict=True) if is_finite(v)]

    @staticmethod
    def _frequency(ps: PsutilModule) -> list[Sample]:
        """Return frequency samples in hertz, or none where the platform does not expose it."""
        try:
            freq = ps.cpu_freq()
        except (OSError, NotImplementedError, AttributeError) as exc:
            log.debug("cpu: no frequency: %s", exc)
            return []
        if freq is None:
            return []
        samples = []
        # psutil reports MHz; 0 means unknown (common in VMs for the maximum).
        if freq.current and is_finite(freq.current):
            samples.append(Sample("cpu_frequency_hertz", float(freq.current) * 1e6))
        if freq.max and is_finite(freq.max):
            samples.append(Sample("cpu_frequency_max_hertz", float(freq.max) * 1e6))
        return samples
