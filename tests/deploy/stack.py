"""A real rmm-server, an enrolled agent reporting every second, and Debian's Prometheus."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ServerProcess, free_port, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
SERVER_JOB = "rmm-server"  # the job name the rules and dashboards select on

# A receiver nobody listens to: enough for the server to register its notification metrics.
NOTIFY_CONFIG = {
    "receivers": [{"name": "nowhere", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
    "route": {"receiver": "nowhere"},
}


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def notify_config(directory: Path) -> Path:
    """Write the notification config the test server runs with; return its path."""
    path = directory / "notify.yaml"
    path.write_text(yaml.safe_dump(NOTIFY_CONFIG))
    return path


def prometheus_config(directory: Path, server: ServerProcess) -> Path:
    """Write a Prometheus config scraping `server` every second with the shipped rules."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))],
        "scrape_configs": [
            {
                "job_name": SERVER_JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{server.http_port}"]}],
            }
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class PrometheusProcess:
    """Debian's `prometheus` on a free loopback port, with storage in a temporary directory."""

    config: Path
    storage: Path
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusProcess:
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus is not installed"
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: self._alive() and http_get(self.url + "/-/ready", 1)[0] == 200,
                timeout,
                f"prometheus to be ready (log: {self.log_path})",
            )
        except BaseException:
            self.stop()  # not left running when it never became ready
            raise
        return self

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"prometheus exited {self.process.returncode}: "
                + self.log_path.read_text(errors="replace")[-3000:]
            )
        return True

    def query(self, expr: str) -> dict[str, Any]:
        """Run an instant query; return the whole API answer (status, data or error)."""
        status, body = http_get(
            self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), 10
        )
        answer: dict[str, Any] = json.loads(body)
        answer["http_status"] = status
        return answer

    def vector(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query that must succeed; return its result list."""
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class Stack:
    """What the deploy tests run against."""

    server: ServerProcess
    agent_id: str
    prometheus: PrometheusProcess
