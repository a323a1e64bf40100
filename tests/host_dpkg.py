"""One test at a time on the host's dpkg: tests that install .debs for real run in several
workers (`--dist loadfile` puts different files on different workers), and two of them at once
would find each other holding dpkg's lock and fail as "locked"."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

LOCK = Path("/tmp/rmm-tests-host-dpkg.lock")

# Re-entrant inside one process: a fixture may hold it around a helper that takes it too (a
# second flock on a new descriptor of the same file would wait for ourselves forever).
_held = threading.local()


@contextlib.contextmanager
def host_dpkg() -> Iterator[None]:
    """Hold the tests' own lock on the host's dpkg (waiting for another test to finish)."""
    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.depth = 1
        yield
    finally:
        _held.depth = 0
        os.close(fd)  # releases the lock
