"""Alerting end to end: real server, real agent, real policies, a real webhook receiver."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

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

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: e2e}
scope: {all: true}
rules:
  - name: MemoryInUse
    expr: memory_usage_ratio > params.threshold
    params: {threshold: 0.0}
    severity: warning
    tier: L1
    annotations:
      summary: "{{ hostname }} uses {{ value | percent }} of its memory"
  - name: CpuCounted
    expr: cpu_logical_cores > 0.0
    severity: info
    tier: L1
  - name: NeverFires
    expr: memory_usage_ratio > 2.0
    severity: critical
    tier: L1
"""


class Receiver:
    """A real HTTP server on loopback that keeps every JSON body posted to it, by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def posted(self, path: str) -> list[Any]:
        return [body for where, body in list(self.bodies) if where == path]


def alerts_in(body: Any) -> list[dict[str, Any]]:
    found = body.get("alerts", []) if isinstance(body, dict) else []
    return [a for a in found if isinstance(a, dict)]


@pytest.fixture
def alerting_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Receiver, Path]]:
    receiver = Receiver()
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        "delivery: {attempts: 2, initial_backoff: 100ms, max_backoff: 200ms, jitter: 0s}\n"
        "receivers:\n"
        f"  - {{name: desk, webhook: {{url: '{receiver.url}/l1'}}}}\n"
        f"  - {{name: engineers, webhook: {{url: '{receiver.url}/l2'}}}}\n"
        "route:\n"
        "  receiver: desk\n"
        "  group_by: [rule, client, site]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "tiers:\n"
        "  L1: {receiver: desk, ack_timeout: 3s}\n"
        "  L2: {receiver: engineers}\n"
    )
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=[
            "--policies",
            str(policies),
            "--notify-config",
            str(notify),
            "--escalation-check-interval",
            "1s",
            "--offline-check-interval",
            "1s",
        ],
    ).start()
    try:
        yield server, receiver, policies
    finally:
        try:
            server.stop()
        finally:
            receiver.server.shutdown()


def test_alerts_fire_notify_escalate_persist_and_survive_a_bad_reload(
    alerting_server: tuple[ServerProcess, Receiver, Path], tmp_path: Path
) -> None:
    server, receiver, policies = alerting_server
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir)
    silenced = rmm_json(
        server,
        "alerts",
        "silence",
        "--match",
        "rule=CpuCounted",
        "--for",
        "1h",
        "--comment",
        "known, not interesting",
    )
    assert silenced["state"] == "active"
    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:

        def firing() -> Any:
            return rmm_json(server, "alerts", "list", "--state", "firing")

        alerts = wait_for(lambda: len(firing()) == 2 and firing(), 60, "two firing alerts")
        by_rule = {a["rule"]: a for a in alerts}
        memory = by_rule["MemoryInUse"]
        assert memory["agent_id"] == agent_id
        # It fired at L1. On a loaded machine the 3 s ack timeout may have passed by the time
        # it is listed: then its history shows the one step from L1.
        escalations = [h["detail"] for h in memory["history"] if h["event"] == "escalated"]
        assert escalations in ([], ["L1 -> L2"]), memory["history"]
        assert memory["tier"] == ("L2" if escalations else "L1"), memory
        assert "uses" in memory["annotations"]["summary"]
        assert by_rule["CpuCounted"]["suppressed_by"] == f"silence:{silenced['id']}"
        assert memory["suppressed_by"] is None

        # The desk heard about MemoryInUse, and nobody about the silenced rule.
        wait_for(lambda: receiver.posted("/l1"), 30, "the desk's webhook")
        told = [a for body in receiver.posted("/l1") for a in alerts_in(body)]
        assert {a.get("rule") for a in told} == {"MemoryInUse"}, told

        # Not acknowledged within 3 s: escalated to L2, which is told.
        wait_for(lambda: receiver.posted("/l2"), 60, "escalation to the L2 webhook")
        escalated = rmm_json(server, "alerts", "list", "--state", "firing")
        memory = next(a for a in escalated if a["rule"] == "MemoryInUse")
        assert memory["tier"] == "L2"
        # Deliveries are in the history too ("delivered", for `rmm alerts show`): left out here.
        events = [h["event"] for h in memory["history"] if h["event"] != "delivered"]
        assert events[:3] == ["firing", "notified", "escalated"], memory["history"]
        assert any(h["event"] == "delivered" for h in memory["history"])

        acked = rmm_json(server, "alerts", "ack", memory["id"], "--comment", "looking at it")
        assert acked["acknowledged_by"] == "admin"

        explained = rmm_json(server, "policy", "explain", agent_id)
        assert {r["name"] for r in explained["rules"]} == {
            "MemoryInUse",
            "CpuCounted",
            "NeverFires",
        }

        # A broken policy is refused with its line; the old set stays in force.
        (policies / "broken.yaml").write_text(
            "apiVersion: rmm/v1\nkind: AlertPolicy\n"
            "metadata: {name: broken}\nscope: {all: true}\n"
            "rules:\n  - name: Bad\n    expr: nope >\n"
        )
        refused = rmm(server, "policy", "reload", check=False)
        assert refused.returncode == 1
        assert "broken.yaml:7" in refused.stderr, refused.stderr
        assert "previous policies stay in force" in refused.stderr
        (policies / "broken.yaml").unlink()
        assert rmm(server, "policy", "reload").returncode == 0

        # A restart neither loses the firing alert nor announces it again.
        told_before = len(receiver.posted("/l1")) + len(receiver.posted("/l2"))
        assert server.stop() == 0
        server.start()
        wait_for(
            lambda: (
                rmm_json(server, "agents", "list")[0]["last_sequence"]
                > acked.get("last_sequence", 0)
            ),
            60,
            "reports after the restart",
        )
        after = {a["id"]: a for a in rmm_json(server, "alerts", "list", "--state", "firing")}
        assert memory["id"] in after and after[memory["id"]]["acknowledged_by"] == "admin"
        metrics = server.metrics()
        assert (
            'rmm_alerts_firing{client="acme",rule="MemoryInUse",severity="warning"} 1.0' in metrics
        )
        assert len(receiver.posted("/l1")) + len(receiver.posted("/l2")) == told_before
    finally:
        end_process(agent)


def test_policy_validate_reports_file_and_line(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415

    from tests.helpers import BIN  # noqa: PLC0415

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: rmm/v1\nkind: AlertPolicy\nmetadata: {name: x}\n"
        "scope: {all: true}\nrules:\n  - name: A\n    expr: cpu_usage_ratio > 1\n"
        "    severity: loud\n"
    )
    result = subprocess.run(
        [str(BIN / "rmm"), "policy", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{bad}:8" in result.stderr, result.stderr
    good = subprocess.run(
        [str(BIN / "rmm"), "policy", "validate", "policies"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr


def test_failed_notifications_maintenance_silences_and_sighup(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    notify = tmp_path / "notify.yaml"
    dead_port = free_port()  # nothing listens there
    notify.write_text(
        "delivery: {attempts: 2, initial_backoff: 100ms, max_backoff: 200ms, jitter: 0s}\n"
        f"receivers:\n  - {{name: dead, webhook: {{url: 'http://127.0.0.1:{dead_port}/x'}}}}\n"
        "route: {receiver: dead, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}\n"
    )
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
        agent_id = enroll_agent(server, state_dir)
        agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
        failures = wait_for(
            lambda: rmm_json(server, "notifications", "failed"), 60, "a failed notification"
        )
        assert failures[0]["receiver"] == "dead" and failures[0]["notifier"] == "webhook"
        assert "127.0.0.1" in failures[0]["error"]
        assert "rmm_notifications_failed_total" in server.metrics()

        # A nightly window that is not open now: it starts half a day from this hour.
        berlin_hour = datetime.now(ZoneInfo("Europe/Berlin")).hour
        window = rmm_json(
            server,
            "maintenance",
            "add",
            "--name",
            "patch night",
            "--schedule",
            f"0 {(berlin_hour + 12) % 24} * * *",
            "--duration",
            "2h",
            "--timezone",
            "Europe/Berlin",
            "--client",
            "acme",
        )
        assert window["next_start"] and not window["active_now"]
        one_off = rmm_json(
            server,
            "maintenance",
            "add",
            "--name",
            "disk swap",
            "--start",
            "now",
            "--duration",
            "1h",
            "--agent",
            agent_id,
        )
        assert one_off["active_now"]
        quiet = wait_for(
            lambda: [
                a
                for a in rmm_json(server, "alerts", "list", "--state", "firing")
                if a["suppressed_by"] == f"maintenance:{one_off['id']}"
            ],
            30,
            "alerts marked as in maintenance",
        )
        assert quiet
        assert {w["id"] for w in rmm_json(server, "maintenance", "list")} == {
            window["id"],
            one_off["id"],
        }
        assert rmm_json(server, "maintenance", "end", one_off["id"])["ended_at"]
        assert [w["id"] for w in rmm_json(server, "maintenance", "list")] == [window["id"]]

        silence = rmm_json(
            server,
            "alerts",
            "silence",
            "--match",
            "client=acme",
            "--for",
            "1h",
            "--comment",
            "testing",
        )
        assert [s["id"] for s in rmm_json(server, "silences", "list")] == [silence["id"]]
        assert rmm_json(server, "silences", "expire", silence["id"])["state"] == "expired"
        assert rmm_json(server, "silences", "list") == []

        # SIGHUP reloads the policy directory.
        (policies / "more.yaml").write_text(
            POLICY.replace("name: e2e", "name: more")
            .replace("name: MemoryInUse", "name: MemoryAgain")
            .replace("name: CpuCounted", "name: CpuAgain")
            .replace("name: NeverFires", "name: NeverAgain")
        )
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (
                "MemoryAgain"
                in {r["name"] for r in rmm_json(server, "policy", "explain", agent_id)["rules"]}
            ),
            30,
            "the SIGHUP reload",
        )
    finally:
        try:
            end_process(agent)
        finally:
            server.stop()
