"""Runs: one remote action sent to the agents a target selects, watched until each has an outcome.

A run checks what an operator asks (the action, a library script's parameters, the environment,
the role, the timeout and expiry), resolves the target, sends the command to at most `parallel`
connected agents at a time, queues it for offline agents when asked, and yields one outcome per
target: a final result, the stored state at the deadline, or why nothing was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from rmm_common.command_summary import describe
from rmm_common.durations import format_duration
from rmm_common.errors import InvalidArgument, PermissionDenied
from rmm_common.script_env import PARAM_PREFIX, env_problem
from rmm_common.tokens import new_ident
from rmm_proto import commands_pb2, operator_pb2
from rmm_server.command_fields import message_fields
from rmm_server.commands import CommandService, status_name
from rmm_server.fleet import Fleet
from rmm_server.roles import ACTION_ROLE, LIBRARY_SCRIPT, Role, check_action_allowed
from rmm_server.script_params import check_params
from rmm_server.scripts import Script, ScriptLibrary
from rmm_server.selection import describe_selector, select_agents
from rmm_server.storage import AgentRecord
from rmm_server.storage.commands import CommandRecord

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
# A command reaches its agent in one gRPC message of at most rmm_server.app.MAX_MESSAGE_BYTES
# (16 MiB), wrapped with its id, times, operator and signature: an action's payload leaves room
# for those. A larger one would be refused by gRPC on every delivery, breaking the agent's
# command stream again and again until the command expired.
MAX_ACTION_BYTES = 16 * 1024 * 1024 - 64 * 1024
OFFLINE_NOT_SENT = (
    "offline: the agent has no command stream open, so nothing was sent "
    "(--queue-offline waits for it)"
)


def summarize(command: commands_pb2.Command) -> str:
    """One line saying what a command does (the agent's own wording)."""
    return describe(command)


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


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What an operator asks of a run, as the servicer received it."""

    operator: str
    role: str
    action: str  # the Command's action field: run_script, reboot, ...
    payload: Any  # the action's message (commands_pb2.RunScript, Reboot, ...)
    target: operator_pb2.TargetSelector
    timeout_seconds: float = 0.0  # 0: the action's (or library script's) default
    expires_in_seconds: float = 0.0  # 0: a day when queueing offline agents, else timeout + 1m
    parallel: int = 0  # 0: every connected target at once
    queue_offline: bool = False
    detach: bool = False
    ticket: int = 0  # the ticket it is done for (rmm run --ticket N), named in consent prompts


@dataclass(frozen=True, slots=True)
class RunTarget:
    """One agent a run selected, with the command it got ("" when none) and its stream's state."""

    agent: AgentRecord
    command_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one target's part of a run ended: its command's record, or why none was sent."""

    agent_id: str
    hostname: str
    status: int
    error: str
    record: CommandRecord | None = None

    @classmethod
    def of(cls, record: CommandRecord, error: str | None = None) -> Outcome:
        """Return the outcome a stored command stands for (`error` replaces the stored one)."""
        return cls(
            record.agent_id,
            record.hostname,
            record.status,
            record.error if error is None else error,
            record,
        )


@dataclass(frozen=True, slots=True)
class _Action:
    """A run's action once resolved: what is sent, what role it needs, its default timeout."""

    name: str
    payload: Any
    role_action: str
    floor: Role = Role.VIEWER
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS
    entry: Script | None = None


@dataclass(slots=True)
class Run:
    """One run under way: its targets, then its outcomes as they arrive."""

    id: str
    commands: CommandService
    consent_for: Callable[[AgentRecord], int]
    operator: str
    action: str
    payload: Any
    timeout: float
    expires_in: float
    selected: list[AgentRecord]
    parallel: int = 0
    queue_offline: bool = False
    detached: bool = False
    ticket: int = 0
    monotonic: Callable[[], float] = time.monotonic
    grace_seconds: float = RESULT_GRACE_SECONDS
    targets: list[RunTarget] = field(default_factory=list, init=False)
    _reachable: list[AgentRecord] = field(default_factory=list, init=False)
    _unreachable: list[AgentRecord] = field(default_factory=list, init=False)
    _waiting: list[AgentRecord] = field(default_factory=list, init=False)
    _issued: list[CommandRecord] = field(default_factory=list, init=False)
    _queued: list[CommandRecord] = field(default_factory=list, init=False)
    _settled: asyncio.Queue[CommandRecord] = field(default_factory=asyncio.Queue, init=False)
    _watched: list[str] = field(default_factory=list, init=False)

    @property
    def offline(self) -> list[AgentRecord]:
        """Return the targets that had no command stream open when the run started."""
        return self._unreachable

    async def open(self) -> None:
        """Send the first window to connected agents and queue for offline ones when asked."""
        connected = self.commands.is_connected
        self._reachable = [agent for agent in self.selected if connected(agent.id)]
        self._unreachable = [agent for agent in self.selected if not connected(agent.id)]
        limit = self.parallel or len(self._reachable)
        first, self._waiting = self._reachable[:limit], self._reachable[limit:]
        self._issued = await self._send(first, watched=not self.detached)
        if self.queue_offline:
            self._queued = await self._send(self._unreachable, watched=False)
        command_of = {record.agent_id: record.id for record in [*self._issued, *self._queued]}
        self.targets = [
            RunTarget(agent, command_of.get(agent.id, ""), connected(agent.id))
            for agent in self.selected
        ]

    async def outcomes(self) -> AsyncGenerator[Outcome, None]:
        """Yield one outcome per target: queued and unsent ones first, then results as they come.

        A detached run yields nothing. An online agent's command is waited for until its
        timeout plus a grace (and the consent allowance when a user is asked first); past that,
        the stored state is its outcome.
        """
        if self.detached:
            return
        for outcome in self._offline_outcomes():
            yield outcome
        asking = any(self.consent_for(a) == commands_pb2.CONSENT_ASK for a in self._reachable)
        wait_seconds = self.timeout + (ASK_ALLOWANCE_SECONDS if asking else 0.0)
        wait_seconds += self.grace_seconds
        deadline = {record.id: self.monotonic() + wait_seconds for record in self._issued}
        try:
            while deadline:
                remaining = min(deadline.values()) - self.monotonic()
                try:
                    record = await asyncio.wait_for(self._settled.get(), max(0.0, remaining))
                except TimeoutError:
                    async for outcome in self._overdue(deadline, wait_seconds):
                        yield outcome
                    continue
                if deadline.pop(record.id, None) is None:
                    continue
                yield Outcome.of(record)
                if self._waiting:
                    for new in await self._send([self._waiting.pop(0)], watched=True):
                        deadline[new.id] = self.monotonic() + wait_seconds
        finally:
            # Overdue ones too: a result that comes after the run has ended is nobody's to wait.
            self.commands.unwatch(self._watched)

    def _offline_outcomes(self) -> list[Outcome]:
        """Return the offline targets' outcomes: their queued commands, or nothing sent."""
        if self.queue_offline:
            return [Outcome.of(record) for record in self._queued]
        return [
            Outcome(agent.id, agent.hostname, Status.COMMAND_CANCELLED, OFFLINE_NOT_SENT)
            for agent in self._unreachable
        ]

    async def _overdue(
        self, deadline: dict[str, float], wait_seconds: float
    ) -> AsyncIterator[Outcome]:
        """Yield the stored state of each command past its deadline, and stop waiting for it."""
        overdue = [cid for cid, at in deadline.items() if at <= self.monotonic()]
        for command_id in overdue:
            del deadline[command_id]
            stored = await asyncio.to_thread(self.commands.commands.get, command_id)
            if stored is None:
                continue
            if stored.final:
                yield Outcome.of(stored)
            else:
                yield Outcome.of(
                    stored,
                    f"no result within {wait_seconds:.0f}s; the command stays "
                    f"{status_name(stored.status)} (see `rmm commands show {command_id}`)",
                )

    async def _send(self, agents: list[AgentRecord], watched: bool) -> list[CommandRecord]:
        if not agents:
            return []
        records = await self.commands.issue(
            self.operator,
            agents,
            self.action,
            self.payload,
            self.timeout,
            self.expires_in,
            self.consent_for,
            summarize,
            run_id=self.id,
            shape=self._shape,
            watch=self._settled.put_nowait if watched else None,
            ticket=self.ticket,
        )
        if watched:
            self._watched.extend(record.id for record in records)
        return records

    def _shape(self, agent: AgentRecord, command: commands_pb2.Command) -> None:
        if self.action == "run_script" and not command.run_script.shell:
            command.run_script.shell = "powershell" if agent.os == "windows" else "sh"


class RunService:
    """Check and start runs of remote actions over the commands service."""

    def __init__(
        self,
        commands: CommandService,
        fleet: Fleet,
        scripts: ScriptLibrary,
        consent_for: Callable[[AgentRecord], int],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        grace_seconds: float = RESULT_GRACE_SECONDS,
    ) -> None:
        self.commands = commands
        self.fleet = fleet
        self.scripts = scripts
        self.consent_for = consent_for
        self.clock = clock
        self.monotonic = monotonic
        self.grace_seconds = grace_seconds

    async def start(self, request: RunRequest) -> Run:
        """Check the request, resolve its target and send the first window; return the run.

        Raise InvalidArgument, PermissionDenied or NotFound before anything is sent; a refusal
        of the environment or the role is audited with what was asked.
        """
        action = self._resolve_action(request)
        size = action.payload.ByteSize()
        if size > MAX_ACTION_BYTES:
            raise InvalidArgument(
                f"{action.name} carries {size} bytes; a command travels to its agent in one "
                f"message, so an action may carry at most {MAX_ACTION_BYTES} bytes (16 MiB less "
                "room for the signature): have the hosts download bigger files, e.g. with rmm run"
            )
        await self._check_allowed(request, action)
        if action.entry is not None:
            # The header's parameters, checked by type, reach the script as RMM_PARAM_<NAME>.
            params = check_params(action.entry.name, action.entry.params, action.payload.params)
            action.payload.env.update(params)
        timeout = request.timeout_seconds or action.default_timeout
        if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
            raise InvalidArgument(f"timeout {timeout:g}s is outside 1s..24h")
        if request.detach and request.parallel:
            raise InvalidArgument("--parallel needs the run watched until it ends: drop --detach")
        targets = select_agents(self.fleet, request.target, self.clock())
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
        run = Run(
            id=new_ident(),
            commands=self.commands,
            consent_for=self.consent_for,
            operator=request.operator,
            action=action.name,
            payload=action.payload,
            timeout=timeout,
            expires_in=expires_in,
            selected=targets,
            parallel=request.parallel,
            queue_offline=request.queue_offline,
            detached=request.detach,
            ticket=request.ticket,
            monotonic=self.monotonic,
            grace_seconds=self.grace_seconds,
        )
        await run.open()
        log.info(
            "operator %s sent %s to %d agents (run %s, %d offline)",
            request.operator,
            action.name,
            len(targets),
            run.id,
            len(run.offline),
        )
        return run

    def _resolve_action(self, request: RunRequest) -> _Action:
        """Return the action as sent; a library script gets its body, shell and limits.

        A library script run that sets more than its header's parameters (env, args, working
        directory) needs the role that may run any script: the role action is then run_script.
        """
        if request.action != "run_script":
            return _Action(request.action, request.payload, request.action)
        script = commands_pb2.RunScript()
        script.CopyFrom(request.payload)
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
            return _Action(
                "run_script", script, role_action, entry.min_role, entry.timeout_seconds, entry
            )
        if not script.body:
            raise InvalidArgument("run_script needs a script body or a library script name")
        if script.params:
            raise InvalidArgument(
                "--param is for library scripts (their header declares them); an ad-hoc script "
                "takes --args or --env"
            )
        # An ad-hoc script that borrows a library name must not pass for the library's script.
        script.library_name = ""
        return _Action("run_script", script, "run_script")

    async def _check_allowed(self, request: RunRequest, action: _Action) -> None:
        """Refuse a forbidden environment or role; audit the refusal with what was asked."""
        try:
            # Checked for every role, and before the role: whoever tries BASH_ENV is refused.
            problems = (
                script_request_problems(action.payload) if action.name == "run_script" else []
            )
            if problems:
                raise InvalidArgument("; ".join(problems))
            role = Role.parse(request.role)
            check_library_inputs(action.entry, action.payload, role, request.operator)
            check_action_allowed(action.role_action, role, request.operator, action.floor)
        except (PermissionDenied, InvalidArgument) as error:
            if self.commands.audit is not None:
                # What was asked, in full: a refused attempt is worth as much as a sent one.
                details = {
                    "action": action.name,
                    "timeout_seconds": request.timeout_seconds,
                    **message_fields(action.payload),
                }
                verdict = "denied" if isinstance(error, PermissionDenied) else "refused"
                denial = (
                    request.operator,
                    "RunCommand",
                    describe_selector(request.target),
                    details,
                    f"{verdict}: {error}",
                )
                await asyncio.to_thread(self.commands.audit, [denial])
            raise
