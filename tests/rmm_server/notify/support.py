"""Real loopback receivers and a controllable clock for the notification tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rmm_server.notify import AlertNotice

T0 = 1_700_000_000.0


@dataclass
class Received:
    """One request the HTTP receiver got."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HttpReceiver:
    """A stdlib HTTP server on 127.0.0.1 that records JSON POSTs.

    Paths starting /fail answer 500, /bad answer 400, /hang wait until close().
    """

    requests: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with receiver.lock:
                    receiver.attempts[self.path] = receiver.attempts.get(self.path, 0) + 1
                if self.path.startswith("/hang"):
                    receiver.release.wait(30)
                    return
                if self.path.startswith("/fail"):
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                if self.path.startswith("/bad"):
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                receiver.requests.append(
                    Received(self.path, dict(self.headers.items()), json.loads(raw))
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """Return the URL of `path` on this server."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def on(self, path: str) -> list[Any]:
        """Return the JSON bodies received on `path`."""
        return [request.body for request in self.requests if request.path == path]

    def close(self) -> None:
        """Release hanging handlers and stop the server."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class FakeTime:
    """A clock and a sleep that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        """Return the fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the fake time has moved `seconds` on."""
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, waking every sleeper due by then, and let woken tasks run."""
        target = self.now + seconds
        while self._waiters and self._waiters[0][0] <= target:
            when, _, future = heapq.heappop(self._waiters)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
        self.now = target
        for _ in range(5):
            await asyncio.sleep(0)

    async def run_until(self, task: Awaitable[Any], limit: float = 10.0) -> None:
        """Wake the earliest sleeper again and again (real-time polling) until `task` is done."""
        future = asyncio.ensure_future(task)
        deadline = time.monotonic() + limit
        while not future.done():
            if time.monotonic() > deadline:
                raise AssertionError("task did not finish")
            pending = [(w, s, f) for w, s, f in self._waiters if not f.done()]
            if pending:
                when = min(pending)[0]
                await self.advance(max(0.0, when - self.now))
            await asyncio.sleep(0.005)
        await future


async def wait_for(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll `predicate` in real time until it holds; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


_BASE = AlertNotice(
    alert_id="a0",
    rule="AgentOffline",
    status="firing",
    severity="critical",
    tier="L1",
    client="acme",
    site="hq",
    agent_id="agent-0",
    hostname="ws-000",
    labels={},
    annotations={"summary": "no report for 3 intervals"},
    value=None,
    starts_at=T0 - 60,
    ends_at=None,
)


def notice(**changes: Any) -> AlertNotice:
    """Return a firing AgentOffline notice for acme/hq with `changes` applied."""
    return replace(_BASE, **changes)


def resolved(alert: AlertNotice, at: float) -> AlertNotice:
    """Return `alert` resolved at `at`."""
    return replace(alert, status="resolved", ends_at=at)
