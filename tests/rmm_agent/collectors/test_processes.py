"""Test the processes collector: CPU ratio between calls, top N, counts by status."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmm_agent.collectors.processes import ProcessesCollector, read_psutil_stats
from rmm_agent.collectors.processes_linux import ProcStat

from .helpers import FakeClock, check_output, value


def proc(
    pid: int, cpu: float, rss: float, status: str = "sleeping", start: float = 1.0
) -> ProcStat:
    return ProcStat(pid, start, status, cpu, rss, 1, f"comm{pid}")


class Scenario:
    """Hand the collector one prepared process list per call; record name lookups."""

    def __init__(self, *rounds: list[ProcStat]) -> None:
        self.rounds = list(rounds)
        self.described: list[int] = []

    def read(self) -> list[ProcStat]:
        return self.rounds.pop(0)

    def describe(self, pid: int) -> tuple[str | None, str | None]:
        self.described.append(pid)
        return (f"name{pid}", "root") if pid != 3 else (None, None)


def collector(scenario: Scenario, clock: FakeClock, top_n: int = 2) -> ProcessesCollector:
    return ProcessesCollector(
        psutil_module=SimpleNamespace(cpu_count=lambda: 2),
        reader=scenario.read,
        describer=scenario.describe,
        clock=clock,
        top_n=top_n,
    )


def test_cpu_ratio_comes_from_two_readings_and_is_zero_at_first() -> None:
    scenario = Scenario(
        [proc(1, 10.0, 100), proc(2, 50.0, 900), proc(3, 0.0, 500)],
        # 10 s later on 2 CPUs: pid 1 used 5 s (0.25), pid 2 1 s (0.05), pid 4 is new.
        [proc(1, 15.0, 100), proc(2, 51.0, 900), proc(3, 0.0, 500), proc(4, 99.0, 50)],
    )
    clock = FakeClock()
    c = collector(scenario, clock)
    first = c.collect()
    assert all(p["cpu_ratio"] == 0.0 for p in first.info["top_cpu"]), "first call reports 0"
    clock.advance(10)
    second = c.collect()
    assert [(p["pid"], p["cpu_ratio"]) for p in second.info["top_cpu"]] == [(1, 0.25), (2, 0.05)]
    assert [p["pid"] for p in second.info["top_memory"]] == [2, 3]
    assert second.info["top_memory"][0] == {
        "pid": 2,
        "name": "name2",
        "user": "root",
        "cpu_ratio": 0.05,
        "rss_bytes": 900,
    }
    # Unreadable name falls back to the kernel's short name; user stays unknown.
    assert second.info["top_memory"][1]["name"] == "comm3"
    assert second.info["top_memory"][1]["user"] is None
    check_output(ProcessesCollector, second)


def test_reused_pid_is_a_new_process() -> None:
    scenario = Scenario([proc(7, 100.0, 1, start=1.0)], [proc(7, 101.0, 1, start=2.0)])
    clock = FakeClock()
    c = collector(scenario, clock)
    c.collect()
    clock.advance(1)
    assert c.collect().info["top_cpu"][0]["cpu_ratio"] == 0.0


def test_names_are_looked_up_once_per_process() -> None:
    rounds = [[proc(1, float(i), 10), proc(2, 0.0, 20)] for i in range(3)]
    scenario = Scenario(*rounds)
    clock = FakeClock()
    c = collector(scenario, clock)
    for _ in rounds:
        c.collect()
        clock.advance(1)
    assert sorted(scenario.described) == [1, 2]


def test_counts_by_status_always_include_the_usual_ones() -> None:
    scenario = Scenario(
        [
            proc(1, 0, 1, "running"),
            proc(2, 0, 1, "zombie"),
            proc(3, 0, 1, "zombie"),
            proc(4, 0, 1, "tracing-stop"),
        ]
    )
    out = collector(scenario, FakeClock()).collect()
    assert value(out, "processes") == 4
    assert value(out, "processes_by_status", status="zombie") == 2
    assert value(out, "processes_by_status", status="sleeping") == 0
    assert value(out, "processes_by_status", status="tracing-stop") == 1
    assert value(out, "processes_threads") == 4
    check_output(ProcessesCollector, out)


def test_info_lists_every_process_name_once_sorted() -> None:
    rounds = [proc(1, 0, 1), proc(2, 0, 1), proc(3, 0, 1), proc(4, 0, 1)]
    rounds[1] = ProcStat(2, 1.0, "sleeping", 0.0, 1.0, 1, "nginx")
    rounds[2] = ProcStat(3, 1.0, "sleeping", 0.0, 1.0, 1, "nginx")
    rounds[3] = ProcStat(4, 1.0, "sleeping", 0.0, 1.0, 1, None)
    out = collector(Scenario(rounds), FakeClock()).collect()
    assert out.info["names"] == ["comm1", "nginx"]


def test_top_n_is_a_parameter() -> None:
    scenario = Scenario([proc(pid, 0, pid) for pid in range(1, 30)])
    out = collector(scenario, FakeClock(), top_n=5).collect()
    assert [p["pid"] for p in out.info["top_memory"]] == [29, 28, 27, 26, 25]


def test_psutil_reader_maps_attributes_and_denied_ones() -> None:
    Times = namedtuple("Times", "user system children_user children_system")
    Mem = namedtuple("Mem", "rss vms")
    procs = [
        SimpleNamespace(
            pid=0,
            info={
                "status": "running",
                "cpu_times": Times(1, 2, 0, 0),
                "memory_info": Mem(8, 16),
                "create_time": 0.0,
                "num_threads": 4,
            },
        ),
        SimpleNamespace(
            pid=8,
            info={
                "name": "sshd",
                "status": "stopped",
                "cpu_times": None,
                "memory_info": None,
                "create_time": None,
                "num_threads": None,
            },
        ),
    ]
    fake = SimpleNamespace(process_iter=lambda attrs: iter(procs))
    stats = read_psutil_stats(fake)
    assert stats[0] == ProcStat(0, 0.0, "running", 3.0, 8.0, 4, None)
    assert stats[1] == ProcStat(8, 0.0, "stopped", 0.0, 0.0, None, "sshd")


@pytest.mark.linux
def test_real_host_sees_this_test_process_busy() -> None:
    c = ProcessesCollector(top_n=50)
    c.collect()
    sum(i * i for i in range(2_000_000))  # burn some CPU between the two readings
    out = c.collect()
    me = next(p for p in out.info["top_cpu"] if p["pid"] == os.getpid())
    assert Path("/proc/self/comm").read_text().strip() in out.info["names"]
    assert me["cpu_ratio"] > 0
    assert me["rss_bytes"] > 10_000_000
    check_output(ProcessesCollector, out)
