"""What every action gets (ActionContext) and how it says it failed (ActionFailed)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message

from rmm_agent.collectors.base import CommandError, run_tracked
from rmm_agent.config import AgentConfig
from rmm_proto import commands_pb2

Status = commands_pb2.CommandStatus
# shutil.which, or a test's stand-in: the path of a program on PATH, None when missing.
Which = Callable[[str], str | None]


@dataclass(slots=True)
class ActionContext:
    """Everything an action may use besides its request."""

    command: commands_pb2.Command  # the verified command (id, operator, timeout_seconds...)
    config: AgentConfig
    state_dir: Path  # the agent's private state directory
    deadline: float  # time.monotonic() by which the action must be over
    collect_now: Callable[[], int]  # build and queue an immediate report; returns its sequence
    # Deliver a further result for this command later (e.g. the reboot command failed).
    send_later: Callable[[commands_pb2.CommandResult], None]
    # Wall-clock time, for when things happened (results, records); the command channel's.
    clock: Callable[[], float] = time.time
    # Waits that are not bounded by the deadline (a reboot's delay, its restart deadline).
    sleep: Callable[[float], None] = time.sleep

    def remaining(self) -> float:
        """Return the seconds left before the deadline (0 when it has passed)."""
        return max(0.0, self.deadline - time.monotonic())


class ActionFailed(Exception):
    """An action could not do what it was asked: the result is `status` with this message.

    `payload` names the CommandResult's result field and what it holds so far, e.g.
    `kill=KillResult(...)`, so that a partial outcome still reaches the operator.
    """

    def __init__(
        self,
        message: str,
        status: Status = commands_pb2.COMMAND_FAILED,
        **payload: Message,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.payload = payload

    def result(self) -> commands_pb2.CommandResult:
        """Return the CommandResult this failure stands for."""
        return commands_pb2.CommandResult(
            status=self.status,
            error=str(self),
            **self.payload,  # type: ignore[arg-type]
        )


R = TypeVar("R", bound=Message)
ActionRun = Callable[[R, ActionContext], commands_pb2.CommandResult]


def action(run: ActionRun[R]) -> ActionRun[R]:
    """Turn an ActionFailed raised by `run` into its result, so `run` always returns one."""

    @functools.wraps(run)
    def wrapper(request: R, context: ActionContext) -> commands_pb2.CommandResult:
        try:
            return run(request, context)
        except ActionFailed as failure:
            return failure.result()

    return wrapper


def succeeded(**payload: Any) -> commands_pb2.CommandResult:
    """Return a SUCCEEDED result carrying `payload` (one CommandResult result field)."""
    return commands_pb2.CommandResult(status=commands_pb2.COMMAND_SUCCEEDED, **payload)


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished external command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Return what the command printed on both streams, trimmed."""
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)

    def failure(self) -> str:
        """Say how the command failed: its command line, exit status and what it said."""
        said = self.output or "no output"
        if len(said) > 500:
            said = said[:499] + "…"
        return f"{' '.join(self.argv)} exited {self.returncode}: {said}"

    def checked(self) -> str:
        """Return stdout; raise ActionFailed naming the command when it exited non-zero."""
        if self.returncode != 0:
            raise ActionFailed(self.failure())
        return self.stdout


def run_until(argv: Sequence[str], context: ActionContext, what: str) -> Completed:
    """Run `argv` to completion within the action's deadline.

    The child is tracked like the collectors' commands, so a stopping agent ends it. A command
    missing on this host is FAILED, one still running at the deadline TIMED_OUT; both name
    `what` the command was for.
    """
    remaining = context.remaining()
    if remaining <= 0:
        raise ActionFailed(
            f"{what}: no time left to run {argv[0]} (the command's timeout has passed)",
            commands_pb2.COMMAND_TIMED_OUT,
        )
    try:
        returncode, stdout, stderr = run_tracked(argv, timeout=remaining)
    except CommandError as exc:
        status = commands_pb2.COMMAND_FAILED
        if context.remaining() <= 0:
            status = commands_pb2.COMMAND_TIMED_OUT
        raise ActionFailed(f"{what}: {exc}", status) from exc
    return Completed(
        tuple(argv),
        returncode,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
    )
