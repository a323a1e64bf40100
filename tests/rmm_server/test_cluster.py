"""Replicas on the real PostgreSQL: leader election by advisory lock, and what replicas tell each
other over LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rmm_server.cluster import (
    MAX_PAYLOAD_BYTES,
    Cluster,
    Export,
    LeaderElection,
    PgCluster,
    conninfo,
    pack,
)
from rmm_server.operators import ADMIN_TOKEN_FILE, Operators
from rmm_server.storage import open_store

RETRY = 0.2


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for `predicate`; return the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def terminate(url: str, application_name: str) -> int:
    """End the server sessions of an application name, as a crashed host's would end."""
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))


def test_one_of_two_leads_and_the_other_takes_over_when_it_stops(pg_url: str) -> None:
    async def scenario() -> None:
        first = LeaderElection(pg_url, "one", retry_seconds=RETRY)
        second = LeaderElection(pg_url, "two", retry_seconds=RETRY)
        tasks = [asyncio.create_task(first.run())]
        await until(lambda: first.is_leader, 10, "the first to lead")
        tasks.append(asyncio.create_task(second.run()))
        await asyncio.sleep(RETRY * 5)  # several attempts by the second
        assert (first.is_leader, second.is_leader) == (True, False)

        await first.stop()
        took = await until(lambda: second.is_leader, 10, "the second to take over")
        assert not first.is_leader
        assert took < 3.0  # the second tries every 0.2 s; 3 s leaves room for a busy machine
        await second.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario())


def test_a_leader_whose_session_dies_steps_down_and_the_lock_moves(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rmm_server.cluster")
    changes: list[tuple[str, bool]] = []

    async def scenario() -> None:
        first = LeaderElection(
            pg_url, "one", retry_seconds=RETRY, on_change=lambda on: changes.append(("one", on))
        )
        second = LeaderElection(
            pg_url, "two", retry_seconds=RETRY, on_change=lambda on: changes.append(("two", on))
        )
        tasks = [asyncio.create_task(first.run())]
        await until(lambda: first.is_leader, 10, "the first to lead")
        tasks.append(asyncio.create_task(second.run()))
        await asyncio.sleep(RETRY * 3)
        # The database ends the leader's session (as when its host dies): the lock goes with
        # it, the old leader notices at its next check, the other takes the lock.
        assert await terminate(pg_url, "rmm-server one leader") == 1
        await until(lambda: second.is_leader, 10, "the second to take over")
        await until(lambda: not first.is_leader, 10, "the first to step down")
        await asyncio.sleep(RETRY * 5)  # the first reconnects but cannot take it back
        assert (first.is_leader, second.is_leader) == (False, True)
        for election in (first, second):
            await election.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario())
    assert changes[:3] in (
        [("one", True), ("one", False), ("two", True)],
        [("one", True), ("two", True), ("one", False)],
    )
    assert "replica one stopped leading the scheduler: its database session was lost" in caplog.text


def test_a_replica_alone_on_sqlite_leads_and_exports_everything() -> None:
    alone = Cluster("solo")
    assert alone.is_leader and not alone.replicated
    assert not alone.held_elsewhere("a1")
    assert alone.export_of("a1") == Export.FULL


def test_payloads_stay_under_the_notify_limit() -> None:
    values = [[f"{i:032x}", f"{i:012x}"] for i in range(2000)]
    payloads = pack("replica-with-a-long-name:50051", "cmd", "m", values)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES < 8000 for p in payloads)
    assert [v for p in payloads for v in json.loads(p)["m"]] == values


def test_replicas_learn_presence_messages_and_reconnect(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rmm_server.cluster")
    got: list[dict[str, Any]] = []
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    async def scenario() -> None:
        a = PgCluster(pg_url, "a", leader_retry_seconds=RETRY, heartbeat_seconds=0.2)
        b = PgCluster(
            pg_url,
            "b",
            leader_retry_seconds=RETRY,
            heartbeat_seconds=0.2,
            on_reconnect=on_reconnect,
        )
        b.on("cmd", got.append)
        await a.start()
        await until(lambda: a.is_leader, 10, "a to lead")
        await b.start()
        await until(lambda: a.listening.is_set() and b.listening.is_set(), 10, "both listening")

        # An agent attached to A before B listened is announced again when B says "up".
        a.attach("agent-1")
        await until(lambda: b.held_elsewhere("agent-1"), 5, "B to know A holds agent-1")
        assert b.export_of("agent-1") == Export.NONE
        assert a.export_of("agent-1") == Export.FULL
        assert b.live_replicas() == ["a", "b"]

        # Big messages arrive whole, cut under the NOTIFY limit.
        pairs = [[f"agent-{i}", f"command-{i}"] for i in range(600)]
        a.publish("cmd", "m", pairs)
        await until(lambda: sum(len(m["m"]) for m in got) == 600, 5, "all 600 pairs at B")
        assert [pair for m in got for pair in m["m"]] == pairs and len(got) > 1

        # The agent moves to B: B exports it, A stops.
        b.attach("agent-1")
        await until(lambda: a.held_elsewhere("agent-1"), 5, "A to see agent-1 moved to B")
        assert a.export_of("agent-1") == Export.NONE and b.export_of("agent-1") == Export.FULL
        a.detach("agent-1")
        await asyncio.sleep(0.3)
        assert a.held_elsewhere("agent-1")  # A's late "off" does not undo B's "on"

        # B's LISTEN session is killed: it says so, reconnects and reads back what it missed.
        assert await terminate(pg_url, "rmm-server b listen") == 1
        await until(reconnected.is_set, 10, "B to listen again")
        b.detach("agent-1")
        await until(lambda: not a.held_elsewhere("agent-1"), 5, "A to see agent-1 leave B")
        # A leads; an agent connected nowhere is A's to show (up or down), not B's.
        assert a.export_of("agent-1") == Export.STATE and b.export_of("agent-1") == Export.NONE
        await b.stop()
        await a.stop()

    run(scenario())
    assert "lost the PostgreSQL LISTEN connection of replica b" in caplog.text
    assert "listening to the other replicas again" in caplog.text


def test_two_replicas_bootstrapping_at_once_leave_one_admin_and_one_token(
    pg_url: str, tmp_path: Path
) -> None:
    stores = [open_store(pg_url) for _ in range(2)]
    dirs = [tmp_path / "one", tmp_path / "two"]
    for directory in dirs:
        directory.mkdir()
    try:
        for _ in range(5):
            for store in stores:
                with store.transaction("reset") as conn:
                    conn.exec_driver_sql("DELETE FROM operators")
            for directory in dirs:
                (directory / ADMIN_TOKEN_FILE).unlink(missing_ok=True)
            barrier = threading.Barrier(2)
            results: list[Path | BaseException | None] = [None, None]

            def start(
                index: int,
                barrier: threading.Barrier = barrier,
                results: list[Path | BaseException | None] = results,
            ) -> None:
                barrier.wait()
                try:
                    results[index] = Operators(stores[index]).bootstrap_admin(dirs[index])
                except BaseException as error:  # reported below
                    results[index] = error

            threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert not any(isinstance(r, BaseException) for r in results), results
            written = [p for p in results if isinstance(p, Path)]
            assert len(written) == 1
            assert [d for d in dirs if (d / ADMIN_TOKEN_FILE).exists()] == [written[0].parent]
            token = written[0].read_text().strip()
            assert Operators(stores[0]).authenticate(token).name == "admin"
            assert stores[0].count_operators() == 1
    finally:
        for store in stores:
            store.close()


def test_a_replica_with_other_keys_is_named_in_the_log(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "rmm_server.cluster")

    async def scenario() -> None:
        a = PgCluster(pg_url, "a", leader_retry_seconds=RETRY, heartbeat_seconds=0.1)
        b = PgCluster(pg_url, "b", leader_retry_seconds=RETRY, heartbeat_seconds=0.1)
        c = PgCluster(pg_url, "c", leader_retry_seconds=RETRY, heartbeat_seconds=0.1)
        a.keys = b.keys = ["signing:1111", "ca:2222"]
        c.keys = ["signing:3333", "ca:2222"]
        for replica in (a, b, c):
            await replica.start()
        await until(
            lambda: "replica c has another command-signing key" in caplog.text,
            10,
            "a or b to name c",
        )
        await asyncio.sleep(0.5)  # several heartbeats: said once per replica, not each time
        for replica in (c, b, a):
            await replica.stop()

    run(scenario())
    pattern = re.compile(r"^replica (\S+) has another command-signing key .* this replica (\S+) ")
    named = sorted(
        match.groups()
        for record in caplog.records
        if (match := pattern.match(record.getMessage())) is not None
    )
    # Each pair that differs is named once from each side; a and b agree.
    assert named == [("a", "c"), ("b", "c"), ("c", "a"), ("c", "b")]
