"""The storage watch and background tasks, in this process: an outage is one line each way and
one change announced each way; a failed background task is one line, not a traceback at
garbage collection."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest

from rmm_common.errors import StorageError
from rmm_server.background import BackgroundTasks, retrieve_exception
from rmm_server.health import StorageWatch


class Database:
    """A probe target that is up, down (refusing), or hanging, as the test says."""

    def __init__(self) -> None:
        self.state = "up"
        self.release = threading.Event()

    def probe(self) -> None:
        if self.state == "down":
            raise StorageError(
                "database unavailable while trying to check: connection refused\n\t(hint)"
            )
        if self.state == "hang":
            self.release.wait(10)


def test_an_outage_is_announced_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = Database()
    changes: list[bool] = []

    async def changed(reachable: bool) -> None:
        changes.append(reachable)

    async def scenario() -> None:
        watch = StorageWatch(database.probe, changed, timeout=0.5)
        assert await watch.check()
        database.state = "down"
        for _ in range(5):
            assert not await watch.check()
        assert watch.describe().startswith("storage unreachable since ")
        assert "connection refused (hint)" in watch.describe()  # one line
        database.state = "hang"  # a database that stops answering instead of refusing
        assert not await watch.check()
        assert "no answer within" in watch.error
        database.release.set()
        database.state = "up"
        await asyncio.sleep(0.1)
        assert await watch.check()
        assert await watch.check()
        await watch.stop()

    asyncio.run(scenario())
    assert changes == [False, True]
    assert caplog.text.count("storage unreachable: ") == 1
    assert caplog.text.count("storage reachable again after") == 1


def test_a_failed_background_task_is_one_line_not_a_traceback_at_collection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)

    async def fails() -> None:
        raise StorageError("database unavailable")

    async def scenario() -> None:
        tasks = BackgroundTasks()
        tasks.spawn(fails())
        await tasks.wait()
        # What a stream reads ahead and then abandons when it ends on an error.
        abandoned = asyncio.ensure_future(fails())
        abandoned.add_done_callback(retrieve_exception)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del abandoned

    asyncio.run(scenario())
    gc.collect()
    assert "never retrieved" not in caplog.text
    assert caplog.text.count("background task") == 1
