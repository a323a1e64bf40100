"""Remote commands end to end: a real server, real agents, real scripts on this host."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import commands_pb2, operator_pb2, operator_pb2_grpc
from tests.helpers import (
    ServerProcess,
    agent_cmd,
    end_process,
    enroll_agent,
    free_port,
    rmm_json,
    start_agent,
    wait_for,
)

Status = commands_pb2.CommandStatus
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("commands")
    proc = ServerProcess(base / "data", free_port(), free_port(), base / "server.log")
    proc.start()
    yield proc
    proc.stop()


def stub(server: ServerProcess) -> operator_pb2_grpc.OperatorServiceStub:
    channel = grpc.insecure_channel(server.grpc_address)
    return operator_pb2_grpc.OperatorServiceStub(channel)


def run(
    server: ServerProcess, request: operator_pb2.RunCommandRequest
) -> tuple[operator_pb2.RunStarted, list[operator_pb2.CommandInfo]]:
    events = list(
        stub(server).RunCommand(request, metadata=bearer_metadata(server.admin_token), timeout=120)
    )
    assert events[0].HasField("started"), events
    return events[0].started, [event.outcome for event in events[1:]]


def get_command(server: ServerProcess, command_id: str) -> operator_pb2.CommandInfo:
    info: operator_pb2.CommandInfo = stub(server).GetCommand(
        operator_pb2.GetCommandRequest(id=command_id),
        metadata=bearer_metadata(server.admin_token),
        timeout=10,
    )
    return info


def connected(server: ServerProcess, count: int) -> bool:
    for line in server.metrics().splitlines():
        if line.startswith("rmm_server_command_streams "):
            return float(line.split()[1]) >= count
    return False


def script(
    agent_id: str, body: str, *args: str, **kwargs: object
) -> operator_pb2.RunCommandRequest:
    return operator_pb2.RunCommandRequest(
        target=operator_pb2.TargetSelector(agents=[agent_id]),
        run_script=commands_pb2.RunScript(shell="bash", body=body, args=list(args)),
        **kwargs,  # type: ignore[arg-type]
    )


class Agent:
    def __init__(self, server: ServerProcess, base: Path, name: str, config: str = "") -> None:
        self.state = base / name
        self.log = base / f"{name}.log"
        self.id = enroll_agent(server, self.state)
        self.extra: list[str] = []
        if config:
            config_path = base / f"{name}.yaml"
            config_path.write_text(config)
            self.extra = ["--config", str(config_path)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        self.process = start_agent(self.state, self.log, 30.0, *self.extra)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        end_process(self.process, sig)  # killed if it outlasts the wait

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def test_a_real_agent_runs_a_real_script_and_the_result_comes_back(
    server: ServerProcess, tmp_path: Path
) -> None:
    agent = Agent(server, tmp_path, "one").start()
    try:
        wait_for(lambda: connected(server, 1), 60, "the agent's command stream")
        started_at = time.monotonic()
        started, outcomes = run(
            server, script(agent.id, 'echo "hello $1 from $(pwd)"; echo oops >&2; exit 3', "world")
        )
        elapsed = time.monotonic() - started_at
        assert [target.agent_id for target in started.targets] == [agent.id]
        (outcome,) = outcomes
        assert outcome.status == Status.COMMAND_FAILED, outcome
        assert outcome.result.script.exit_code == 3
        assert outcome.result.script.stdout.startswith("hello world from /")
        assert outcome.result.script.stderr == "oops\n"
        assert outcome.operator == "admin"
        assert elapsed < 10, f"one trivial command took {elapsed:.1f}s"

        history = agent_cmd("history", "--state-dir", str(agent.state), "--output", "json")
        assert history.returncode == 0, history.stderr
        (entry,) = json.loads(history.stdout)
        assert entry["operator"] == "admin"
        assert entry["exit_code"] == 3
        assert entry["command_id"] == outcome.id
    finally:
        agent.stop()


def test_commands_for_an_offline_agent_wait_and_run_once_when_it_returns(
    server: ServerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    agent = Agent(server, tmp_path, "later")
    started, outcomes = run(
        server,
        script(agent.id, f'echo ran >> "{marker}"', queue_offline=True),
    )
    (outcome,) = outcomes
    assert outcome.status == Status.COMMAND_QUEUED, outcome
    command_id = started.targets[0].command_id
    assert command_id and not started.targets[0].online

    agent.start()
    try:
        wait_for(
            lambda: get_command(server, command_id).status == Status.COMMAND_SUCCEEDED,
            60,
            "the queued command to run when the agent connected",
        )
        # A restart reconnects and gets nothing again: the command ran exactly once.
        agent.stop()
        agent.start()
        wait_for(
            lambda: agent.text().count("command stream open") >= 2,
            60,
            "the agent to reconnect after its restart",
        )
        time.sleep(1.0)
        assert marker.read_text() == "ran\n"
    finally:
        agent.stop()


def test_an_offline_agent_without_queueing_is_reported_and_gets_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    agent = Agent(server, tmp_path, "away")
    started, outcomes = run(server, script(agent.id, "true"))
    (outcome,) = outcomes
    assert outcome.status == Status.COMMAND_CANCELLED
    assert outcome.error.startswith("offline")
    assert started.targets[0].command_id == ""


def test_a_simulated_reboot_reconnects_and_confirms(
    server: ServerProcess, tmp_path: Path
) -> None:
    # The host owner's reboot command here kills the agent (its parent) instead of the host:
    # what the server sees is the same — the agent goes away and comes back.
    config = 'reboot_command: ["sh", "-c", "kill -9 $PPID"]\n'
    agent = Agent(server, tmp_path, "rebooter", config).start()
    try:
        wait_for(lambda: connected(server, 1), 60, "the agent's command stream")
        started, outcomes = run(
            server,
            operator_pb2.RunCommandRequest(
                target=operator_pb2.TargetSelector(agents=[agent.id]),
                reboot=commands_pb2.Reboot(reason="patch night"),
                detach=True,
            ),
        )
        assert outcomes == []
        command_id = started.targets[0].command_id
        assert agent.process is not None
        agent.process.wait(60)
        assert agent.process.returncode == -signal.SIGKILL
        info = get_command(server, command_id)
        assert info.status == Status.COMMAND_RUNNING, info
        agent.start()  # the host is back
        done = wait_for(
            lambda: (c := get_command(server, command_id)).status == Status.COMMAND_SUCCEEDED
            and c,
            60,
            "the agent to confirm the reboot",
        )
        reboot = done.result.reboot
        assert reboot.back_at >= reboot.requested_at > 0
        assert reboot.boot_time_after > 0
        assert "back after the reboot" in agent.text()
    finally:
        agent.stop()


def operator_token(server: ServerProcess, name: str, role: str) -> str:
    return str(rmm_json(server, "operators", "add", name, "--role", role)["token"])


def test_each_role_may_send_only_the_actions_its_tier_allows(
    server: ServerProcess, tmp_path: Path
) -> None:
    agent = Agent(server, tmp_path, "guarded").start()
    tokens = {role: operator_token(server, f"{role}-ops", role) for role in ("viewer", "tier1")}
    library = operator_pb2.RunCommandRequest(
        target=operator_pb2.TargetSelector(agents=[agent.id]),
        run_script=commands_pb2.RunScript(library_name="top-processes", params={"count": "3"}),
    )
    ad_hoc = script(agent.id, "echo hi")
    reboot = operator_pb2.RunCommandRequest(
        target=operator_pb2.TargetSelector(agents=[agent.id]), reboot=commands_pb2.Reboot()
    )

    def code(token: str, request: operator_pb2.RunCommandRequest) -> grpc.StatusCode | None:
        try:
            list(stub(server).RunCommand(request, metadata=bearer_metadata(token), timeout=60))
        except grpc.RpcError as error:
            return error.code()
        return None

    try:
        wait_for(lambda: connected(server, 1), 60, "the agent's command stream")
        denied = grpc.StatusCode.PERMISSION_DENIED
        assert code(tokens["viewer"], library) == denied
        assert code(tokens["tier1"], ad_hoc) == denied
        assert code(tokens["tier1"], reboot) == denied
        assert code(tokens["tier1"], library) is None  # the library script ran
        audit = rmm_json(server, "audit", "list", "--operator", "tier1-ops", "--limit", "50")
        outcomes = [entry["outcome"] for entry in audit]
        assert sum(outcome.startswith("denied") for outcome in outcomes) == 2, audit
        assert any(entry["action"] == "command.result" for entry in audit), audit
    finally:
        agent.stop()


def test_after_a_server_restart_the_agent_reconnects_says_so_and_takes_commands(
    tmp_path: Path,
) -> None:
    own = ServerProcess(tmp_path / "data", free_port(), free_port(), tmp_path / "server.log")
    own.start()
    agent = Agent(own, tmp_path, "steady").start()
    try:
        wait_for(lambda: connected(own, 1), 60, "the agent's command stream")
        own.stop(signal.SIGKILL)
        own.start()
        wait_for(lambda: connected(own, 1), 90, "the agent to reconnect after the restart")
        assert "command stream lost" in agent.text()
        assert "is back after" in own.log()
        _, (outcome,) = run(own, script(agent.id, "echo still here"))
        assert outcome.status == Status.COMMAND_SUCCEEDED
        assert outcome.result.script.stdout == "still here\n"
    finally:
        try:
            agent.stop()
        finally:
            own.stop()
