"""Daemon worker threads for collectors.

concurrent.futures' pool threads are joined when the interpreter exits, so one collector stuck
in a slow command (apt resolving an upgrade, a hung NFS mount) would hold the agent's exit for
as long as it takes. A service manager expects SIGTERM to end the agent within seconds; these
workers are daemon threads, abandoned at exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class DaemonPool:
    """A fixed set of daemon threads running queued calls.

    No Future is made for a call (each has a Condition of its own): the caller hands its
    results back the way it needs (rmm_agent.report gives a whole report's collectors to one
    call and waits once)."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self.size = workers
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def start(self, call: Callable[[], object]) -> None:
        """Queue `call` for the first idle worker; it must handle its own errors (one that
        escapes is logged and the worker goes on)."""
        self._jobs.put(call)

    def shutdown(self) -> None:
        """Let idle workers end; a busy one is abandoned (it is a daemon thread)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (call := self._jobs.get()) is not None:
            try:
                call()
            except Exception:  # a bug in the call must not end the worker
                log.exception("a job on %s failed", threading.current_thread().name)
