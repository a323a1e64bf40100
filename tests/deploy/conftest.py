"""One real stack for the deploy tests: server, agent, Prometheus (started once per package)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.deploy.stack import (
    PrometheusProcess,
    Stack,
    notify_config,
    prometheus_config,
)
from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    start_agent,
    wait_for,
)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server with an agent reporting every second, scraped every second by Prometheus."""
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    base = tmp_path_factory.mktemp("deploy-stack")
    server = ServerProcess(
        data_dir=base / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=base / "server.log",
        extra_args=["--notify-config", str(notify_config(base))],
    )
    agent: subprocess.Popen[bytes] | None = None
    prometheus: PrometheusProcess | None = None
    try:
        server.start()
        agent_id = enroll_agent(server, base / "agent", client="acme", site="hq")
        agent = start_agent(base / "agent", base / "agent.log", 1.0)
        wait_for(
            lambda: (
                f'agent="{agent_id}"' in server.metrics()
                and "rmm_cpu_usage_ratio{" in server.metrics()
            ),
            60,
            "the agent's first report in /metrics",
        )
        prometheus = PrometheusProcess(
            config=prometheus_config(base, server),
            storage=base / "tsdb",
            log_path=base / "prometheus.log",
        ).start()
        yield Stack(server, agent_id, prometheus)
    finally:
        try:
            if prometheus is not None:
                prometheus.stop()
        finally:
            end_all(agent, server)
