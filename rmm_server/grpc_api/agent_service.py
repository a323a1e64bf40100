"""AgentService: enrollment and the report stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc.aio

from rmm_common.errors import NotFound, RmmError
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.enrollment import Enrollment
from rmm_server.grpc_api.guard import current_agent
from rmm_server.ingest import ReportIngestor
from rmm_server.reports import host_facts
from rmm_server.server_metrics import ServerMetrics
from rmm_server.updates import UpdateIndex

log = logging.getLogger(__name__)
MAX_IN_FLIGHT_PER_STREAM = 64


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """Convert agent calls to domain calls; the guard has authenticated the agent already."""

    def __init__(
        self,
        enrollment: Enrollment,
        ingestor: ReportIngestor,
        metrics: ServerMetrics,
        updates: UpdateIndex | None = None,
    ) -> None:
        self.enrollment = enrollment
        self.ingestor = ingestor
        self.metrics = metrics
        self.updates = updates

    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EnrollResponse:
        host = host_facts(request.host)
        try:
            enrolled = await asyncio.to_thread(
                self.enrollment.enroll,
                request.token,
                host,
                list(request.tags),
                request.agent_version,
            )
        except RmmError as error:
            self.metrics.enrollments.labels(outcome=type(error).__name__).inc()
            log.warning("enrollment refused for host %r: %s", request.host.hostname, error)
            raise
        self.metrics.enrollments.labels(outcome="enrolled").inc()
        record = enrolled.record
        log.info(
            "enrolled agent %s (%s) for %s/%s",
            record.id,
            record.hostname,
            record.client,
            record.site,
        )
        return agent_pb2.EnrollResponse(
            agent_id=record.id,
            credential=enrolled.credential,
            client=record.client,
            site=record.site,
        )

    async def StreamReports(
        self,
        request_iterator: AsyncIterator[agent_pb2.Report],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ReportAck]:
        agent = current_agent.get()
        # Reading runs ahead of acknowledging so a backlog of reports is stored in batches.
        in_flight: asyncio.Queue[asyncio.Task[agent_pb2.ReportAck] | None] = asyncio.Queue(
            MAX_IN_FLIGHT_PER_STREAM
        )

        async def read() -> None:
            try:
                async for report in request_iterator:
                    task = asyncio.ensure_future(self.ingestor.submit(agent, report))
                    await in_flight.put(task)
            finally:
                await in_flight.put(None)

        self.metrics.connected_agents.inc()
        reader = asyncio.ensure_future(read())
        log.debug("agent %s (%s) opened its report stream", agent.id, agent.hostname)
        try:
            while (task := await in_flight.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()
            self.metrics.connected_agents.dec()
            log.debug("agent %s closed its report stream", agent.id)

    async def DownloadUpdate(
        self, request: agent_pb2.DownloadUpdateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.UpdateChunk]:
        agent = current_agent.get()
        if self.updates is None:
            raise NotFound(
                "this server offers no agent updates (start it with --agent-updates DIR)"
            )
        archive = self.updates.get(request.version)
        log.info("agent %s (%s) downloads agent %s", agent.id, agent.hostname, archive.version)
        chunks = self.updates.chunks(archive)
        try:
            while (block := await asyncio.to_thread(next, chunks, None)) is not None:
                yield agent_pb2.UpdateChunk(data=block)
        finally:
            chunks.close()  # the agent may hang up mid-way: close the file now
