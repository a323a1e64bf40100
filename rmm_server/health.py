"""Whether the server can do its job now: the database answers, or it does not.

A probe reads `SELECT 1` every few seconds in a thread of its own (a database that hangs
instead of refusing must not take the worker threads every other part shares), within a
timeout. The first failure logs one line saying what failed and what it means; the recovery
logs one line saying how long it lasted. In between, /healthz answers 503 and the gRPC health
service NOT_SERVING, so a load balancer sends agents and operators to a replica that can store
what they send. The other parts keep retrying on their own; they need not log every failure of
an outage already announced here (see `reachable`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

PROBE_EVERY_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0


class StorageWatch:
    """Probe the database on a schedule and announce when it stops and starts answering."""

    def __init__(
        self,
        probe: Callable[[], None],
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        *,
        every: float = PROBE_EVERY_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.probe = probe
        self.on_change = on_change
        self.every = every
        self.timeout = timeout
        self.clock = clock
        self.reachable = True
        self.error = ""
        self.down_since: float | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db-probe")
        self._pending: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._up: Gauge | None = None
        if registry is not None:
            self._up = Gauge(
                "rmm_server_storage_up",
                "1 while the database answers the server's probe (every few seconds), else 0.",
                registry=registry,
            )
            self._up.set(1)

    def start(self) -> None:
        """Start probing on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="storage-watch")

    async def stop(self) -> None:
        """Stop probing (a probe stuck in its thread is left to finish on its own)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> str:
        """Say, in one line for /healthz, why the database counts as unreachable."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since or 0))
        return f"storage unreachable since {since}: {self.error}"

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.every)

    async def check(self) -> bool:
        """Probe once (unless the last probe still hangs) and announce a change; return the
        state."""
        error = await self._probe_once()
        if error is None and not self.reachable:
            lasted = self.clock() - (self.down_since or self.clock())
            self.reachable, self.error, self.down_since = True, "", None
            log.warning(
                "storage reachable again after %.0f s unreachable: /healthz answers 200 and "
                "gRPC health SERVING",
                lasted,
            )
            await self._changed()
        elif error is not None and self.reachable:
            self.reachable, self.error, self.down_since = False, error, self.clock()
            log.error(
                "storage unreachable: %s; /healthz answers 503 and gRPC health NOT_SERVING until "
                "it answers again (probed every %.0f s; one line when it is back)",
                error,
                self.every,
            )
            await self._changed()
        elif error is not None:
            self.error = error
        return self.reachable

    async def _probe_once(self) -> str | None:
        loop = asyncio.get_running_loop()
        if self._pending is None or self._pending.done():
            self._pending = loop.run_in_executor(self._executor, self.probe)
        try:
            await asyncio.wait_for(asyncio.shield(self._pending), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:.0f} s"
        except Exception as exc:  # what the database said is the message: it is the news
            return " ".join(str(exc).split()) or type(exc).__name__
        return None

    async def _changed(self) -> None:
        if self._up is not None:
            self._up.set(1 if self.reachable else 0)
        if self.on_change is not None:
            try:
                await self.on_change(self.reachable)
            except Exception:
                log.exception("announcing the storage state (%s) failed", self.reachable)
