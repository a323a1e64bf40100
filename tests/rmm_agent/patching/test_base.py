"""The shared parts: the registry, the process runner and its timeout, the install flow."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from rmm_agent.patching import BACKENDS, CLASSIFICATIONS, default_backends
from rmm_agent.patching._rpm import RPM_QUERY
from rmm_agent.patching.base import (
    INTERRUPTED,
    CachedWhich,
    ProcessTimedOut,
    ProgramMissing,
    run_process,
)
from rmm_agent.patching.zypper import LIST_UPDATES, ZypperBackend

from .helpers import FakeRunner, fixture_text, found, ok


def test_registry_names_match_and_classifications_are_bounded() -> None:
    for name, cls in BACKENDS.items():
        assert cls.name == name
        assert set(cls.classifications) <= set(CLASSIFICATIONS), name
        assert cls.platforms and cls.program, name
    assert [b.name for b in default_backends("freebsd14", run_process)] == []


def test_run_process_returns_status_and_both_streams() -> None:
    assert run_process([sys.executable, "-c", "import sys; print('o'); sys.exit(3)"], 30) == (
        3, "o\n", "",
    )  # fmt: skip
    with pytest.raises(ProgramMissing, match="not found on this host"):
        run_process(["/nonexistent/rmm-no-such-program"], 5)


@pytest.mark.linux
def test_a_timeout_ends_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    # The child leaves a grandchild that ignores SIGTERM: the group's SIGKILL ends it too.
    code = (
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(ProcessTimedOut, match="killed after 1s") as caught:
        run_process([sys.executable, "-c", code], 1)
    assert time.monotonic() - started < 20
    assert "started" in caught.value.stdout
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            # A killed orphan may stay a zombie where PID 1 does not reap (containers).
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"grandchild {grandchild} outlived the timeout")


def test_an_install_killed_at_its_timeout_is_interrupted(tmp_path: Path) -> None:
    listed = fixture_text("zypper_list-updates_leap15.6-zypper1.14.xml")
    argv = (
        "zypper", "--non-interactive", "--no-refresh", "install", "--auto-agree-with-licenses",
        "--no-recommends", "tzdata.noarch=2024a-150000.75.28.1",
    )  # fmt: skip
    runner = FakeRunner(
        {
            LIST_UPDATES: ok(listed),
            argv: ProcessTimedOut(argv, 42, "(1/1) Installing: tzdata", ""),
            RPM_QUERY: ok("tzdata\t2024a-150000.75.25.1\tnoarch\n"),
        }
    )
    backend = ZypperBackend(runner=runner, locks=(), pid_lock=tmp_path / "zypp.pid", which=found)
    [outcome] = backend.install(["zypper:tzdata.noarch"], 600)
    assert outcome.status == INTERRUPTED
    assert "killed after 42s (timeout)" in outcome.message


def test_which_answers_are_kept_a_while_for_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "bin" / "pkgtool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    now = [0.0]
    which = CachedWhich(ttl=60, clock=lambda: now[0])
    assert which("pkgtool") == str(tool)
    tool.unlink()
    now[0] = 59.0
    assert which("pkgtool") == str(tool), "believed for the ttl"
    now[0] = 60.0
    assert which("pkgtool") is None, "looked for again after it"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert which("pkgtool") is None, "a missing program is believed for the ttl too"
    other = tmp_path / "other"
    other.mkdir()
    (other / "pkgtool").symlink_to(tool)
    monkeypatch.setenv("PATH", str(other))
    assert which("pkgtool") == str(other / "pkgtool"), "another PATH is looked up at once"
