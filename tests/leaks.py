"""No process a test starts outlives the test session (each pytest process, each xdist worker).

A test that kills a process but not its children orphans them, and Linux hands orphans to init,
out of sight of anyone looking at our descendants. So this process makes itself a child
subreaper (prctl PR_SET_CHILD_SUBREAPER): orphans of its descendants become its own children
and stay in view. Descendants are noted just before every test's teardown, to name the test a
leak came from. At the end of the session every descendant still running (and every noted
process still alive, the same pid and start time, wherever it hangs) is reported with its
command line and the first test it was seen under, then killed; the session errors (the last
test's teardown fails), so a leak cannot pass unnoticed.

Only processes of our own user count: a system service a test restarts through a tool that
switches user (PostgreSQL's postmaster, which pg_ctlcluster daemonizes) may end up below us and
is not ours to kill.

tests/conftest.py imports the hook and the fixture; a pytest run elsewhere can load this module
with `-p tests.leaks`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

# Killed survivors get this long to go after SIGTERM before SIGKILL.
TERM_GRACE_SECONDS = 3.0
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> bool:
    """Adopt orphaned descendants instead of letting init take them (Linux; else False)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


@dataclass(frozen=True)
class Seen:
    """A process noted under a test: enough to tell it from a later one with the same pid."""

    pid: int
    create_time: float
    command: str
    first_test: str


class ProcessWatch:
    """Note the descendants of `root` under each test; find and end the ones that outlive it."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.seen: dict[tuple[int, float], Seen] = {}

    def note(self, test: str) -> None:
        """Remember every live descendant of the root and the test it was first seen under."""
        for process in _descendants(self.root):
            try:
                key = (process.pid, process.create_time())
                if key not in self.seen:
                    self.seen[key] = Seen(key[0], key[1], _command(process), test)
            except psutil.Error:
                continue  # ended meanwhile: nothing to remember

    def survivors(self) -> list[tuple[psutil.Process, Seen | None]]:
        """Return every noted process still alive and every live descendant of the root now."""
        found: dict[int, tuple[psutil.Process, Seen | None]] = {}
        for seen in self.seen.values():
            try:
                process = psutil.Process(seen.pid)
                if process.create_time() == seen.create_time and _alive(process):
                    found[seen.pid] = (process, seen)
            except psutil.Error:
                continue  # gone, as it should be
        for process in _descendants(self.root):
            if process.pid not in found:
                found[process.pid] = (process, None)
        return list(found.values())

    def end(self) -> str:
        """Kill what outlived the session; return a report of it ("" when nothing did)."""
        survivors = self.survivors()
        if not survivors:
            _reap_orphans()
            return ""
        lines = []
        for process, seen in survivors:
            where = f"first seen under {seen.first_test}" if seen else "started outside any test"
            # Its command now, not when first seen: a process noted between its fork and its
            # exec still carried its parent's command line then.
            command = _command(process)
            if command == "?" and seen:
                command = seen.command
            lines.append(f"  pid {process.pid} ({where}): {command}")
        _kill([process for process, _ in survivors])
        return (
            f"{len(survivors)} process(es) outlived the tests that started them (killed now; "
            "end every process a test or fixture starts, its children too, even on failure):\n"
            + "\n".join(lines)
        )


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [p for p in root.children(recursive=True) if _alive(p)]
    except psutil.Error:
        return []


def _alive(process: psutil.Process) -> bool:
    """Say whether `process` runs, as our own user (see the module's note on other users)."""
    try:
        return (
            process.is_running()
            and process.status() != psutil.STATUS_ZOMBIE
            and process.uids().real == os.getuid()
        )
    except psutil.Error:
        return False


def _reap_orphans() -> None:
    """Collect the exit status of adopted orphans that ended (else they stay zombies).

    Only at the end: during the session a zombie may be a test's own child, whose status its
    Popen.wait() still has to read.
    """
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "?"


def _kill(processes: list[psutil.Process]) -> None:
    """End `processes` and their children: SIGTERM, then SIGKILL after a grace period."""
    everyone: dict[int, psutil.Process] = {}
    for process in processes:
        everyone[process.pid] = process
        for child in _descendants(process):
            everyone[child.pid] = child
    for process in everyone.values():
        try:
            process.terminate()
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(list(everyone.values()), timeout=TERM_GRACE_SECONDS)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=TERM_GRACE_SECONDS)
    _reap_orphans()


# In every pytest process that loads this module: the main one, and each xdist worker.
SUBREAPER = become_subreaper()
WATCH = ProcessWatch(psutil.Process(os.getpid()))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Note this test's processes before its fixtures are torn down (tryfirst: before them)."""
    WATCH.note(item.nodeid)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session() -> Iterator[None]:
    """Fail the session's last teardown when any process a test started is still running.

    Autouse and session-scoped, so it is set up before, and torn down after, every other
    fixture: the processes of session and module fixtures have ended by the time it looks.
    """
    yield
    report = WATCH.end()
    if report:
        pytest.fail(report, pytrace=False)
