"""Daemon worker threads for collectors.

concurrent.futures' pool threads are joined when the interpreter exits, so one collector stuck
in a slow command (apt resolving an upgrade, a hung NFS mount) would hold the agent's exit for
as long as it takes. A service manager expects SIGTERM to end the agent within seconds; these
workers are daemon threads, abandoned at exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[], Any], "Future[Any]"]


class DaemonPool:
    """A fixed set of daemon threads running submitted calls, each result in a Future."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Queue `call` and return the Future of its result."""
        future: Future[T] = Future()
        self._jobs.put((call, future))
        return future

    def shutdown(self) -> None:
        """Let idle workers end; a busy one is abandoned (it is a daemon thread)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
