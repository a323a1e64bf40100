"""Test the /proc/<pid>/stat reader on recorded lines and on this host."""

from __future__ import annotations

import os

import psutil
import pytest

from rmm_agent.collectors.processes import read_psutil_stats
from rmm_agent.collectors.processes_linux import parse_proc_stat, read_proc_stats

from .helpers import fixture_path


def recorded_lines() -> list[bytes]:
    return fixture_path("proc_pid_stat_debian12.txt").read_bytes().splitlines()


def test_parse_every_recorded_line() -> None:
    stats = [parse_proc_stat(line, 100, 4096) for line in recorded_lines()]
    assert len(stats) == len(recorded_lines()) > 50
    init = next(s for s in stats if s.pid == 1)
    # 1 (process_api) S ... utime 93, stime 521 ticks; 14 threads; rss 2610 pages.
    assert init.name == "process_api"
    assert init.status == "sleeping"
    assert init.cpu_seconds == pytest.approx((93 + 521) / 100)
    assert init.threads == 14
    assert init.rss_bytes == 2610 * 4096
    assert {s.status for s in stats} >= {"sleeping", "idle", "running"}


def test_name_with_spaces_and_parentheses() -> None:
    line = next(line for line in recorded_lines() if b"evil" in line)
    stat = parse_proc_stat(line, 100, 4096)
    assert stat.name == "evil) (name"
    assert stat.status == "running"


@pytest.mark.linux
def test_reader_agrees_with_psutil_on_this_host() -> None:
    ours = {s.pid: s for s in read_proc_stats()}
    theirs = {s.pid: s for s in read_psutil_stats(psutil)}
    assert os.getpid() in ours
    common = ours.keys() & theirs.keys()
    assert len(common) >= 0.9 * len(ours)
    me_ours, me_theirs = ours[os.getpid()], theirs[os.getpid()]
    assert me_ours.cpu_seconds == pytest.approx(me_theirs.cpu_seconds, abs=0.5)
    assert me_ours.rss_bytes == pytest.approx(me_theirs.rss_bytes, rel=0.2)
    assert me_ours.threads == me_theirs.threads
    assert me_ours.status == "running"
