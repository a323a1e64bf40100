"""Reloading --notify-config without a restart: `rmm policy reload` and SIGHUP, a broken file
refused whole with its line and column while the old config stays in force, and the metric."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from tests.e2e.test_alerting import POLICY, Receiver, alerts_in
from tests.e2e.test_replicas import replica, sample
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    start_agent,
    wait_for,
)

OK_METRIC = "rmm_notify_config_last_reload_successful"


def notify_yaml(receiver: Receiver, name: str, path: str) -> str:
    return (
        "delivery: {attempts: 2, initial_backoff: 100ms, max_backoff: 200ms, jitter: 0s}\n"
        f"receivers:\n  - {{name: {name}, webhook: {{url: '{receiver.url}{path}'}}}}\n"
        f"route: {{receiver: {name}, group_by: [rule], group_wait: 0s, group_interval: 1s,\n"
        "        repeat_interval: 1h}\n"
    )


def metric(server: ServerProcess, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", server.metrics(), re.M)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


def test_notify_config_reloads_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    receiver = Receiver()
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    notify = tmp_path / "notify.yaml"
    notify.write_text(notify_yaml(receiver, "desk", "/desk"))
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--policies", str(policies), "--notify-config", str(notify)],
    ).start()
    agent = None
    try:
        state_dir = tmp_path / "agent"
        enroll_agent(server, state_dir)
        agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
        wait_for(lambda: receiver.posted("/desk"), 60, "the first receiver's webhook")
        assert metric(server, OK_METRIC) == 1.0

        # Broken: an unknown key on line 4. Refused whole, with file:line:col; old one in force.
        notify.write_text(
            notify_yaml(receiver, "ops", "/ops").replace("route:", "rout_typo: 1\nroute:")
        )
        refused = rmm(server, "policy", "reload", check=False)
        assert refused.returncode == 1, refused.stderr
        assert re.search(rf"{re.escape(str(notify))}:4:\d+: .*rout_typo", refused.stderr), (
            refused.stderr
        )
        assert "previous config stays in force" in refused.stderr
        assert metric(server, OK_METRIC) == 0.0
        assert not receiver.posted("/ops")
        as_json = rmm(server, "policy", "reload", "--output", "json", check=False)
        assert as_json.returncode == 1
        refusal = json.loads(as_json.stdout)["notify_config"]
        assert not refusal["ok"] and refusal["receivers"] == 1 and refusal["errors"], refusal

        # Fixed: the new receiver is in force at once; the firing alerts move to it.
        notify.write_text(notify_yaml(receiver, "ops", "/ops"))
        reloaded = rmm(server, "policy", "reload")
        assert "notification config, 1 receivers" in reloaded.stdout, reloaded.stdout
        assert metric(server, OK_METRIC) == 1.0
        told = wait_for(lambda: receiver.posted("/ops"), 60, "the new receiver's webhook")
        assert {a.get("rule") for body in told for a in alerts_in(body)} >= {"MemoryInUse"}

        # SIGHUP reloads it too: broken again, refused and said in the log and the metric.
        notify.write_text("receivers: [\n")
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: metric(server, OK_METRIC) == 0.0, 60, "the SIGHUP reload's refusal")
        assert "notification config reload refused" in server.log()
    finally:
        try:
            end_process(agent)
        finally:
            try:
                server.stop()
            finally:
                receiver.server.shutdown()


def test_a_notify_reload_through_one_replica_reaches_the_other(pg_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    policies = tmp_path / "policies"  # one directory and one notify file: a shared volume
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    notify = tmp_path / "notify.yaml"
    notify.write_text(notify_yaml(receiver, "desk", "/desk"))
    servers: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            server = replica(pg_url, tmp_path / "server", tmp_path / f"{name}.log", name)
            server.extra_args = [
                *(arg for arg in server.extra_args if arg != "--no-policies"),
                *("--policies", str(policies), "--notify-config", str(notify)),
            ]
            servers.append(server.start(timeout=60))
        a, b = servers
        wait_for(lambda: sample(a.metrics(), "rmm_server_replicas") == 2.0, 60, "a to hear b")
        notify.write_text("receivers: [\n")
        refused = rmm(a, "policy", "reload", check=False)
        assert refused.returncode == 1 and "notify.yaml:" in refused.stderr, refused.stderr
        wait_for(lambda: sample(b.metrics(), OK_METRIC) == 0.0, 60, "b to refuse the file too")
        notify.write_text(notify_yaml(receiver, "ops", "/ops"))
        assert rmm(a, "policy", "reload").returncode == 0
        wait_for(lambda: sample(b.metrics(), OK_METRIC) == 1.0, 60, "b to take the fixed file")
        assert "notification config reloaded" in b.log()
    finally:
        try:
            for server in servers:
                if server.process is not None and server.process.poll() is None:
                    server.stop()
        finally:
            for server in servers:
                server.kill()  # those a failed stop() above left behind
            receiver.server.shutdown()
