"""OperatorService calls for remote actions: RunCommand (fan-out), GetCommand, ListCommands.

The run itself (checks, target, parallel window, deadlines, queueing) is rmm_server.runs; these
calls convert messages to its arguments and its outcomes back to messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc.aio

from rmm_common.agent_words import parse_agent_word
from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import operator_pb2
from rmm_server.command_fields import fields_json, signed_command_fields
from rmm_server.commands import CommandService, decode_result
from rmm_server.desk.ticket_runs import start_for_ticket
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.audit_calls import note_resolved_agent
from rmm_server.grpc_api.guard import current_operator
from rmm_server.runs import Outcome, Run, RunRequest, RunService
from rmm_server.scripts import ScriptLibrary
from rmm_server.selection import resolve_agent
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.commands import CommandQuery, CommandRecord
from rmm_server.storage.tickets import TicketEvent, TicketRecord

MAX_COMMAND_LIMIT = 1000


def command_info(record: CommandRecord) -> operator_pb2.CommandInfo:
    """Convert a stored command to the message operators see."""
    info = operator_pb2.CommandInfo(
        id=record.id,
        run_id=record.run_id,
        agent_id=record.agent_id,
        hostname=record.hostname,
        operator=record.operator,
        action=record.action,
        summary=record.summary,
        status=record.status,  # type: ignore[arg-type]
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        sent_at=record.sent_at or 0.0,
        finished_at=record.finished_at or 0.0,
        error=record.error,
        fields_json=fields_json(signed_command_fields(record.signed)),
    )
    result = decode_result(record)
    if result is not None:
        info.result.CopyFrom(result)
    return info


def outcome_info(outcome: Outcome, run_id: str) -> operator_pb2.CommandInfo:
    """Convert a run's outcome to its message: the command's, or the target's that got none."""
    if outcome.record is None:
        return operator_pb2.CommandInfo(
            run_id=run_id,
            agent_id=outcome.agent_id,
            hostname=outcome.hostname,
            status=outcome.status,  # type: ignore[arg-type]
            error=outcome.error,
        )
    info = command_info(outcome.record)
    info.error = outcome.error
    return info


def run_request(request: operator_pb2.RunCommandRequest, operator: str, role: str) -> RunRequest:
    """Convert a RunCommand request to the run's arguments."""
    action = request.WhichOneof("action")
    if action is None:
        raise InvalidArgument("RunCommand needs an action (run_script, reboot, ...)")
    return RunRequest(
        operator=operator,
        role=role,
        action=action,
        payload=getattr(request, action),
        target=request.target,
        timeout_seconds=request.timeout_seconds,
        expires_in_seconds=request.expires_in_seconds,
        parallel=request.parallel,
        queue_offline=request.queue_offline,
        detach=request.detach,
        ticket=request.ticket,
    )


def run_started(run: Run) -> operator_pb2.RunEvent:
    """Convert a started run's targets to the stream's first event."""
    return operator_pb2.RunEvent(
        started=operator_pb2.RunStarted(
            run_id=run.id,
            targets=[
                operator_pb2.RunTarget(
                    agent_id=target.agent.id,
                    hostname=target.agent.hostname,
                    command_id=target.command_id,
                    online=target.online,
                )
                for target in run.targets
            ],
        )
    )


class CommandApi:
    """Mixin for OperatorServicer: the remote-action calls."""

    store: Store
    # Told every ticket event (the PSA webhook): set with TicketApi's.
    ticket_events: tuple[Callable[[TicketRecord, TicketEvent], None], ...]
    fleet: Fleet
    commands: CommandService | None
    scripts: ScriptLibrary
    consent_for: Callable[[AgentRecord], int]

    def _command_service(self) -> CommandService:
        if self.commands is None:
            raise NotFound("this server does not send commands")
        return self.commands

    def _run_service(self) -> RunService:
        return RunService(self._command_service(), self.fleet, self.scripts, self.consent_for)

    async def RunCommand(
        self, request: operator_pb2.RunCommandRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operator_pb2.RunEvent]:
        runs = self._run_service()
        operator = current_operator.get()
        tickets = Tickets(self.store, on_event=list(self.ticket_events)) if request.ticket else None
        run = await start_for_ticket(
            runs, run_request(request, operator.name, operator.role), tickets
        )
        yield run_started(run)
        settled: list[Outcome] = []
        try:
            async with contextlib.aclosing(run.outcomes()) as outcomes:
                async for outcome in outcomes:
                    settled.append(outcome)
                    yield operator_pb2.RunEvent(outcome=outcome_info(outcome, run.id))
        finally:
            if tickets is not None:
                await asyncio.to_thread(
                    tickets.run_ended, request.ticket, run.id, settled, operator.name
                )

    async def GetCommand(
        self, request: operator_pb2.GetCommandRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.CommandInfo:
        service = self._command_service()
        record = await asyncio.to_thread(service.commands.get, request.id)
        if record is None:
            raise NotFound(f"no command has the id {request.id!r}")
        return command_info(record)

    async def ListCommands(
        self, request: operator_pb2.ListCommandsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListCommandsResponse:
        service = self._command_service()
        agent_id = ""
        if request.agent:
            # A lookup, not an action: revoked agents' history too, and a hostname unique in the
            # fleet is enough (rmm_server.selection: ids are never matched against hostnames).
            known = [state.record for state in self.fleet.snapshot()]
            agent_id = resolve_agent(known, parse_agent_word(request.agent)).id
            note_resolved_agent(agent_id)
        query = CommandQuery(
            agent_id=agent_id,
            run_id=request.run_id,
            statuses=tuple(request.statuses),
            limit=min(request.limit or 100, MAX_COMMAND_LIMIT),
        )
        records = await asyncio.to_thread(service.commands.query, query)
        return operator_pb2.ListCommandsResponse(commands=[command_info(r) for r in records])
