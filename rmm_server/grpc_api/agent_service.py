"""AgentService: enrollment, the report stream and the command stream."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import grpc.aio
from google.protobuf.message import DecodeError

from rmm_common.errors import InvalidArgument, NotFound, RmmError, Unavailable
from rmm_common.logs import agent_label
from rmm_common.tokens import SecretKind
from rmm_proto import agent_pb2, agent_pb2_grpc, commands_pb2
from rmm_server.agent_credentials import AgentCredentials
from rmm_server.background import retrieve_exception
from rmm_server.cluster import Cluster
from rmm_server.commands import CommandService
from rmm_server.desk.help import HelpDesk
from rmm_server.enrollment import Enrollment
from rmm_server.grpc_api.guard import current_agent
from rmm_server.ingest import ReportIngestor
from rmm_server.ratelimit import RateLimited, RateLimits, peer_address
from rmm_server.reports import host_facts
from rmm_server.server_metrics import ServerMetrics
from rmm_server.updates import UpdateIndex

log = logging.getLogger(__name__)
# Reports read ahead of their acknowledgement on one stream, so a backlog is stored in batches:
# at most this many, and at most MAX_IN_FLIGHT_BYTES_PER_STREAM of them (one larger report is
# read alone). A spool backlog of 9 kB reports fills the count long before the bytes; a
# hostile agent sending reports at the size limits holds at most the bytes plus one message.
MAX_IN_FLIGHT_PER_STREAM = 64
MAX_IN_FLIGHT_BYTES_PER_STREAM = 4 * 1024 * 1024
HELLO_TIMEOUT_SECONDS = 30.0
# An agent slowed for its CPU budget is said in the log at most once per this many seconds.
SLOWED_LOG_SECONDS = 60.0


class _ByteWindow:
    """Messages read from one stream and not yet processed: bounded in bytes and, where
    given, in number (a flood of tiny messages fills the count long before the bytes)."""

    def __init__(self, limit: int, max_messages: int | None = None) -> None:
        self.limit = limit
        self.max_messages = max_messages
        self.used = 0
        self.messages = 0
        self._freed = asyncio.Event()

    def _full(self, size: int) -> bool:
        if not self.messages:
            return False  # one message always fits, however large (its size is gRPC's limit)
        if self.max_messages is not None and self.messages >= self.max_messages:
            return True
        return self.used + size > self.limit

    async def acquire(self, size: int) -> None:
        """Wait until `size` more bytes fit (always at once when nothing is held)."""
        while self._full(size):
            self._freed.clear()
            await self._freed.wait()
        self.used += size
        self.messages += 1

    def release(self, size: int) -> None:
        """Give `size` bytes back once the message holding them was processed."""
        self.used -= size
        self.messages -= 1
        self._freed.set()

    def release_after(self, size: int, _done: object) -> None:
        """Give `size` bytes back once the report holding them was processed (a done callback)."""
        self.release(size)


class _ReportStream:
    """One agent's open report stream: its reader, and whether a newer stream replaced it."""

    __slots__ = ("reader", "replaced")

    def __init__(self, reader: asyncio.Task[None]) -> None:
        self.reader = reader
        self.replaced = False


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """Convert agent calls to domain calls; the guard has authenticated the agent already."""

    def __init__(
        self,
        enrollment: Enrollment,
        ingestor: ReportIngestor,
        metrics: ServerMetrics,
        updates: UpdateIndex | None = None,
        commands: CommandService | None = None,
        credentials: AgentCredentials | None = None,
        limits: RateLimits | None = None,
        cluster: Cluster | None = None,
        help_desk: HelpDesk | None = None,
    ) -> None:
        self.enrollment = enrollment
        self.ingestor = ingestor
        self.metrics = metrics
        self.updates = updates
        self.commands = commands
        self.credentials = credentials
        self.limits = limits
        self.cluster = cluster if cluster is not None else Cluster("local")
        self.help_desk = help_desk
        # Long-lived streams never end by themselves: a stopping server ends them at once instead
        # of holding its shutdown for the whole grace period.
        self._report_readers: set[asyncio.Task[None]] = set()
        # One report stream per agent: a newer one replaces the older (the agent reconnected
        # and the old connection is half-open, or a copy of it runs elsewhere), so what one
        # agent holds in memory is one stream's window.
        self._report_streams: dict[str, _ReportStream] = {}

    def close_streams(self) -> None:
        """End every agent's report and command stream: the server is stopping.

        A report already read is stored and acknowledged first; one read but not yet acknowledged
        is sent again by its agent, and the sequence check keeps it from being stored twice.
        """
        for reader in self._report_readers:
            reader.cancel()
        if self.commands is not None:
            self.commands.close_links()

    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EnrollResponse:
        if self.limits is not None:
            address = peer_address(context.peer())
            try:
                self.limits.check_enrollment(address, _token_id(request.token))
            except RateLimited as error:
                self.metrics.enrollments.labels(outcome="RateLimited").inc()
                log.warning("enrollment refused for %s: %s", address, error)
                raise
        host = host_facts(request.host)
        try:
            enrolled = await asyncio.to_thread(
                self.enrollment.enroll,
                request.token,
                host,
                list(request.tags),
                request.agent_version,
                request.csr_pem,
            )
        except RmmError as error:
            self.metrics.enrollments.labels(outcome=type(error).__name__).inc()
            log.warning("enrollment refused for host %r: %s", request.host.hostname, error)
            raise
        self.metrics.enrollments.labels(outcome="enrolled").inc()
        record = enrolled.record
        self.cluster.agent_changed([record.id])
        log.info(
            "enrolled agent %s for %s/%s",
            agent_label(record.hostname, record.id),
            record.client,
            record.site,
        )
        return agent_pb2.EnrollResponse(
            agent_id=record.id,
            credential=enrolled.credential,
            client=record.client,
            site=record.site,
            command_public_key=self.commands.signer.public_key if self.commands else b"",
            client_certificate_pem=enrolled.client_certificate_pem,
            mtls_port=self.enrollment.client_certs.port if self.enrollment.client_certs else 0,
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
        window = _ByteWindow(MAX_IN_FLIGHT_BYTES_PER_STREAM)

        async def read() -> None:
            try:
                # context.read(), not `async for` over request_iterator (the same reads): the
                # iterator's generator holds the last report it gave while it waits for the
                # next, and so would `report` here without the `del` below. Every agent holds
                # its stream open between reports, and a decoded report of 100 samples is
                # about 40 KB (bench.stream_memory at 1,000 agents: 99 -> 58 KB an agent).
                while (report := await context.read()) is not grpc.aio.EOF:
                    if self.limits is not None:
                        await self.limits.pace_report(agent.id)
                    size = report.ByteSize()
                    await window.acquire(size)
                    task = asyncio.ensure_future(self.ingestor.submit(agent, report))
                    task.add_done_callback(functools.partial(window.release_after, size))
                    # When the stream ends on an error (the database is down), the reports read
                    # ahead are never awaited: read their outcome here, or asyncio logs a
                    # traceback for each one.
                    task.add_done_callback(retrieve_exception)
                    await in_flight.put(task)
                    del report  # its submit holds it while needed; not until the next one
                    await self._within_cpu_budget(agent.id, agent.hostname)
            except DecodeError as error:
                # Bytes no agent of ours can send (protobuf refuses to encode them): refuse the
                # stream by name, without a traceback in the log.
                log.warning("agent %s sent a report that cannot be decoded: %s", agent.id, error)
                raise InvalidArgument(
                    f"a message on the report stream is not an rmm.v1.Report ({error})"
                ) from None
            finally:
                await in_flight.put(None)

        self.metrics.connected_agents.inc()
        self.cluster.attach(agent.id)
        reader = asyncio.ensure_future(read())
        self._report_readers.add(reader)
        stream = _ReportStream(reader)
        older = self._report_streams.get(agent.id)
        self._report_streams[agent.id] = stream
        if older is not None:
            # Its reports read so far are still stored and acknowledged on it; what it has not
            # read the agent sends again on this one, and the sequence check stores it once.
            older.replaced = True
            older.reader.cancel()
            self.metrics.report_streams_replaced.inc()
            log.info(
                "agent %s opened a second report stream: the older one is ended (one report "
                "stream per agent)",
                agent_label(agent.hostname, agent.id),
            )
        log.debug("agent %s opened its report stream", agent_label(agent.hostname, agent.id))
        try:
            while (task := await in_flight.get()) is not None:
                ack = await task
                if self.credentials is not None and self.credentials.rotation_requested(agent.id):
                    ack.rotate_credential = True
                yield ack
            await asyncio.wait([reader])
            if reader.cancelled():  # only close_streams() or a newer stream cancels a reader
                if stream.replaced:
                    raise Unavailable(
                        "this agent opened another report stream, which replaces this one "
                        "(one report stream per agent); reports not acknowledged here are "
                        "sent on the newer stream"
                    )
                raise Unavailable("the server is stopping; reconnect to it or another replica")
            reader.result()
        finally:
            self._report_readers.discard(reader)
            if self._report_streams.get(agent.id) is stream:
                del self._report_streams[agent.id]
            reader.cancel()
            self.cluster.detach(agent.id)
            self.metrics.connected_agents.dec()
            log.debug("agent %s closed its report stream", agent.id)

    async def _within_cpu_budget(self, agent_id: str, hostname: str) -> None:
        """Wait before reading the agent's next report while it is over its CPU budget."""
        budget = self.ingestor.cpu_budget
        delay = budget.delay(agent_id)
        if delay <= 0:
            return
        self.metrics.reports_slowed.inc()
        self.metrics.reports_slowed_seconds.inc(delay)
        if budget.first_in(agent_id, SLOWED_LOG_SECONDS):
            log.warning(
                "agent %s: its reports cost the server's event loop more than its share "
                "(%.0f%% of a core, bursts of %.1f s): its next report is read in %.1f s, and "
                "its stream waits (nothing is dropped). Its reports are large or change their "
                "series set every time (names, labels, collector info, inventory): check the "
                "agent's collectors and plug-ins (rmm_server_reports_slowed_total counts this)",
                agent_label(hostname, agent_id),
                budget.share * 100,
                budget.burst,
                delay,
            )
        await asyncio.sleep(delay)

    async def RotateCredential(
        self, request: agent_pb2.RotateCredentialRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RotateCredentialResponse:
        agent = current_agent.get()
        if self.credentials is None:
            raise NotFound("this server does not rotate agent credentials")
        credential = await self.credentials.issue(agent)
        return agent_pb2.RotateCredentialResponse(credential=credential)

    def _desk(self) -> HelpDesk:
        if self.help_desk is None:
            raise NotFound("this server has no desk: help requests and codes are not taken")
        return self.help_desk

    async def RequestHelp(
        self, request: agent_pb2.HelpRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.HelpTicket:
        agent = current_agent.get()
        ticket = await asyncio.to_thread(
            self._desk().request_help,
            agent,
            request.text,
            request.snapshot_json,
            request.local_user,
        )
        return agent_pb2.HelpTicket(
            ticket_id=ticket.id,
            verify_code=ticket.verify_code,
            tier=ticket.tier,
            client=ticket.client,
        )

    async def VerifyCode(
        self, request: agent_pb2.VerifyCodeRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.VerifyCodeResponse:
        agent = current_agent.get()
        ticket = await asyncio.to_thread(self._desk().verify, agent, request.code)
        if ticket is None:
            return agent_pb2.VerifyCodeResponse(match=False)
        return agent_pb2.VerifyCodeResponse(
            match=True,
            ticket_id=ticket.id,
            tier=ticket.tier,
            assignee=ticket.assignee,
            status=ticket.status,
            title=ticket.title,
            opened_by=ticket.opened_by,
            opened_at=ticket.opened_at,
        )

    async def DownloadUpdate(
        self, request: agent_pb2.DownloadUpdateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.UpdateChunk]:
        agent = current_agent.get()
        if self.updates is None:
            raise NotFound(
                "this server offers no agent updates (start it with --agent-updates DIR)"
            )
        archive = self.updates.get(request.version)
        log.info(
            "agent %s downloads agent %s", agent_label(agent.hostname, agent.id), archive.version
        )
        chunks = self.updates.chunks(archive)
        try:
            while (block := await asyncio.to_thread(next, chunks, None)) is not None:
                yield agent_pb2.UpdateChunk(data=block)
        finally:
            chunks.close()  # the agent may hang up mid-way: close the file now

    async def Commands(
        self,
        request_iterator: AsyncIterator[commands_pb2.AgentCommandMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[commands_pb2.ServerCommandMessage]:
        agent = current_agent.get()
        if self.commands is None:
            raise NotFound("this server does not send commands")
        commands = self.commands
        # context.read(), not request_iterator, as on the report stream: the iterator would
        # hold the last message (a command's result, up to megabytes) for as long as the
        # stream then stays quiet, which for most agents is until their next command.
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT_SECONDS)
        except TimeoutError:
            return
        if first is grpc.aio.EOF:
            return
        if not first.HasField("hello"):
            raise InvalidArgument("the command stream must start with a hello message")
        link = await commands.connect(agent, first.hello)
        # Headers now tell the agent its stream is up even when no command is waiting.
        await context.send_initial_metadata(())

        # Results read and not yet stored are bounded per stream like reports: an agent that
        # floods results waits on its own stream (gRPC's flow control then holds it back).
        window = _ByteWindow(MAX_IN_FLIGHT_BYTES_PER_STREAM, MAX_IN_FLIGHT_PER_STREAM)

        async def read() -> None:
            try:
                while (message := await context.read()) is not grpc.aio.EOF:
                    if message.HasField("result"):
                        size = message.result.ByteSize()
                        await window.acquire(size)
                        commands.submit_result(
                            agent.id,
                            message.result,
                            link,
                            stored=functools.partial(window.release, size),
                        )
                    del message  # submit_result holds the result while needed
            finally:
                link.close()

        self.metrics.command_streams.inc()
        reader = asyncio.ensure_future(read())
        try:
            while (message := await link.outbox.get()) is not None:
                yield message
        finally:
            reader.cancel()
            commands.disconnect(link)
            self.metrics.command_streams.dec()
            log.debug("agent %s closed its command stream", agent.id)


def _token_id(token: str) -> str:
    """Return the id part of an enrollment secret (rmme_<id>_<secret>), bounded, or ""."""
    kind, _, rest = token.strip().partition("_")
    if kind != SecretKind.ENROLLMENT.value:
        return ""
    return rest.partition("_")[0][:64]
