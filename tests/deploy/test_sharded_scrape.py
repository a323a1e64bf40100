"""Debian's real Prometheus scrapes a real server in shards with the shipped sharded.yml: every
shard is up, the agent's series come from exactly one shard (the one its id hashes to), the
fleet-wide series from shard 0 only. Prometheus asks for gzip, so its Go reader takes the
server's stream of gzip members."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rmm_server.exporter import Shard
from tests.deploy.stack import PROMETHEUS_DIR, SERVER_JOB, PrometheusProcess, Stack
from tests.helpers import http_get, wait_for

SHARDED = PROMETHEUS_DIR / "sharded.yml"


def sharded_config(directory: Path, http_port: int) -> tuple[Path, int]:
    """Write the shipped sharded config pointed at the test server, scraping every second;
    return its path and the number of shards."""
    config: dict[str, Any] = yaml.safe_load(SHARDED.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / rule) for rule in config["rule_files"]]
    job = next(job for job in config["scrape_configs"] if job["job_name"] == SERVER_JOB)
    for group in job["static_configs"]:
        group["targets"] = [f"127.0.0.1:{http_port}"]
    config["scrape_configs"] = [job]
    path = directory / "sharded.yml"
    path.write_text(yaml.safe_dump(config))
    return path, int(job["params"]["of"][0])


def test_the_shipped_sharded_config_is_valid() -> None:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is missing (Debian package prometheus: apt-get install prometheus)")
    result = subprocess.run(
        [binary, "check", "config", str(SHARDED)],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def sharded_prometheus(stack: Stack, tmp_path: Path) -> Iterator[tuple[PrometheusProcess, int]]:
    config, count = sharded_config(tmp_path, stack.server.http_port)
    prometheus = PrometheusProcess(
        config=config, storage=tmp_path / "tsdb", log_path=tmp_path / "prometheus.log"
    ).start()
    try:
        yield prometheus, count
    finally:
        prometheus.stop()


def test_prometheus_scrapes_every_shard_and_sees_each_series_once(
    stack: Stack, sharded_prometheus: tuple[PrometheusProcess, int]
) -> None:
    prometheus, count = sharded_prometheus
    assert count > 1

    def all_up() -> list[dict[str, Any]] | None:
        found = prometheus.vector(f'up{{job="{SERVER_JOB}"}} == 1')
        return found if len(found) == count else None

    ups = wait_for(all_up, 60, f"all {count} shards up", every=0.5)
    assert sorted(int(s["metric"]["shard"]) for s in ups) == list(range(count))

    home = next(k for k in range(count) if Shard(k, count).holds(stack.agent_id))
    selector = f'rmm_cpu_usage_ratio{{job="{SERVER_JOB}", agent="{stack.agent_id}"}}'
    (cpu,) = wait_for(lambda: prometheus.vector(selector), 60, selector, every=0.5)
    assert cpu["metric"]["shard"] == str(home)
    # The fleet-wide series come from shard 0 alone.
    (agents,) = wait_for(lambda: prometheus.vector("rmm_agents"), 60, "rmm_agents", every=0.5)
    assert agents["metric"]["shard"] == "0"
    received = prometheus.vector("rmm_server_reports_received_total")
    assert [s["metric"]["shard"] for s in received] == ["0"]
    # The page the shards were cut from holds the same agent series.
    status, body = http_get(f"http://127.0.0.1:{stack.server.http_port}/metrics", 10)
    assert status == 200 and f'agent="{stack.agent_id}"'.encode() in body
