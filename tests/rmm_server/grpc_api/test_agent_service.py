"""AgentService in-process: the real servicer behind the real guard, on a grpc.aio server on
127.0.0.1 port 0 inside the test's own event loop, with a real Store (SQLite in a tmp dir), the
real ingestor and command service. No server process; what is checked is the conversion of
messages and of domain errors to status codes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_common.tokens import SecretKind, bearer_metadata, make_secret
from rmm_proto import agent_pb2, agent_pb2_grpc, commands_pb2
from rmm_server.audit import AuditLog
from rmm_server.budgets import AgentByteBudget
from rmm_server.commands import CommandService
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.agent_service import MAX_IN_FLIGHT_PER_STREAM, AgentServicer
from rmm_server.grpc_api.guard import ServiceGuard
from rmm_server.ingest import ReportIngestor
from rmm_server.operators import Operators
from rmm_server.server_metrics import ServerMetrics
from rmm_server.signing import CommandSigner
from rmm_server.storage import Store, open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import sqlite_url

WAIT = 30.0
STREAM_REPORTS = "/rmm.v1.AgentService/StreamReports"
pytestmark = pytest.mark.timeout(120)


@dataclass
class Server:
    store: Store
    fleet: Fleet
    metrics: ServerMetrics
    enrollment: Enrollment
    commands: CommandService
    channel: grpc.aio.Channel
    stub: agent_pb2_grpc.AgentServiceStub
    token: str  # an enrollment secret for acme/hq


@asynccontextmanager
async def serving(
    tmp_path: Path, byte_budget: AgentByteBudget | None = None
) -> AsyncIterator[Server]:
    store = open_store(sqlite_url(tmp_path))
    fleet, metrics = Fleet(), ServerMetrics()
    enrollment = Enrollment(store, fleet)
    ingestor = ReportIngestor(store, fleet, metrics, byte_budget=byte_budget)
    commands = CommandService(store, CommandSigner(Ed25519PrivateKey.generate()), metrics=metrics)
    guard = ServiceGuard(fleet, Operators(store), metrics, AuditLog(AuditStore(store)))
    server = grpc.aio.server(interceptors=[guard])
    servicer = AgentServicer(enrollment, ingestor, metrics, commands=commands)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    ingestor.start()
    commands.start()
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    _, token = enrollment.create_token("acme", "hq", "test")
    try:
        yield Server(
            store,
            fleet,
            metrics,
            enrollment,
            commands,
            channel,
            agent_pb2_grpc.AgentServiceStub(channel),
            token,
        )
    finally:
        await channel.close()
        servicer.close_streams()
        await server.stop(grace=None)
        await commands.stop()
        await ingestor.stop()
        store.close()


def run(tmp_path: Path, test: Callable[[Server], Awaitable[None]], **options: object) -> None:
    async def main() -> None:
        async with serving(tmp_path, **options) as server:  # type: ignore[arg-type]
            await asyncio.wait_for(test(server), WAIT)

    asyncio.run(main())


async def enroll(server: Server) -> agent_pb2.EnrollResponse:
    request = agent_pb2.EnrollRequest(token=server.token, agent_version="0.1.0", tags=["web"])
    request.host.hostname = "web-1"
    response: agent_pb2.EnrollResponse = await server.stub.Enroll(request)
    return response


def report(sequence: int) -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence, collected_at=time.time(), interval_seconds=30, agent_version="0.1.0"
    )
    made.host.hostname = "web-1"
    made.collectors.add(name="cpu", ok=True).samples.add(name="cpu_usage_ratio", value=0.5)
    return made


def auth_failures(server: Server) -> float:
    value = server.metrics.registry.get_sample_value(
        "rmm_server_auth_failures_total", {"caller": "agent"}
    )
    return float(value or 0.0)


def test_enroll_creates_the_agent_and_returns_its_identity(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        response = await enroll(server)
        assert (response.client, response.site) == ("acme", "hq")
        assert response.credential.startswith(f"{SecretKind.AGENT.value}_{response.agent_id}_")
        assert response.command_public_key == server.commands.signer.public_key
        saved = server.store.get_agent(response.agent_id)
        assert saved is not None and saved.hostname == "web-1" and saved.tags == ["web"]
        assert server.fleet.get(response.agent_id) is not None

    run(tmp_path, test)


@pytest.mark.parametrize(
    "token",
    [
        "rmme_nosuchtoken_secret",  # well formed, unknown
        "not a token at all",
    ],
)
def test_enroll_with_a_token_the_server_does_not_know_is_unauthenticated(
    tmp_path: Path, token: str
) -> None:
    async def test(server: Server) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await server.stub.Enroll(agent_pb2.EnrollRequest(token=token))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert len(server.fleet) == 0  # nobody enrolled

    run(tmp_path, test)


def test_a_report_stream_with_an_unknown_credential_is_unauthenticated(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        await enroll(server)  # an agent exists; the call below is not it
        forged = make_secret(SecretKind.AGENT, "0" * 32)
        call = server.stub.StreamReports(metadata=bearer_metadata(forged))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.write(report(1))
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "agent credential not recognised" in (refused.value.details() or "")
        assert auth_failures(server) == 1.0
        # No credential at all is refused the same way, and counted too.
        with pytest.raises(grpc.aio.AioRpcError) as bare:
            await server.stub.StreamReports(iter([report(1)])).read()
        assert bare.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert auth_failures(server) == 2.0

    run(tmp_path, test)


def test_reports_are_acknowledged_on_the_stream_and_an_invalid_one_is_refused_in_its_ack(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        call = server.stub.StreamReports(metadata=bearer_metadata(enrolled.credential))
        await call.write(report(1))
        first: agent_pb2.ReportAck = await call.read()
        bad = report(2)
        bad.collectors[0].samples[0].name = "Bad-Name"
        await call.write(bad)
        refused: agent_pb2.ReportAck = await call.read()
        await call.write(report(3))  # the stream goes on after a refusal
        third: agent_pb2.ReportAck = await call.read()
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert (first.sequence, first.rejected) == (1, "")
        assert refused.sequence == 2 and "Bad-Name" in refused.rejected
        assert (third.sequence, third.rejected) == (3, "")
        assert server.store.report_stats(enrolled.agent_id) == (1, 3, 2)
        live = server.fleet.get(enrolled.agent_id)
        assert live is not None and live.last_sequence == 3

    run(tmp_path, test)


def test_bytes_that_are_not_a_report_end_the_stream_with_invalid_argument(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        raw = server.channel.stream_stream(
            STREAM_REPORTS,
            request_serializer=lambda data: data,
            response_deserializer=agent_pb2.ReportAck.FromString,
        )
        call = raw(metadata=bearer_metadata(enrolled.credential))
        await call.write(report(1).SerializeToString())
        ack = await call.read()
        assert ack.sequence == 1
        # Sequence 2, then agent_version holding bytes that are not UTF-8.
        await call.write(b"\x08\x02\x22\x02\xff\xfe")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "a message on the report stream is not an rmm.v1.Report" in (
            ended.value.details() or ""
        )
        assert server.store.report_stats(enrolled.agent_id) == (1, 1, 1)

    run(tmp_path, test)


def test_an_agent_over_its_byte_budget_has_its_stream_ended_resource_exhausted(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        call = server.stub.StreamReports(metadata=bearer_metadata(enrolled.credential))
        await call.write(report(1))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "reached its storage budget" in (ended.value.details() or "")
        assert server.store.report_stats(enrolled.agent_id) == (None, None, 0)

    run(tmp_path, test, byte_budget=AgentByteBudget(limit=10, window_seconds=3600))


def test_the_command_stream_delivers_signed_commands_and_acknowledges_stored_results(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        call = server.stub.Commands(metadata=bearer_metadata(enrolled.credential))
        await call.write(
            commands_pb2.AgentCommandMessage(hello=commands_pb2.CommandHello(agent_version="x"))
        )
        await call.initial_metadata()  # the stream is up: the agent is connected
        assert server.commands.is_connected(enrolled.agent_id)
        agent = server.fleet.get(enrolled.agent_id)
        assert agent is not None
        (record,) = await server.commands.issue(
            "alice",
            [agent],
            "run_script",
            commands_pb2.RunScript(shell="sh", body="true"),
            timeout_seconds=10,
            expires_in_seconds=60,
            consent=lambda _a: 0,
            summary=lambda _c: "true",
        )
        message: commands_pb2.ServerCommandMessage = await call.read()
        command = commands_pb2.Command.FromString(message.command.command)
        assert (command.id, command.run_script.body) == (record.id, "true")
        done = commands_pb2.CommandResult(
            command_id=record.id, status=commands_pb2.CommandStatus.COMMAND_SUCCEEDED
        )
        await call.write(commands_pb2.AgentCommandMessage(result=done))
        stored: commands_pb2.ServerCommandMessage = await call.read()
        assert stored.result_stored == record.id
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert not server.commands.is_connected(enrolled.agent_id)

    run(tmp_path, test)


def test_a_command_stream_that_does_not_start_with_hello_is_invalid_argument(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        call = server.stub.Commands(metadata=bearer_metadata(enrolled.credential))
        result = commands_pb2.CommandResult(command_id="c")
        await call.write(commands_pb2.AgentCommandMessage(result=result))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "must start with a hello" in (refused.value.details() or "")

    run(tmp_path, test)


def test_a_revoked_agents_calls_are_unauthenticated_and_say_so(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        enrolled = await enroll(server)
        server.fleet.revoke(enrolled.agent_id, 1_800_000_000.0)
        call = server.stub.StreamReports(metadata=bearer_metadata(enrolled.credential))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.write(report(1))
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert f"agent {enrolled.agent_id} was revoked at 2027-01-15" in (
            refused.value.details() or ""
        )
        assert server.store.report_stats(enrolled.agent_id) == (None, None, 0)

    run(tmp_path, test)


def test_results_read_ahead_on_a_command_stream_are_bounded(tmp_path: Path) -> None:
    """An agent flooding its command stream with results while the database is held has at
    most MAX_IN_FLIGHT_PER_STREAM of them taken off its stream (issue #11: nothing of one agent
    unbounded in memory); none is dropped: all are answered once the database writes again."""
    flood = 1_000
    gate = threading.Event()

    async def test(server: Server) -> None:
        taken: list[str] = []
        submit = server.commands.submit_result
        record_results = server.commands.commands.record_results

        def counting_submit(*args: Any, **kwargs: Any) -> None:
            taken.append(args[1].command_id)
            submit(*args, **kwargs)

        def held_record_results(results: Any, notes: Any = None) -> None:
            gate.wait(WAIT)
            record_results(results, notes)

        server.commands.submit_result = counting_submit  # type: ignore[method-assign]
        server.commands.commands.record_results = held_record_results  # type: ignore[method-assign]
        enrolled = await enroll(server)
        call = server.stub.Commands(metadata=bearer_metadata(enrolled.credential))
        await call.write(
            commands_pb2.AgentCommandMessage(hello=commands_pb2.CommandHello(agent_version="x"))
        )
        await call.initial_metadata()

        async def write() -> None:
            for n in range(flood):
                result = commands_pb2.CommandResult(command_id=f"not-mine-{n}")
                await call.write(commands_pb2.AgentCommandMessage(result=result))

        writer = asyncio.ensure_future(write())
        await asyncio.sleep(2.0)  # time to read the whole flood, were it allowed
        # The rest wait in gRPC's own bounded transport buffers (tiny messages all fit there).
        assert 1 <= len(taken) <= MAX_IN_FLIGHT_PER_STREAM, len(taken)
        gate.set()
        answered: list[str] = []
        while len(answered) < flood:
            message: commands_pb2.ServerCommandMessage = await call.read()
            answered.append(message.result_stored)
        await writer
        await call.done_writing()
        assert len(taken) == flood
        assert sorted(answered) == sorted(f"not-mine-{n}" for n in range(flood))

    try:
        run(tmp_path, test)
    finally:
        gate.set()
