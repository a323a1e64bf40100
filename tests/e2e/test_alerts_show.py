"""`rmm alerts show`: everything about one alert, from a real server, agent and receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_alerting import POLICY, Receiver
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)


def test_alerts_show_has_rule_agent_history_silences_and_notifications(tmp_path: Path) -> None:
    receiver = Receiver()
    dead_port = free_port()  # nothing listens there: CpuCounted's notifications fail
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        "delivery: {attempts: 2, initial_backoff: 100ms, max_backoff: 200ms, jitter: 0s}\n"
        "receivers:\n"
        f"  - {{name: desk, webhook: {{url: '{receiver.url}/desk'}}}}\n"
        f"  - {{name: dead, webhook: {{url: 'http://127.0.0.1:{dead_port}/x'}}}}\n"
        "route:\n"
        "  receiver: desk\n"
        "  group_by: [rule]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "  routes:\n"
        "    - {matchers: ['rule = CpuCounted'], receiver: dead}\n"
    )
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--policies", str(policies), "--notify-config", str(notify)],
    )
    agent = None
    try:
        server.start()
        state_dir = tmp_path / "agent"
        agent_id = enroll_agent(server, state_dir)
        agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)

        def firing(rule: str) -> Any:
            return [
                a
                for a in rmm_json(server, "alerts", "list", "--state", "firing")
                if a["rule"] == rule
            ]

        [memory] = wait_for(lambda: firing("MemoryInUse"), 60, "MemoryInUse firing")
        [cpu] = wait_for(lambda: firing("CpuCounted"), 60, "CpuCounted firing")

        def shown(alert_id: str, event: str) -> Any:
            data = rmm_json(server, "alerts", "show", alert_id)
            return data if any(n for n in data["notifications"] if n[event]) else None

        data = wait_for(lambda: shown(memory["id"], "delivered"), 30, "a delivered notification")
        assert data["id"] == memory["id"] and data["rule"] == "MemoryInUse"
        assert data["rule_now"]["expr"] == "memory_usage_ratio > params.threshold"
        assert data["rule_now"]["source"].endswith("e2e.yaml:6"), data["rule_now"]
        assert data["agent"]["id"] == agent_id and data["agent"]["client"] == "acme"
        assert "uses" in data["annotations"]["summary"]
        [told] = [n for n in data["notifications"] if n["delivered"]][:1]
        assert (told["receiver"], told["notifier"], told["status"]) == ("desk", "webhook", "firing")
        assert data["silences"] == [] and data["suppressed_by"] is None
        assert [h["event"] for h in data["history"]][:2] == ["firing", "notified"]

        # A silence that matches it is listed, and says why it is quiet; one that does not is not.
        quiet = rmm_json(server, "alerts", "silence", "--match", "rule=MemoryInUse,client=acme",
                         "--for", "1h", "--comment", "disk swap")  # fmt: skip
        rmm_json(server, "alerts", "silence", "--match", "client=globex", "--for", "1h",
                 "--comment", "another client")  # fmt: skip
        data = rmm_json(server, "alerts", "show", memory["id"])
        assert [s["id"] for s in data["silences"]] == [quiet["id"]]
        assert data["suppressed_by"] == f"silence:{quiet['id']}"

        # A failed delivery is there with its error, after its retries.
        failed = wait_for(
            lambda: [
                n
                for n in rmm_json(server, "alerts", "show", cpu["id"])["notifications"]
                if not n["delivered"]
            ],
            30,
            "a failed notification",
        )
        assert failed[0]["receiver"] == "dead" and "127.0.0.1" in failed[0]["error"]

        # Acknowledged: shown; by a unique start of its id; the table form for people.
        rmm(server, "alerts", "ack", memory["id"], "--comment", "on it")
        prefix = memory["id"][:10]
        assert rmm_json(server, "alerts", "show", prefix)["acknowledged_by"] == "admin"
        table = rmm(server, "alerts", "show", memory["id"]).stdout
        for text in ("MemoryInUse", "memory_usage_ratio > params.threshold", "desk",
                     "delivered", "on it", quiet["id"]):  # fmt: skip
            assert text in table, (text, table)
        missing = rmm(server, "alerts", "show", "f" * 32, check=False)
        assert missing.returncode == 4 and "no alert" in missing.stderr, missing.stderr
    finally:
        try:
            end_process(agent)
        finally:
            server.stop()
        receiver.server.shutdown()
