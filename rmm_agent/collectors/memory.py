"""Collect physical memory and swap usage."""

from __future__ import annotations

import sys
from typing import ClassVar

import psutil

from rmm_agent.collectors._common import PsutilModule, counter, gauge
from rmm_agent.collectors.base import CollectorOutput, MetricSpec, Sample


class MemoryCollector:
    """Report memory and swap sizes, usage ratios and swap traffic."""

    name: ClassVar[str] = "memory"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        gauge("memory_total_bytes", "Physical memory installed and usable by the OS."),
        gauge("memory_available_bytes", "Memory available to start new programs without swapping."),
        gauge("memory_used_bytes", "Memory in use, as the OS reports it."),
        gauge("memory_free_bytes", "Memory not used at all (not even as cache)."),
        gauge("memory_cached_bytes", "Memory used as page cache."),
        gauge("memory_buffers_bytes", "Memory used for block-device buffers."),
        gauge("memory_usage_ratio", "Fraction of memory not available: 1 - available/total."),
        gauge("swap_total_bytes", "Swap space configured."),
        gauge("swap_used_bytes", "Swap space in use."),
        gauge("swap_free_bytes", "Swap space free."),
        gauge("swap_usage_ratio", "Fraction of swap space in use (absent without swap)."),
        counter("swap_in_bytes_total", "Bytes swapped in from disk since boot."),
        counter("swap_out_bytes_total", "Bytes swapped out to disk since boot."),
    )

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
