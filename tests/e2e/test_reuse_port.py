"""`rmm-server serve --reuse-port`: two replicas on one PostgreSQL share one gRPC port, the
kernel spreads agents' connections over both, and each stores and acknowledges the reports of
the agents it holds; without PostgreSQL or without a --replica-id it is refused at start."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import grpc
import grpc.aio
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from tests.helpers import BIN, ServerProcess, end_all, free_port, rmm_json

pytestmark = pytest.mark.timeout(300)

AGENTS = 24  # all on one of two listeners by chance: 2 in 2**24


def replica(url: str, data_dir: Path, log_path: Path, grpc_port: int, name: str) -> ServerProcess:
    return ServerProcess(
        data_dir=data_dir,
        grpc_port=grpc_port,
        http_port=free_port(),
        log_path=log_path,
        extra_args=["--db", url, "--replica-id", name, "--reuse-port", "--no-policies"],
    )


def connected(server: ServerProcess) -> float:
    found = re.search(r"^rmm_server_connected_agents (\S+)$", server.metrics(), re.MULTILINE)
    assert found, server.metrics()[:2000]
    return float(found.group(1))


def report(sequence: int, hostname: str) -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence, collected_at=time.time(), interval_seconds=30, agent_version="0.1.0"
    )
    made.host.hostname = hostname
    made.collectors.add(name="cpu", ok=True).samples.add(name="cpu_usage_ratio", value=0.5)
    return made


async def hold_streams(address: str, token: str, release: asyncio.Event) -> list[int]:
    """Enroll AGENTS agents, each on a connection of its own; stream one report each and keep
    the streams open until `release`; return each one's acknowledged sequence."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # a TCP connection per agent
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(AGENTS)]

    async def one(index: int, channel: grpc.aio.Channel) -> int:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        request = agent_pb2.EnrollRequest(token=token, agent_version="0.1.0")
        request.host.hostname = f"host-{index}"
        enrolled = await stub.Enroll(request, timeout=60)
        call = stub.StreamReports(metadata=bearer_metadata(enrolled.credential))
        await call.write(report(1, f"host-{index}"))
        ack = await call.read()
        assert ack is not grpc.aio.EOF and not ack.rejected, ack
        await release.wait()
        await call.done_writing()
        return int(ack.sequence)

    try:
        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(channels))))
    finally:
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


def test_two_replicas_share_one_port_and_the_agents(pg_url: str, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "server", free_port()
    a = replica(pg_url, data_dir, tmp_path / "a.log", port, "replica-a")
    b = replica(pg_url, data_dir, tmp_path / "b.log", port, "replica-b")
    try:
        a.start()  # the first migrates the empty database and writes the admin token
        b.start()  # binds the same port: refused without --reuse-port
        assert b.grpc_port == a.grpc_port  # (start() moves to a free port when refused)
        token = rmm_json(
            a, "tokens", "create", "--client", "acme", "--site", "hq", "--uses", str(AGENTS)
        )["token"]

        async def scenario() -> tuple[list[int], float, float]:
            release = asyncio.Event()
            held = asyncio.ensure_future(hold_streams(a.grpc_address, token, release))
            try:
                # Every agent's report acknowledged, its stream still open on one of the two.
                deadline = time.monotonic() + 120
                on_a = on_b = 0.0
                while time.monotonic() < deadline:
                    on_a, on_b = await asyncio.to_thread(lambda: (connected(a), connected(b)))
                    if on_a + on_b == AGENTS:
                        break
                    await asyncio.sleep(0.2)
            finally:
                release.set()
            return await held, on_a, on_b

        acked, on_a, on_b = asyncio.run(scenario())
        assert acked == [1] * AGENTS
        assert on_a + on_b == AGENTS, (on_a, on_b)
        assert on_a > 0 and on_b > 0, f"the kernel gave every connection to one: {on_a}, {on_b}"
        listed = rmm_json(a, "agents", "list")
        assert sorted(row["last_sequence"] for row in listed) == [1] * AGENTS
    finally:
        end_all(a, b)


def serve_refused(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [
            str(BIN / "rmm-server"), "serve", "--data-dir", str(tmp_path / "server"),
            "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen",
            f"127.0.0.1:{free_port()}", "--insecure", "--no-policies", "--reuse-port", *args,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2, result
    return result.stderr


def test_reuse_port_needs_postgresql_and_a_replica_id(pg_url: str, tmp_path: Path) -> None:
    said = serve_refused(tmp_path, "--replica-id", "r1")  # the embedded SQLite file
    assert "--reuse-port" in said and "PostgreSQL" in said, said
    said = serve_refused(tmp_path, "--db", pg_url)
    assert "--reuse-port" in said and "--replica-id" in said, said
