"""Collect physical memory and swap usage."""

from __future__ import annotations

import sys
from typing import ClassVar

import psutil

from rmm_agent.collectors._common import PsutilModule
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec


class MemoryCollector:
    """Report memory and swap sizes, usage ratios and swap traffic."""

    name: ClassVar[str] = "memory"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.MEMORY

    def __init__(
        self, *, psutil_module: PsutilModule = psutil, platform: str = sys.platform
    ) -> None:
        self._psutil = psutil_module
        self._platform = platform

    def collect(self) -> CollectorOutput:
        """Read memory and swap figures."""
        vm = self._psutil.virtual_memory()
        total = float(vm.total)
        samples = [
            Sample("memory_total_bytes", total),
            Sample("memory_available_bytes", float(vm.available)),
            Sample("memory_used_bytes", float(vm.used)),
            Sample("memory_free_bytes", float(vm.free)),
        ]
        # Only some platforms have these fields (Linux, BSD; not Windows or macOS).
        for field, metric in (
            ("cached", "memory_cached_bytes"),
            ("buffers", "memory_buffers_bytes"),
        ):
            value = getattr(vm, field, None)
            if value is not None:
                samples.append(Sample(metric, float(value)))
        if total > 0:
            samples.append(Sample("memory_usage_ratio", 1.0 - float(vm.available) / total))

        swap = self._psutil.swap_memory()
        samples += [
            Sample("swap_total_bytes", float(swap.total)),
            Sample("swap_used_bytes", float(swap.used)),
            Sample("swap_free_bytes", float(swap.free)),
        ]
        if swap.total > 0:
            samples.append(Sample("swap_usage_ratio", float(swap.used) / float(swap.total)))
        # psutil documents sin/sout as always 0 on Windows: a constant 0 would be a false reading.
        if not self._platform.startswith("win"):
            samples.append(Sample("swap_in_bytes_total", float(swap.sin)))
            samples.append(Sample("swap_out_bytes_total", float(swap.sout)))
        return CollectorOutput(samples=samples)
