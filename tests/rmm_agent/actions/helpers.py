"""Share contexts, fixtures and process checks between the action tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from rmm_agent.actions.base import ActionContext, Completed
from rmm_agent.config import AgentConfig
from rmm_proto import commands_pb2

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COLLECTOR_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "collectors"


def fixture_text(name: str) -> str:
    """Return a recorded fixture's text (this directory's, else the collectors')."""
    for folder in (FIXTURES, COLLECTOR_FIXTURES):
        if (folder / name).exists():
            return (folder / name).read_text(encoding="utf-8")
    raise AssertionError(f"missing fixture {name} in {FIXTURES} or {COLLECTOR_FIXTURES}")


@dataclass
class Agent:
    """What an action's context reports back to: queued reports and results sent later."""

    sequence: int = 41
    sent: list[commands_pb2.CommandResult] = field(default_factory=list)

    def collect_now(self) -> int:
        self.sequence += 1
        return self.sequence

    def context(
        self,
        command: commands_pb2.Command | None = None,
        *,
        state_dir: Path,
        config: AgentConfig | None = None,
        timeout: float = 30.0,
    ) -> ActionContext:
        return ActionContext(
            command=command or commands_pb2.Command(id="cmd-1"),
            config=config or AgentConfig(),
            state_dir=state_dir,
            deadline=time.monotonic() + timeout,
            collect_now=self.collect_now,
            send_later=self.sent.append,
        )


def gone(pid: int) -> bool:
    """Say whether a process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll `predicate` until true; fail naming `what`."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sleeper(tmp_path: Path, name: str) -> Path:
    """Return a copy of sleep(1) under `name`, so its processes are told apart from others."""
    assert len(name) <= 15, "Linux keeps 15 characters of a process name"
    found = shutil.which("sleep")
    assert found is not None
    target = tmp_path / name
    shutil.copy(found, target)
    return target


def spawn(argv: Sequence[str | Path]) -> subprocess.Popen[bytes]:
    """Start a process and wait until psutil sees it under its final name."""
    child = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL)
    wait_until(
        lambda: psutil.Process(child.pid).name() == Path(str(argv[0])).name,
        5,
        f"{argv[0]} to start",
    )
    return child


class FakeRunner:
    """Answer service-manager commands from recorded outputs and record each call."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        key = tuple(argv)
        self.calls.append(key)
        assert key in self.answers, f"unexpected command {key}"
        returncode, stdout, stderr = self.answers[key]
        return Completed(key, returncode, stdout, stderr)
