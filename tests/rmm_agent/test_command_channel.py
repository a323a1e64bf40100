"""The agent's command stream against a real gRPC server that sends crafted commands.

The server here is a test double of AgentService.Commands only, so a test can send what the real
server never would: unsigned, forged, altered, replayed, expired and misaddressed commands.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_agent.actions import reboot
from rmm_agent.commands import channel as channel_module
from rmm_agent.commands.channel import CommandChannel
from rmm_agent.commands.history import CommandHistory
from rmm_agent.config import AgentConfig
from rmm_agent.runner import Backoff
from rmm_agent.state import Identity
from rmm_proto import agent_pb2_grpc, commands_pb2
from rmm_server.signing import CommandSigner
from tests.helpers import wait_for

Status = commands_pb2.CommandStatus
AGENT_ID = "agent-under-test"
pytestmark = pytest.mark.timeout(60)


class CommandsDouble(agent_pb2_grpc.AgentServiceServicer):
    """Sends whatever the test queues; records hellos and results."""

    def __init__(self) -> None:
        self.to_send: queue.Queue[commands_pb2.ServerCommandMessage | None] = queue.Queue()
        self.results: list[commands_pb2.CommandResult] = []
        self.hellos: list[commands_pb2.CommandHello] = []

    def Commands(
        self, request_iterator: Iterator[commands_pb2.AgentCommandMessage], context: object
    ) -> Iterator[commands_pb2.ServerCommandMessage]:
        def read() -> None:
            try:
                for message in request_iterator:
                    if message.HasField("hello"):
                        self.hellos.append(message.hello)
                    else:
                        self.results.append(message.result)
            except grpc.RpcError:
                pass  # the agent hung up: the test is over

        threading.Thread(target=read, daemon=True).start()
        while (message := self.to_send.get()) is not None:
            yield message

    def result_for(self, command_id: str) -> list[commands_pb2.CommandResult]:
        return [result for result in self.results if result.command_id == command_id]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[CommandsDouble, CommandSigner, CommandChannel]]:
    double = CommandsDouble()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(double, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    signer = CommandSigner(Ed25519PrivateKey.generate())
    identity = Identity(
        agent_id=AGENT_ID,
        credential="rmma_x_y",
        server=f"127.0.0.1:{port}",
        client="acme",
        site="hq",
        insecure=True,
        command_public_key=signer.public_key.hex(),
    )
    channel = grpc.insecure_channel(identity.server)
    stop = threading.Event()
    commands = CommandChannel(identity, tmp_path, channel, AgentConfig(), lambda: 7, stop)
    commands.start()
    wait_for(lambda: double.hellos, 10, "the agent's hello")
    yield double, signer, commands
    commands.stop()
    double.to_send.put(None)
    channel.close()
    server.stop(0)


def make_command(marker: Path, **fields: object) -> commands_pb2.Command:
    now = time.time()
    values: dict[str, object] = {
        "id": f"cmd-{time.monotonic_ns()}",
        "agent_id": AGENT_ID,
        "issued_at": now,
        "expires_at": now + 60,
        "timeout_seconds": 20,
        "operator": "alice",
    }
    values.update(fields)
    command = commands_pb2.Command(**values)  # type: ignore[arg-type]
    command.run_script.CopyFrom(
        commands_pb2.RunScript(shell="sh", body=f'echo ran >> "{marker}"; echo done')
    )
    return command


def send(double: CommandsDouble, signed: commands_pb2.SignedCommand) -> None:
    double.to_send.put(commands_pb2.ServerCommandMessage(command=signed))


def final_result(double: CommandsDouble, command_id: str) -> commands_pb2.CommandResult:
    results = wait_for(lambda: double.result_for(command_id), 20, f"a result for {command_id}")
    return results[-1]  # type: ignore[no-any-return]


def test_a_signed_command_runs_and_its_result_is_kept_until_stored(
    rig: tuple[CommandsDouble, CommandSigner, CommandChannel], tmp_path: Path
) -> None:
    double, signer, commands = rig
    marker = tmp_path / "marker"
    command = make_command(marker)
    send(double, signer.sign(command))
    result = final_result(double, command.id)
    assert result.status == Status.COMMAND_SUCCEEDED, result
    assert result.script.stdout == "done\n"
    assert marker.read_text() == "ran\n"
    assert [r.command_id for r in commands.history.undelivered()] == [command.id]
    double.to_send.put(commands_pb2.ServerCommandMessage(result_stored=command.id))
    wait_for(lambda: not commands.history.undelivered(), 10, "the result to count as delivered")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("unsigned", "unsigned command"),
        ("forged", "signature does not match"),
        ("altered", "signature does not match"),
    ],
)
def test_unsigned_forged_and_altered_commands_are_refused(
    rig: tuple[CommandsDouble, CommandSigner, CommandChannel],
    tmp_path: Path,
    tamper: str,
    reason: str,
) -> None:
    double, signer, commands = rig
    marker = tmp_path / "marker"
    command = make_command(marker)
    signed = signer.sign(command)
    if tamper == "unsigned":
        signed.signature = b""
    elif tamper == "forged":
        signed = CommandSigner(Ed25519PrivateKey.generate()).sign(command)
    else:
        evil = commands_pb2.Command()
        evil.CopyFrom(command)
        evil.run_script.body = f'echo pwned >> "{marker}"'
        signed.command = evil.SerializeToString()
    send(double, signed)
    result = final_result(double, command.id)
    assert result.status == Status.COMMAND_REFUSED
    assert reason in result.error
    assert not marker.exists()
    (entry,) = commands.history.entries()
    assert entry.status == "refused" and reason in entry.error


def test_a_replayed_command_runs_once_and_the_replay_is_refused(
    rig: tuple[CommandsDouble, CommandSigner, CommandChannel], tmp_path: Path
) -> None:
    double, signer, _ = rig
    marker = tmp_path / "marker"
    command = make_command(marker)
    signed = signer.sign(command)
    send(double, signed)
    first = final_result(double, command.id)
    send(double, signed)
    wait_for(lambda: len(double.result_for(command.id)) == 2, 20, "the replay's answer")
    replay = double.result_for(command.id)[1]
    assert first.status == Status.COMMAND_SUCCEEDED and not first.duplicate
    assert replay.duplicate and "already ran" in replay.error
    assert marker.read_text() == "ran\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"expires_at": time.time() - 3600}, "expired"),
        ({"agent_id": "someone-else"}, "addressed to agent 'someone-else'"),
    ],
)
def test_expired_and_misaddressed_commands_are_refused(
    rig: tuple[CommandsDouble, CommandSigner, CommandChannel],
    tmp_path: Path,
    fields: dict[str, object],
    reason: str,
) -> None:
    double, signer, _ = rig
    marker = tmp_path / "marker"
    command = make_command(marker, **fields)
    send(double, signer.sign(command))
    result = final_result(double, command.id)
    assert result.status == Status.COMMAND_REFUSED
    assert reason in result.error
    assert not marker.exists()


def test_a_command_cut_short_by_an_agent_crash_is_not_run_again(tmp_path: Path) -> None:
    history = CommandHistory.open(tmp_path)
    command = make_command(tmp_path / "marker")
    assert history.begin(command, "echo")
    history.close()
    signer = CommandSigner(Ed25519PrivateKey.generate())
    identity = Identity(
        agent_id=AGENT_ID,
        credential="rmma_x_y",
        server="127.0.0.1:1",
        client="acme",
        site="hq",
        command_public_key=signer.public_key.hex(),
    )
    channel = grpc.insecure_channel(identity.server)
    commands = CommandChannel(
        identity, tmp_path, channel, AgentConfig(), lambda: 1, threading.Event()
    )
    (result,) = commands.history.undelivered()
    assert result.command_id == command.id
    assert result.status == Status.COMMAND_FAILED
    assert "not run again" in result.error
    assert not commands.history.begin(command, "echo")
    channel.close()


def test_a_reboot_is_confirmed_at_start_on_the_channels_clock(tmp_path: Path) -> None:
    history = CommandHistory.open(tmp_path)
    command = commands_pb2.Command(id="reboot-1", agent_id=AGENT_ID, reboot=commands_pb2.Reboot())
    assert history.begin(command, "reboot")
    history.close()
    record = {
        "command_id": "reboot-1",
        "requested_at": 1_800_000_000.0,
        "boot_time_before": 1_799_990_000.0,
        "sessions": [],
        "command": ["systemctl", "reboot"],
    }
    (tmp_path / reboot.PENDING_FILE).write_text(json.dumps(record))
    identity = Identity(
        agent_id=AGENT_ID,
        credential="rmma_x_y",
        server="127.0.0.1:1",
        client="acme",
        site="hq",
        command_public_key=Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex(),
    )
    channel = grpc.insecure_channel(identity.server)
    commands = CommandChannel(
        identity,
        tmp_path,
        channel,
        AgentConfig(),
        lambda: 1,
        threading.Event(),
        clock=lambda: 1_800_000_090.0,
    )
    (result,) = commands.history.undelivered()
    assert result.status == Status.COMMAND_SUCCEEDED
    assert result.finished_at == result.reboot.back_at == 1_800_000_090.0
    assert not (tmp_path / reboot.PENDING_FILE).exists()
    channel.close()


def test_a_stream_that_never_opens_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server (or one whose certificate the agent refuses): each failed attempt waits longer
    than the one before; the back-off is reset only by a stream that really opened."""
    waits: list[float] = []
    resets: list[float] = []

    class Recording(Backoff):
        def next(self) -> float:
            waits.append(super().next())
            return 0.05  # keep the test short; what matters is the attempt count

        def reset(self) -> None:
            resets.append(time.monotonic())
            super().reset()

    monkeypatch.setattr(channel_module, "Backoff", Recording)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        identity = Identity(
            agent_id=AGENT_ID,
            credential="rmma_x_y",
            server=address,
            client="acme",
            site="hq",
            insecure=True,
            command_public_key=CommandSigner(Ed25519PrivateKey.generate()).public_key.hex(),
        )
        grpc_channel = grpc.insecure_channel(address)
        stop = threading.Event()
        commands = CommandChannel(identity, tmp_path, grpc_channel, AgentConfig(), lambda: 7, stop)
        commands.start()
        try:
            wait_for(lambda: len(waits) >= 4, 30, "four failed attempts")
        finally:
            commands.stop()
            grpc_channel.close()
    assert resets == [], "a stream that never opened reset the back-off"
    # Full jitter over a doubling ceiling: the fourth wait is at least half of 8 s.
    assert waits[3] >= 4.0, waits
