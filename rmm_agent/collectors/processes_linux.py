"""Read every process's state, CPU time, memory and threads from /proc/<pid>/stat in one pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

# /proc/<pid>/stat state letters, named as psutil names them (proc_pid_stat(5)).
STATUS_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "T": "stopped",
    "t": "tracing-stop",
    "Z": "zombie",
    "X": "dead",
    "x": "dead",
    "K": "wake-kill",
    "W": "waking",
    "P": "parked",
    "I": "idle",
}


class ProcStat(NamedTuple):
    """The cheap facts about one process that every collection needs."""

    pid: int
    # Identifies this process among any later one reusing its pid (start time, in any unit).
    start: float
    status: str
    cpu_seconds: float
    rss_bytes: float
    threads: int | None
    name: str | None


def parse_proc_stat(data: bytes, clock_ticks: int, page_size: int) -> ProcStat:
    """Parse one /proc/<pid>/stat line."""
    # The command name sits in parentheses and may itself contain spaces and parentheses:
    # split around the last ")" rather than on whitespace.
    open_paren, close_paren = data.index(b"("), data.rindex(b")")
    pid = int(data[:open_paren])
    name = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
    # fields[0] is field 3 of proc_pid_stat(5): field N is fields[N - 3].
    fields = data[close_paren + 2 :].split()
    state = fields[0].decode("ascii", "replace")
    return ProcStat(
        pid,
        float(fields[19]),  # 22 starttime, clock ticks after boot
        STATUS_NAMES.get(state, state),
        (int(fields[11]) + int(fields[12])) / clock_ticks,  # 14 utime, 15 stime
        float(int(fields[21]) * page_size),  # 24 rss, pages
        int(fields[17]),  # 20 num_threads
        name,
    )


def read_proc_stats(proc_root: Path = Path("/proc")) -> list[ProcStat]:
    """Read /proc/<pid>/stat of every process; those that exit meanwhile are skipped."""
    clock_ticks = os.sysconf("SC_CLK_TCK")
    page_size = os.sysconf("SC_PAGE_SIZE")
    stats = []
    # Plain strings, os.open and os.read: pathlib and open() would double the cost of this
    # loop, which runs for every process every cycle.
    root = str(proc_root)
    for entry in os.listdir(root):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"{root}/{entry}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            continue  # the process exited between listdir and open
        if data:
            stats.append(parse_proc_stat(data, clock_ticks, page_size))
    return stats
