"""Test the CPU collector with fake psutil readings."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator
from typing import Any

import pytest

from rmm_agent.collectors.cpu import CpuCollector, busy_ratio

from .helpers import check_output, value, values

Times = namedtuple(
    "Times", "user nice system idle iowait irq softirq steal guest guest_nice"
)  # the field order of psutil's scputimes on Linux
Freq = namedtuple("Freq", "current min max")


def times(
    user: float, idle: float, *, system: float = 0.0, iowait: float = 0.0, guest: float = 0.0
) -> Times:
    return Times(user, 0.0, system, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class FakePsutil:
    """Hand out prepared cpu_times() readings one pair (total, per core) at a time."""

    def __init__(self, readings: list[tuple[Times, list[Times]]]) -> None:
        self._readings: Iterator[tuple[Times, list[Times]]] = iter(readings)
        self._per_core: list[Times] = []
        self.freq: Any = Freq(2400.0, 0.0, 3600.0)
        self.load: Any = (0.5, 0.25, 0.125)

    def cpu_times(self, percpu: bool = False) -> Any:
        if percpu:
            return self._per_core
        total, self._per_core = next(self._readings)
        return total

    def getloadavg(self) -> Any:
        if isinstance(self.load, Exception):
            raise self.load
        return self.load

    def cpu_freq(self) -> Any:
        return self.freq

    def cpu_count(self, logical: bool = True) -> int | None:
        return 2 if logical else None


def test_busy_ratio_counts_iowait_as_idle_and_guest_once() -> None:
    before = times(user=100, idle=100)
    # 30 s user (of which 10 s guest, already inside user), 10 s iowait, 60 s idle.
    after = times(user=130, idle=160, iowait=10, guest=10)
    assert busy_ratio(before, after) == pytest.approx(30 / 100)


def test_busy_ratio_is_zero_when_no_time_passed() -> None:
    t = times(user=5, idle=5)
    assert busy_ratio(t, t) == 0.0


def test_first_collect_primes_then_uses_the_previous_reading() -> None:
    fake = FakePsutil(
        [
            (times(100, 300), [times(50, 150), times(50, 150)]),
            (times(150, 350), [times(100, 150), times(50, 200)]),  # core 0 busy, core 1 idle
            (times(160, 440), [times(105, 195), times(55, 245)]),
        ]
    )
    slept: list[float] = []
    collector = CpuCollector(psutil_module=fake, prime_seconds=0.25, sleep=slept.append)

    first = collector.collect()
    assert slept == [0.25]
    assert value(first, "cpu_usage_ratio") == pytest.approx(0.5)
    assert value(first, "cpu_core_usage_ratio", core="0") == pytest.approx(1.0)
    assert value(first, "cpu_core_usage_ratio", core="1") == pytest.approx(0.0)

    second = collector.collect()
    assert slept == [0.25], "no priming once a previous reading exists"
    assert value(second, "cpu_usage_ratio") == pytest.approx(10 / 100)
    assert value(second, "cpu_seconds_total", mode="user") == 160.0
    assert value(second, "cpu_seconds_total", mode="idle") == 440.0
    check_output(CpuCollector, second)


def test_load_frequency_and_counts() -> None:
    fake = FakePsutil([(times(1, 1), [times(1, 1)])] * 2)
    out = CpuCollector(psutil_module=fake, sleep=lambda _: None).collect()
    assert value(out, "cpu_load1") == 0.5
    assert value(out, "cpu_load15") == 0.125
    assert value(out, "cpu_frequency_hertz") == 2.4e9
    assert value(out, "cpu_frequency_max_hertz") == 3.6e9
    assert value(out, "cpu_logical_cores") == 2
    assert "cpu_physical_cores" not in {s.name for s in out.samples}, "None means unknown"


def test_missing_load_and_frequency_are_left_out() -> None:
    fake = FakePsutil([(times(1, 1), [times(1, 1)])] * 2)
    fake.load = OSError("no load average here")
    fake.freq = None
    out = CpuCollector(psutil_module=fake, sleep=lambda _: None).collect()
    names = {s.name for s in out.samples}
    assert not names & {"cpu_load1", "cpu_load5", "cpu_load15", "cpu_frequency_hertz"}
    check_output(CpuCollector, out)


def test_core_count_change_skips_per_core_ratios_once() -> None:
    fake = FakePsutil(
        [
            (times(10, 10), [times(5, 5), times(5, 5)]),
            (times(20, 20), [times(10, 10), times(10, 10)]),
            (times(30, 30), [times(15, 15)]),  # a core went offline
            (times(40, 40), [times(20, 20)]),
        ]
    )
    collector = CpuCollector(psutil_module=fake, sleep=lambda _: None)
    collector.collect()
    assert values(collector.collect(), "cpu_core_usage_ratio") == {}
    assert set(values(collector.collect(), "cpu_core_usage_ratio")) == {(("core", "0"),)}


def test_real_host_first_collect_gives_a_ratio_between_0_and_1() -> None:
    out = CpuCollector(prime_seconds=0.05).collect()
    assert 0.0 <= value(out, "cpu_usage_ratio") <= 1.0
    assert value(out, "cpu_logical_cores") >= 1
    check_output(CpuCollector, out)
