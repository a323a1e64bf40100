"""OperatorService calls for remote actions: RunCommand (fan-out), GetCommand, ListCommands."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio

from rmm_common.agent_words import parse_agent_word
from rmm_common.command_summary import describe
from rmm_common.durations import format_duration
from rmm_common.errors import InvalidArgument, NotFound, PermissionDenied
from rmm_common.script_env import PARAM_PREFIX, env_problem
from rmm_common.tokens import new_ident
from rmm_proto import commands_pb2, operator_pb2
from rmm_server.command_fields import fields_json, message_fields, signed_command_fields
from rmm_server.commands import CommandService, decode_result, status_name
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.guard import current_operator
from rmm_server.roles import ACTION_ROLE, LIBRARY_SCRIPT, Role, check_action_allowed
from rmm_server.script_params import check_params
from rmm_server.scripts import Script, ScriptLibrary
from rmm_server.selection import describe_selector, resolve_agent, select_agents
from rmm_server.storage import AgentRecord
from rmm_server.storage.commands import CommandQuery, CommandRecord

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus

DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 24 * 3600.0
QUEUED_EXPIRY_SECONDS = 24 * 3600.0
MAX_EXPIRY_SECONDS = 30 * 24 * 3600.0
# How long after its timeout the server still waits for an online agent's result.
RESULT_GRACE_SECONDS = 15.0
# Extra wait when a logged-in user must say yes first (the agent's default consent timeout).
ASK_ALLOWANCE_SECONDS = 150.0
MAX_COMMAND_LIMIT = 1000
# A command reaches its agent in one gRPC message of at most rmm_server.app.MAX_MESSAGE_BYTES
# (16 MiB), wrapped with its id, times, operator and signature: an action's payload leaves room
# for those. A larger one would be refused by gRPC on every delivery, breaking the agent's
# command stream again and again until the command expired.
MAX_ACTION_BYTES = 16 * 1024 * 1024 - 64 * 1024


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


def not_sent(agent: AgentRecord, status: int, error: str, run_id: str) -> operator_pb2.CommandInfo:
    """The outcome of a target that got no command (it was offline)."""
    return operator_pb2.CommandInfo(
        run_id=run_id,
        agent_id=agent.id,
        hostname=agent.hostname,
        status=status,  # type: ignore[arg-type]
        error=error,
    )


def script_request_problems(script: commands_pb2.RunScript) -> list[str]:
    """Return why a run_script request's environment may not be sent, whoever sends it."""
    problems: list[str] = []
    for name, value in script.env.items():
        problem = env_problem(name, value)
        if problem is None and name.upper().startswith(PARAM_PREFIX):
            problem = (
                f"environment variable {name!r}: {PARAM_PREFIX}* names carry a library script's "
                "declared parameters; give it as --param NAME=VALUE"
            )
        if problem is not None:
            problems.append(problem)
    return problems


def undeclared_inputs(script: commands_pb2.RunScript) -> list[str]:
    """Return what a library script run sets beyond its header's parameters, as CLI options."""
    extras = [f"--env {name}" for name in sorted(script.env)]
    if script.args:
        extras.append(f"--args ({len(script.args)})")
    if script.working_directory:
        extras.append("--cwd")
    return extras


def summarize(command: commands_pb2.Command) -> str:
    """One line saying what a command does (the agent's own wording)."""
    return describe(command)


def check_library_inputs(entry: Script | None, script: Any, role: Role, operator: str) -> None:
    """Raise PermissionDenied when a role below ad-hoc scripts sets what a header does not declare.

    A library script's header says what may be set on it: its parameters. Environment,
    arguments and a working directory change what the script does (BASH_ENV, PATH, a relative
    path), so only a role that may run any script body at all may add them.
    """
    if entry is None:
        return
    extras = undeclared_inputs(script)
    needed = max(ACTION_ROLE["run_script"], entry.min_role)
    if extras and role < needed:
        declared = ", ".join(param.name for param in entry.params) or "none"
        raise PermissionDenied(
            f"operator {operator!r} has role {role.name.lower()}: library script "
            f"{entry.name!r} takes only the parameters its header declares ({declared}; "
            f"--param NAME=VALUE); {', '.join(extras)} may be set only by "
            f"{needed.name.lower()} or higher, who may run any script; drop them"
        )


class CommandApi:
    """Mixin for OperatorServicer: the remote-action calls."""

    fleet: Fleet
    commands: CommandService | None
    scripts: ScriptLibrary
    consent_for: Callable[[AgentRecord], int]

    def _command_service(self) -> CommandService:
        if self.commands is None:
            raise NotFound("this server does not send commands")
        return self.commands

    def _resolve_action(
        self, request: operator_pb2.RunCommandRequest
    ) -> tuple[str, Any, str, Role, float, Script | None]:
        """Return (action, payload, role action, role floor, default timeout, library script).

        A library script run that sets more than its header's parameters (env, args, working
        directory) needs the role that may run any script: the role action is then run_script.
        """
        action = request.WhichOneof("action")
        if action is None:
            raise InvalidArgument("RunCommand needs an action (run_script, reboot, ...)")
        payload = getattr(request, action)
        if action != "run_script":
            return action, payload, action, Role.VIEWER, DEFAULT_TIMEOUT_SECONDS, None
        script = commands_pb2.RunScript()
        script.CopyFrom(payload)
        if script.library_name and not script.body:
            entry = self.scripts.get(script.library_name)
            script.body = entry.body
            if not script.shell:
                script.shell = entry.shells[0]
            elif script.shell not in entry.shells:
                raise InvalidArgument(
                    f"library script {script.library_name!r} runs under {', '.join(entry.shells)}, "
                    f"not {script.shell}"
                )
            role_action = "run_script" if undeclared_inputs(script) else LIBRARY_SCRIPT
            return action, script, role_action, entry.min_role, entry.timeout_seconds, entry
        if not script.body:
            raise InvalidArgument("run_script needs a script body or a library script name")
        if script.params:
            raise InvalidArgument(
                "--param is for library scripts (their header declares them); an ad-hoc script "
                "takes --args or --env"
            )
        # An ad-hoc script that borrows a library name must not pass for the library's script.
        script.library_name = ""
        return action, script, action, Role.VIEWER, DEFAULT_TIMEOUT_SECONDS, None

    async def RunCommand(
        self, request: operator_pb2.RunCommandRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operator_pb2.RunEvent]:
        service = self._command_service()
        operator = current_operator.get()
        action, payload, role_action, floor, default_timeout, entry = self._resolve_action(request)
        size = payload.ByteSize()
        if size > MAX_ACTION_BYTES:
            raise InvalidArgument(
                f"{action} carries {size} bytes; a command travels to its agent in one message, "
                f"so an action may carry at most {MAX_ACTION_BYTES} bytes (16 MiB less room for "
                "the signature): have the hosts download bigger files, e.g. with rmm run"
            )
        try:
            # Checked for every role, and before the role: whoever tries BASH_ENV is refused.
            problems = script_request_problems(payload) if action == "run_script" else []
            if problems:
                raise InvalidArgument("; ".join(problems))
            check_library_inputs(entry, payload, Role.parse(operator.role), operator.name)
            check_action_allowed(role_action, Role.parse(operator.role), operator.name, floor)
        except (PermissionDenied, InvalidArgument) as error:
            if service.audit is not None:
                # What was asked, in full: a refused attempt is worth as much as a sent one.
                details = {
                    "action": action,
                    "timeout_seconds": request.timeout_seconds,
                    **message_fields(payload),
                }
                denial = (
                    operator.name,
                    "RunCommand",
                    describe_selector(request.target),
                    details,
                    f"{'denied' if isinstance(error, PermissionDenied) else 'refused'}: {error}",
                )
                await asyncio.to_thread(service.audit, [denial])
            raise
        if entry is not None:
            # The header's parameters, checked by type, reach the script as RMM_PARAM_<NAME>.
            payload.env.update(check_params(entry.name, entry.params, payload.params))
        timeout = request.timeout_seconds or default_timeout
        if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
            raise InvalidArgument(f"timeout {timeout:g}s is outside 1s..24h")
        if request.detach and request.parallel:
            raise InvalidArgument("--parallel needs the run watched until it ends: drop --detach")
        now = time.time()
        targets = select_agents(self.fleet, request.target, now)
        expires_in = request.expires_in_seconds or (
            QUEUED_EXPIRY_SECONDS if request.queue_offline else timeout + 60.0
        )
        if not 0 < expires_in <= MAX_EXPIRY_SECONDS:
            # Named by the flags the operator typed (rmm run|files|...), not the request's fields.
            source = "--expires" if request.expires_in_seconds else "--timeout plus 1m"
            raise InvalidArgument(
                f"the command would expire after {format_duration(expires_in)} ({source}): "
                "keep it between 1s and 30d"
            )
        run_id = new_ident()
        reachable = [agent for agent in targets if service.is_connected(agent.id)]
        unreachable = [agent for agent in targets if not service.is_connected(agent.id)]
        outcomes: asyncio.Queue[CommandRecord] = asyncio.Queue()

        def shape(agent: AgentRecord, command: commands_pb2.Command) -> None:
            if action == "run_script" and not command.run_script.shell:
                command.run_script.shell = "powershell" if agent.os == "windows" else "sh"

        async def issue(agents: list[AgentRecord], watched: bool) -> list[CommandRecord]:
            if not agents:
                return []
            records = await service.issue(
                operator.name,
                agents,
                action,
                payload,
                timeout,
                expires_in,
                self.consent_for,
                summarize,
                run_id=run_id,
                shape=shape,
                watch=outcomes.put_nowait if watched else None,
            )
            return records

        limit = request.parallel or len(reachable)
        first, waiting = reachable[:limit], reachable[limit:]
        issued = await issue(first, watched=not request.detach)
        queued = await issue(unreachable, watched=False) if request.queue_offline else []
        log.info(
            "operator %s sent %s to %d agents (run %s, %d offline)",
            operator.name,
            action,
            len(targets),
            run_id,
            len(unreachable),
        )
        command_of = {record.agent_id: record.id for record in [*issued, *queued]}
        yield operator_pb2.RunEvent(
            started=operator_pb2.RunStarted(
                run_id=run_id,
                targets=[
                    operator_pb2.RunTarget(
                        agent_id=agent.id,
                        hostname=agent.hostname,
                        command_id=command_of.get(agent.id, ""),
                        online=service.is_connected(agent.id),
                    )
                    for agent in targets
                ],
            )
        )
        if request.detach:
            return
        for record in queued:
            yield operator_pb2.RunEvent(outcome=command_info(record))
        if not request.queue_offline:
            for agent in unreachable:
                yield operator_pb2.RunEvent(
                    outcome=not_sent(
                        agent,
                        Status.COMMAND_CANCELLED,
                        "offline: the agent has no command stream open, so nothing was sent "
                        "(--queue-offline waits for it)",
                        run_id,
                    )
                )
        allowance = (
            ASK_ALLOWANCE_SECONDS
            if any(self.consent_for(agent) == commands_pb2.CONSENT_ASK for agent in reachable)
            else 0.0
        )
        wait_seconds = timeout + allowance + RESULT_GRACE_SECONDS
        deadline = {record.id: time.monotonic() + wait_seconds for record in issued}
        try:
            while deadline:
                remaining = min(deadline.values()) - time.monotonic()
                try:
                    record = await asyncio.wait_for(outcomes.get(), max(0.0, remaining))
                except TimeoutError:
                    overdue = [cid for cid, at in deadline.items() if at <= time.monotonic()]
                    for command_id in overdue:
                        del deadline[command_id]
                        stored = await asyncio.to_thread(service.commands.get, command_id)
                        if stored is None:
                            continue
                        info = command_info(stored)
                        if not stored.final:
                            info.error = (
                                f"no result within {wait_seconds:.0f}s; the command stays "
                                f"{status_name(stored.status)} "
                                f"(see `rmm commands show {command_id}`)"
                            )
                        yield operator_pb2.RunEvent(outcome=info)
                    continue
                if deadline.pop(record.id, None) is None:
                    continue
                yield operator_pb2.RunEvent(outcome=command_info(record))
                if waiting:
                    for new in await issue([waiting.pop(0)], watched=True):
                        deadline[new.id] = time.monotonic() + wait_seconds
        finally:
            service.unwatch(deadline)

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
        query = CommandQuery(
            agent_id=agent_id,
            run_id=request.run_id,
            statuses=tuple(request.statuses),
            limit=min(request.limit or 100, MAX_COMMAND_LIMIT),
        )
        records = await asyncio.to_thread(service.commands.query, query)
        return operator_pb2.ListCommandsResponse(commands=[command_info(r) for r in records])
