"""Share small helpers between collectors: safe file reads, exit-status commands, labels."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from rmm_agent.collectors.base import run_tracked

log = logging.getLogger(__name__)

# psutil itself, or a test fake exposing the same functions. psutil's stubs overload most
# functions on a Literal flag, which no Protocol can match, so the module is typed loosely
# and every value taken from it is converted explicitly.
PsutilModule = Any

# Returns seconds; `time.monotonic` for intervals, `time.time` for wall-clock timestamps.
Clock = Callable[[], float]

# Runs a command and returns (exit status, stdout) for tools whose exit status is an answer
# rather than a failure (`systemd-detect-virt` exits 1 for "none", `needs-restarting -r`
# exits 1 when a reboot is needed); raises CommandError when the command cannot run at all.
T = TypeVar("T")


class Refresher(Generic[T]):
    """Hold the last value read and read it again once `every` seconds have passed."""

    def __init__(self, read: Callable[[], T], every: float, clock: Clock) -> None:
        self._read = read
        self._every = every
        self._clock = clock
        self._value: T | None = None
        self._read_at = 0.0

    def get(self) -> T:
        """Return the value, read again when it is older than the interval."""
        now = self._clock()
        if self._value is None or now - self._read_at >= self._every:
            self._value = self._read()
            self._read_at = now
        return self._value


StatusRunner = Callable[[Sequence[str]], tuple[int, str]]


def run_status(argv: Sequence[str], timeout: float = 20.0) -> tuple[int, str]:
    """Run `argv` and return its exit status and stdout; raise CommandError if it cannot run."""
    returncode, stdout, _stderr = run_tracked(argv, timeout)
    return returncode, stdout.decode("utf-8", "replace")


def read_text(path: Path) -> str | None:
    """Return a file's text, or None when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        # sysfs and procfs answer EACCES, ENOENT, ENODEV or EIO for attributes a device
        # does not have or a user may not read: that is "no data", not a failure.
        log.debug("cannot read %s: %s", path, exc)
        return None


def read_line(path: Path) -> str | None:
    """Return a file's first line stripped, or None when missing, unreadable or empty."""
    text = read_text(path)
    if text is None:
        return None
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else None


def read_int(path: Path) -> int | None:
    """Return a file's content as an integer, or None when missing or not a number."""
    line = read_line(path)
    if line is None:
        return None
    try:
        return int(line)
    except ValueError:
        log.debug("%s: expected an integer, got %r", path, line[:40])
        return None


def is_finite(value: float | None) -> bool:
    """Tell whether `value` is a real, finite number."""
    return value is not None and math.isfinite(value)


def unique_label(seen: set[tuple[str, ...]], key: tuple[str, ...]) -> tuple[str, ...]:
    """Return `key`, suffixed with _2, _3... on its last part if already in `seen`; record it."""
    candidate = key
    n = 1
    while candidate in seen:
        n += 1
        candidate = (*key[:-1], f"{key[-1]}_{n}")
    seen.add(candidate)
    return candidate
