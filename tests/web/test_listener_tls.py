"""The HTTP listener with a TLS context, in this process's loop: TLS and plaintext on one port,
and connections that never send a byte count against the limit and are evicted to make room."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

from rmm_server import tls
from rmm_server.http_api import HttpApi
from rmm_server.web.tls_context import http_ssl_context


def client_context(data_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.pem"))
    context.check_hostname = False
    return context


async def healthz(port: int, context: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def test_tls_and_plaintext_on_one_port_and_silent_connections_evicted(tmp_path: Path) -> None:
    server_tls = tls.load_or_create(tmp_path)

    async def scenario() -> None:
        api = HttpApi(
            "127.0.0.1",
            0,
            lambda: b"",
            lambda: (True, "ok\n"),
            max_connections=3,
            idle_timeout=30.0,
            ssl_context=http_ssl_context(server_tls),
        )
        await api.start()
        silent: list[socket.socket] = []
        try:
            assert (await healthz(api.port, client_context(tmp_path))).endswith(b"ok\n")
            assert (await healthz(api.port, None)).endswith(b"ok\n")
            for _ in range(3):  # the limit, held by connections that never send a byte
                silent.append(socket.create_connection(("127.0.0.1", api.port)))
            await asyncio.sleep(1.0)  # older than EVICT_AFTER_SECONDS
            answer = await asyncio.wait_for(healthz(api.port, client_context(tmp_path)), 15)
            assert answer.endswith(b"ok\n")
            await asyncio.sleep(0.2)
            closed = 0
            for sock in silent:
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    closed += sock.recv(1) == b""
            assert closed >= 1  # evicted: its socket was closed by the server, not left open
            assert len(api._open) <= 3
        finally:
            for sock in silent:
                sock.close()
            await api.stop()

    asyncio.run(scenario())
