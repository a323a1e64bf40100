"""A stand-in for the server's operator API, for driving the `rmm` commands in-process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rmm_cli.client import Connection
from rmm_cli.main import main
from rmm_proto import commands_pb2, operator_pb2

S = commands_pb2


def info(
    hostname: str,
    status: int = S.COMMAND_SUCCEEDED,
    *,
    exit_code: int | None = 0,
    stdout: str = "",
    stderr: str = "",
    error: str = "",
    agent_id: str | None = None,
    result: commands_pb2.CommandResult | None = None,
) -> operator_pb2.CommandInfo:
    """Return a CommandInfo for a host; a script result unless `result` or exit_code=None."""
    agent = agent_id or f"{hostname}-0123456789abcdef"
    message = operator_pb2.CommandInfo(
        id=f"cmd-{hostname}",
        run_id="run-1",
        agent_id=agent,
        hostname=hostname,
        action="run_script",
        status=status,  # type: ignore[arg-type]
        error=error,
        issued_at=1000.0,
        sent_at=1000.5,
        finished_at=1002.0,
    )
    if result is not None:
        message.result.CopyFrom(result)
    elif exit_code is not None:
        message.result.script.CopyFrom(
            commands_pb2.ScriptResult(exit_code=exit_code, stdout=stdout, stderr=stderr)
        )
        message.result.started_at = 1000.5
        message.result.finished_at = 1001.75
    message.result.command_id = message.id
    return message


def events(
    outcomes: Sequence[operator_pb2.CommandInfo], online: bool = True, detach: bool = False
) -> list[operator_pb2.RunEvent]:
    """Return the stream the server sends: started with every target, then the outcomes."""
    started = operator_pb2.RunStarted(
        run_id="run-1",
        targets=[
            operator_pb2.RunTarget(
                agent_id=o.agent_id, hostname=o.hostname, command_id=o.id, online=online
            )
            for o in outcomes
        ],
    )
    stream = [operator_pb2.RunEvent(started=started)]
    if not detach:
        stream += [operator_pb2.RunEvent(outcome=o) for o in outcomes]
    return stream


class _Stub:
    """Each attribute is a method that records its request and answers from `Fake`."""

    def __init__(self, fake: Fake) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Any:
        def method(request: Any, **_: Any) -> Any:
            self._fake.requests.append((name, request))
            answer = self._fake.answers[name]
            return answer(request) if callable(answer) else answer

        return method


@dataclass
class Fake:
    """What the fake server answers per method, and every request it got."""

    answers: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)

    def request(self, name: str) -> Any:
        found = [request for method, request in self.requests if method == name]
        assert len(found) == 1, f"expected one {name} call, got {self.requests}"
        return found[0]


def install(monkeypatch: pytest.MonkeyPatch, fake: Fake) -> None:
    """Route every Connection call to `fake` instead of a channel."""

    def stub(self: Connection) -> Any:
        return _Stub(fake)

    def call(self: Connection, method: Any, request: Any) -> Any:
        return method(request)

    def stream(self: Connection, method: Any, request: Any, timeout: float | None = None) -> Any:
        answer: Iterator[Any] = iter(method(request))
        return answer

    monkeypatch.setattr(Connection, "stub", stub)
    monkeypatch.setattr(Connection, "call", call)
    monkeypatch.setattr(Connection, "stream", stream)


def invoke(*args: str) -> Result:
    """Run `rmm ARGS` in-process against whatever `install` set up."""
    return CliRunner().invoke(
        main,
        ["--server", "127.0.0.1:1", "--token", "t", "--insecure", *args],
        catch_exceptions=False,
    )
