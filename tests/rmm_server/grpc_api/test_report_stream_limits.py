"""What one agent may hold and cost on its report stream (issue #11), against the real servicer
behind the real guard on a grpc.aio server on 127.0.0.1, with a real Store and ingestor, and
real streams from hostile clients: one report stream per agent, the bytes read ahead of their
acknowledgement bounded, and an agent whose reports cost too much CPU slowed while another
agent reports on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.audit import AuditLog
from rmm_server.budgets import AgentCpuBudget
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.agent_service import MAX_IN_FLIGHT_BYTES_PER_STREAM, AgentServicer
from rmm_server.grpc_api.guard import ServiceGuard
from rmm_server.ingest import ReportIngestor
from rmm_server.operators import Operators
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import sqlite_url
from tests.rmm_server.grpc_api.test_agent_service import report
from tests.rmm_server.test_ingest import GatedStore

WAIT = 60.0
pytestmark = pytest.mark.timeout(180)


@dataclass
class Served:
    store: GatedStore
    metrics: ServerMetrics
    stub: agent_pb2_grpc.AgentServiceStub
    enrollment: Enrollment
    token: str

    async def enroll(self, hostname: str) -> agent_pb2.EnrollResponse:
        request = agent_pb2.EnrollRequest(token=self.token, agent_version="0.1.0")
        request.host.hostname = hostname
        response: agent_pb2.EnrollResponse = await self.stub.Enroll(request)
        return response

    def counter(self, name: str) -> float:
        return float(self.metrics.registry.get_sample_value(name) or 0.0)


@asynccontextmanager
async def serving(
    tmp_path: Path, cpu_budget: AgentCpuBudget | None = None
) -> AsyncIterator[Served]:
    real = open_store(sqlite_url(tmp_path))
    store = GatedStore(real)
    fleet, metrics = Fleet(), ServerMetrics()
    enrollment = Enrollment(store, fleet)
    _, token = enrollment.create_token("acme", "hq", "test", max_uses=10)
    ingestor = ReportIngestor(store, fleet, metrics, cpu_budget=cpu_budget)
    guard = ServiceGuard(fleet, Operators(store), metrics, AuditLog(AuditStore(store)))
    server = grpc.aio.server(
        interceptors=[guard],
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )
    servicer = AgentServicer(enrollment, ingestor, metrics)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    ingestor.start()
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    try:
        yield Served(store, metrics, agent_pb2_grpc.AgentServiceStub(channel), enrollment, token)
    finally:
        store.gate.set()
        await channel.close()
        servicer.close_streams()
        await server.stop(grace=None)
        await ingestor.stop()
        real.close()


def test_a_second_report_stream_of_an_agent_replaces_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serving(tmp_path) as served:
            enrolled = await served.enroll("web-1")
            metadata = bearer_metadata(enrolled.credential)
            first = served.stub.StreamReports(metadata=metadata)
            await first.write(report(1))
            assert (await first.read()).sequence == 1
            second = served.stub.StreamReports(metadata=metadata)
            await second.write(report(2))
            assert (await second.read()).sequence == 2
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(first.read(), WAIT)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "opened another report stream, which replaces this one" in (
                ended.value.details() or ""
            )
            await second.write(report(3))  # the newer stream goes on
            assert (await second.read()).sequence == 3
            await second.done_writing()
            assert await second.read() == grpc.aio.EOF
            assert served.store.report_stats(enrolled.agent_id) == (1, 3, 3)
            assert served.counter("rmm_server_report_streams_replaced_total") == 1
            assert served.metrics.registry.get_sample_value("rmm_server_connected_agents") == 0

    with caplog.at_level(logging.INFO, logger="rmm_server"):
        asyncio.run(main())
    assert "opened a second report stream: the older one is ended" in caplog.text


def big_report(sequence: int, size: int) -> agent_pb2.Report:
    """A valid report carrying about `size` bytes of collector info (few containers)."""
    made = report(sequence)
    made.collectors[0].info_json = json.dumps({"note": "x" * size}).encode()
    return made


def test_reports_read_ahead_on_one_stream_are_bounded_in_bytes(tmp_path: Path) -> None:
    """With the database held, a stream of 1 MiB reports is read only as far as the stream's
    byte bound (plus the one report that overflows it); none is lost once writes go on."""
    count, size = 12, 1024 * 1024

    async def main() -> None:
        async with serving(tmp_path) as served:
            enrolled = await served.enroll("web-1")
            served.store.gate.clear()
            call = served.stub.StreamReports(metadata=bearer_metadata(enrolled.credential))

            async def write() -> None:
                for sequence in range(1, count + 1):
                    await call.write(big_report(sequence, size))
                await call.done_writing()

            writer = asyncio.ensure_future(write())
            deadline = time.monotonic() + WAIT
            while not served.store.entered.is_set():
                assert time.monotonic() < deadline, "no write reached the database"
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # time to read further, were it allowed
            received = served.counter("rmm_server_reports_received_total")
            assert 1 <= received <= MAX_IN_FLIGHT_BYTES_PER_STREAM // size + 1, received
            assert not writer.done()  # the client waits: gRPC flow control, not a drop
            served.store.gate.set()
            acks = [ack async for ack in call]
            await writer
            assert [(ack.sequence, ack.rejected) for ack in acks] == [
                (sequence, "") for sequence in range(1, count + 1)
            ]
            assert served.store.report_stats(enrolled.agent_id) == (1, count, count)

    asyncio.run(main())


def costly_report(sequence: int) -> agent_pb2.Report:
    """A report within every limit that costs the server CPU: a new series set each time (so
    it is checked in full) and ~2.5 MB of info with 9,000 objects (decoded for its depth)."""
    made = report(sequence)
    made.collectors[0].samples.add(name=f"made_up_{sequence}_ratio", value=1.0)
    made.collectors[0].info_json = json.dumps([{"k": "v" * 250}] * 9_000).encode()
    return made


def test_an_agent_over_its_cpu_budget_is_slowed_while_another_reports_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = AgentCpuBudget(share=0.02, burst=0.1)

    async def main() -> None:
        async with serving(tmp_path, cpu_budget=budget) as served:
            hostile = await served.enroll("hostile-1")
            honest = await served.enroll("web-1")
            hostile_acks: list[float] = []
            flood = served.stub.StreamReports(metadata=bearer_metadata(hostile.credential))

            async def send_flood() -> None:
                for sequence in range(1, 200):
                    await flood.write(costly_report(sequence))

            async def read_flood() -> None:
                async for _ack in flood:
                    hostile_acks.append(time.monotonic())

            sender = asyncio.ensure_future(send_flood())
            reader = asyncio.ensure_future(read_flood())
            deadline = time.monotonic() + WAIT
            while served.counter("rmm_server_reports_slowed_total") == 0:
                assert time.monotonic() < deadline, "the hostile agent was never slowed"
                await asyncio.sleep(0.05)
            # While it is slowed, an honest agent's reports go through at once.
            call = served.stub.StreamReports(metadata=bearer_metadata(honest.credential))
            latencies = []
            for sequence in range(1, 6):
                started = time.monotonic()
                await call.write(report(sequence))
                ack = await call.read()
                assert (ack.sequence, ack.rejected) == (sequence, "")
                latencies.append(time.monotonic() - started)
            await call.done_writing()
            slowed_from = len(hostile_acks)
            await asyncio.sleep(2.0)
            # In debt, the hostile stream gets about 2 % of a core: a report every few seconds
            # at most, against tens a second before it was slowed.
            assert len(hostile_acks) - slowed_from <= 3, hostile_acks
            assert max(latencies) < 2.0, latencies
            assert served.counter("rmm_server_reports_slowed_seconds_total") > 0
            flood.cancel()
            sender.cancel()
            reader.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="rmm_server"):
        asyncio.run(main())
    assert "cost the server's event loop more than its share (2% of a core" in caplog.text
    assert caplog.text.count("more than its share") == 1  # once a minute per agent
