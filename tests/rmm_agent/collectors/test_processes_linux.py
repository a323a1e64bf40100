"""Test the /proc/<pid>/stat reader on recorded lines and on this host."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from rmm_agent.collectors.processes import read_psutil_stats
from rmm_agent.collectors.processes_linux import (
    ProcStatReader,
    parse_proc_stat,
    read_proc_stats,
)

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


def stat_line(pid: int, name: str, start: int, utime: int = 0) -> bytes:
    """A /proc/<pid>/stat line with the fields the reader uses set, the others 0."""
    fields = ["0"] * 50
    fields[0] = "S"
    fields[11], fields[17], fields[19], fields[21] = str(utime), "1", str(start), "10"
    return f"{pid} ({name}) {' '.join(fields)}\n".encode()


def write_stat(root: Path, pid: int, line: bytes) -> Path:
    path = root / str(pid) / "stat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(line)
    return path


def test_kept_file_follows_its_process_and_a_reused_pid_is_opened_anew(tmp_path: Path) -> None:
    write_stat(tmp_path, 7, stat_line(7, "old", start=100))
    write_stat(tmp_path, 8, stat_line(8, "steady", start=50))
    reader = ProcStatReader(tmp_path)
    first = {s.pid: s for s in reader()}
    assert (first[7].name, first[7].start) == ("old", 100.0)
    assert reader.open_files == 2
    # Process 7 ends (its kept file reads nothing, as /proc's gives ESRCH) and a new process
    # takes pid 7; process 8 runs a little; a new process 9 appears.
    old = tmp_path / "7" / "stat"
    replacement = tmp_path / "7" / "stat.new"
    replacement.write_bytes(stat_line(7, "new", start=300))
    old.write_bytes(b"")
    replacement.replace(old)
    with (tmp_path / "8" / "stat").open("r+b") as kept_inode:  # the same file, changed
        kept_inode.write(stat_line(8, "steady", start=50, utime=500))
    write_stat(tmp_path, 9, stat_line(9, "fresh", start=400))
    second = {s.pid: s for s in reader()}
    assert (second[7].name, second[7].start) == ("new", 300.0)
    assert second[8].cpu_seconds == 500 / os.sysconf("SC_CLK_TCK")
    assert second[9].name == "fresh"
    assert reader.open_files == 3
    # Unchanged lines are not parsed again; a process gone is forgotten and its file closed.
    (tmp_path / "9" / "stat").unlink()
    (tmp_path / "9").rmdir()
    third = {s.pid: s for s in reader()}
    assert third[7] is second[7] and third[8] is second[8] and 9 not in third
    assert reader.open_files == 2
    reader.close()
    assert reader.open_files == 0


def test_files_beyond_the_limit_are_read_and_closed(tmp_path: Path) -> None:
    for pid in range(1, 6):
        write_stat(tmp_path, pid, stat_line(pid, f"p{pid}", start=pid))
    reader = ProcStatReader(tmp_path, max_open=2)
    for _ in range(2):
        assert sorted(s.pid for s in reader()) == [1, 2, 3, 4, 5]
        assert reader.open_files == 2
    assert sorted(s.pid for s in read_proc_stats(tmp_path)) == [1, 2, 3, 4, 5]


@pytest.mark.linux
def test_reader_sees_a_new_process_and_forgets_one_that_ended() -> None:
    reader = ProcStatReader()
    before = {s.pid for s in reader()}
    child = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while True:  # until the child has exec'd sleep (its comm was python's before)
            seen = {s.pid: s for s in reader()}
            if seen[child.pid].name == "sleep" or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert child.pid not in before and seen[child.pid].name == "sleep"
    finally:
        child.kill()
        child.wait()
    after = {s.pid for s in reader()}
    assert child.pid not in after
    assert reader.open_files == len(after)
    reader.close()
