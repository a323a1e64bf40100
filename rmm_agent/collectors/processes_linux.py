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
    """Read /proc/<pid>/stat of every process once; those that exit meanwhile are skipped."""
    return ProcStatReader(proc_root, max_open=0)()


# Files kept open at most: a quarter of the process's file limit, never more than this.
MAX_KEPT_OPEN = 1024


class ProcStatReader:
    """Read /proc/<pid>/stat of every process, keeping each file open from one read to the next.

    A kept file is read again from its start (pread): one system call a process instead of
    three (open, read, close). A kept file belongs to its process, not to its pid: once the
    process has ended, reading it fails (ESRCH) even when a new process has the pid, and the
    new one's file is opened in its place. A line equal to the previous one (a process that
    did not run since: most of them) is not parsed again.
    """

    def __init__(self, proc_root: Path = Path("/proc"), max_open: int | None = None) -> None:
        self._root = str(proc_root)
        if max_open is None:
            # POSIX only, and this module is imported on Windows too (for ProcStat).
            import resource  # noqa: PLC0415

            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            max_open = MAX_KEPT_OPEN if soft == resource.RLIM_INFINITY else soft // 4
            max_open = min(MAX_KEPT_OPEN, max_open)
        self._max_open = max_open
        self._clock_ticks = os.sysconf("SC_CLK_TCK")
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        # /proc entry (the pid) -> its open stat file, the line last read and what it says.
        self._kept: dict[str, tuple[int, bytes, ProcStat]] = {}

    @property
    def open_files(self) -> int:
        """How many stat files are kept open now."""
        return len(self._kept)

    def __call__(self) -> list[ProcStat]:
        """Return every process's stat; those that exit meanwhile are skipped."""
        root, previous, room = self._root, self._kept, self._max_open
        kept: dict[str, tuple[int, bytes, ProcStat]] = {}
        stats = []
        for entry in os.listdir(root):
            if not entry.isdigit():
                continue
            known = previous.pop(entry, None)
            if known is not None:
                fd = known[0]
                try:
                    data = os.pread(fd, 4096, 0)
                except OSError:
                    data = b""  # that process ended (the pid may be another's now): open anew
                if not data:
                    os.close(fd)
                    known = None
            if known is None:
                try:
                    fd = os.open(f"{root}/{entry}/stat", os.O_RDONLY)
                except OSError:
                    continue  # the process exited between listdir and open
                try:
                    data = os.pread(fd, 4096, 0)
                except OSError:
                    data = b""
                if not data:
                    os.close(fd)
                    continue
            if known is not None and known[1] == data:
                stat = known[2]
            else:
                stat = parse_proc_stat(data, self._clock_ticks, self._page_size)
            stats.append(stat)
            if len(kept) < room:
                kept[entry] = (fd, data, stat)
            else:
                os.close(fd)
        for fd, _data, _stat in previous.values():  # processes that are gone
            os.close(fd)
        self._kept = kept
        return stats

    def close(self) -> None:
        """Close every kept file (only when no read runs in another thread)."""
        kept, self._kept = self._kept, {}
        for fd, _data, _stat in kept.values():
            os.close(fd)

    def __del__(self) -> None:
        self.close()
