"""What the agent page's charts cost when they come from Prometheus (rmm-server serve
--prometheus-url), and that a slow Prometheus does not hold the server's event loop.

One real `rmm-server serve --insecure --prometheus-url http://127.0.0.1:P`, one real agent
reporting every second, and Debian's `prometheus` on P scraping the server's /metrics every
second. Logged in as admin, over one HTTP/1.1 connection per request, `--repeat` times each:

- `healthz`: GET /healthz, the peer (same listener and loop, nothing asked of Prometheus);
- `history prometheus`: GET /agents/<id>/history answered from Prometheus (five query_range
  calls, 24 h at a 5-minute step);
- `history down`: the same with Prometheus stopped (connection refused: the server's own
  history, the failure said);
- `history hung`: the same against a listener on P that accepts and never answers (the 5 s
  timeout), `--hung` of them at once, while `healthz` is timed meanwhile (`healthz during hung`):
  a loop blocked by the chart queries would show there.

All of it `--rounds` times on the same server; medians over rounds are printed after each.

    .venv/bin/python -m bench.prometheus_charts --json /tmp/prometheus_charts.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.agent_footprint import (
    BIN,
    ensure_alive,
    free_port,
    http_get,
    machine,
    run_command,
    spawn,
    stop_process,
    wait_until,
)
from bench.dashboard import Session

START_TIMEOUT_SECONDS = 60.0


def start_prometheus(work: Path, port: int, server_http: int) -> Any:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "rmm-server",
                "static_configs": [{"targets": [f"127.0.0.1:{server_http}"]}],
            }
        ],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed: apt-get install prometheus")
    log = work / "prometheus.log"
    proc = spawn(
        [binary, f"--config.file={path}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        log,
    )  # fmt: skip

    def ready() -> bool:
        ensure_alive(proc, "prometheus", log)
        return bool(http_get(f"http://127.0.0.1:{port}/-/ready", 1))

    wait_until(ready, START_TIMEOUT_SECONDS, "prometheus ready")
    return proc


def timed(session: Session, path: str, repeat: int, source: str = "") -> list[float]:
    seconds = []
    for _ in range(repeat):
        status, _, complete, body, _ = session.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        if source and json.loads(body).get("source") != source:
            raise RuntimeError(f"GET {path}: not from {source}: {body[:300]!r}")
        seconds.append(complete)
    return seconds


def hung_round(session: Session, history: str, port: int, hung: int, repeat: int) -> dict[str, Any]:
    """Time `hung` chart requests at once against a listener that never answers, and healthz
    meanwhile."""
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", port))
    silent.listen(64)  # handshakes complete in the backlog; nothing is ever read or answered
    results: list[float] = []
    try:
        threads = [
            threading.Thread(target=lambda: results.extend(timed(session, history, 1)))
            for _ in range(hung)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the chart requests are waiting on the silent listener by now
        during = timed(session, "/healthz", repeat)
        for thread in threads:
            thread.join()
    finally:
        silent.close()
    return {"history_hung": results, "healthz_during_hung": during}


def one_round(
    session: Session, agent_id: str, args: argparse.Namespace, prom: Any
) -> dict[str, Any]:
    history = f"/agents/{agent_id}/history"
    figures: dict[str, Any] = {
        "healthz": timed(session, "/healthz", args.repeat),
        "history_prometheus": timed(session, history, args.repeat, "prometheus"),
    }
    stop_process(prom)
    figures["history_down"] = timed(session, history, args.repeat, "server")
    figures.update(hung_round(session, history, args.prometheus_port, args.hung, args.repeat))
    return figures


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def print_medians(rounds: list[dict[str, Any]]) -> dict[str, float]:
    names = list(rounds[0])
    summary = {name: statistics.median(median_ms(r[name]) for r in rounds) for name in names}
    print(f"\nmedians of {len(rounds)} round(s), complete response:")
    for name in names:
        ratio = summary[name] / summary["healthz"] if summary["healthz"] else 0.0
        print(f"  {name:22s} {summary[name]:9.1f} ms   {ratio:8.0f} x healthz")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="requests per figure per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hung", type=int, default=8, help="chart requests held at once")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    args.prometheus_port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-charts-") as tmp:
        work = Path(tmp)
        grpc, http_port = free_port(), free_port()
        server_log = work / "server.log"
        server = spawn(
            [BIN / "rmm-server", "serve", "--data-dir", work / "server", "--insecure",
             "--grpc-listen", f"127.0.0.1:{grpc}", "--http-listen", f"127.0.0.1:{http_port}",
             "--prometheus-url", f"http://127.0.0.1:{args.prometheus_port}"],
            server_log,
        )  # fmt: skip
        agent = prom = None
        rounds: list[dict[str, Any]] = []
        try:
            wait_until(
                lambda: (
                    (work / "server" / "admin.token").exists()
                    and http_get(f"http://127.0.0.1:{http_port}/healthz")
                ),
                START_TIMEOUT_SECONDS,
                "rmm-server",
            )
            env = {
                "RMM_SERVER": f"127.0.0.1:{grpc}",
                "RMM_TOKEN": (work / "server" / "admin.token").read_text().strip(),
                "RMM_INSECURE": "1",
            }
            create = [
                "tokens",
                "create",
                "--client",
                "bench",
                "--site",
                "local",
                "--output",
                "json",
            ]
            token = json.loads(run_command([BIN / "rmm", *create], env))["token"]
            run_command([BIN / "rmm-agent", "enroll", "--server", f"127.0.0.1:{grpc}", "--token",
                         token, "--state-dir", work / "agent", "--insecure"])  # fmt: skip
            agent_id = json.loads((work / "agent" / "identity.json").read_text())["agent_id"]
            agent = spawn([BIN / "rmm-agent", "run", "--state-dir", work / "agent", "--interval",
                           "1"], work / "agent.log")  # fmt: skip
            session = Session("127.0.0.1", http_port)
            session.login(env["RMM_TOKEN"])
            for number in range(1, args.rounds + 1):
                prom = start_prometheus(work, args.prometheus_port, http_port)

                def from_prometheus() -> bool:
                    ensure_alive(server, "rmm-server", server_log)
                    status, _, _, body, _ = session.request("GET", f"/agents/{agent_id}/history")
                    return status == 200 and json.loads(body).get("source") == "prometheus"

                wait_until(from_prometheus, START_TIMEOUT_SECONDS, "charts from Prometheus")
                rounds.append(one_round(session, agent_id, args, prom))
                print(
                    f"round {number}: load average {Path('/proc/loadavg').read_text().split()[0]}"
                )
                summary = print_medians(rounds)
        finally:
            for proc in (prom, agent):
                if proc is not None:
                    stop_process(proc)
            stop_process(server)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": machine(), "rounds": rounds, "medians_ms": summary}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
