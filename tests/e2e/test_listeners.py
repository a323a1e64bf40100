"""The server's listeners under abuse, with the real server process: a flood of idle HTTP
connections under the shipped descriptor limit leaves gRPC answering; many concurrent GETs are
all answered; a second server on a busy gRPC port exits instead of sharing it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc
from tests.helpers import BIN, ServerProcess, enroll_agent, free_port, http_get, wait_for

# The descriptor limit of a systemd service that does not set LimitNOFILE=.
SHIPPED_DEFAULT_LIMIT = 1024
FLOOD_CONNECTIONS = 1200
FLOOD_SECONDS = 12.0


class LimitedServer(ServerProcess):
    """A server process started with RLIMIT_NOFILE at `nofile` (soft and hard), so it cannot
    raise its own."""

    nofile = SHIPPED_DEFAULT_LIMIT

    def command(self) -> list[str]:
        # prlimit(1) sets the limit and execs the server: no preexec_fn in a threaded test run.
        # ServerProcess.start() runs it, and kills it when it never answers.
        return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *super().command()]


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[LimitedServer]:
    server = LimitedServer(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
    ).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def enough_descriptors(needed: int) -> Iterator[None]:
    """Let this test process hold `needed` more sockets than usual, for the flood."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class IdleFlood:
    """Keep `count` TCP connections open to a port, reopening those the server closes, as an
    attacker would, for at most `seconds`.

    Half send nothing at all; half send the first line of a request and nothing more. Those
    bytes matter: a connection the server has not accepted yet, whose handshake the kernel
    finished with a SYN cookie, exists only on the client's side until it sends something, and
    a server that gives each connection a thread blocked on reading its request is exhausted by
    the ones that did.
    """

    def __init__(self, port: int, count: int, seconds: float) -> None:
        self.port = port
        self.count = count
        self.deadline = time.monotonic() + seconds
        self.opened = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._unsent: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> IdleFlood:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._sockets:
            sock.close()

    def _open_one(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            return
        self._sockets.append(sock)
        if self.opened % 2:
            self._unsent.add(sock)
        self.opened += 1

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            alive: list[socket.socket] = []
            for sock in self._sockets:
                try:
                    gone = sock.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if not gone and sock in self._unsent:
                    with contextlib.suppress(BlockingIOError):  # still connecting
                        sock.send(b"GET /metrics HTTP/1.1\r\n")
                        self._unsent.discard(sock)
                if gone:
                    self.closed_by_server += 1
                    self._unsent.discard(sock)
                    sock.close()
                else:
                    alive.append(sock)
            self._sockets = alive
            # A few at a time: a burst beyond the server's accept queue mostly waits in the
            # kernel's SYN retries, which would spare a server that should be exhausted.
            for _ in range(min(4, self.count - len(self._sockets))):
                self._open_one()
            self._stop.wait(0.005 if len(self._sockets) < self.count else 0.2)


def timed(call: object) -> float:
    """Run `call()` and return how long it took."""
    assert callable(call)
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_idle_http_flood_under_the_default_descriptor_limit_leaves_grpc_answering(
    limited_server: LimitedServer, tmp_path: Path
) -> None:
    server = limited_server
    agent_id = enroll_agent(server, tmp_path / "agent")
    identity = json.loads((tmp_path / "agent" / "identity.json").read_text())
    channel = grpc.insecure_channel(server.grpc_address)
    operators = operator_pb2_grpc.OperatorServiceStub(channel)
    agents = agent_pb2_grpc.AgentServiceStub(channel)
    sequence = 0

    def list_agents() -> None:
        reply = operators.ListAgents(
            operator_pb2.ListAgentsRequest(),
            metadata=bearer_metadata(server.admin_token),
            timeout=5,
        )
        assert [agent.id for agent in reply.agents] == [agent_id]

    def report() -> None:
        nonlocal sequence
        sequence += 1
        sent = agent_pb2.Report(
            sequence=sequence,
            collected_at=time.time(),
            interval_seconds=30,
            agent_version="flood-test",
        )
        [ack] = list(
            agents.StreamReports(
                iter([sent]), metadata=bearer_metadata(identity["credential"]), timeout=5
            )
        )
        assert ack.sequence == sequence and not ack.rejected, ack

    try:
        list_agents()  # the channel is up before the flood, as an agent's would be
        report()
        with (
            enough_descriptors(FLOOD_CONNECTIONS),
            IdleFlood(server.http_port, FLOOD_CONNECTIONS, FLOOD_SECONDS) as flood,
        ):
            wait_for(lambda: flood.opened >= FLOOD_CONNECTIONS, 10, "the flood's connections")
            time.sleep(2)  # well past the point where a thread per connection ran out
            assert server.process is not None
            descriptors = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            slowest_call = max(timed(list_agents) for _ in range(3))
            slowest_report = max(timed(report) for _ in range(3))
            # A new operator connection too, not only the one opened before the flood.
            fresh = grpc.insecure_channel(server.grpc_address)
            try:
                started = time.monotonic()
                operator_pb2_grpc.OperatorServiceStub(fresh).ListAgents(
                    operator_pb2.ListAgentsRequest(),
                    metadata=bearer_metadata(server.admin_token),
                    timeout=5,
                )
                fresh_call = time.monotonic() - started
            finally:
                fresh.close()
            status, body = http_get(server.http_url + "/metrics", timeout=10)
            assert status == 200 and b"rmm_server_http_connections" in body
            opened, closed = flood.opened, flood.closed_by_server
        assert slowest_call < 1.0, f"an operator call took {slowest_call:.2f} s during the flood"
        assert slowest_report < 1.0, f"a report took {slowest_report:.2f} s during the flood"
        assert fresh_call < 1.0, f"a new operator connection took {fresh_call:.2f} s"
        assert closed > 0, f"the server closed none of {opened} idle connections"
        assert descriptors < SHIPPED_DEFAULT_LIMIT - 100, f"{descriptors} descriptors open"
        assert server.process is not None and server.process.poll() is None
        log = server.log()
        # Once a minute at most, not once a connection.
        assert log.count("holds its limit of 256 connections") == 1, log
        assert "Too many open files" not in log
    finally:
        channel.close()


async def get_all(port: int, count: int, timeout: float) -> list[str]:
    """Send `count` GETs at once, each on its own connection; return each status line or
    what went wrong."""

    async def get(index: int) -> str:
        path = "/metrics" if index % 2 else "/healthz"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(
                        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                    )
                    response = await reader.read()
                finally:
                    writer.close()
        except (TimeoutError, OSError) as exc:
            return type(exc).__name__
        return response.split(b"\r\n", 1)[0].decode()

    return await asyncio.gather(*(get(index) for index in range(count)))


def test_a_thousand_concurrent_gets_are_all_answered(server: ServerProcess) -> None:
    with enough_descriptors(1000):
        outcomes = asyncio.run(get_all(server.http_port, 1000, timeout=10.0))
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    answered = sum(n for outcome, n in counts.items() if outcome.endswith(" 200 OK"))
    assert answered == 1000, counts


def test_a_second_server_on_a_busy_grpc_port_exits_naming_the_address(
    server: ServerProcess, tmp_path: Path
) -> None:
    second = subprocess.run(
        [
            str(BIN / "rmm-server"),
            "serve",
            "--data-dir",
            str(tmp_path / "second"),
            "--grpc-listen",
            server.grpc_address,
            "--http-listen",
            f"127.0.0.1:{free_port()}",
            "--insecure",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert f"cannot listen on {server.grpc_address} for gRPC: address already in use" in (
        second.stderr
    ), second.stderr
    assert "--grpc-listen" in second.stderr
    # The first one still has the port to itself.
    status, _ = http_get(server.http_url + "/healthz")
    assert status == 200


def test_a_second_server_on_a_busy_http_port_exits_naming_the_address(
    server: ServerProcess, tmp_path: Path
) -> None:
    second = subprocess.run(
        [
            str(BIN / "rmm-server"),
            "serve",
            "--data-dir",
            str(tmp_path / "second"),
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{server.http_port}",
            "--insecure",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert (
        f"cannot listen on 127.0.0.1:{server.http_port} for HTTP: address already in use"
        in second.stderr
    ), second.stderr
    assert "--http-listen" in second.stderr


def test_idle_grpc_connections_cannot_take_every_descriptor(
    limited_server: LimitedServer, tmp_path: Path
) -> None:
    server = limited_server
    channel = grpc.insecure_channel(server.grpc_address)
    operators = operator_pb2_grpc.OperatorServiceStub(channel)

    def list_agents() -> None:
        operators.ListAgents(
            operator_pb2.ListAgentsRequest(),
            metadata=bearer_metadata(server.admin_token),
            timeout=5,
        )

    try:
        list_agents()  # an operator (or agent) connected before the flood
        with (
            enough_descriptors(FLOOD_CONNECTIONS),
            IdleFlood(server.grpc_port, FLOOD_CONNECTIONS, FLOOD_SECONDS) as flood,
        ):
            wait_for(lambda: flood.opened >= FLOOD_CONNECTIONS, 10, "the flood's connections")
            time.sleep(2)
            assert server.process is not None
            descriptors = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            slowest_call = max(timed(list_agents) for _ in range(3))
            status, _ = http_get(server.http_url + "/healthz", timeout=5)
            closed = flood.closed_by_server
        assert descriptors < SHIPPED_DEFAULT_LIMIT - 50, f"{descriptors} descriptors open"
        assert closed > 0, "gRPC closed none of the connections beyond its share"
        assert slowest_call < 1.0, f"an operator call took {slowest_call:.2f} s"
        assert status == 200
        # Once the flood is gone, a new connection is served again.
        wait_for(
            lambda: timed(lambda: lists_on_a_new_channel(server)) < 5, 30, "a new gRPC connection"
        )
    finally:
        channel.close()


def lists_on_a_new_channel(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_address) as fresh:
        operator_pb2_grpc.OperatorServiceStub(fresh).ListAgents(
            operator_pb2.ListAgentsRequest(),
            metadata=bearer_metadata(server.admin_token),
            timeout=5,
        )
