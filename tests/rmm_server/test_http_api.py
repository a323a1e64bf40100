"""The HTTP listener on a real socket on loopback, in this process's event loop: what /metrics
and /healthz send, and how the connection limit and the read timeout hold."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from rmm_server.http_api import HttpApi
from rmm_server.listeners import DescriptorBudget

BODY = "".join(
    f'rmm_agent_up{{client="acme",site="hq",agent="{index:032x}"}} 1\n' for index in range(2000)
).encode()


@asynccontextmanager
async def serving(
    max_connections: int = 16,
    idle_timeout: float = 10.0,
    healthy: Callable[[], tuple[bool, str]] = lambda: (True, "ok: 0 agents\n"),
    render: Callable[[], bytes] = lambda: BODY,
) -> AsyncIterator[HttpApi]:
    api = HttpApi(
        "127.0.0.1", 0, render, healthy, max_connections=max_connections, idle_timeout=idle_timeout
    )
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


async def get(port: int, path: str, *headers: str) -> tuple[bytes, bytes]:
    """GET `path` on a connection of its own; return (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        extra = "".join(f"{header}\r\n" for header in headers)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


def test_metrics_are_the_rendered_bytes_plain_or_gzipped() -> None:
    async def scenario() -> None:
        async with serving() as api:
            head, body = await get(api.port, "/metrics")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
            assert body == BODY
            head, body = await get(api.port, "/metrics?x=1", "Accept-Encoding: gzip, deflate")
            assert b"Content-Encoding: gzip" in head
            assert gzip.decompress(body) == BODY
            assert f"Content-Length: {len(body)}".encode() in head
            head, body = await get(api.port, "/other")
            assert head.startswith(b"HTTP/1.1 404") and body == b"not found: try /metrics\n"

    asyncio.run(scenario())


def test_healthz_says_what_the_server_says() -> None:
    async def scenario() -> None:
        async with serving(healthy=lambda: (False, "storage unreachable since ...\n")) as api:
            head, body = await get(api.port, "/healthz")
            assert head.startswith(b"HTTP/1.1 503") and body == b"storage unreachable since ...\n"

    asyncio.run(scenario())


def test_a_failing_render_is_500_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        def broken() -> bytes:
            raise RuntimeError("boom")

        async with serving(render=broken) as api:
            head, _ = await get(api.port, "/metrics")
            assert head.startswith(b"HTTP/1.1 500")
        assert caplog.text.count("rendering /metrics failed") == 1

    asyncio.run(scenario())


def test_concurrent_scrapes_share_one_render() -> None:
    async def scenario() -> None:
        renders = 0

        def slow() -> bytes:
            nonlocal renders
            renders += 1
            time.sleep(0.3)
            return BODY

        async with serving(render=slow) as api:
            results = await asyncio.gather(*(get(api.port, "/metrics") for _ in range(10)))
        assert all(body == BODY for _, body in results)
        assert renders <= 2  # one, or two if the first ended before the last request arrived

    asyncio.run(scenario())


def test_at_the_limit_idle_connections_make_room_and_it_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        caplog.set_level(logging.WARNING, "rmm_server.http_api")
        async with serving(max_connections=4) as api:
            idle = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(12)]
            await asyncio.sleep(0.8)  # past EVICT_AFTER_SECONDS: the first ones count as idle
            head, body = await get(api.port, "/metrics")
            assert head.startswith(b"HTTP/1.1 200") and body == BODY
            closed = 0
            for reader, writer in idle:
                try:
                    closed += await asyncio.wait_for(reader.read(1), 0.5) == b""
                except (TimeoutError, ConnectionResetError):
                    closed += 1  # reset, or never accepted (waiting in the kernel's queue)
                writer.close()
            assert closed >= 8
        assert caplog.text.count("holds its limit of 4 connections") == 1, caplog.text

    asyncio.run(scenario())


def test_a_connection_that_sends_no_complete_request_is_closed_after_the_timeout() -> None:
    async def scenario() -> None:
        async with serving(idle_timeout=1.0) as api:
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", api.port)
            slow_reader, slow = await asyncio.open_connection("127.0.0.1", api.port)
            slow.write(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            for reader in (silent_reader, slow_reader):
                assert await asyncio.wait_for(reader.read(), 5) == b""
            silent.close()
            slow.close()

    asyncio.run(scenario())


def test_a_reader_that_stops_reading_is_cut_after_the_timeout() -> None:
    async def scenario() -> None:
        big = BODY * 100  # far beyond what the socket buffers hold
        async with serving(idle_timeout=1.0, render=lambda: big) as api:
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port, limit=1024)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(3)  # read nothing: the server's writes stall, then it cuts
            received = 0
            with pytest.raises(ConnectionResetError):
                while chunk := await asyncio.wait_for(reader.read(65536), 5):
                    received += len(chunk)
            assert received < len(big)
            writer.close()

    asyncio.run(scenario())


def test_the_descriptor_budget_keeps_http_small_and_a_reserve() -> None:
    default = DescriptorBudget.for_limit(1024)
    assert default.http_connections == 256
    assert default.http_connections + default.grpc_connections + 128 == 1024
    shipped_unit = Path(__file__).parents[2] / "deploy" / "systemd" / "rmm-server.service"
    match = re.search(r"^LimitNOFILE=(\d+)$", shipped_unit.read_text(), re.MULTILINE)
    assert match, "the shipped server unit sets no LimitNOFILE="
    shipped = DescriptorBudget.for_limit(int(match.group(1)))
    assert shipped.http_connections == 256 and shipped.grpc_connections >= 60_000


def test_malformed_requests_are_refused_with_one_line_not_a_traceback_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "rmm_server")

    async def scenario() -> None:
        async with serving() as api:
            for index in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: " + b"x" * (9000 + index) + b"\r\n\r\n")
                response = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                assert response.startswith(b"HTTP/1.0 400") or response.startswith(b"HTTP/1.1 400")
            _, body = await get(api.port, "/metrics")
            assert body == BODY

    asyncio.run(scenario())
    assert "Traceback" not in caplog.text
    assert caplog.text.count("Error handling request") == 1, caplog.text
