"""Fuzz a real server process on its agent calls while a real agent reports beside the fuzzing.

Raw bytes go on the wire through grpc's generic calls with identity serializers, so the server's
own decoding is under test. Every call must end in a clean status (INVALID_ARGUMENT,
RESOURCE_EXHAUSTED, UNAUTHENTICATED, or an acknowledgement), never INTERNAL or UNKNOWN, and the
honest agent's reports must keep arriving.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, commands_pb2, operator_pb2, operator_pb2_grpc
from rmm_server.runs import MAX_ACTION_BYTES
from tests.fuzz import FUZZ, examples
from tests.fuzz.test_report_fuzz import honest_report, mutated_reports
from tests.helpers import ServerProcess, enroll_agent, free_port, rmm_json, start_agent, wait_for

ENROLL = "/rmm.v1.AgentService/Enroll"
REPORTS = "/rmm.v1.AgentService/StreamReports"
# Over the server's 16 MiB gRPC message limit (rmm_server.app.MAX_MESSAGE_BYTES).
OVERSIZED = 17 * 1024 * 1024
CLEAN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
}


def identity(data: bytes) -> bytes:
    return data


class Wire:
    """A running server, a reporting agent, and raw calls to the server."""

    def __init__(self, server: ServerProcess, honest_id: str, credential: str) -> None:
        self.server = server
        self.honest_id = honest_id
        self.credential = credential
        self.channel = grpc.insecure_channel(
            server.grpc_address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.enroll = self.channel.unary_unary(
            ENROLL, request_serializer=identity, response_deserializer=identity
        )
        self.reports = self.channel.stream_stream(
            REPORTS,
            request_serializer=identity,
            response_deserializer=agent_pb2.ReportAck.FromString,
        )

    def last_sequence(self) -> int:
        return int(rmm_json(self.server, "agents", "show", self.honest_id)["last_sequence"])

    def send_reports(
        self, payloads: list[bytes], credential: str | None = None
    ) -> list[agent_pb2.ReportAck]:
        metadata = bearer_metadata(self.credential if credential is None else credential)
        return list(self.reports(iter(payloads), metadata=metadata, timeout=30))


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    base = Path(tmp_path_factory.mktemp("wire"))
    server = ServerProcess(
        data_dir=base / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=base / "server.log",
    ).start()
    agent: subprocess.Popen[bytes] | None = None
    try:
        honest_id = enroll_agent(server, base / "honest")
        enroll_agent(server, base / "fuzzer", client="fuzz-client")
        credential = json.loads((base / "fuzzer" / "identity.json").read_text())["credential"]
        agent = start_agent(base / "honest", base / "honest.log", 1.0)
        wire = Wire(server, honest_id, credential)
        wait_for(lambda: wire.last_sequence() > 0, 30, "the honest agent's first report")
        yield wire
        wire.channel.close()
        log = server.log()
        assert "Traceback" not in log, log
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        server.stop()


def assert_clean(error: grpc.RpcError) -> None:
    assert error.code() in CLEAN, (error.code(), error.details())
    assert error.details(), "a refusal must say why"


def expect_honest_agent_reports(wire: Wire, before: int) -> None:
    wait_for(lambda: wire.last_sequence() > before, 20, "the honest agent's next report")


@settings(FUZZ, max_examples=examples(25))
@given(st.one_of(st.binary(max_size=300), mutated_reports()))
def test_random_bytes_on_enroll_get_a_clean_status(wire: Wire, data: bytes) -> None:
    try:
        wire.enroll(data, timeout=30)
    except grpc.RpcError as error:
        assert_clean(error)
    else:
        pytest.fail(f"random bytes enrolled an agent: {data!r}")


@settings(FUZZ, max_examples=examples(25))
@given(st.lists(st.one_of(st.binary(max_size=300), mutated_reports()), min_size=1, max_size=3))
def test_random_bytes_on_the_report_stream_get_a_clean_status_or_acks(
    wire: Wire, payloads: list[bytes]
) -> None:
    try:
        acks = wire.send_reports(payloads)
    except grpc.RpcError as error:
        assert_clean(error)
        return
    assert len(acks) == len(payloads)


def test_oversized_and_garbage_messages_are_refused_while_the_agent_reports(wire: Wire) -> None:
    before = wire.last_sequence()
    cases = [
        (wire.enroll, b"\xff" * 64, grpc.StatusCode.INVALID_ARGUMENT),
        (wire.enroll, b"x" * OVERSIZED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (
            lambda data, **kw: wire.send_reports([data]),
            b"x" * OVERSIZED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (
            lambda data, **kw: wire.send_reports([data]),
            b"\x0a\xff",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for call, payload, code in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call(payload, timeout=30)
        assert caught.value.code() == code, caught.value.details()
        assert caught.value.details()
    expect_honest_agent_reports(wire, before)


def test_enrollment_with_control_characters_is_refused_by_field(wire: Wire) -> None:
    """Found by the fuzzing: a NUL in a host fact reached PostgreSQL, which refused it, and the
    agent got a storage error instead of being told which field was wrong."""
    token = rmm_json(wire.server, "tokens", "create", "--client", "acme", "--site", "hq")["token"]
    request = agent_pb2.EnrollRequest(token=token, agent_version="0.1.0")
    request.host.hostname = "web\x0001"
    with pytest.raises(grpc.RpcError) as caught:
        wire.enroll(request.SerializeToString(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "host.hostname 'web\\x0001' holds control characters" in (caught.value.details() or "")


def test_a_wrong_agent_token_is_unauthenticated_and_others_go_on(wire: Wire) -> None:
    before = wire.last_sequence()
    report = honest_report(10**6).SerializeToString()
    agent_part = wire.credential.rsplit("_", 1)[0]
    for credential in ("", "nonsense", agent_part + "_" + "A" * 43, wire.credential + "x"):
        with pytest.raises(grpc.RpcError) as caught:
            wire.send_reports([report], credential=credential)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    # The fuzzer's own credential still works, and its well-formed report is stored.
    (ack,) = wire.send_reports([report])
    assert not ack.rejected and ack.sequence == 10**6
    expect_honest_agent_reports(wire, before)


def test_undecodable_requests_are_invalid_argument_on_every_kind_of_call(wire: Wire) -> None:
    """Found by the fuzzing: grpc decodes a unary request before any handler runs and answered
    bytes that are not the method's message with UNKNOWN ("Unexpected DecodeError"), and a
    streamed one reached the guard as an unexpected error (INTERNAL, a traceback in the log)."""
    before = wire.last_sequence()
    garbage = b"\x0a\xff"
    admin = bearer_metadata(wire.server.admin_token)
    agent = bearer_metadata(wire.credential)
    commands = wire.channel.stream_stream(
        "/rmm.v1.AgentService/Commands", request_serializer=identity, response_deserializer=identity
    )
    list_agents = wire.channel.unary_unary(
        "/rmm.v1.OperatorService/ListAgents",
        request_serializer=identity,
        response_deserializer=identity,
    )
    calls: list[tuple[str, Callable[[], object]]] = [
        ("Enroll", lambda: wire.enroll(garbage, timeout=30)),
        ("Commands", lambda: list(commands(iter([garbage]), metadata=agent, timeout=30))),
        ("ListAgents", lambda: list_agents(garbage, metadata=admin, timeout=30)),
    ]
    for name, call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, caught.value)
        assert "cannot be decoded" in (caught.value.details() or ""), caught.value.details()
    # Undecodable and unauthenticated: who calls is checked first.
    with pytest.raises(grpc.RpcError) as caught:
        list_agents(garbage, timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    expect_honest_agent_reports(wire, before)


def test_an_action_too_big_for_one_command_message_is_refused_before_it_is_sent(
    wire: Wire, tmp_path: Path
) -> None:
    """Found by the fuzzing: a push_file whose request fit the server's 16 MiB limit but whose
    signed command did not was stored and sent; gRPC refused it on every delivery, so the
    agent's command stream broke about once a second until the command expired."""
    stub = operator_pb2_grpc.OperatorServiceStub(wire.channel)
    admin = bearer_metadata(wire.server.admin_token)

    def push(data: bytes) -> list[operator_pb2.RunEvent]:
        request = operator_pb2.RunCommandRequest(
            target=operator_pb2.TargetSelector(agents=[wire.honest_id]),
            timeout_seconds=30,
            push_file=commands_pb2.PushFile(
                path=str(tmp_path / "pushed.bin"),
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
            ),
        )
        return list(stub.RunCommand(request, metadata=admin, timeout=60))

    with pytest.raises(grpc.RpcError) as caught:
        push(b"x" * (16 * 1024 * 1024 - 1000))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"an action may carry at most {MAX_ACTION_BYTES} bytes" in (caught.value.details() or "")
    # The agent's command stream is whole: a small push reaches it and runs.
    events = push(b"small")
    assert events[-1].outcome.status == commands_pb2.COMMAND_SUCCEEDED, events[-1]
    assert (tmp_path / "pushed.bin").read_bytes() == b"small"
