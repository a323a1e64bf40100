"""How fast replicas tell each other things over PostgreSQL LISTEN/NOTIFY.

Two real `rmm_server.cluster.PgCluster` replicas (a and b) run in this process on a fresh
database of the PostgreSQL server given by `--db` (dropped afterwards), each with its own
LISTEN and NOTIFY connections, as two `rmm-server serve` processes would have:

1. **presence storm**: `--agents` agents attach to replica a at once (every agent reconnecting
   after a restart or a network cut); timed until replica b knows a holds every one of them;
2. **forwarded commands**: replica a publishes one forwarded command per agent (a fan-out of
   `rmm run --target all` issued on a, agents held by b); timed until b's handler has them all;
3. **the peer, one NOTIFY per agent**: the same presence storm sent as one pg_notify per agent
   (pipelined on one connection) to a bare LISTEN connection, as a design that does not merge
   messages would; timed until the listener has them all.

Each run measures 1, 2, 3 in turn; the table shows medians over `--runs` and the ratio of 3 to 1
within each run.

Run from the repository root:

    .venv/bin/python -m bench.replica_notify --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from rmm_server.cluster import CHANNEL, PgCluster, conninfo
from rmm_server.storage.migrate import engine_url


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


async def measure_cluster(url: str, agents: list[str]) -> tuple[float, float, int]:
    """Return (presence seconds, forwarded-commands seconds, NOTIFYs the storm took)."""
    a = PgCluster(url, "bench-a", heartbeat_seconds=60)
    b = PgCluster(url, "bench-b", heartbeat_seconds=60)
    received: list[int] = [0, 0]  # forwarded pairs, messages

    def on_cmd(message: dict[str, Any]) -> None:
        received[0] += len(message["m"])
        received[1] += 1

    b.on("cmd", on_cmd)
    await a.start()
    await b.start()
    try:
        await until(lambda: a.listening.is_set() and b.listening.is_set(), 30, "listeners")
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        for agent_id in agents:
            a.attach(agent_id)
        last = agents[-1]
        await until(lambda: b.held_elsewhere(last), 300, "b to learn every agent")
        presence = time.perf_counter() - started
        missing = [agent for agent in agents if not b.held_elsewhere(agent)]
        if missing:
            raise RuntimeError(f"b missed {len(missing)} agents")
        pairs = [[agent_id, secrets.token_hex(6)] for agent_id in agents]
        started = time.perf_counter()
        a.publish("cmd", "m", pairs)
        await until(lambda: received[0] >= len(pairs), 300, "b to get every command")
        forwarded = time.perf_counter() - started
        return presence, forwarded, received[1]
    finally:
        await b.stop()
        await a.stop()


async def measure_one_per_agent(url: str, agents: list[str]) -> float:
    """Return the seconds for one NOTIFY per agent to reach a listener."""
    async with (
        await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as sender,
    ):
        await listener.execute(f"LISTEN {CHANNEL}")
        count = 0

        async def listen() -> None:
            nonlocal count
            async for _note in listener.notifies():
                count += 1
                if count >= len(agents):
                    return

        task = asyncio.create_task(listen())
        started = time.perf_counter()
        async with sender.pipeline():
            for agent_id in agents:
                payload = json.dumps({"r": "bench-a", "k": "on", "a": [agent_id]})
                await sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        await asyncio.wait_for(task, 300)
        return time.perf_counter() - started


def fresh_database(server_url: str) -> tuple[str, Callable[[], None]]:
    name = f"rmm_bench_{secrets.token_hex(6)}"
    admin = create_engine(engine_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url, drop = fresh_database(args.db)
    runs: list[dict[str, float]] = []
    try:
        for run in range(args.runs):
            agents = [secrets.token_hex(16) for _ in range(args.agents)]
            presence, forwarded, messages = await measure_cluster(url, agents)
            naive = await measure_one_per_agent(url, agents)
            figures = {
                "presence_seconds": presence,
                "presence_per_second": args.agents / presence,
                "forwarded_seconds": forwarded,
                "forwarded_per_second": args.agents / forwarded,
                "forwarded_notifies": messages,
                "one_per_agent_seconds": naive,
                "one_per_agent_per_second": args.agents / naive,
                "one_per_agent_over_merged": naive / presence,
            }
            runs.append(figures)
            print(
                f"run {run + 1}: presence {presence:.2f} s, forwarded {forwarded:.2f} s "
                f"({messages} NOTIFYs), one NOTIFY per agent {naive:.2f} s",
                flush=True,
            )
    finally:
        drop()
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {"runs": runs, "median": summary}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replica_notify",
        description="Measure what replicas tell each other over LISTEN/NOTIFY.",
    )
    parser.add_argument("--db", required=True, help="postgresql://USER@HOST:PORT/DB (a server)")
    parser.add_argument(
        "--agents", type=int, default=20_000, help="agents announced (default 20000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    result = asyncio.run(main_async(args))
    median = result["median"]
    print(f"\n{args.agents} agents, median of {args.runs} runs")
    print(
        f"  {'presence storm (merged NOTIFYs)':40} {median['presence_seconds']:8.2f} s "
        f"{median['presence_per_second']:10.0f} agents/s"
    )
    print(
        f"  {'forwarded commands':40} {median['forwarded_seconds']:8.2f} s "
        f"{median['forwarded_per_second']:10.0f} commands/s "
        f"({median['forwarded_notifies']:.0f} NOTIFYs)"
    )
    print(
        f"  {'peer: one NOTIFY per agent':40} {median['one_per_agent_seconds']:8.2f} s "
        f"{median['one_per_agent_per_second']:10.0f} agents/s"
    )
    print(f"  one NOTIFY per agent / merged: {median['one_per_agent_over_merged']:.1f}x slower")
    if args.json:
        result.update(
            agents=args.agents,
            started_at=started,
            finished_at=time.time(),
            machine={"nproc": os.cpu_count(), "python": platform.python_version()},
        )
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
