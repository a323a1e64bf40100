"""Test the memory collector with fake psutil readings."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from rmm_agent.collectors.memory import MemoryCollector

from .helpers import check_output, value

LinuxVm = namedtuple("LinuxVm", "total available percent used free buffers cached")
WindowsVm = namedtuple("WindowsVm", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")


def test_linux_memory_and_swap() -> None:
    fake = SimpleNamespace(
        virtual_memory=lambda: LinuxVm(8000, 6000, 25.0, 1500, 500, 100, 4000),
        swap_memory=lambda: Swap(2000, 500, 1500, 25.0, 4096, 8192),
    )
    out = MemoryCollector(psutil_module=fake, platform="linux").collect()
    assert value(out, "memory_usage_ratio") == pytest.approx(0.25)
    assert value(out, "memory_cached_bytes") == 4000
    assert value(out, "swap_usage_ratio") == pytest.approx(0.25)
    assert value(out, "swap_out_bytes_total") == 8192
    check_output(MemoryCollector, out)


def test_windows_without_swap_leaves_out_what_it_does_not_know() -> None:
    fake = SimpleNamespace(
        virtual_memory=lambda: WindowsVm(8000, 2000, 75.0, 6000, 2000),
        swap_memory=lambda: Swap(0, 0, 0, 0.0, 0, 0),
    )
    out = MemoryCollector(psutil_module=fake, platform="win32").collect()
    names = {s.name for s in out.samples}
    assert "memory_cached_bytes" not in names
    assert "swap_usage_ratio" not in names, "no ratio without swap"
    assert "swap_in_bytes_total" not in names, "psutil gives a constant 0 on Windows"
    assert value(out, "memory_usage_ratio") == pytest.approx(0.75)
    check_output(MemoryCollector, out)
