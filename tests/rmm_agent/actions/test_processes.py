"""list_processes and kill_process on real processes."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rmm_agent.actions import execute, kill_process
from rmm_proto import commands_pb2

from .helpers import Agent, gone, sleeper, spawn

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX processes")

# Unique per test run, so that no other process on the machine has the name.
NAME = f"rmmslp{os.getpid() % 100000}"


def run(tmp_path: Path, **action: object) -> commands_pb2.CommandResult:
    command = commands_pb2.Command(id="p-1", **action)  # type: ignore[arg-type]
    return execute(command, Agent().context(command, state_dir=tmp_path))


def test_list_finds_a_spawned_child_by_name_ignoring_case(tmp_path: Path) -> None:
    child = spawn([sleeper(tmp_path, NAME), "30"])
    try:
        result = run(tmp_path, list_processes=commands_pb2.ListProcesses(name=NAME.upper()))
        assert result.status == commands_pb2.COMMAND_SUCCEEDED
        [found] = result.processes.processes
        assert found.pid == child.pid
        assert found.name == NAME
        assert found.user == getpass.getuser()
        assert found.cmdline == f"{tmp_path / NAME} 30"
        assert found.status == "sleeping"
        assert found.memory_rss_bytes > 0
        assert abs(found.started_at - time.time()) < 60
        assert found.cpu_ratio == 0.0
    finally:
        child.kill()
        child.wait()


def test_list_ranks_by_cpu_and_limits(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        result = run(tmp_path, list_processes=commands_pb2.ListProcesses(limit=3))
        processes = result.processes.processes
        assert len(processes) == 3
        ratios = [p.cpu_ratio for p in processes]
        assert ratios == sorted(ratios, reverse=True)
        ours = run(tmp_path, list_processes=commands_pb2.ListProcesses())
        [mine] = [p for p in ours.processes.processes if p.pid == busy.pid]
        assert mine.cpu_ratio > 0.2  # a core kept busy, on a shared 2-core machine
    finally:
        busy.kill()
        busy.wait()


def test_kill_by_pid_asks_first(tmp_path: Path) -> None:
    child = spawn([sleeper(tmp_path, NAME), "30"])
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=child.pid))
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    assert [p.pid for p in result.kill.killed] == [child.pid]
    assert result.kill.killed[0].name == NAME
    assert child.wait(5) == -15  # SIGTERM


def test_kill_by_pid_with_force_kills_at_once(tmp_path: Path) -> None:
    child = spawn([sleeper(tmp_path, NAME), "30"])
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=child.pid, force=True))
    assert result.status == commands_pb2.COMMAND_SUCCEEDED
    assert child.wait(5) == -9


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kill_process, "TERMINATE_GRACE_SECONDS", 0.5)
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(1, flush=True)\n"
        "time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"1\n"
    started = time.monotonic()
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=child.pid))
    assert result.status == commands_pb2.COMMAND_SUCCEEDED
    assert child.wait(5) == -9
    assert time.monotonic() - started >= 0.5


def test_kill_by_name_ends_every_process_of_that_name(tmp_path: Path) -> None:
    program = sleeper(tmp_path, NAME)
    children = [spawn([program, "30"]), spawn([program, "31"])]
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(name=NAME))
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    assert sorted(p.pid for p in result.kill.killed) == sorted(c.pid for c in children)
    assert [c.wait(5) for c in children] == [-15, -15]


@pytest.mark.parametrize(
    ("pid", "why"),
    [
        (1, "the init process"),
        (os.getpid(), "the agent itself"),
        (os.getppid(), "a parent of the agent"),
    ],
    ids=["init", "self", "parent"],  # pids differ between xdist workers; ids must not
)
def test_the_agent_and_its_ancestors_and_init_are_never_killed(
    tmp_path: Path, pid: int, why: str
) -> None:
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=pid, force=True))
    assert result.status == commands_pb2.COMMAND_FAILED
    name = psutil.Process(pid).name()
    assert result.error == f"pid {pid} ({name}): refused: it is {why}"
    assert list(result.kill.errors) == [result.error]
    assert not result.kill.killed
    assert not gone(pid)


def test_no_such_process(tmp_path: Path) -> None:
    missing = 2**22 + 12345  # above Linux's largest pid_max
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=missing))
    assert (result.status, result.error) == (
        commands_pb2.COMMAND_FAILED,
        f"no process with pid {missing}",
    )
    result = run(tmp_path, kill_process=commands_pb2.KillProcess(name=NAME))
    assert result.error == f"no process named {NAME}"
    result = run(tmp_path, kill_process=commands_pb2.KillProcess())
    assert result.error == "kill_process needs a pid or a name; it got neither"


def test_a_pid_with_another_name_is_left_alone(tmp_path: Path) -> None:
    child = spawn([sleeper(tmp_path, NAME), "30"])
    try:
        result = run(tmp_path, kill_process=commands_pb2.KillProcess(pid=child.pid, name="nginx"))
        assert result.status == commands_pb2.COMMAND_FAILED
        assert result.error == f"pid {child.pid} is named {NAME}, not nginx; nothing killed"
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
