"""One asyncio lock per key (an agent id), held only while someone uses it.

A dict of locks kept forever would cost every agent a lock for the server's life; this one
drops a key's lock when its last holder or waiter leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    """Run the blocks of one key one at a time, in the order they asked (asyncio.Lock is
    FIFO); blocks of different keys run side by side."""

    def __init__(self) -> None:
        # key -> (its lock, how many hold it or wait for it)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __contains__(self, key: object) -> bool:
        """Whether a block of `key` runs or waits now."""
        return key in self._locks

    def __len__(self) -> int:
        """How many keys are held or waited for now."""
        return len(self._locks)
