"""End to end: a real server and real agents on loopback, driven through the real commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import (
    ServerProcess,
    agent_cmd,
    end_process,
    enroll_agent,
    http_get,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)


def test_agent_enrolls_reports_and_is_listed_and_exported(
    server: ServerProcess, tmp_path: Path
) -> None:
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir, "linux-servers", "web")
    identity_mode = (state_dir / "identity.json").stat().st_mode & 0o777
    assert identity_mode == 0o600
    assert (server.data_dir / "admin.token").stat().st_mode & 0o777 == 0o600

    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:

        def listed_with_metrics() -> Any:
            rows = rmm_json(server, "agents", "list")
            row = next((r for r in rows if r["id"] == agent_id), None)
            if row and row["status"] == "online" and row["last_sequence"] >= 2:
                return row
            return None

        row = wait_for(listed_with_metrics, 60, "the agent to be listed online with reports")
        assert row["client"] == "acme" and row["site"] == "hq"
        assert row["tags"] == ["linux-servers", "web"]
        assert row["os"] == "linux"
        assert 0.0 <= row["cpu_usage_ratio"] <= 1.0
        assert 0.0 < row["memory_used_ratio"] < 1.0
        assert row["last_seen_seconds_ago"] < 5

        # Filters are applied by the server.
        assert [r["id"] for r in rmm_json(server, "agents", "list", "--tag", "web")] == [agent_id]
        assert rmm_json(server, "agents", "list", "--tag", "nope") == []
        assert rmm_json(server, "agents", "list", "--client", "other") == []
        assert rmm_json(server, "agents", "list", "--status", "offline") == []
        table = rmm(server, "agents", "list").stdout
        assert agent_id[:12] in table and "online" in table

        shown = rmm_json(server, "agents", "show", agent_id[:8])
        assert shown["id"] == agent_id
        assert shown["reports_stored"] >= 2
        assert shown["last_sequence"] - shown["first_sequence"] + 1 == shown["reports_stored"]
        names = {c["name"] for c in shown["collectors"]}
        assert {"cpu", "memory", "disks", "network", "system", "processes"} <= names
        assert shown["inventory"]["software"]["packages"], "inventory arrived at enrollment"
        assert shown["info"]["system"]["hostname"] == row["hostname"]

        metrics = server.metrics()
        assert re.search(
            rf'rmm_cpu_usage_ratio\{{client="acme",site="hq",agent="{agent_id}"\}} ', metrics
        )
        assert f'rmm_agent_up{{client="acme",site="hq",agent="{agent_id}"}} 1' in metrics
        assert "rmm_server_reports_received_total" in metrics
        assert "rmm_server_report_processing_seconds_bucket" in metrics
        assert "rmm_server_connected_agents 1.0" in metrics
    finally:
        assert end_process(agent) == 0, (tmp_path / "agent.log").read_text()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_promtool_accepts_the_real_metrics_output(server: ServerProcess, tmp_path: Path) -> None:
    state_dir = tmp_path / "agent"
    enroll_agent(server, state_dir)
    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:
        wait_for(lambda: "rmm_memory_usage_ratio{" in server.metrics(), 60, "agent series")
        body = server.metrics()
    finally:
        end_process(agent)
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    # promtool exits non-zero on format errors and on lint problems; print both for the reader.
    assert result.returncode == 0, result.stdout + result.stderr


def test_agent_state_survives_a_server_restart(server: ServerProcess, tmp_path: Path) -> None:
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir)
    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:
        series = f'rmm_memory_usage_ratio{{client="acme",site="hq",agent="{agent_id}"}}'
        wait_for(lambda: series in server.metrics(), 60, "agent series")
    finally:
        end_process(agent)
    before = rmm_json(server, "agents", "show", agent_id)
    assert server.stop() == 0
    server.start()
    after = rmm_json(server, "agents", "show", agent_id)
    assert after["last_sequence"] == before["last_sequence"]
    assert after["reports_stored"] == before["reports_stored"]
    # The exporter rebuilt the agent's series from the stored latest report.
    assert series in server.metrics()


def test_collect_once_prints_a_full_report_without_a_server() -> None:
    result = agent_cmd("collect", "--once", "--output", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_name = {c["name"]: c for c in report["collectors"]}
    expected = {
        "cpu",
        "memory",
        "disks",
        "network",
        "sensors",
        "system",
        "processes",
        "services",
        "hardware",
        "software",
    }
    assert expected <= set(by_name)
    assert by_name["cpu"]["ok"], by_name["cpu"]["error"]
    assert report["host"]["hostname"]
    assert report["inventory"]["software"]["packages"]
    assert len(report["inventory_hash"]) == 64


def test_agent_sigterm_stops_cleanly_while_server_is_down(
    tmp_path: Path, server: ServerProcess
) -> None:
    state_dir = tmp_path / "agent"
    enroll_agent(server, state_dir)
    server.stop()
    log = tmp_path / "agent.log"
    agent = start_agent(state_dir, log, interval=1)
    try:
        # Logged once its SIGTERM handler is set (before that, SIGTERM kills it outright).
        wait_for(lambda: " reporting to " in log.read_text(), 60, "the agent to start")
    finally:
        assert end_process(agent) == 0, log.read_text()


def test_grpc_health_service_and_healthz_answer(server: ServerProcess) -> None:
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "rmm.v1.AgentService", "rmm.v1.OperatorService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
    status, body = http_get(server.http_url + "/healthz")
    assert status == 200 and body.startswith(b"ok")
    assert http_get(server.http_url + "/nope")[0] == 404
