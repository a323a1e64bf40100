"""Tasks started from callbacks and left to run: held until done, since asyncio keeps only a
weak reference to a task and one nobody holds may vanish mid-way.

A task whose exception nobody reads is logged by asyncio, with its traceback, as "Task exception
was never retrieved" when it is collected: during a database outage that was one traceback per
report in flight (908 of them, 8 MB in 20 s). So every task started here has its outcome read
when it ends: by its owner (`retrieve_exception`), or here, logged once as one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def retrieve_exception(task: asyncio.Future[Any]) -> None:
    """Mark what `task` raised as read (a done callback), for a task whose awaiter may be gone.

    The awaiter, if any, still gets the exception; asyncio no longer logs it when the task is
    collected unawaited, as the tasks a stream read ahead are when the stream ends on an error.
    """
    if not task.cancelled():
        task.exception()


class BackgroundTasks:
    """Start coroutines as tasks on the running loop and keep each until it ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of the running loop (call from the loop's thread)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # read, so asyncio does not log it again at collection
        if error is not None:
            # Work is expected to log its own failures; one that escaped is a bug: say which.
            log.error("background task %s failed: %r", task.get_coro(), error)

    async def wait(self) -> None:
        """Wait for the tasks running now; their failures are theirs to log."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
