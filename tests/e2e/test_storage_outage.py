"""A PostgreSQL outage seen from outside: /healthz answers 503 and the gRPC health service
NOT_SERVING while the database is unreachable, 200 and SERVING once it is back; the log says so
once each way, without a traceback per report in flight.

The outage is a proxy between the server and the shared PostgreSQL, cut and restored by the
test: the database itself, which other tests use, is never stopped."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    http_get,
    rmm_json,
    start_agent,
    wait_for,
)
from tests.tcp_proxy import CuttableProxy

OUTAGE_SECONDS = 12.0


def grpc_health(server: ServerProcess) -> int:
    """Return the gRPC health service's status for the whole server."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return int(reply.status)


def healthz(server: ServerProcess) -> int:
    return http_get(server.http_url + "/healthz", timeout=5)[0]


def last_sequence(server: ServerProcess) -> int:
    [agent] = rmm_json(server, "agents", "list")
    return int(agent.get("last_sequence") or 0)


def test_a_database_outage_is_503_and_not_serving_with_one_line_each_way(
    pg_url: str, tmp_path: Path
) -> None:
    host, port = pg_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    name = pg_url.rsplit("/", 1)[1]
    agent: subprocess.Popen[bytes] | None = None
    with CuttableProxy((host, int(port))) as proxy:
        server = ServerProcess(
            data_dir=tmp_path / "server",
            grpc_port=free_port(),
            http_port=free_port(),
            log_path=tmp_path / "server.log",
            extra_args=["--db", f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"],
        ).start()
        try:
            enroll_agent(server, tmp_path / "agent")
            agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)
            wait_for(lambda: last_sequence(server) >= 2, 60, "the agent's reports stored")
            assert healthz(server) == 200
            assert grpc_health(server) == health_pb2.HealthCheckResponse.SERVING

            proxy.cut()
            cut_at = len(server.log_path.read_bytes())
            wait_for(lambda: healthz(server) == 503, 60, "/healthz to answer 503")
            assert grpc_health(server) == health_pb2.HealthCheckResponse.NOT_SERVING
            status, body = http_get(server.http_url + "/healthz")
            assert status == 503 and body.startswith(b"storage unreachable since "), body
            # The agent keeps sending meanwhile: each report it sends now fails to store.
            time.sleep(OUTAGE_SECONDS)
            assert healthz(server) == 503
            during = server.log_path.read_bytes()[cut_at:].decode(errors="replace")

            proxy.restore()
            wait_for(lambda: healthz(server) == 200, 60, "/healthz back to 200")
            assert grpc_health(server) == health_pb2.HealthCheckResponse.SERVING
            restored = last_sequence(server)
            wait_for(lambda: last_sequence(server) > restored, 60, "reports stored again")
        finally:
            end_all(agent, server)
    log = server.log_path.read_text(errors="replace")
    assert log.count("storage unreachable: ") == 1, log
    assert log.count("storage reachable again after") == 1, log
    assert "never retrieved" not in log, log
    assert "Traceback" not in log, log
    # One line per part that noticed (storage watch, ingest, cluster), not one a second or one
    # a report: a dozen at most, whatever the outage's length.
    lines = [line for line in during.splitlines() if " ERROR " in line or " WARNING " in line]
    assert len(lines) <= 12, "\n".join(lines)
