"""What TLS costs: enrollment time and CPU per report, plaintext against TLS and mutual TLS.

Three real `rmm-server serve --no-policies` processes on loopback, each on SQLite in a temporary
data directory: `--insecure`, the default (our own CA), and `--require-client-certs`.

1. Enrollment, in this process, `--enrollments` times per server, each with a fresh channel
   (so a fresh TCP and TLS handshake), as `rmm-agent enroll` does: plaintext is open + Enroll;
   TLS is the fingerprint pin (two TLS handshakes with Python's ssl: the unverified one that
   reads the chain, the verified one that checks the name) + a P-256 key and CSR + open +
   Enroll. The parts are timed separately too.
2. `rmm-agent enroll` as a command, `--commands` times per server: what an operator waits for
   (Python start-up and imports included).
3. Reports: one simulated agent per server streams `--reports` copies of a real report of this
   host (sequence 1, 2, ...; 32 unacknowledged at most) on one long-lived stream, like the agent;
   the server's CPU (utime+stime, /proc) and this process's CPU over the stream give CPU per
   report. The report is built once here, so only transport and ingest are measured.

Run from the repository root:

    .venv/bin/python -m bench.tls_enroll --json /tmp/tls.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agent_footprint import (
    BIN,
    CLK_TCK,
    cpu_ticks,
    free_port,
    http_get,
    spawn,
    stop_process,
    wait_until,
)
from bench.ingest_rate import capture_template
from rmm_agent.transport import make_client_key, open_channel
from rmm_common.pinning import fetch_pinned_ca
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

IN_FLIGHT = 32
CONFIGS = {
    "plaintext": ["--insecure"],
    "tls": [],
    "mtls": ["--require-client-certs"],
}


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    address: str
    http_port: int
    fingerprint: str = ""


def start_server(name: str, workdir: Path) -> Server:
    grpc_port, http_port = free_port(), free_port()
    data_dir = workdir / name
    argv: list[str | Path] = [
        BIN / "rmm-server", "serve", "--data-dir", data_dir, "--no-policies",
        "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
        *(["--mtls-listen", f"127.0.0.1:{free_port()}"] if name == "mtls" else []),
        *CONFIGS[name],
    ]  # fmt: skip
    proc = spawn(argv, workdir / f"{name}.log")
    wait_until(
        lambda: http_get(f"http://127.0.0.1:{http_port}/healthz", 1) or None,
        60,
        f"the {name} server",
    )
    server = Server(name, proc, data_dir, f"127.0.0.1:{grpc_port}", http_port)
    if name != "plaintext":
        shown = subprocess.run(
            [BIN / "rmm-server", "ca", "show", "--data-dir", data_dir],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        server.fingerprint = shown.stderr.strip().removeprefix("fingerprint ")
    return server


def cli_env(server: Server) -> dict[str, str]:
    token = (server.data_dir / "admin.token").read_text().strip()
    env = {"PATH": str(BIN), "RMM_SERVER": server.address, "RMM_TOKEN": token}
    if server.fingerprint:
        env["RMM_CA_FINGERPRINT"] = server.fingerprint
    else:
        env["RMM_INSECURE"] = "1"
    return env


def make_token(server: Server, uses: int) -> str:
    out = subprocess.run(
        [BIN / "rmm", "tokens", "create", "--client", "bench", "--site", "tls",
         "--uses", str(uses), "--output", "json"],
        env=cli_env(server), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)["token"])


@dataclass
class Enrolled:
    agent_id: str
    credential: str
    ca_pem: str = ""
    key_pem: bytes = b""
    cert_pem: str = ""
    mtls_port: int = 0


def enroll_once(server: Server, token: str, index: int, parts: dict[str, list[float]]) -> Enrolled:
    """Enroll the way `rmm-agent enroll` does, timing each part."""
    start = time.perf_counter()
    ca_pem, key_pem, csr = "", b"", ""
    if server.fingerprint:
        ca_pem = fetch_pinned_ca(server.address, server.fingerprint)
        pinned = time.perf_counter()
        parts["pin"].append(pinned - start)
        key_pem, csr = make_client_key()
        parts["key_and_csr"].append(time.perf_counter() - pinned)
    rpc_start = time.perf_counter()
    channel = open_channel(server.address, not server.fingerprint, ca_pem)
    try:
        response = agent_pb2_grpc.AgentServiceStub(channel).Enroll(
            agent_pb2.EnrollRequest(
                token=token,
                host=agent_pb2.HostFacts(hostname=f"bench-{server.name}-{index}"),
                agent_version="bench",
                csr_pem=csr,
            ),
            timeout=30,
        )
    finally:
        channel.close()
    done = time.perf_counter()
    parts["open_and_enroll"].append(done - rpc_start)
    parts["total"].append(done - start)
    return Enrolled(
        response.agent_id, response.credential, ca_pem, key_pem,
        response.client_certificate_pem, response.mtls_port,
    )  # fmt: skip


def time_commands(server: Server, token: str, count: int, workdir: Path) -> list[float]:
    """Time `rmm-agent enroll` as a command, `count` times."""
    trust = ["--ca-fingerprint", server.fingerprint] if server.fingerprint else ["--insecure"]
    times = []
    for index in range(count):
        state_dir = workdir / f"cmd-{server.name}-{index}"
        start = time.perf_counter()
        subprocess.run(
            [BIN / "rmm-agent", "enroll", "--server", server.address, "--token", token,
             "--state-dir", state_dir, *trust],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
    return times


def stream_reports(
    server: Server, agent: Enrolled, template: agent_pb2.Report, count: int
) -> dict[str, float]:
    """Stream `count` reports on one stream; return wall time and CPU per report."""
    address = server.address
    if agent.mtls_port:
        address = f"127.0.0.1:{agent.mtls_port}"
    channel = open_channel(
        address, not server.fingerprint, agent.ca_pem, agent.key_pem, agent.cert_pem
    )
    window = threading.Semaphore(IN_FLIGHT)
    report = agent_pb2.Report()
    report.CopyFrom(template)

    def requests() -> Iterator[agent_pb2.Report]:
        for sequence in range(1, count + 1):
            window.acquire()
            report.sequence = sequence
            report.collected_at = time.time()
            yield report

    stub = agent_pb2_grpc.AgentServiceStub(channel)
    acked = 0
    # The clock starts at the first acknowledgement: connection and stream are open by then.
    server_before, client_before, start = 0, 0.0, 0.0
    call = stub.StreamReports(requests(), metadata=bearer_metadata(agent.credential))
    for ack in call:
        acked += 1
        window.release()
        if ack.rejected:
            raise RuntimeError(f"report {ack.sequence} rejected: {ack.rejected}")
        if acked == 1:
            server_before, client_before = cpu_ticks(server.proc.pid), time.process_time()
            start = time.perf_counter()
        if acked >= count:
            break
    call.cancel()
    wall = time.perf_counter() - start
    server_cpu = (cpu_ticks(server.proc.pid) - server_before) / CLK_TCK
    client_cpu = time.process_time() - client_before
    channel.close()
    timed = acked - 1
    return {
        "reports": timed,
        "reports_per_second": timed / wall,
        "server_cpu_us_per_report": server_cpu / timed * 1e6,
        "client_cpu_us_per_report": client_cpu / timed * 1e6,
    }


def median_ms(values: Sequence[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    template, _ = capture_template()
    results: dict[str, Any] = {"template_bytes": template.ByteSize()}
    with tempfile.TemporaryDirectory(prefix="rmm-tls-bench-") as tmp:
        workdir = Path(tmp)
        servers = [start_server(name, workdir) for name in CONFIGS]
        try:
            for server in servers:
                token = make_token(server, args.enrollments + args.commands + 2)
                parts: dict[str, list[float]] = {
                    "pin": [], "key_and_csr": [], "open_and_enroll": [], "total": []
                }  # fmt: skip
                enroll_once(server, token, -1, {k: [] for k in parts})  # warm the server
                agents = [enroll_once(server, token, i, parts) for i in range(args.enrollments)]
                commands = time_commands(server, token, args.commands, workdir)
                streams = [
                    stream_reports(server, agents[i], template, args.reports)
                    for i in range(args.streams)
                ]
                results[server.name] = {
                    "enroll_ms_median": {k: median_ms(v) for k, v in parts.items() if v},
                    "enroll_command_ms_median": median_ms(commands),
                    "reports": {
                        key: round(statistics.median(s[key] for s in streams), 1)
                        for key in streams[0]
                    },
                }
        finally:
            for server in servers:
                stop_process(server.proc)
    return results


def print_report(results: dict[str, Any]) -> None:
    print(f"report template: {results['template_bytes']} bytes")
    print(
        f"{'':<11}{'enroll in-process':>18}{'pin':>8}{'key+CSR':>9}{'Enroll RPC':>11}"
        f"{'rmm-agent enroll':>18}{'srv CPU/report':>16}{'cli CPU/report':>16}{'reports/s':>11}"
    )
    for name in CONFIGS:
        r = results[name]
        e = r["enroll_ms_median"]
        print(f"{name:<11}{e['total']:>15.1f} ms{e.get('pin', 0):>5.1f} ms"
              f"{e.get('key_and_csr', 0):>6.1f} ms{e['open_and_enroll']:>8.1f} ms"
              f"{r['enroll_command_ms_median']:>15.0f} ms"
              f"{r['reports']['server_cpu_us_per_report']:>13.0f} µs"
              f"{r['reports']['client_cpu_us_per_report']:>13.0f} µs"
              f"{r['reports']['reports_per_second']:>11.0f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=20)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=3, help="streams per server (median)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args)
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
