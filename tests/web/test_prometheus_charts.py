"""The agent page's charts from Debian's real Prometheus (rmm-server serve --prometheus-url),
scraping a real server with a real agent; and the server's own history, said so, while
Prometheus is unreachable or answers an error."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rmm_server.web.history import SERIES
from rmm_server.web.prometheus_charts import PrometheusCharts, PrometheusError
from tests.deploy.stack import PrometheusProcess, prometheus_config
from tests.helpers import ServerProcess, end_all, enroll_agent, free_port, start_agent, wait_for
from tests.web.client import Browser


@dataclass
class Charts:
    server: ServerProcess
    agent_id: str
    prometheus: PrometheusProcess


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Charts]:
    """A server whose --prometheus-url names a Prometheus not started yet (the tests start it)."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("web-prometheus")
    prometheus_port = free_port()
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        extra_args=["--prometheus-url", f"http://127.0.0.1:{prometheus_port}/"],
    )
    agent: subprocess.Popen[bytes] | None = None
    prometheus: PrometheusProcess | None = None
    try:
        server.start()
        agent_id = enroll_agent(server, tmp / "agent", "charts")
        agent = start_agent(tmp / "agent", tmp / "agent.log", 1.0)
        wait_for(lambda: f'agent="{agent_id}"' in server.metrics(), 60, "the agent in /metrics")
        prometheus = PrometheusProcess(
            config=prometheus_config(tmp, server),
            storage=tmp / "tsdb",
            log_path=tmp / "prometheus.log",
            port=prometheus_port,
        )
        yield Charts(server, agent_id, prometheus)
    finally:
        try:
            if prometheus is not None:
                prometheus.stop()
        finally:
            end_all(agent, server)


def chart_data(charts: Charts) -> dict[str, Any]:
    browser = Browser(charts.server.http_url)
    assert browser.login(charts.server.admin_token).status == 303
    reply = browser.get(f"/agents/{charts.agent_id}/history")
    assert reply.status == 200, reply.body
    data: dict[str, Any] = json.loads(reply.body)
    assert {"time", *SERIES} <= set(data)
    return data


def test_unreachable_prometheus_is_said_and_the_servers_history_shown(charts: Charts) -> None:
    data = wait_for(lambda: (d := chart_data(charts))["time"] and d, 30, "a local point")
    assert data["source"] == "server" and data["fallback"] is True
    assert f"Prometheus at http://127.0.0.1:{charts.prometheus.port}" in data["notice"]
    assert "unreachable" in data["notice"] and "server's own 5-minute history" in data["notice"]
    assert 0.0 < data["memory_ratio"][-1] <= 1.0


def test_the_charts_come_from_prometheus_scraping_the_server(charts: Charts) -> None:
    charts.prometheus.start()
    data = wait_for(
        lambda: (
            (d := chart_data(charts))["source"] == "prometheus"
            and d["time"]
            and d["receive_bytes_per_second"][-1] is not None
            and d
        ),
        60,
        "the agent's points from Prometheus",
        every=0.5,
    )
    assert data["fallback"] is False
    assert data["notice"] == f"5-minute means from Prometheus at {charts.prometheus.url}."
    # The last point is now's, a 5-minute step after the one before (a day of them at most).
    assert abs(data["time"][-1] - time.time()) < 30 and len(data["time"]) <= 24 * 12 + 1
    assert 0.0 < data["memory_ratio"][-1] <= 1.0 and 0.0 <= data["cpu_ratio"][-1] <= 1.0
    assert 0.0 < data["disk_ratio"][-1] <= 1.0 and data["receive_bytes_per_second"][-1] >= 0.0
    # The same number Prometheus itself holds for the agent, not the server's history.
    (memory,) = charts.prometheus.vector(
        f'avg(avg_over_time(rmm_memory_usage_ratio{{agent="{charts.agent_id}"}}[5m]))'
    )
    assert abs(float(memory["value"][1]) - data["memory_ratio"][-1]) < 0.05


def test_an_error_answer_from_prometheus_is_named(charts: Charts) -> None:
    if charts.prometheus.process is None:  # run alone
        charts.prometheus.start()
    client = PrometheusCharts(charts.prometheus.url)

    async def ask() -> None:
        import aiohttp  # noqa: PLC0415

        async with aiohttp.ClientSession(timeout=client.timeout) as session:
            now = time.time()
            await client.query_range(session, "rate(rmm_cpu_usage_ratio[5m]", now - 600, now)

    with pytest.raises(PrometheusError, match=r"Prometheus refused .*bad_data"):
        asyncio.run(ask())
    with pytest.raises(PrometheusError, match="has no series for agent no-such-agent"):
        asyncio.run(client.columns("no-such-agent"))


def test_a_url_that_is_not_prometheus_is_refused_at_start(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--prometheus-url", "prometheus:9090"],
    )
    result = subprocess.run(server.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--prometheus-url 'prometheus:9090': give Prometheus's base URL" in result.stderr
