"""What one agent may make the server store, and the disk space the server never uses.

Two checks run before a report is queued for storage and before a command result is written,
both cheap enough for every report:
- AgentByteBudget: bytes stored per agent (compressed report body and inventory, what the rows
  take, and the results of its commands: script output, pulled files, listings) in a fixed window
  of time, as one counter per agent for everything it makes the server store. An agent over its
  budget has its reports refused with RESOURCE_EXHAUSTED naming the budget and when it resets
  (they wait in its spool), and its command results stored as a failure saying the same.
  Counted in memory, per server process: a restart starts a new window, and with replicas each
  counts what it stored (an agent streams to one at a time).
- FreeSpaceReserve: free space of the filesystem holding the database, probed at most once a
  second (one statvfs), never used below a reserve, so that the database never fills its disk
  and operator writes, alert state and the other agents' latest state still fit.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rmm_common.durations import parse_duration
from rmm_common.errors import ConfigError, InvalidArgument, Unavailable
from rmm_server.ratelimit import RateLimited

log = logging.getLogger(__name__)

DEFAULT_AGENT_BYTE_BUDGET = 64 * 1024 * 1024
DEFAULT_BUDGET_WINDOW_SECONDS = 3600.0
DEFAULT_MIN_FREE_SPACE = 1024 * 1024 * 1024
FREE_SPACE_PROBE_SECONDS = 1.0

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(text: str, option: str) -> int:
    """Return the bytes `text` names ("512MiB", "2GB", "1048576"; "0" or "off": 0)."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned == "off":
        return 0
    digits = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(digits) :]
    try:
        value = float(digits)
    except ValueError:
        value = -1.0
    if unit not in _SIZE_UNITS or value < 0:
        raise ConfigError(
            f"{option} {text!r} is not a size: give bytes with a unit, e.g. 512MiB, 2GB, or off"
        )
    return int(value * _SIZE_UNITS[unit])


def parse_budget(text: str, option: str) -> tuple[int, float]:
    """Return (bytes, window seconds) from "SIZE/DURATION" ("64MiB/1h"); "off" gives 0 bytes."""
    if text.strip().lower() == "off":
        return 0, DEFAULT_BUDGET_WINDOW_SECONDS
    size, slash, window = text.partition("/")
    if not slash:
        raise ConfigError(f"{option} {text!r} is not SIZE/DURATION: e.g. 64MiB/1h, or off")
    try:
        seconds = parse_duration(window)
    except InvalidArgument as exc:
        raise ConfigError(f"{option} {text!r}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{option} {text!r}: the window must be longer than 0 s, e.g. 1h")
    return parse_size(size, option), seconds


def format_size(size: float) -> str:
    """Return `size` bytes in binary units for messages ("64 MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:g} {unit}" if unit == "B" else f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} GiB"


# What a budget refuses, and what becomes of it, for the refusal's message.
REPORT = "report"
COMMAND_RESULT = "command result"
_OUTCOME = {
    REPORT: "the report stays in the agent's spool",
    COMMAND_RESULT: "the result is not stored; the command is recorded as failed",
}


class BudgetExceeded(RateLimited):
    """An agent stored as many bytes as its budget allows in the current window; `first`:
    this is its first refusal of this kind (report, command result) in the window (logged
    once, counted every time)."""

    def __init__(self, message: str, retry_after: float, first: bool) -> None:
        super().__init__(message, retry_after)
        self.first = first


class DiskReserveReached(Unavailable):
    """The database's filesystem is down to its reserve: reports wait on their agents."""


@dataclass(slots=True)
class _Window:
    start: float
    used: int = 0
    told: set[str] = field(default_factory=set)  # kinds whose refusal was logged in this window


class AgentByteBudget:
    """Bytes each agent may have stored per window; `limit` 0 turns the budget off."""

    def __init__(
        self,
        limit: int = DEFAULT_AGENT_BYTE_BUDGET,
        window_seconds: float = DEFAULT_BUDGET_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.clock = clock
        # One small record per agent that stored something: bounded by the enrolled agents.
        self._windows: dict[str, _Window] = {}
        # Reports are charged in the ingest writer thread, command results on the event loop.
        self._lock = threading.Lock()

    def charge(self, agent_id: str, size: int, what: str = REPORT) -> None:
        """Count `size` bytes about to be stored for `agent_id`, or raise BudgetExceeded
        (counting nothing) when they do not fit in what is left of its budget. `what`: REPORT
        or COMMAND_RESULT, for the message (one budget counts both). Thread-safe."""
        if self.limit <= 0:
            return
        with self._lock:
            self._charge(agent_id, size, what)

    def _charge(self, agent_id: str, size: int, what: str) -> None:
        now = self.clock()
        # Windows are aligned to the clock (e.g. on the hour), so "resets at" is one time for
        # every agent and survives a restart's new counters only as a fresh window.
        start = now - now % self.window_seconds
        window = self._windows.get(agent_id)
        if window is None or window.start != start:
            window = self._windows[agent_id] = _Window(start)
        if window.used + size <= self.limit:
            window.used += size
            return
        resets_at = start + self.window_seconds
        budget = f"{format_size(self.limit)} per {_window_text(self.window_seconds)}"
        resets = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(resets_at))
        if what == REPORT:
            message = (
                f"agent {agent_id} reached its storage budget: {format_size(window.used)} stored "
                f"of {budget}, and this report takes {format_size(size)}; the budget resets at "
                f"{resets} (the server's --agent-byte-budget; {_OUTCOME[what]})"
            )
        else:
            # Shown as the command's error beside the agent's name: what matters first (a
            # summary line keeps about 110 characters of it).
            message = (
                f"agent storage budget reached (--agent-byte-budget {budget}; resets at "
                f"{resets}): {format_size(window.used)} stored, this {what} takes "
                f"{format_size(size)}; {_OUTCOME[what]}"
            )
        first = what not in window.told
        window.told.add(what)
        raise BudgetExceeded(message, retry_after=max(resets_at - now, 0.0), first=first)

    def used(self, agent_id: str) -> int:
        """Return the bytes counted for `agent_id` in the current window."""
        now = self.clock()
        window = self._windows.get(agent_id)
        if window is None or window.start != now - now % self.window_seconds:
            return 0
        return window.used


def _window_text(seconds: float) -> str:
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds / 86400:g} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds / 3600:g} hours"
    return f"{seconds:g} s"


StatvfsFn = Callable[[Path], os.statvfs_result]


def _statvfs(path: Path) -> os.statvfs_result:
    return os.statvfs(path)


class FreeSpaceReserve:
    """Refuse writes that would eat into the last `reserve` bytes of `path`'s filesystem.

    `path` is the directory of the SQLite database (a PostgreSQL server watches its own disk).
    The probe is one statvfs at most every `probe_seconds`: a report costs a clock read and a
    comparison. Bytes queued since the probe are subtracted, so a burst inside one second cannot
    run past the reserve either.
    """

    def __init__(
        self,
        path: Path,
        reserve: int = DEFAULT_MIN_FREE_SPACE,
        clock: Callable[[], float] = time.monotonic,
        statvfs: StatvfsFn = _statvfs,
        probe_seconds: float = FREE_SPACE_PROBE_SECONDS,
    ) -> None:
        self.path = path
        self.reserve = reserve
        self.clock = clock
        self.statvfs = statvfs
        self.probe_seconds = probe_seconds
        self._probed_at = -float("inf")
        self._free = 0
        self._since_probe = 0
        self.low = False  # under the reserve at the last check
        # Reports are charged in the ingest writer thread, command results on the event loop.
        self._lock = threading.Lock()

    def free_bytes(self) -> int:
        """Return the free bytes of the filesystem (for unprivileged writers), probed at most
        once per `probe_seconds`, less what was charged since."""
        with self._lock:
            return self._free_bytes()

    def _free_bytes(self) -> int:
        now = self.clock()
        if now - self._probed_at >= self.probe_seconds:
            try:
                stat = self.statvfs(self.path)
            except OSError as exc:
                # Cannot tell: do not refuse on a probe failure (the write itself would say).
                log.warning("cannot read the free space of %s: %s", self.path, exc)
                self._free = self.reserve + (1 << 62)
            else:
                self._free = stat.f_bavail * stat.f_frsize
            self._probed_at = now
            self._since_probe = 0
        return self._free - self._since_probe

    def charge(self, size: int, what: str = REPORT) -> None:
        """Count `size` bytes about to be written, or raise DiskReserveReached when the
        filesystem would be left with less than the reserve. `what`: REPORT or COMMAND_RESULT,
        for the message. Thread-safe."""
        if self.reserve <= 0:
            return
        with self._lock:
            self._charge(size, what)

    def _charge(self, size: int, what: str) -> None:
        free = self._free_bytes()
        if free - size >= self.reserve:
            self._since_probe += size
            if self.low:
                self.low = False
                log.warning(
                    "free space on %s is above the reserve again (%s free, reserve %s): "
                    "storing reports and command results again",
                    self.path,
                    format_size(free),
                    format_size(self.reserve),
                )
            return
        if not self.low:
            self.low = True
            log.error(
                "free space on %s is down to %s, under the reserve of %s (--min-free-space): "
                "refusing reports until space is freed (agents keep them in their spools) and "
                "storing command results as failed; free disk space or shorten --retention",
                self.path,
                format_size(free),
                format_size(self.reserve),
            )
        tail = (
            "the report is not stored; keep it and retry later"
            if what == REPORT
            else f"the {what} is not stored; the command is recorded as failed"
        )
        raise DiskReserveReached(
            f"the server's disk is down to its reserve ({format_size(free)} free, "
            f"{format_size(self.reserve)} kept free by --min-free-space): {tail}"
        )


# What one agent's reports may cost the event loop: a token bucket of CPU seconds per agent.
# 2 % of a core each second, with a burst of half a second: a real agent's report costs 0.1 to
# 0.3 ms to check (structure cached) and its first one, with the inventory, some tens of ms,
# so honest agents and their spool backlogs after an outage never meet it, while one agent
# sending 50 reports a second at the JSON limits (~50 ms each) is slowed to one every 2.5 s.
DEFAULT_AGENT_CPU_SHARE = 0.02
DEFAULT_AGENT_CPU_BURST_SECONDS = 0.5
# Longest single wait: a reader sleeping longer would outlive the agent's patience; it is
# delayed again at its next report if still in debt.
MAX_CPU_DELAY_SECONDS = 30.0


@dataclass(slots=True)
class _Bucket:
    level: float  # seconds of CPU the agent may spend now (negative: in debt)
    at: float
    told_at: float = -math.inf


class AgentCpuBudget:
    """Event-loop CPU each agent's reports may cost (validation, inventory comparison), as a
    token bucket: `share` seconds per second, up to `burst` seconds saved. An agent in debt has
    its next report read only when the debt is paid back (its stream waits; nothing is dropped
    or refused), so one hostile agent costs the server at most `share` of a core."""

    def __init__(
        self,
        share: float = DEFAULT_AGENT_CPU_SHARE,
        burst: float = DEFAULT_AGENT_CPU_BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if share <= 0 or burst <= 0:
            raise ConfigError(
                f"an agent CPU budget needs a share and a burst over 0, not {share} and {burst}"
            )
        self.share = share
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, agent_id: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(agent_id)
        if bucket is None:
            bucket = self._buckets[agent_id] = _Bucket(self.burst, now)
        else:
            bucket.level = min(self.burst, bucket.level + (now - bucket.at) * self.share)
            bucket.at = now
        return bucket

    def charge(self, agent_id: str, seconds: float) -> None:
        """Count `seconds` of CPU spent on `agent_id`'s report."""
        self._bucket(agent_id).level -= seconds

    def delay(self, agent_id: str) -> float:
        """Return how long the agent's next report must wait for its debt to be paid back
        (0: it may be read now)."""
        bucket = self._buckets.get(agent_id)
        if bucket is None:
            return 0.0
        bucket = self._bucket(agent_id)
        if bucket.level >= 0:
            return 0.0
        return min(-bucket.level / self.share, MAX_CPU_DELAY_SECONDS)

    def first_in(self, agent_id: str, seconds: float) -> bool:
        """Return whether `agent_id` was not said to be slowed in the last `seconds`, noting it
        as said now (one log line per agent and period)."""
        bucket = self._bucket(agent_id)
        if bucket.at - bucket.told_at < seconds:
            return False
        bucket.told_at = bucket.at
        return True

    def forget(self, agent_id: str) -> None:
        """Drop the agent's bucket (it left)."""
        self._buckets.pop(agent_id, None)
