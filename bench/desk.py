"""`rmm tickets list --client C` over 10,000 agents and 100,000 tickets (issue #15's target:
under 1 s).

A temporary SQLite database is migrated and filled in bulk through the real schema: `--clients`
(20) clients of `--agents` / `--clients` agents each (500, one site each), a block-hours contract
each, and `--tickets` (100,000) tickets spread evenly over the clients (a tenth of them closed,
a tenth archived), each with its opening event. Then one real `rmm-server serve --insecure`
runs on it, and `--repeat` (7) times, one right after the other so both see the same load:
- `rmm tickets list --client C --output json` (the real CLI process; wall and CPU time), its
  default page of 500, and with `--limit 5000` (all the client's 4,500 unarchived tickets);
- its peer, `rmm agents list --client C --output json` on the same client (500 agents);
- the ListTickets call alone over an open channel (what the server takes);
- `rmm --version`: the CLI's start-up floor.
Medians are printed; `--json FILE` keeps every sample.

    .venv/bin/python -m bench.desk --json /tmp/desk.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from sqlalchemy import insert

from bench.agent_footprint import BIN, free_port, machine, spawn, stop_process, wait_until
from rmm_common.tokens import bearer_metadata
from rmm_proto import operator_pb2, operator_pb2_grpc
from rmm_server.storage import open_store, schema
from rmm_server.storage.store import sqlite_url

CHUNK = 5000
STATUSES = ("new", "in-progress", "waiting", "resolved")


def populate(data_dir: Path, clients: int, agents: int, tickets: int) -> list[str]:
    """Fill a fresh database in `data_dir`; return the client names."""
    store = open_store(sqlite_url(data_dir))
    now = time.time()
    names = [f"client{index:03}" for index in range(clients)]
    per_client = agents // clients
    try:
        with store.engine.begin() as conn:
            conn.execute(
                insert(schema.clients),
                [
                    {
                        "id": f"c{i:03}",
                        "name": name,
                        "created_at": now,
                        "created_by": "bench",
                        "updated_at": now,
                    }
                    for i, name in enumerate(names)
                ],
            )
            conn.execute(
                insert(schema.sites),
                [
                    {
                        "id": f"s{i:03}",
                        "client_id": f"c{i:03}",
                        "name": "hq",
                        "time_zone": "UTC",
                        "created_at": now,
                        "created_by": "bench",
                        "updated_at": now,
                    }
                    for i in range(clients)
                ],
            )
            conn.execute(
                insert(schema.contracts),
                [
                    {
                        "id": f"k{i:03}",
                        "client_id": f"c{i:03}",
                        "type": "block-hours",
                        "hours_per_period": 40.0,
                        "period": "month",
                        "warn_below_hours": 5.0,
                        "rate": None,
                        "currency": "USD",
                        "business_hours": "mon-fri 08:00-18:00",
                        "sla": "{}",
                        "created_at": now,
                        "created_by": "bench",
                        "updated_at": now,
                        "updated_by": "bench",
                    }
                    for i in range(clients)
                ],
            )
            for start in range(0, agents, CHUNK):
                conn.execute(
                    insert(schema.agents),
                    [
                        {
                            "id": f"{n:032x}",
                            "credential_hash": "0" * 64,
                            "client": names[min(n // per_client, clients - 1)],
                            "site": "hq",
                            "hostname": f"host{n:05}",
                            "enrolled_at": now,
                        }
                        for n in range(start, min(start + CHUNK, agents))
                    ],
                )
            for start in range(0, tickets, CHUNK):
                rows = []
                events = []
                for n in range(start, min(start + CHUNK, tickets)):
                    client = n % clients
                    archived = n % 10 == 9
                    status = "closed" if n % 10 >= 8 else STATUSES[n % len(STATUSES)]
                    rows.append(
                        {
                            "id": n + 1,
                            "client_id": f"c{client:03}",
                            "site": "hq",
                            "agent_id": f"{(client * per_client + n % per_client):032x}",
                            "alert_id": "",
                            "title": f"problem {n}",
                            "tier": "L1",
                            "priority": "warning",
                            "status": status,
                            "assignee": "",
                            "opened_at": now - n,
                            "opened_by": "bench",
                            "updated_at": now - n,
                            "sla_breaches": "",
                            "resolution": "",
                            "archived_by": "",
                            "archived_at": now if archived else None,
                            "alert_fingerprint": "",
                        }
                    )
                    events.append(
                        {
                            "ticket_id": n + 1,
                            "at": now - n,
                            "by": "bench",
                            "kind": "opened",
                            "text": f"opened at L1, warning: problem {n}",
                        }
                    )
                conn.execute(insert(schema.tickets), rows)
                conn.execute(insert(schema.ticket_events), events)
    finally:
        store.close()
    return names


def spawn_server(
    data_dir: Path, log_path: Path, db_url: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a plaintext `rmm-server serve` on loopback ports over `data_dir` (and `db_url`
    when given); return it and its gRPC port."""
    port = free_port()
    server = spawn(
        [
            BIN / "rmm-server",
            "serve",
            "--data-dir",
            data_dir,
            *(["--db", db_url] if db_url else []),
            "--insecure",
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
        ],
        log_path,
    )
    return server, port


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a CLI process; return its wall seconds, its CPU seconds and its stdout's bytes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-2000:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, len(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, help="Write every sample here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        data_dir = Path(tmp) / "server"
        data_dir.mkdir()
        started = time.perf_counter()
        names = populate(data_dir, args.clients, args.agents, args.tickets)
        print(
            f"populated {args.agents} agents, {args.tickets} tickets over {args.clients} "
            f"clients in {time.perf_counter() - started:.1f} s"
        )
        log_path = Path(tmp) / "server.log"
        server, port = spawn_server(data_dir, log_path)
        try:
            token = wait_until(
                lambda: (data_dir / "admin.token").read_text().strip(), 60, "the admin token"
            )
            env = dict(
                os.environ, RMM_SERVER=f"127.0.0.1:{port}", RMM_TOKEN=token, RMM_INSECURE="1"
            )
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            metadata = bearer_metadata(token)
            wait_until(
                lambda: stub.ListClients(operator_pb2.ListClientsRequest(), metadata=metadata),
                60,
                "the server",
            )
            client = names[len(names) // 2]
            rmm = str(BIN / "rmm")
            samples: dict[str, list[dict[str, float]]] = {
                "tickets_list_cli": [],
                "tickets_list_all_cli": [],
                "agents_list_cli": [],
                "list_tickets_grpc": [],
                "rmm_version": [],
            }
            rows = 0
            for _ in range(args.repeat):
                wall, cpu, size = timed(
                    [rmm, "tickets", "list", "--client", client, "--output", "json"], env
                )
                samples["tickets_list_cli"].append({"wall": wall, "cpu": cpu, "bytes": size})
                wall, cpu, size = timed(
                    [
                        rmm,
                        "tickets",
                        "list",
                        "--client",
                        client,
                        "--limit",
                        "5000",
                        "--output",
                        "json",
                    ],
                    env,
                )
                samples["tickets_list_all_cli"].append({"wall": wall, "cpu": cpu, "bytes": size})
                wall, cpu, size = timed(
                    [rmm, "agents", "list", "--client", client, "--output", "json"], env
                )
                samples["agents_list_cli"].append({"wall": wall, "cpu": cpu, "bytes": size})
                begun = time.perf_counter()
                response = stub.ListTickets(
                    operator_pb2.ListTicketsRequest(client=client), metadata=metadata
                )
                samples["list_tickets_grpc"].append({"wall": time.perf_counter() - begun})
                rows = len(response.tickets)
                wall, cpu, _size = timed([rmm, "--version"], env)
                samples["rmm_version"].append({"wall": wall, "cpu": cpu})
            channel.close()
        finally:
            stop_process(server)

    medians = {
        name: {key: statistics.median(s[key]) for key in runs[0] if key != "bytes"}
        for name, runs in samples.items()
        for s in [{key: [run[key] for run in runs] for key in runs[0]}]
    }
    print(
        f"client {client}: {rows} tickets listed (the default page of 500; "
        f"{args.tickets // args.clients} are the client's), median of {args.repeat}:"
    )
    for name, figures in medians.items():
        cpu_text = f", CPU {figures['cpu'] * 1000:.0f} ms" if "cpu" in figures else ""
        print(f"  {name:<20} wall {figures['wall'] * 1000:7.0f} ms{cpu_text}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": rows,
                    "samples": samples,
                    "medians": medians,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
