"""Two `rmm-server serve` replicas on one PostgreSQL: an agent connected to replica B runs a
command issued through replica A, a revocation made on A cuts the agent on B, /metrics of both
count each agent once, and when the scheduler's leader is SIGKILLed the other takes over."""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import commands_pb2, operator_pb2, operator_pb2_grpc
from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

# Two servers on PostgreSQL and an agent: minutes, not seconds, while both cores are busy.
pytestmark = pytest.mark.timeout(300)

Status = commands_pb2.CommandStatus


def replica(url: str, data_dir: Path, log_path: Path, replica_id: str) -> ServerProcess:
    # One data directory for both (a shared volume): the same command-signing key, admin token
    # and TLS CA, which every replica must have.
    return ServerProcess(
        data_dir=data_dir,
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=log_path,
        extra_args=[
            "--db",
            url,
            "--replica-id",
            replica_id,
            "--offline-check-interval",
            "1s",
            "--no-policies",
        ],
    )


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """Return the value of the series `name` whose labels include `labels`, or None."""
    for line in metrics.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


def leader_of(*servers: ServerProcess) -> list[ServerProcess]:
    return [s for s in servers if sample(s.metrics(), "rmm_server_leader") == 1.0]


def run_echo(server: ServerProcess, agent_id: str) -> tuple[float, operator_pb2.CommandInfo]:
    """RunCommand `echo` through `server`; return seconds until the outcome came, and it."""
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        request = operator_pb2.RunCommandRequest(
            target=operator_pb2.TargetSelector(agents=[agent_id]),
            run_script=commands_pb2.RunScript(body="echo replicated", shell="sh"),
            timeout_seconds=20,
        )
        started = time.perf_counter()
        for event in stub.RunCommand(
            request, metadata=bearer_metadata(server.admin_token), timeout=60
        ):
            if event.HasField("outcome"):
                return time.perf_counter() - started, event.outcome
    finally:
        channel.close()
    raise AssertionError("RunCommand ended without an outcome")


def lists_agents(server: ServerProcess, token: str) -> bool:
    """Call ListAgents on `server` in this process (no CLI start-up): True if it answered,
    False if it refused the token."""
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        operator_pb2_grpc.OperatorServiceStub(channel).ListAgents(
            operator_pb2.ListAgentsRequest(), metadata=bearer_metadata(token), timeout=10
        )
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        return False
    finally:
        channel.close()
    return True


def test_two_replicas_share_agents_commands_revocation_and_leadership(
    pg_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "server"
    a = replica(pg_url, data_dir, tmp_path / "a.log", "replica-a")
    b = replica(pg_url, data_dir, tmp_path / "b.log", "replica-b")
    agent: subprocess.Popen[bytes] | None = None
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        state_dir = tmp_path / "agent"
        agent_id = enroll_agent(b, state_dir)  # through B, so the agent talks to B only
        agent = start_agent(state_dir, tmp_path / "agent.log", 1.0)

        def online_on_a() -> bool:
            listed = {row["id"]: row for row in rmm_json(a, "agents", "list")}
            return agent_id in listed and listed[agent_id]["status"] == "online"

        wait_for(online_on_a, 60, "the agent connected to B listed online on A")
        wait_for(
            lambda: sample(b.metrics(), "rmm_agent_up", agent=agent_id) == 1.0,
            60,
            "the agent's series on B's /metrics",
        )

        # A command issued through A reaches the agent on B; its result comes back to A.
        through_a: list[float] = []
        through_b: list[float] = []
        for _ in range(5):
            seconds, outcome = run_echo(a, agent_id)
            assert outcome.status == Status.COMMAND_SUCCEEDED, outcome
            assert outcome.result.script.stdout.strip() == "replicated"
            through_a.append(seconds)
            seconds, outcome = run_echo(b, agent_id)
            assert outcome.status == Status.COMMAND_SUCCEEDED, outcome
            through_b.append(seconds)
        print(
            f"\nRunCommand echo, issue to outcome, median of 5: through A (agent on B) "
            f"{statistics.median(through_a) * 1000:.0f} ms, through B (agent's own replica) "
            f"{statistics.median(through_b) * 1000:.0f} ms"
        )
        assert statistics.median(through_a) < 5.0
        script = tmp_path / "via-cli.sh"
        script.write_text("echo via-cli\n")
        shown = rmm(a, "run", "--target", agent_id, "--script", str(script))
        assert "succeeded" in shown.stdout and "via-cli" in shown.stdout

        # Each agent is exported once across the replicas; each says who leads.
        scrapes = [a.metrics(), b.metrics()]
        assert [sample(m, "rmm_agent_up", agent=agent_id) for m in scrapes] == [None, 1.0]
        counted = sum(sample(m, "rmm_agents", status="online") or 0.0 for m in scrapes)
        assert counted == 1.0
        [leader] = leader_of(a, b)
        assert sample(a.metrics(), "rmm_server_leader", replica="replica-a") is not None
        assert sample(b.metrics(), "rmm_server_leader", replica="replica-b") is not None

        # Revoked through A: cut on B, where its streams are.
        revoked = rmm(a, "agents", "revoke", agent_id, "--yes")
        assert revoked.returncode == 0, revoked.stderr
        assert agent.wait(60) == 3, (tmp_path / "agent.log").read_text()
        wait_for(
            lambda: f"agent {agent_id} revoked by admin on another replica" in b.log(),
            30,
            "B to log the cut",
        )
        assert sample(b.metrics(), "rmm_agent_up", agent=agent_id) is None

        # SIGKILL the leader: its session ends, the lock with it, the other takes over.
        follower = b if leader is a else a
        killed = time.monotonic()
        leader.stop(signal.SIGKILL)
        wait_for(
            lambda: sample(follower.metrics(), "rmm_server_leader") == 1.0,
            30,
            "the surviving replica to lead within 30 s",
        )
        took = time.monotonic() - killed
        print(f"leader SIGKILLed; the other replica led {took:.1f} s later")
        assert "now leads the scheduler" in follower.log()
    finally:
        end_all(agent, a, b)


OFFLINE_POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: offline}
scope: {all: true}
rules:
  - name: AgentOffline
    expr: agent.seconds_since_report > 3.0 * agent.interval_seconds
    value: agent.seconds_since_report
    severity: critical
    tier: L1
"""


SECOND_RULE = """\
  - name: AgentLate
    expr: agent.seconds_since_report > 2.0 * agent.interval_seconds
    severity: warning
    tier: L1
"""


def test_an_offline_alert_fired_by_the_leader_resolves_on_the_agents_replica(
    pg_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "offline.yaml").write_text(OFFLINE_POLICY)
    data_dir = tmp_path / "server"
    servers: list[ServerProcess] = []
    agent: subprocess.Popen[bytes] | None = None
    try:
        for name in ("a", "b"):
            server = replica(pg_url, data_dir, tmp_path / f"{name}.log", f"replica-{name}")
            server.extra_args = [arg for arg in server.extra_args if arg != "--no-policies"] + [
                "--policies",
                str(policies),
                "--offline-grace",
                "0s",
            ]
            servers.append(server.start(timeout=60))
        leader = wait_for(lambda: leader_of(*servers), 60, "one replica to lead")
        assert len(leader) == 1
        # The agent lives on the replica that does not lead: the leader sees it only through
        # the database.
        [holder] = [s for s in servers if s is not leader[0]]
        state_dir = tmp_path / "agent"
        agent_id = enroll_agent(holder, state_dir)
        agent = start_agent(state_dir, tmp_path / "agent.log", 1.0)
        wait_for(
            lambda: sample(holder.metrics(), "rmm_agent_up", agent=agent_id) == 1.0,
            60,
            "the agent reporting to its replica",
        )

        def alerts(server: ServerProcess, state: str) -> list[dict[str, object]]:
            listed = rmm_json(server, "alerts", "list", "--state", state)
            return [a for a in listed if a["rule"] == "AgentOffline"]

        agent.send_signal(signal.SIGSTOP)  # silent, its streams still open on `holder`
        try:
            wait_for(lambda: alerts(leader[0], "firing"), 60, "the leader to fire AgentOffline")
            # Every replica holds the alert; only the leader shows it on /metrics, so the sum
            # over replicas counts it once.
            wait_for(
                lambda: (
                    [
                        sample(s.metrics(), "rmm_alerts_firing", rule="AgentOffline")
                        for s in (leader[0], holder)
                    ]
                    == [1.0, None]
                ),
                30,
                "rmm_alerts_firing on the leader only",
            )
        finally:
            agent.send_signal(signal.SIGCONT)
        # Back: its own replica evaluates its reports and resolves the leader's alert.
        wait_for(
            lambda: not alerts(holder, "firing") and alerts(holder, "resolved"),
            60,
            "the agent's replica to resolve AgentOffline",
        )
        wait_for(
            lambda: not alerts(leader[0], "firing"),
            30,
            "the leader to read back the resolved alert",
        )
    finally:
        end_all(agent, *servers)


def test_what_an_operator_changes_on_one_replica_applies_on_the_other_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    """Silences, maintenance windows, operator revocations and policy reloads."""
    policies = tmp_path / "policies"  # one directory: a volume both replicas mount
    policies.mkdir()
    (policies / "offline.yaml").write_text(OFFLINE_POLICY)
    data_dir = tmp_path / "server"
    servers: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            server = replica(pg_url, data_dir, tmp_path / f"{name}.log", f"replica-{name}")
            # The periodic re-read comes only every 10 minutes: what b sees it heard.
            server.extra_args = [
                *(arg for arg in server.extra_args if arg != "--no-policies"),
                *("--offline-check-interval", "10m", "--policies", str(policies)),
            ]
            servers.append(server.start(timeout=60))
        a, b = servers

        def silences_on_b() -> list[str]:
            return [str(s["id"]) for s in rmm_json(b, "silences", "list")]

        silence = rmm_json(
            a, "alerts", "silence", "--match", "rule=DiskLow", "--for", "2h", "--comment", "swap"
        )
        wait_for(lambda: silences_on_b() == [silence["id"]], 30, "b to know a's silence")
        rmm(a, "silences", "expire", str(silence["id"]))
        wait_for(lambda: silences_on_b() == [], 30, "b to know the silence ended")

        def windows_in_force_on_b() -> list[str]:
            listed = rmm_json(b, "maintenance", "list")
            return [str(w["id"]) for w in listed if w["active_now"]]

        window = rmm_json(
            a, "maintenance", "add", "--name", "patch night", "--start", "now",
            "--duration", "1h", "--client", "acme",
        )  # fmt: skip
        wait_for(lambda: windows_in_force_on_b() == [window["id"]], 30, "b to know the window")
        rmm(a, "maintenance", "end", str(window["id"]))
        wait_for(lambda: windows_in_force_on_b() == [], 30, "b to know the window ended")

        # b trusts an operator it looked up for 5 s without reading it again; a revocation on
        # a drops that trust at once.
        token = str(rmm_json(a, "operators", "add", "temp", "--role", "viewer")["token"])
        assert lists_agents(b, token)  # b has looked the operator up: it trusts it for 5 s
        rmm(a, "operators", "revoke", "temp")
        wait_for(lambda: not lists_agents(b, token), 3, "b to refuse the operator revoked on a")

        # `rmm policy reload` through one replica reloads the others from their own disks.
        wait_for(lambda: sample(a.metrics(), "rmm_server_replicas") == 2.0, 30, "a to hear b")
        assert sample(b.metrics(), "rmm_policy_rules") == 1.0
        (policies / "offline.yaml").write_text(OFFLINE_POLICY + SECOND_RULE)
        reloaded = rmm(a, "policy", "reload")
        assert "reloaded: 1 policies, 2 rules" in reloaded.stdout
        assert "1 other replicas reload" in reloaded.stderr + reloaded.stdout
        wait_for(
            lambda: sample(b.metrics(), "rmm_policy_rules") == 2.0, 30, "b to reload its policies"
        )
        assert sample(b.metrics(), "rmm_policy_last_reload_successful") == 1.0
        # A broken set is refused on every replica, each saying so on /metrics.
        (policies / "offline.yaml").write_text(OFFLINE_POLICY + "  - name: [broken\n")
        refused = rmm(a, "policy", "reload", check=False)
        assert refused.returncode == 1, refused.stdout
        wait_for(
            lambda: sample(b.metrics(), "rmm_policy_last_reload_successful") == 0.0,
            30,
            "b to refuse the broken policies",
        )
        assert sample(b.metrics(), "rmm_policy_rules") == 2.0  # the previous set stays
    finally:
        end_all(*servers)
