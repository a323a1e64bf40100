"""Patching at fleet scale: the central view, one approval across every agent, and what
detection adds to a report, over `--agents` (10,000) agents with `--updates` (50) each.

In-process, on a real database (a temporary SQLite file, or `--db postgresql://...`, where a
fresh database is created and dropped): the agents' lists are stored through the real ingest
hook (PatchInventory.observe, the shipped patch policy deciding each update), then:
- list: `rmm patches list`'s server side (PatchOperations.fleet_list plus the response message
  the servicer builds), every agent and one client's;
- approve: `rmm patches approve ID` everywhere (the record, then every agent's row of that
  update decided again and written), alternating with decline so that each call changes rows;
- detection: the CPU observe() costs on a report whose list did not change (the common case: the
  digest only), against the server's own CPU for that report (bench.report_path's stages on the
  same real report of this host), and the cost of a report that brings a changed list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.report_path import build_report, stages
from rmm_agent.patching.base import PendingUpdate
from rmm_proto import agent_pb2, operator_pb2
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.patch_api import fleet_update
from rmm_server.patching.inventory import PatchInventory, list_digest, settings_from
from rmm_server.patching.model import APPROVE, DECLINE, EVERYWHERE
from rmm_server.patching.operations import PatchOperations
from rmm_server.policy import load_policy_dir
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.migrate import engine_url

ROOT = Path(__file__).resolve().parent.parent
COMMON = "apt:openssl"  # listed by every agent: the one approved across the fleet


def update_pool(size: int) -> list[PendingUpdate]:
    """Return `size` distinct updates, as an apt backend would list them."""
    rng = random.Random(7)
    pool = [
        PendingUpdate(
            COMMON, "openssl", "3.0.11-1", "3.0.15-1", "security", "apt", "bookworm-security"
        )
    ]
    for index in range(size - 1):
        name = f"pkg{index:04}"
        pool.append(
            PendingUpdate(
                f"apt:{name}", name, "1.0-1", f"1.{rng.randint(1, 9)}-1",
                rng.choice(("security", "bugfix")), "apt", "bookworm",
                published=1_700_000_000.0 + rng.randint(0, 10_000_000),
                size_bytes=rng.randint(10_000, 5_000_000),
            )
        )  # fmt: skip
    return pool


def agent_report(updates: list[PendingUpdate], with_list: bool) -> agent_pb2.Report:
    """Return a report whose patches collector says what the real one says."""
    listed = [u.to_dict() for u in updates]
    info: dict[str, Any] = {
        "backend": "apt", "backends": ["apt"], "pending": len(updates),
        "truncated": False, "digest": list_digest(listed, False),
    }  # fmt: skip
    if with_list:
        info["updates"] = listed
    report = agent_pb2.Report(sequence=1)
    report.collectors.add(
        name="patches", ok=True, info_json=json.dumps(info, sort_keys=True).encode()
    )
    return report


def records(count: int, clients: int, sites: int) -> list[AgentRecord]:
    return [
        AgentRecord(
            id=f"agent{index:06}", credential_hash="h", client=f"client{index % clients:02}",
            site=f"site{index // clients % sites}", enrolled_at=0.0, hostname=f"host{index:06}",
        )
        for index in range(count)
    ]  # fmt: skip


# CPU seconds of the process during each timed call, in order (the database is in-process for
# SQLite; PostgreSQL's own CPU is not in it): on a loaded machine wall time is mostly waiting.
CPU_SECONDS: list[float] = []


def timed(call: Callable[[], object]) -> float:
    """Return the wall seconds one call takes (its CPU seconds go to CPU_SECONDS)."""
    started, cpu = time.perf_counter(), time.process_time()
    call()
    CPU_SECONDS.append(time.process_time() - cpu)
    return time.perf_counter() - started


def floor_scan(store: Store) -> int:
    """Count every patch_updates row: what reading the table once costs on this database."""
    with store.transaction("count") as conn:
        return int(conn.execute(text("SELECT count(*) FROM patch_updates")).scalar_one())


def open_database(db: str | None, workdir: Path) -> tuple[Store, str, Callable[[], None]]:
    """Open a store at head: a SQLite file in `workdir` (where `rmm-server serve --data-dir
    workdir` finds it), or a fresh database on `db`'s server; return it, its URL and how to
    drop it."""
    if not db:
        url = f"sqlite:///{workdir / 'rmm.sqlite3'}"
        return open_store(url), url, lambda: None
    name = f"rmm_bench_{os.getpid()}"
    admin = create_engine(engine_url(db), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = db.rsplit("/", 1)[0] + "/" + name
    store = open_store(url)

    def drop() -> None:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return store, url, drop


async def populate(
    inventory: PatchInventory, agents: list[AgentRecord], pool: list[PendingUpdate], per_agent: int
) -> tuple[float, dict[str, list[PendingUpdate]]]:
    """Store every agent's list through observe(); return seconds per changed list."""
    rng = random.Random(11)
    lists: dict[str, list[PendingUpdate]] = {}
    started = time.perf_counter()
    for agent in agents:
        chosen = [pool[0], *rng.sample(pool[1:], per_agent - 1)]
        lists[agent.id] = chosen
        await inventory.observe(agent, agent_report(chosen, with_list=True))
    return (time.perf_counter() - started) / len(agents), lists


async def observe_cpu(inventory: PatchInventory, agent: AgentRecord,
                      report: agent_pb2.Report, repeat: int) -> float:  # fmt: skip
    """Return CPU microseconds per observe() of a report whose list is held already."""
    for _ in range(100):
        await inventory.observe(agent, report)
    started = time.process_time()
    for _ in range(repeat):
        await inventory.observe(agent, report)
    return (time.process_time() - started) / repeat * 1e6


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    store, _url, drop = open_database(args.db, workdir)
    try:
        return asyncio.run(measure(args, store))
    finally:
        if args.db:
            drop()
        else:
            store.close()


async def measure(args: argparse.Namespace, store: Store) -> dict[str, Any]:
    policies = load_policy_dir(ROOT / "policies")
    agents = records(args.agents, args.clients, args.sites)
    fleet = Fleet()
    for agent in agents:
        fleet.add(agent)
    inventory = PatchInventory(
        store,
        fleet.get,
        settings_from(lambda: policies.patches),
        agents=lambda: [state.record for state in fleet.snapshot()],
    )
    operations = PatchOperations(inventory, fleet)
    pool = update_pool(args.pool)
    print(f"storing {args.agents} lists of {args.updates} updates...", file=sys.stderr)
    per_change, lists = await populate(inventory, agents, pool, args.updates)
    if store.dialect == "postgresql":
        # What autovacuum does on a live server after a bulk load: statistics, and the visibility
        # map that lets PostgreSQL count from ix_patch_updates_state alone.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))

    def fleet_list(target: operator_pb2.TargetSelector | None) -> int:
        view = asyncio.run_coroutine_threadsafe(operations.fleet_list(target, ""), loop).result()
        response = operator_pb2.ListPatchesResponse(
            updates=[fleet_update(u) for u in view.updates], agents=view.agents
        )
        return len(response.SerializeToString())

    loop = asyncio.get_running_loop()
    one_client = operator_pb2.TargetSelector(client="client00")
    names = ("floor_scan", "list_all", "list_client", "approve_all")
    figures: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for index in range(args.runs):
        # Peer: the database alone, counting every agent's rows in one statement.
        figures["floor_scan"].append(await asyncio.to_thread(timed, lambda: floor_scan(store)))
        cpu["floor_scan"].append(CPU_SECONDS[-1])
        figures["list_all"].append(await asyncio.to_thread(timed, lambda: fleet_list(None)))
        cpu["list_all"].append(CPU_SECONDS[-1])
        figures["list_client"].append(
            await asyncio.to_thread(timed, lambda: fleet_list(one_client))
        )
        cpu["list_client"].append(CPU_SECONDS[-1])
        action = APPROVE if index % 2 == 0 else DECLINE
        changed: list[int] = []

        def approve(action: str = action, changed: list[int] = changed) -> None:
            scope = [(EVERYWHERE, "")]
            changed.append(inventory.record_decisions([COMMON], action, scope, "bench"))

        figures["approve_all"].append(await asyncio.to_thread(timed, approve))
        cpu["approve_all"].append(CPU_SECONDS[-1])
        assert changed == [args.agents], f"{action} changed {changed} rows, not every agent's"

    # Detection against the report's own cost on this server, on a real report of this host.
    host_report = build_report()
    peer = stages(host_report)
    peer_us = 0.0
    for call in peer.values():
        for _ in range(50):
            call()
        started = time.process_time()
        for _ in range(args.repeat):
            call()
        peer_us += (time.process_time() - started) / args.repeat * 1e6
    agent = agents[0]
    unchanged = agent_report(lists[agent.id], with_list=False)
    # The host's other collectors too: observe() looks through them for the reboot sample.
    unchanged.collectors.extend(c for c in host_report.collectors if c.name != "patches")
    observe_us = await observe_cpu(inventory, agent, unchanged, args.repeat)
    bytes_out = await asyncio.to_thread(fleet_list, None)
    return {
        "seconds": figures,
        "cpu_seconds": cpu,
        "bytes_list_all": bytes_out,
        "change_seconds": per_change,
        "observe_unchanged_us": observe_us,
        "report_path_us": peer_us,
        "detection_ratio": observe_us / peer_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=50, help="pending updates per agent")
    parser.add_argument("--pool", type=int, default=500, help="distinct updates in the fleet")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="timed list/approve calls; medians")
    parser.add_argument("--repeat", type=int, default=2000, help="calls for the CPU figures")
    parser.add_argument("--db", help="a PostgreSQL server URL (a database is made there)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rmm-bench-patches-") as tmp:
        result = run(args, Path(tmp))
    seconds = result["seconds"]
    med = {name: statistics.median(values) * 1000 for name, values in seconds.items()}
    cpu = {name: statistics.median(v) * 1000 for name, v in result["cpu_seconds"].items()}
    where = "PostgreSQL" if args.db else "SQLite"
    print(f"{args.agents} agents x {args.updates} updates ({args.pool} distinct), {where}; "
          f"medians of {args.runs} runs")  # fmt: skip
    print(f"{'':<44}{'wall':>8}{'CPU':>8}")
    for name, words in (
        ("floor_scan", "peer: count(*) of every agent's rows"),
        ("list_all", "list, every agent (target < 500 ms)"),
        ("list_client", "list, one client"),
        ("approve_all", "approve one update everywhere (< 1 s)"),
    ):
        print(f"{words:<44}{med[name]:>6.0f}ms{cpu[name]:>6.0f}ms")
    print(
        f"{'a report bringing a changed list':<40}{result['change_seconds'] * 1000:>10.1f} ms wall"
    )
    print(f"{'detection, list unchanged':<40}{result['observe_unchanged_us']:>10.1f} µs CPU")
    print(
        f"{'the server on that report (report_path)':<40}{result['report_path_us']:>10.0f} µs CPU"
    )
    print(
        f"{'detection / report':<40}{result['detection_ratio'] * 100:>10.2f} %    (target <= 5 %)"
    )
    if args.json:
        figures = {
            "benchmark": "patches",
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                        "load_average": os.getloadavg()},
            "database": where,
            "agents": args.agents,
            "updates_per_agent": args.updates,
            "median_ms": med,
            "median_cpu_ms": cpu,
            **result,
            "at": time.time(),
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
