"""The suite's own guard (tests/leaks.py): a process that outlives its test fails the session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

# A shell starts a sleeper, and only the shell is killed: the sleeper is orphaned, as the
# self-update test's agent was when its launcher was killed. Once inside the test itself (the
# orphan is gone from under pytest before any teardown looks), once in a fixture's teardown.
ORPHANING_TEST = """
import signal, subprocess, time
from pathlib import Path

import pytest

def orphaning_shell(name):
    process = subprocess.Popen(["sh", "-c", f"sleep 301 & echo $! > {name}.pid; wait"])
    while not Path(f"{name}.pid").exists() or not Path(f"{name}.pid").read_text().strip():
        time.sleep(0.01)
    return process

def kill_alone(process):
    process.send_signal(signal.SIGKILL)
    process.wait()

@pytest.fixture
def shell():
    process = orphaning_shell("in-fixture")
    yield process
    kill_alone(process)

def test_orphans_a_sleeper_in_its_body():
    kill_alone(orphaning_shell("in-body"))

def test_orphans_a_sleeper_in_a_fixture(shell):
    assert shell.poll() is None

def test_later(tmp_path):
    pass
"""


def run_inner(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.leaks", "-p", "no:cacheprovider",
         "-q", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def sleeper_alive(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "sleep" in process.name()
    except psutil.NoSuchProcess:
        return False


def test_orphaned_processes_fail_the_session_and_are_killed(tmp_path: Path) -> None:
    result = run_inner(tmp_path, ORPHANING_TEST)
    pids = {name: int((tmp_path / f"{name}.pid").read_text()) for name in ("in-body", "in-fixture")}
    try:
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "3 passed, 1 error" in output, output
        assert "2 process(es) outlived the tests that started them" in output, output
        for name, test in (("in-body", "in_its_body"), ("in-fixture", "in_a_fixture")):
            seen = (
                f"pid {pids[name]} (first seen under test_inner.py::test_orphans_a_sleeper_{test})"
            )
            assert f"{seen}: sleep 301" in output, output
        assert not [pid for pid in pids.values() if sleeper_alive(pid)], "reported, not killed"
    finally:
        for pid in pids.values():
            if sleeper_alive(pid):
                psutil.Process(pid).kill()


def test_a_clean_session_passes(tmp_path: Path) -> None:
    source = """
    import subprocess

    def test_ends_what_it_starts():
        subprocess.run(["sleep", "0"], check=True)
    """
    result = run_inner(tmp_path, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outlived" not in result.stdout
