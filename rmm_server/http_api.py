"""The HTTP listener: /metrics for Prometheus and /healthz for load balancers and humans.

It runs on the server's asyncio loop (aiohttp), beside the gRPC server, and holds at most
`max_connections` connections, so that nobody who reaches the HTTP port can use up the
process's file descriptors and take gRPC, the database pool and the log down with it:

- every connection must send a complete request within `idle_timeout` of connecting or of its
  last response (aiohttp's keep-alive timer, armed from the first byte), and one whose reader
  stops taking a response for that long is cut;
- at the limit, the connection idle for longest (no request being served, none in the last
  EVICT_AFTER_SECONDS) is closed to make room; when every connection is busy, new ones wait in
  the kernel's accept queue, where they cost the process nothing;
- reaching the limit is logged once a minute at most, with how many were closed since.

Rendering /metrics runs in a thread of its own, one render at a time: concurrent scrapes share
the render in progress, so a flood of GETs costs one render, not one each. `/metrics?shard=K&of=N`
serves one of N parts of the fleet (exporter.Shard), so that several scrape jobs split a large
fleet; gzip comes from the renderer when it offers it (a stream of members compressed once per
change), else the page is compressed here.

Why aiohttp and not Starlette on uvicorn (measured on this 2-core machine; commands in
docs/deployment.md): /metrics throughput was the same within the noise of the shared machine
(1 MB body: 400 vs 330-445 requests/s; gzipped: 170-300 vs 180-350), since rendering and gzip
dominate; neither closed a connection that never sent a request (0 of 200 within 40 s), so the
connection bound and idle eviction are ours either way. aiohttp's AppRunner is its documented
way to serve inside a running loop, while uvicorn's Server.serve() takes over SIGINT and SIGTERM
with signal.signal(), replacing the handlers `rmm-server serve` sets on its loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import gzip
import logging
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry, Counter, Gauge

from rmm_server.exporter import Shard

log = logging.getLogger(__name__)
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"
# A connection that has not started a request for this long may be closed to make room. Long
# enough for a client that just connected to send its request even on a loaded machine.
EVICT_AFTER_SECONDS = 0.5
DEFAULT_IDLE_TIMEOUT_SECONDS = 10.0
# Connections waiting to be accepted are held by the kernel, not by this process.
ACCEPT_BACKLOG = 1024
LIMIT_LOG_EVERY_SECONDS = 60.0
# Errors of accept() that mean "out of descriptors or memory": wait, do not spin.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class RateLimitedLog:
    """Log a warning about a condition at most once per `every` seconds, counting the rest."""

    def __init__(self, every: float = LIMIT_LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._last = -float("inf")
        self._suppressed = 0

    def hit(self, message: str, *args: object, now: float | None = None) -> None:
        """Note one occurrence; log it unless one was logged within `every` seconds."""
        now = time.monotonic() if now is None else now
        if now - self._last < self.every:
            self._suppressed += 1
            return
        since = f" ({self._suppressed} more since the last such line)" if self._suppressed else ""
        log.warning(message + since, *args)
        self._last = now
        self._suppressed = 0


class _RequestErrors(logging.Logger):
    """aiohttp's server logger: what it logs as an exception with a traceback (a malformed
    request, a header too long, a peer gone mid-response) is what anyone who reaches the port
    can send at will, so it becomes one line, at most once a minute."""

    def __init__(self) -> None:
        super().__init__("rmm_server.http_api.requests")
        self.parent = log
        self._limited = RateLimitedLog()

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        text = str(msg) % args if args else str(msg)
        self._limited.hit("HTTP: %s: %s", text, " ".join(str(error).split()) or repr(error))

    error = exception


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol, wrapped to see when it is idle."""

    def __init__(self, inner: RequestHandler, pool: HttpApi, now: float) -> None:
        self.inner = inner
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.last_active = now
        self.requests = 0  # being served now
        self.fresh = True  # no byte since it connected or since its last response
        self.write_paused = False
        self._stall: asyncio.TimerHandle | None = None
        self.sniffing: asyncio.Task[None] | None = None  # waiting for the first byte
        self.waiting: socket.socket | None = None  # the socket, while that wait lasts
        self.starting = False  # first byte seen, being handed to the protocol (TLS handshake)

    def evictable(self, now: float) -> bool:
        """Say whether closing this connection loses no request being served or just sent."""
        if self.starting or (self.waiting is not None and _has_bytes(self.waiting)):
            # Its first bytes arrived (or its TLS handshake runs): a request is on its way.
            return False
        return (
            self.requests == 0
            and not self.write_paused
            and now - self.last_active >= EVICT_AFTER_SECONDS
        )

    def abort(self) -> None:
        """Close at once: the descriptor is free in the next loop iteration."""
        if self.transport is None:
            self._stop_sniffing()
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: a reset, and the kernel drops what is still unsent, instead of trickling
            # it to a peer that does not read (which is why it is being cut).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def close_idle(self) -> None:
        """Close an idle connection gracefully: a response it was just sent, still in the
        kernel's buffers, reaches the client before the FIN (a reset would drop it)."""
        if self.transport is not None:
            self.transport.close()
        else:
            self._stop_sniffing()

    def _stop_sniffing(self) -> None:
        # Still waiting for its first byte (TLS or not): that wait closes the socket.
        if self.sniffing is not None:
            self.sniffing.cancel()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.fresh:  # the first bytes of a request: give it time to arrive whole
            self.fresh = False
            self.last_active = time.monotonic()
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def pause_writing(self) -> None:
        # The peer stopped reading a response: cut it if it does not resume within the timeout.
        self.write_paused = True
        self._stall = asyncio.get_running_loop().call_later(self.pool.idle_timeout, self.abort)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_active = time.monotonic()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._stall is not None:
            self._stall.cancel()
        self.pool._forget(self)
        self.inner.connection_lost(exc)


@dataclass(slots=True)
class _Rendered:
    body: bytes | None  # None: rendering failed (logged once, not per request)


@runtime_checkable
class MetricsSource(Protocol):
    """What serves /metrics: the whole page or one shard, plain or gzip-compressed."""

    def scrape(self, shard: Shard | None, compressed: bool) -> bytes: ...


class HttpApi:
    """Serve /metrics and /healthz on the running asyncio loop, within a connection limit."""

    def __init__(
        self,
        host: str,
        port: int,
        render_metrics: Callable[[], bytes] | MetricsSource,
        healthy: Callable[[], tuple[bool, str]],
        *,
        max_connections: int,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        registry: CollectorRegistry | None = None,
        routes: Callable[[web.Application], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        # More routes (the dashboard, rmm_server/web), added before the catch-all 404.
        self.routes = routes
        # With a context, a connection whose first byte opens a TLS handshake is served over
        # TLS and any other in plaintext, on the same port: /metrics stays as scrapers have it
        # and the dashboard gets HTTPS (it refuses plaintext unless the server is --insecure).
        self.ssl_context = ssl_context
        self.requested_port = port
        self.render_metrics = render_metrics
        self.healthy = healthy
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._runner: web.AppRunner | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._open: dict[_Connection, None] = {}  # in accept order
        self._freed = asyncio.Event()
        self._full_log = RateLimitedLog()
        self._accept_log = RateLimitedLog()
        self._renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self._rendering: dict[tuple[Shard | None, bool], asyncio.Future[_Rendered]] = {}
        self._closed_for_room: Counter | None = None
        self._sniffing: set[asyncio.Task[None]] = set()
        if registry is not None:
            gauge = Gauge(
                "rmm_server_http_connections",
                "HTTP connections open now (at most rmm_server_http_connections_max).",
                registry=registry,
            )
            gauge.set_function(lambda: len(self._open))
            Gauge(
                "rmm_server_http_connections_max",
                "The most HTTP connections held at once; set from the descriptor limit.",
                registry=registry,
            ).set(max_connections)
            self._closed_for_room = Counter(
                "rmm_server_http_connections_closed_for_room",
                "Idle HTTP connections closed to make room for new ones at the limit.",
                registry=registry,
            )

    @property
    def port(self) -> int:
        """Return the port actually bound (useful when 0 was asked)."""
        if self._sock is None:
            return self.requested_port
        return int(self._sock.getsockname()[1])

    @property
    def address(self) -> str:
        """Return HOST:PORT as bound, for log lines."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind (raising OSError if the address is taken) and start serving on this loop."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # SO_REUSEADDR (restart over TIME_WAIT) but never SO_REUSEPORT: a second server on the
        # same port must fail here instead of sharing the port.
        self._sock = socket.create_server(
            (self.host, self.requested_port),
            family=family,
            backlog=ACCEPT_BACKLOG,
            dualstack_ipv6=self.host == "::",  # every address, as 0.0.0.0 is for IPv4
        )
        self._sock.setblocking(False)
        app = web.Application(middlewares=[self._track])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        if self.routes is not None:
            self.routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # keepalive_timeout: aiohttp closes a connection with no complete request this long
        # after it connected or after its last response (its read timeout).
        self._runner = web.AppRunner(
            app,
            access_log=None,
            logger=_RequestErrors(),
            keepalive_timeout=self.idle_timeout,
            shutdown_timeout=2.0,
        )
        await self._runner.setup()
        self._accepting = asyncio.get_running_loop().create_task(
            self._accept_forever(), name="http-accept"
        )

    async def stop(self) -> None:
        """Stop accepting, close every connection and the socket."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        for task in list(self._sniffing):
            task.cancel()
        if self._sock is not None:
            self._sock.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for conn in list(self._open):
            conn.abort()
        self._renderer.shutdown(wait=False, cancel_futures=True)

    # The listener.

    async def _accept_forever(self) -> None:
        assert self._sock is not None and self._runner is not None
        loop = asyncio.get_running_loop()
        handler_factory = self._runner.server
        assert handler_factory is not None
        while True:
            await self._make_room()
            try:
                sock, _peer = await loop.sock_accept(self._sock)
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._accept_log.hit(
                        "HTTP on %s cannot accept: %s; waiting 1 s (raise LimitNOFILE= in the "
                        "service unit, or find what holds the descriptors)",
                        self.address,
                        exc,
                    )
                    await asyncio.sleep(1.0)
                continue  # ECONNABORTED and friends: that peer gave up, take the next
            conn = _Connection(handler_factory(), self, time.monotonic())
            self._open[conn] = None
            if self.ssl_context is None:
                await self._serve(conn, sock, None)
            else:
                # Sniffing waits for the peer's first byte: not in this loop, which accepts.
                task = loop.create_task(self._sniff_and_serve(conn, sock))
                conn.sniffing = task
                self._sniffing.add(task)
                task.add_done_callback(self._sniffing.discard)
            # sock_accept() returns without yielding while connections are queued: let the
            # requests already accepted be served between two accepts.
            await asyncio.sleep(0)

    async def _serve(
        self, conn: _Connection, sock: socket.socket, context: ssl.SSLContext | None
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda conn=conn: conn,  # type: ignore[misc]
                sock,
                ssl=context,
                ssl_handshake_timeout=self.idle_timeout if context is not None else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            self._forget(conn)
            sock.close()

    async def _sniff_and_serve(self, conn: _Connection, sock: socket.socket) -> None:
        """Serve TLS when the first byte is a handshake record (0x16), plaintext otherwise.

        Cancelled (the server stops, or the connection is evicted to make room) or silent for
        the idle timeout, the socket is closed here, after its reader is removed.
        """
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        fd = sock.fileno()
        loop.add_reader(fd, ready)
        conn.waiting = sock
        first = b""
        try:
            await asyncio.wait_for(readable, self.idle_timeout)
            first = sock.recv(1, socket.MSG_PEEK)
        except (TimeoutError, OSError):
            pass
        finally:
            loop.remove_reader(fd)
            conn.sniffing = None
            conn.waiting = None
            if not first:  # silent, gone, evicted or the server stopping
                self._forget(conn)
                sock.close()
        if first:
            conn.starting = True
            try:
                await self._serve(conn, sock, self.ssl_context if first == b"\x16" else None)
            finally:
                conn.starting = False
                # Its request is still to be read: not idle since it connected.
                conn.last_active = time.monotonic()

    async def _make_room(self) -> None:
        """Return once a connection may be accepted, closing the longest-idle one if need be."""
        while len(self._open) >= self.max_connections:
            now = time.monotonic()
            idle = [conn for conn in self._open if conn.evictable(now)]
            if idle:
                victim = min(idle, key=lambda conn: conn.last_active)
                self._forget(victim)  # counted free now: its descriptor closes this iteration
                victim.close_idle()
                if self._closed_for_room is not None:
                    self._closed_for_room.inc()
                self._note_full()
                return
            self._note_full()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), EVICT_AFTER_SECONDS / 2)

    def _note_full(self) -> None:
        self._full_log.hit(
            "HTTP on %s holds its limit of %d connections: the longest idle are closed to make "
            "room, new ones wait to be accepted while all are busy (is a client opening "
            "connections it does not use? the limit follows LimitNOFILE=)",
            self.address,
            self.max_connections,
        )

    def _forget(self, conn: _Connection) -> None:
        if self._open.pop(conn, 0) is None:
            self._freed.set()

    def _connection_of(self, request: web.BaseRequest) -> _Connection | None:
        transport = request.transport
        if transport is None:
            return None
        protocol = transport.get_protocol()
        return protocol if isinstance(protocol, _Connection) else None

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self._connection_of(request)
        if conn is None:
            return await handler(request)
        conn.requests += 1
        try:
            return await handler(request)
        finally:
            conn.requests -= 1
            conn.last_active = time.monotonic()
            conn.fresh = True

    # The endpoints.

    async def _metrics(self, request: web.Request) -> web.Response:
        compressed = "gzip" in request.headers.get("Accept-Encoding", "")
        try:
            shard = Shard.parse(request.query.get("shard"), request.query.get("of"))
        except ValueError as exc:
            return _text(400, f"{exc}\n".encode())
        if shard is not None and not isinstance(self.render_metrics, MetricsSource):
            return _text(400, b"this server's /metrics is not sharded: scrape /metrics\n")
        rendered = await self._render_shared(shard, compressed)
        if rendered.body is None:
            return _text(500, b"rendering metrics failed; see the server log\n")
        headers = {"Content-Type": CONTENT_TYPE_METRICS}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.body, headers=_with_server(headers))

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, text = self.healthy()
        return _text(200 if ok else 503, text.encode())

    async def _not_found(self, _request: web.Request) -> web.Response:
        return _text(404, b"not found: try /metrics\n")

    async def _render_shared(self, shard: Shard | None, compressed: bool) -> _Rendered:
        """Render in the metrics thread; requests for the same page (shard, encoding) arriving
        meanwhile share that render."""
        key = (shard, compressed)
        pending = self._rendering.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._renderer, self._render, shard, compressed)
            self._rendering[key] = pending
            pending.add_done_callback(lambda _done: self._rendering.pop(key, None))
        # shield: a client hanging up does not cancel the render the others wait for.
        return await asyncio.shield(pending)

    def _render(self, shard: Shard | None, compressed: bool) -> _Rendered:
        try:
            source = self.render_metrics
            if isinstance(source, MetricsSource):
                return _Rendered(source.scrape(shard, compressed))
            body = source()
            return _Rendered(gzip.compress(body, 1) if compressed else body)
        except Exception:
            log.exception("rendering /metrics failed")
            return _Rendered(None)


def _has_bytes(sock: socket.socket) -> bool:
    """Say whether a peer has sent something not read yet, without reading it."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))  # b"": it hung up
    except OSError:  # BlockingIOError: nothing yet; anything else: nothing to lose either
        return False


def _with_server(headers: dict[str, str]) -> dict[str, str]:
    # Name the program, not the HTTP library and its version.
    return {**headers, "Server": "rmm-server"}


def _text(status: int, body: bytes) -> web.Response:
    return web.Response(
        status=status, body=body, headers=_with_server({"Content-Type": CONTENT_TYPE_TEXT})
    )
