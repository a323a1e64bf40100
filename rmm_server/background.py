"""Tasks started from callbacks and left to run: held until done, since asyncio keeps only a
weak reference to a task and one nobody holds may vanish mid-way."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """Start coroutines as tasks on the running loop and keep each until it ends."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of the running loop (call from the loop's thread)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Wait for the tasks running now; their failures are theirs to log."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
