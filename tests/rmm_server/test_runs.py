"""A run in-process: the RunService over the real CommandService and a real Store (SQLite in a tmp
dir), its agents real command streams through the real AgentServicer and guard, served by grpc.aio
on 127.0.0.1 port 0 inside the test's own event loop. What is checked is the run itself: the
parallel window, the deadline, offline agents queued or not sent, outcomes in the order they come,
and the checks of a run request (refusals audited), with no operator servicer in the way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_common.errors import InvalidArgument, PermissionDenied
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc, commands_pb2, operator_pb2
from rmm_server.audit import AuditLog
from rmm_server.commands import AuditEntry, CommandService
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.agent_service import AgentServicer
from rmm_server.grpc_api.guard import ServiceGuard
from rmm_server.ingest import ReportIngestor
from rmm_server.operators import Operators
from rmm_server.runs import (
    OFFLINE_NOT_SENT,
    QUEUED_EXPIRY_SECONDS,
    Outcome,
    Run,
    RunRequest,
    RunService,
)
from rmm_server.scripts import ScriptLibrary
from rmm_server.server_metrics import ServerMetrics
from rmm_server.signing import CommandSigner
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import sqlite_url

Status = commands_pb2.CommandStatus
WAIT = 30.0
GRACE = 0.2  # the run's wait past a command's timeout (15s in production)
pytestmark = pytest.mark.timeout(120)

LIBRARY_SCRIPT = """#!/bin/sh
# ---
# name: greet
# description: Say hello.
# shells: [sh]
# timeout: 30s
# min_role: tier1
# params:
#   - name: who
#     type: string
#     required: true
# ---
echo "hello $RMM_PARAM_WHO"
"""


@dataclass
class Served:
    """What an agent's command stream saw: each command, and how many ran at once at most."""

    commands: list[commands_pb2.Command] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0


@dataclass
class Server:
    fleet: Fleet
    commands: CommandService
    runs: RunService
    enrollment: Enrollment
    stub: agent_pb2_grpc.AgentServiceStub
    token: str
    audited: list[AuditEntry]
    served: Served = field(default_factory=Served)
    streams: list[asyncio.Task[None]] = field(default_factory=list)

    async def enroll(self, hostname: str) -> tuple[AgentRecord, str]:
        """Enroll an agent through the real Enroll call; return its record and credential."""
        request = agent_pb2.EnrollRequest(token=self.token, agent_version="0.1.0")
        request.host.hostname = hostname
        request.host.os = "linux"
        response: agent_pb2.EnrollResponse = await self.stub.Enroll(request)
        record = self.fleet.get(response.agent_id)
        assert record is not None
        return record, response.credential

    async def connect(self, credential: str, answer_after: float | None = 0.0) -> None:
        """Open an agent's command stream; it answers each command after `answer_after` seconds
        (None: never), and counts how many commands it holds at once."""
        call = self.stub.Commands(metadata=bearer_metadata(credential))
        await call.write(commands_pb2.AgentCommandMessage(hello=commands_pb2.CommandHello()))
        await call.initial_metadata()  # the stream is up: the agent is connected

        async def serve() -> None:
            async for message in call:
                if not message.HasField("command"):
                    continue  # result_stored
                command = commands_pb2.Command.FromString(message.command.command)
                self.served.commands.append(command)
                if answer_after is None:
                    continue
                self.served.running += 1
                self.served.most_at_once = max(self.served.most_at_once, self.served.running)
                await asyncio.sleep(answer_after)
                self.served.running -= 1
                result = commands_pb2.CommandResult(
                    command_id=command.id, status=Status.COMMAND_SUCCEEDED
                )
                result.script.exit_code = 0
                await call.write(commands_pb2.AgentCommandMessage(result=result))

        self.streams.append(asyncio.create_task(serve()))

    async def agents(self, *answers: float | None) -> list[AgentRecord]:
        """Enroll and connect one agent per entry (web-1, web-2...), answering after it."""
        records = []
        for number, answer_after in enumerate(answers, 1):
            record, credential = await self.enroll(f"web-{number}")
            await self.connect(credential, answer_after)
            records.append(record)
        return records


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Server]:
    store: Store = open_store(sqlite_url(tmp_path))
    fleet, metrics = Fleet(), ServerMetrics()
    audited: list[AuditEntry] = []
    enrollment = Enrollment(store, fleet)
    ingestor = ReportIngestor(store, fleet, metrics)
    commands = CommandService(
        store, CommandSigner(Ed25519PrivateKey.generate()), audit=audited.extend, metrics=metrics
    )
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "greet.sh").write_text(LIBRARY_SCRIPT)
    scripts = ScriptLibrary.load(tmp_path / "scripts")
    runs = RunService(
        commands, fleet, scripts, lambda _agent: commands_pb2.CONSENT_NOTIFY, grace_seconds=GRACE
    )
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
    made = Server(
        fleet, commands, runs, enrollment, agent_pb2_grpc.AgentServiceStub(channel), token, audited
    )
    try:
        yield made
    finally:
        for stream in made.streams:
            stream.cancel()
        await channel.close()
        servicer.close_streams()
        await server.stop(grace=None)
        await commands.stop()
        await ingestor.stop()
        store.close()


def run_test(tmp_path: Path, test: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(tmp_path) as server:
            await asyncio.wait_for(test(server), WAIT)

    asyncio.run(main())


def request(
    agents: list[AgentRecord], action: str = "run_script", payload: Any = None, **options: Any
) -> RunRequest:
    """A run of `echo hi` (or `payload`) by admin alice on these agents."""
    fields: dict[str, Any] = {"operator": "alice", "role": "admin"} | options
    return RunRequest(
        action=action,
        payload=payload if payload is not None else commands_pb2.RunScript(body="echo hi"),
        target=operator_pb2.TargetSelector(agents=[agent.id for agent in agents]),
        **fields,
    )


async def outcomes(run: Run) -> list[Outcome]:
    return [outcome async for outcome in run.outcomes()]


def test_a_run_sends_to_at_most_parallel_agents_and_the_next_after_each_outcome(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.05, 0.05, 0.05)
        run = await server.runs.start(request(agents, parallel=2))
        # Targets by hostname; only the first window got a command, every agent is online.
        assert [t.agent.hostname for t in run.targets] == ["web-1", "web-2", "web-3"]
        assert [bool(t.command_id) for t in run.targets] == [True, True, False]
        assert all(t.online for t in run.targets)
        ended = await outcomes(run)
        assert sorted(o.hostname for o in ended) == ["web-1", "web-2", "web-3"]
        assert all(o.status == Status.COMMAND_SUCCEEDED and o.record for o in ended)
        assert {o.record.run_id for o in ended if o.record} == {run.id}
        assert server.served.most_at_once == 2
        # web-3's command went out only after a first outcome came back.
        assert [c.agent_id for c in server.served.commands][-1] == agents[2].id
        assert ended[-1].agent_id == agents[2].id

    run_test(tmp_path, test)


def test_a_window_of_one_serves_the_agents_one_after_another_in_hostname_order(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.02, 0.02, 0.02)
        run = await server.runs.start(request(list(reversed(agents)), parallel=1))
        ended = await outcomes(run)
        assert [o.hostname for o in ended] == ["web-1", "web-2", "web-3"]
        assert [c.agent_id for c in server.served.commands] == [a.id for a in agents]
        assert server.served.most_at_once == 1

    run_test(tmp_path, test)


def test_outcomes_come_as_results_arrive_after_the_offline_targets(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        slow, fast = await server.agents(0.5, 0.0)
        offline, _ = await server.enroll("web-3")
        run = await server.runs.start(request([slow, fast, offline]))
        assert [(t.agent.hostname, t.online) for t in run.targets] == [
            ("web-1", True),
            ("web-2", True),
            ("web-3", False),
        ]
        assert run.targets[2].command_id == ""  # not queued: nothing was sent
        ended = await outcomes(run)
        assert [o.hostname for o in ended] == ["web-3", "web-2", "web-1"]
        assert ended[0] == Outcome(
            offline.id, "web-3", Status.COMMAND_CANCELLED, OFFLINE_NOT_SENT, None
        )
        assert [o.status for o in ended[1:]] == [Status.COMMAND_SUCCEEDED] * 2

    run_test(tmp_path, test)


def test_an_offline_agent_is_queued_and_gets_its_command_when_it_connects(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        (online,) = await server.agents(0.0)
        offline, credential = await server.enroll("web-2")
        run = await server.runs.start(request([online, offline], queue_offline=True))
        queued = run.targets[1]
        assert (queued.agent.id, queued.online, bool(queued.command_id)) == (
            offline.id,
            False,
            True,
        )
        first, second = await outcomes(run)
        # The queued command is an outcome at once (the run does not wait a day for it).
        assert (first.agent_id, first.status) == (offline.id, Status.COMMAND_QUEUED)
        assert first.record is not None and first.record.id == queued.command_id
        assert first.record.expires_at - first.record.issued_at == QUEUED_EXPIRY_SECONDS
        assert (second.agent_id, second.status) == (online.id, Status.COMMAND_SUCCEEDED)
        await server.connect(credential)
        for _ in range(200):
            stored = server.commands.commands.get(queued.command_id)
            if stored is not None and stored.final:
                break
            await asyncio.sleep(0.05)
        assert stored is not None and stored.status == Status.COMMAND_SUCCEEDED
        assert [c.run_id for c in server.served.commands] == [run.id, run.id]

    run_test(tmp_path, test)


def test_a_silent_agent_ends_at_the_deadline_with_the_stored_state(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        silent, answering = await server.agents(None, 0.0)
        started = time.monotonic()
        run = await server.runs.start(request([silent, answering], timeout_seconds=1))
        ended = await outcomes(run)
        assert time.monotonic() - started >= 1 + GRACE
        assert [o.agent_id for o in ended] == [answering.id, silent.id]
        late = ended[1]
        assert late.record is not None and late.status == Status.COMMAND_SENT
        assert late.error == (
            "no result within 1s; the command stays sent "
            f"(see `rmm commands show {late.record.id}`)"
        )
        # The run stopped watching: a result that comes later settles the command, not the run.
        assert late.record.id not in server.commands._watchers

    run_test(tmp_path, test)


def test_a_detached_run_sends_and_yields_no_outcomes(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.0, 0.0)
        run = await server.runs.start(request(agents, detach=True))
        assert all(t.command_id for t in run.targets)
        assert await outcomes(run) == []
        with pytest.raises(InvalidArgument, match="--parallel needs the run watched"):
            await server.runs.start(request(agents, detach=True, parallel=1))

    run_test(tmp_path, test)


def test_a_library_script_gets_its_checked_parameters_and_its_shell(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.0)
        script = commands_pb2.RunScript(library_name="greet", params={"who": "world"})
        run = await server.runs.start(request(agents, payload=script, role="tier1"))
        (outcome,) = await outcomes(run)
        assert outcome.status == Status.COMMAND_SUCCEEDED
        (sent,) = server.served.commands
        assert sent.run_script.shell == "sh" and sent.timeout_seconds == 30
        assert dict(sent.run_script.env) == {"RMM_PARAM_WHO": "world"}
        assert sent.run_script.body == LIBRARY_SCRIPT
        with pytest.raises(InvalidArgument, match="--param who is required"):
            await server.runs.start(
                request(agents, payload=commands_pb2.RunScript(library_name="greet"))
            )

    run_test(tmp_path, test)


def test_a_refused_environment_and_a_denied_role_are_audited_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.0)
        script = commands_pb2.RunScript(body="true", env={"BASH_ENV": "/tmp/x"})
        with pytest.raises(InvalidArgument, match="BASH_ENV"):
            await server.runs.start(request(agents, payload=script))
        with pytest.raises(PermissionDenied, match="needs tier2 or higher"):
            await server.runs.start(request(agents, role="tier1"))
        (refused, denied) = server.audited
        assert refused[:3] == ("alice", "RunCommand", f"agent={agents[0].id}")
        assert refused[4].startswith("refused: ") and "BASH_ENV" in refused[4]
        assert denied[3]["action"] == "run_script" and denied[4].startswith("denied: ")
        assert server.served.commands == []

    run_test(tmp_path, test)


def test_every_program_config_variable_is_refused_by_the_server_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    """The review's list: variables programs a script may start read to load code or
    configuration (and the host's own proxy, CA and HOME), refused whoever sends them."""
    names = [
        *("OPENSSL_CONF", "OPENSSL_ENGINES", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0"),
        *("GIT_CONFIG_PARAMETERS", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH"),
        *("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "NODE_OPTIONS", "PERL5OPT"),
        *("PERL5LIB", "RUBYOPT", "RUBYLIB", "LUA_INIT", "TCLLIBPATH", "GCONV_PATH", "LOCPATH"),
        *("NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CHECK_", "GLIBC_TUNABLES"),
        *("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "CURL_HOME", "https_proxy"),
        *("HTTP_PROXY", "HOME"),
    ]

    async def test(server: Server) -> None:
        agents = await server.agents(0.0)
        for name in names:
            script = commands_pb2.RunScript(body="true", env={name: "/tmp/x"})
            with pytest.raises(InvalidArgument, match=f"environment variable '{name}'"):
                await server.runs.start(request(agents, payload=script))
        assert server.served.commands == []
        # TMPDIR is neither code nor configuration.
        ok = commands_pb2.RunScript(body="true", env={"TMPDIR": "/var/tmp"})
        run = await server.runs.start(request(agents, payload=ok))
        assert run.targets[0].command_id

    run_test(tmp_path, test)


def test_a_run_request_out_of_range_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        agents = await server.agents(0.0)
        with pytest.raises(InvalidArgument, match=r"outside 1s\.\.24h"):
            await server.runs.start(request(agents, timeout_seconds=25 * 3600))
        with pytest.raises(InvalidArgument, match=r"expire after .* \(--expires\)"):
            await server.runs.start(request(agents, expires_in_seconds=31 * 24 * 3600))
        big = commands_pb2.PushFile(path="/tmp/x", data=b"x" * (16 * 1024 * 1024))
        with pytest.raises(InvalidArgument, match="an action may carry at most"):
            await server.runs.start(request(agents, action="push_file", payload=big))
        with pytest.raises(InvalidArgument, match="needs a script body"):
            await server.runs.start(request(agents, payload=commands_pb2.RunScript()))
        assert server.served.commands == [] and server.audited == []

    run_test(tmp_path, test)
