"""reboot: the default command lines, and real runs of a harmless reboot_command."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from rmm_agent.actions import clear_pending_reboot, execute, pending_reboot, reboot
from rmm_agent.config import AgentConfig
from rmm_proto import commands_pb2

from .helpers import Agent, wait_until

ROOT = Path(__file__).resolve().parents[3]
# psutil.users() rows, as psutil defines them.
User = namedtuple("User", ["name", "terminal", "host", "started", "pid"])


def marker_command(marker: Path) -> list[str]:
    """A reboot_command that only writes a marker file."""
    code = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('rebooted')"
    return [sys.executable, "-c", code, str(marker)]


def reboot_command(delay: float = 0, reason: str = "") -> commands_pb2.Command:
    return commands_pb2.Command(
        id="reboot-1", reboot=commands_pb2.Reboot(delay_seconds=delay, reason=reason)
    )


@pytest.mark.parametrize(
    ("platform", "delay", "reason", "argv", "waits"),
    [
        ("linux", 0, "", ["systemctl", "reboot"], False),
        ("linux", 0, "patch night", ["systemctl", "reboot"], False),
        ("linux", 60, "patch night", ["shutdown", "-r", "+1", "--", "patch night"], True),
        ("linux", 90, "", ["shutdown", "-r", "+2"], True),
        ("darwin", 0, "", ["shutdown", "-r", "now"], False),
        ("darwin", 0, "patch night", ["shutdown", "-r", "now", "patch night"], False),
        ("darwin", 300, "patch night", ["shutdown", "-r", "+5", "patch night"], True),
        ("win32", 0, "", ["shutdown", "/r", "/t", "0"], True),
        ("win32", 60.5, "patch night", ["shutdown", "/r", "/t", "61", "/c", "patch night"], True),
    ],
)
def test_default_command_lines(
    platform: str, delay: float, reason: str, argv: list[str], waits: bool
) -> None:
    assert reboot.default_command(platform, delay, reason) == (argv, waits)


def test_a_reason_is_one_line_and_windows_comments_are_bounded() -> None:
    argv, _ = reboot.default_command("linux", 60, "patch\nnight\x1b[2J")
    # One line; the escape sequence shown as its escape, not obeyed (consent.clean).
    assert argv[-1] == "patch night\\x1b[2J"
    argv, _ = reboot.default_command("win32", 0, "x" * 600)
    assert argv[-1] == "x" * 512


def test_when_the_command_starts() -> None:
    # A scheduled shutdown carries the delay itself; the agent only lets its result out first.
    assert reboot.reboot_command(None, "linux", 600, "") == (["shutdown", "-r", "+10"], 2.0)
    assert reboot.reboot_command(None, "linux", 0, "") == (["systemctl", "reboot"], 2.0)
    assert reboot.reboot_command(None, "darwin", 0, "") == (["shutdown", "-r", "now"], 2.0)
    # The host owner's command knows nothing of the delay: the agent waits it out.
    assert reboot.reboot_command(["/sbin/safe-reboot"], "linux", 600, "") == (
        ["/sbin/safe-reboot"],
        600,
    )
    assert reboot.reboot_command(["/sbin/safe-reboot"], "win32", 0, "") == (
        ["/sbin/safe-reboot"],
        2.0,
    )


def test_sessions_are_read_from_psutil() -> None:
    class FakePsutil:
        @staticmethod
        def users() -> list[User]:
            return [
                User("alice", "pts/0", "10.0.0.5", 1700000000.0, 1234),
                User("bob", None, None, 1700000100.0, None),  # a Windows console session
            ]

    assert reboot.sessions_now(FakePsutil()) == [
        commands_pb2.LoggedInUser(
            name="alice", terminal="pts/0", host="10.0.0.5", started_at=1700000000.0
        ),
        commands_pb2.LoggedInUser(name="bob", started_at=1700000100.0),
    ]


def test_reboot_answers_running_then_runs_the_command_and_is_confirmed_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = User("alice", "pts/0", "10.0.0.5", 1700000000.0, 1234)
    monkeypatch.setattr(psutil, "users", lambda: [alice])
    marker = tmp_path / "marker"
    config = AgentConfig(reboot_command=marker_command(marker))
    agent = Agent()
    command = reboot_command(reason="patch night")
    before = time.time()
    result = execute(command, agent.context(command, state_dir=tmp_path, config=config))

    assert result.status == commands_pb2.COMMAND_RUNNING, result.error
    assert result.command_id == "reboot-1"
    assert before <= result.reboot.requested_at <= time.time()
    assert result.reboot.boot_time_before == psutil.boot_time()
    assert result.reboot.back_at == 0
    assert [s.name for s in result.reboot.sessions] == ["alice"]
    pending = tmp_path / reboot.PENDING_FILE
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    record = json.loads(pending.read_text())
    assert record["command_id"] == "reboot-1"
    assert record["command"] == marker_command(marker)
    assert not marker.exists(), "the command waits so that the RUNNING result gets out first"

    wait_until(marker.exists, 10, "the reboot command to run")
    assert time.time() - before >= reboot.MIN_DELAY_SECONDS
    time.sleep(0.2)
    assert agent.sent == [], "a reboot command that succeeded sends nothing more"

    final = pending_reboot(tmp_path)
    assert final is not None
    assert final.command_id == "reboot-1"
    assert final.status == commands_pb2.COMMAND_SUCCEEDED
    assert final.reboot.requested_at == result.reboot.requested_at
    assert final.reboot.sessions == result.reboot.sessions
    assert final.reboot.boot_time_before == result.reboot.boot_time_before
    assert final.reboot.boot_time_after == psutil.boot_time()
    assert final.reboot.back_at >= result.reboot.requested_at
    assert final.finished_at == final.reboot.back_at
    assert final.started_at == result.reboot.requested_at

    clear_pending_reboot(tmp_path, "another-command")
    assert pending.exists(), "a clear for another command leaves the record"
    clear_pending_reboot(tmp_path, "reboot-1")
    assert not pending.exists()
    assert pending_reboot(tmp_path) is None


def test_a_failing_reboot_command_is_reported_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reboot, "MIN_DELAY_SECONDS", 0.1)
    failing = [sys.executable, "-c", "import sys; sys.exit('not today')"]
    agent = Agent()
    command = reboot_command()
    context = agent.context(command, state_dir=tmp_path, config=AgentConfig(reboot_command=failing))
    result = execute(command, context)
    assert result.status == commands_pb2.COMMAND_RUNNING
    wait_until(lambda: agent.sent, 10, "the failed result")
    [failed] = agent.sent
    assert failed.command_id == "reboot-1"
    assert failed.status == commands_pb2.COMMAND_FAILED
    assert failed.error == f"the reboot command {' '.join(failing)} exited 1: not today"
    assert failed.reboot.requested_at == result.reboot.requested_at
    assert failed.finished_at >= failed.started_at > 0
    assert not (tmp_path / reboot.PENDING_FILE).exists()
    assert pending_reboot(tmp_path) is None


def test_a_reboot_that_never_happens_is_reported_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command succeeded, yet the agent is still running past the deadline: the host did
    not restart (inhibited, cancelled), and the command must not stay RUNNING for good."""
    monkeypatch.setattr(reboot, "MIN_DELAY_SECONDS", 0.1)
    monkeypatch.setattr(reboot, "RESTART_DEADLINE_SECONDS", 0.5)
    marker = tmp_path / "marker"
    agent = Agent()
    command = reboot_command()
    config = AgentConfig(reboot_command=marker_command(marker))
    result = execute(command, agent.context(command, state_dir=tmp_path, config=config))
    assert result.status == commands_pb2.COMMAND_RUNNING
    wait_until(marker.exists, 10, "the reboot command to run")
    assert agent.sent == [], "no verdict before the deadline"
    wait_until(lambda: agent.sent, 10, "the failed result")
    [failed] = agent.sent
    assert failed.command_id == "reboot-1"
    assert failed.status == commands_pb2.COMMAND_FAILED
    assert "succeeded but the host had not restarted" in failed.error, failed.error
    assert "the agent kept running" in failed.error
    assert failed.reboot.boot_time_before == result.reboot.boot_time_before
    assert pending_reboot(tmp_path) is None, "nothing left to confirm after a restart"


class FakeTime:
    """A clock that moves only when slept on: a reboot's waits take no real time."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []
        self._lock = threading.Lock()  # the reboot waits in a thread of its own

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def test_the_record_and_the_restart_deadline_follow_the_contexts_clock(tmp_path: Path) -> None:
    """The 600 s restart deadline passes on the action context's clock, not in real time."""
    fake = FakeTime(1_800_000_000.0)
    marker = tmp_path / "marker"
    agent = Agent()
    command = reboot_command(delay=90)
    config = AgentConfig(reboot_command=marker_command(marker))
    context = dataclasses.replace(
        agent.context(command, state_dir=tmp_path, config=config),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    result = execute(command, context)
    assert result.status == commands_pb2.COMMAND_RUNNING, result.error
    assert result.started_at == result.reboot.requested_at == 1_800_000_000.0
    record = json.loads((tmp_path / reboot.PENDING_FILE).read_text())
    assert record["requested_at"] == 1_800_000_000.0

    wait_until(lambda: agent.sent, 10, "the failed result")
    [failed] = agent.sent
    # A configured command does not wait itself: the agent waits the 90 s delay, then gives the
    # host RESTART_DEADLINE_SECONDS and the delay rounded up to whole minutes to restart.
    restart_within = reboot.RESTART_DEADLINE_SECONDS + 120
    assert fake.slept == [90.0, restart_within]
    assert marker.exists()
    assert f"had not restarted {restart_within:.0f}s later" in failed.error, failed.error
    assert failed.started_at == 1_800_000_000.0
    assert failed.finished_at == 1_800_000_000.0 + 90 + restart_within
    assert pending_reboot(tmp_path) is None


def test_the_agent_back_after_a_reboot_is_stamped_by_the_given_clock(tmp_path: Path) -> None:
    record = {
        "command_id": "reboot-1",
        "requested_at": 1_800_000_000.0,
        "boot_time_before": 1_799_990_000.0,
        "sessions": [],
        "command": ["systemctl", "reboot"],
    }
    (tmp_path / reboot.PENDING_FILE).write_text(json.dumps(record))
    final = pending_reboot(tmp_path, clock=lambda: 1_800_000_090.0)
    assert final is not None
    assert final.started_at == final.reboot.requested_at == 1_800_000_000.0
    assert final.finished_at == final.reboot.back_at == 1_800_000_090.0


def test_a_confirmed_reboot_sends_nothing_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reboot, "MIN_DELAY_SECONDS", 0.1)
    monkeypatch.setattr(reboot, "RESTART_DEADLINE_SECONDS", 1.0)
    marker = tmp_path / "marker"
    agent = Agent()
    command = reboot_command()
    config = AgentConfig(reboot_command=marker_command(marker))
    execute(command, agent.context(command, state_dir=tmp_path, config=config))
    wait_until(marker.exists, 10, "the reboot command to run")
    clear_pending_reboot(tmp_path, "reboot-1")  # as the agent does once it confirmed
    time.sleep(1.5)
    assert agent.sent == []


def test_a_missing_reboot_command_is_reported_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reboot, "MIN_DELAY_SECONDS", 0.1)
    agent = Agent()
    command = reboot_command()
    config = AgentConfig(reboot_command=[str(tmp_path / "no-such-reboot")])
    execute(command, agent.context(command, state_dir=tmp_path, config=config))
    wait_until(lambda: agent.sent, 10, "the failed result")
    assert agent.sent[0].error == (
        f"the reboot command {tmp_path / 'no-such-reboot'} is not installed on this host"
    )


def test_no_reboot_without_a_pending_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reboot, "MIN_DELAY_SECONDS", 0.1)
    marker = tmp_path / "marker"
    missing = tmp_path / "no-state-dir"
    command = reboot_command()
    config = AgentConfig(reboot_command=marker_command(marker))
    result = execute(command, Agent().context(command, state_dir=missing, config=config))
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error.startswith(f"cannot record the pending reboot in {missing}/")
    assert result.error.endswith("; not rebooting")
    time.sleep(0.5)
    assert not marker.exists()


def test_an_agent_killed_by_the_reboot_confirms_it_when_it_starts_again(tmp_path: Path) -> None:
    # The "agent" is a child process; its reboot command kills it, as a reboot would.
    agent_code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tests.rmm_agent.actions.helpers import Agent
        from rmm_agent.actions import execute
        from rmm_agent.config import AgentConfig
        from rmm_proto import commands_pb2

        command = commands_pb2.Command(id="reboot-9", reboot=commands_pb2.Reboot(reason="test"))
        config = AgentConfig(reboot_command=["sh", "-c", "kill -KILL $PPID"])
        context = Agent().context(command, state_dir=Path({str(tmp_path)!r}), config=config)
        result = execute(command, context)
        print(commands_pb2.CommandStatus.Name(result.status), flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", agent_code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.returncode == -9, child.stderr
    assert child.stdout == "COMMAND_RUNNING\n"
    final = pending_reboot(tmp_path)
    assert final is not None
    assert (final.command_id, final.status) == ("reboot-9", commands_pb2.COMMAND_SUCCEEDED)
    assert final.reboot.boot_time_after == final.reboot.boot_time_before == psutil.boot_time()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"command_id": "r", "requested_at": 1.0}',
        b'{"command_id": "r", "requested_at": 1, "boot_time_before": 2, "sessions": [{"x": 1}]}',
    ],
)
def test_a_damaged_record_is_logged_and_removed(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / reboot.PENDING_FILE
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="rmm_agent.actions.reboot"):
        assert pending_reboot(tmp_path) is None
    assert not path.exists()
    assert f"{path} is damaged" in caplog.text


def test_negative_delays_are_refused(tmp_path: Path) -> None:
    command = reboot_command(delay=-5)
    config = AgentConfig(reboot_command=marker_command(tmp_path / "marker"))
    result = execute(command, Agent().context(command, state_dir=tmp_path, config=config))
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == "reboot: delay_seconds must be 0 or more, not -5.0"
    assert not (tmp_path / reboot.PENDING_FILE).exists()
