"""The monthly contract report of a 500-agent client among 10,000 agents and 100,000 tickets
(issue #15's target: under 1 s), on SQLite and PostgreSQL.

A fresh database (a temporary SQLite file, or `--db postgresql://...`: a database created on that
server and dropped after) is migrated and filled in bulk through the real schema: `--clients`
(20) clients of `--agents` / `--clients` agents each, a contract each with SLA targets (critical
24x7, warning on business hours); `--tickets` (100,000) tickets over the last 90 days with their
opening events; last month: `--alerts` (100,000) fired alerts over the fleet (acknowledged,
resolved), three offline periods an agent, 200 time entries a client; maintenance windows: a
weekly one per client, a daily fleet-wide one, 200 one-off windows for single agents; ten
pending updates an agent (patch compliance). Then, `--repeat` (7) times each, one right after
the other so all see the same load:
- report_inprocess: Reports.contract over the store (what the server computes);
- report_cli: `rmm reports contract --client C --month M --output json` (the real CLI process
  against one real `rmm-server serve` on the same database; wall and CPU of the CLI);
- peer_tickets_cli: `rmm tickets list --client C --output json` (issue #15's other target),
  same client, same server;
- rmm_version: the CLI's start-up floor.
Medians are printed with the load average; `--json FILE` keeps every sample.

    .venv/bin/python -m bench.reports --json /tmp/reports-sqlite.json
    .venv/bin/python -m bench.reports --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from bench.agent_footprint import BIN, machine, stop_process, wait_until
from bench.desk import spawn_server, timed
from bench.patches import open_database
from rmm_server.desk.reports import Reports
from rmm_server.storage import Store, schema
from rmm_server.storage.desk import SlaTarget, sla_to_json

CHUNK = 5000
DAY = 86400.0
SEVERITIES = ("critical", "warning", "info")
TIERS = ("L1", "L2", "L3")


def last_month(now: float) -> tuple[str, float, float]:
    """Return the month before `now`'s (UTC) as YYYY-MM, its start and end."""
    today = datetime.fromtimestamp(now, UTC)
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    start = datetime(year, month, 1, tzinfo=UTC).timestamp()
    end = datetime(today.year, today.month, 1, tzinfo=UTC).timestamp()
    return f"{year:04}-{month:02}", start, end


def _bulk(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(table), rows[start : start + CHUNK])


def populate(store: Store, args: argparse.Namespace, now: float) -> list[str]:
    """Fill the database as the module's docstring says; return the client names."""
    rng = random.Random(15)
    _month, start, end = last_month(now)
    names = [f"client{i:03}" for i in range(args.clients)]
    per_client = int(args.agents) // int(args.clients)
    agent_ids = [f"{n:032x}" for n in range(args.agents)]

    def client_of(n: int) -> int:
        return min(n // per_client, int(args.clients) - 1)

    sla = sla_to_json(
        {
            "critical": SlaTarget(900, 4 * 3600, "24x7"),
            "warning": SlaTarget(3600, 8 * 3600, "business"),
        }
    )
    with store.engine.begin() as conn:
        _bulk(
            conn,
            schema.clients,
            [
                {"id": f"c{i:03}", "name": name, "created_at": start - 90 * DAY}
                | {"created_by": "bench", "updated_at": start - 90 * DAY}
                for i, name in enumerate(names)
            ],
        )
        _bulk(
            conn,
            schema.sites,
            [
                {"id": f"s{i:03}", "client_id": f"c{i:03}", "name": "hq", "time_zone": "UTC"}
                | {"created_at": start, "created_by": "bench", "updated_at": start}
                for i in range(args.clients)
            ],
        )
        _bulk(
            conn,
            schema.contracts,
            [
                {
                    "id": f"k{i:03}",
                    "client_id": f"c{i:03}",
                    "type": "block-hours",
                    "hours_per_period": 40.0,
                    "period": "month",
                    "warn_below_hours": 5.0,
                    "currency": "USD",
                    "business_hours": "mon-fri 08:00-18:00",
                    "sla": sla,
                    "created_at": start,
                    "created_by": "bench",
                    "updated_at": start,
                    "updated_by": "bench",
                }
                for i in range(args.clients)
            ],
        )
        _bulk(
            conn,
            schema.agents,
            [
                {
                    "id": agent_id,
                    "credential_hash": "0" * 64,
                    "client": names[client_of(n)],
                    "site": "hq",
                    "hostname": f"host{n:05}",
                    # A tenth enrolled during the month.
                    "enrolled_at": start + rng.random() * 20 * DAY if n % 10 == 0 else start - DAY,
                    "last_seen": now,
                }
                for n, agent_id in enumerate(agent_ids)
            ],
        )
        tickets, events = [], []
        for n in range(args.tickets):
            client = n % args.clients
            opened = now - rng.random() * 90 * DAY
            resolved = opened + rng.random() * 2 * DAY if n % 4 else None
            tickets.append(
                {
                    "id": n + 1,
                    "client_id": f"c{client:03}",
                    "site": "hq",
                    "agent_id": agent_ids[client * per_client + n % per_client],
                    "alert_id": "",
                    "title": f"problem {n}",
                    "tier": TIERS[n % 3],
                    "priority": SEVERITIES[n % 3],
                    "status": "resolved" if resolved else "new",
                    "assignee": "",
                    "opened_at": opened,
                    "opened_by": "bench",
                    "updated_at": opened,
                    "sla_breaches": "resolve" if n % 17 == 0 else "",
                    "resolved_at": resolved,
                    "closed_at": resolved + DAY if resolved and n % 3 == 0 else None,
                    "resolution": "",
                    "archived_by": "",
                    "alert_fingerprint": "",
                }
            )
            events.append(
                {"ticket_id": n + 1, "at": opened, "by": "bench", "kind": "opened", "text": "x"}
            )
        _bulk(conn, schema.tickets, tickets)
        _bulk(conn, schema.ticket_events, events)
        alerts = []
        for n in range(args.alerts):
            agent = rng.randrange(args.agents)
            fired = start + rng.random() * (end - start)
            acked = fired + rng.expovariate(1 / 1200) if n % 5 else None
            resolved = fired + rng.expovariate(1 / 7200) if n % 7 else None
            alerts.append(
                {
                    "id": f"a{n:08}",
                    "fingerprint": f"f{n % 5000}",
                    "rule_key": f"rule{n % 40}",
                    "rule_name": f"Rule{n % 40}",
                    "agent_id": agent_ids[agent],
                    "client": names[client_of(agent)],
                    "site": "hq",
                    "hostname": f"host{agent:05}",
                    "series_labels": "{}",
                    "labels": "{}",
                    "state": "resolved" if resolved else "firing",
                    "severity": SEVERITIES[n % 3],
                    "tier": "L1",
                    "started_at": fired,
                    "last_active_at": fired,
                    "fired_at": fired,
                    "resolved_at": resolved,
                    "acknowledged_at": acked,
                    "annotations": "{}",
                    "history": "[]",
                    "updated_at": fired,
                }
            )
        _bulk(conn, schema.alerts, alerts)
        offline = []
        for agent_id in agent_ids:
            for _ in range(3):
                began = start + rng.random() * (end - start)
                offline.append(
                    {
                        "agent_id": agent_id,
                        "started_at": began,
                        "ended_at": began + rng.expovariate(1 / 1800),
                    }
                )
        _bulk(conn, schema.agent_offline, offline)
        windows = [
            {
                "id": f"w{i:03}",
                "name": f"weekly {name}",
                "schedule": "0 2 * * sun",
                "start_at": None,
                "duration_seconds": 7200.0,
                "timezone": "UTC",
                "scope": json.dumps({"clients": [name], "sites": [], "agents": [], "tags": []}),
                "created_by": "bench",
                "comment": "",
                "created_at": start - 30 * DAY,
                "ended_at": None,
            }
            for i, name in enumerate(names)
        ]
        windows.append(
            windows[0]
            | {
                "id": "wfleet",
                "schedule": "30 3 * * *",
                "duration_seconds": 1800.0,
                "scope": json.dumps({"clients": [], "sites": [], "agents": [], "tags": []}),
            }
        )
        for i in range(200):
            windows.append(
                windows[0]
                | {
                    "id": f"one{i:03}",
                    "schedule": "",
                    "start_at": start + rng.random() * 25 * DAY,
                    "scope": json.dumps(
                        {
                            "clients": [],
                            "sites": [],
                            "agents": [agent_ids[rng.randrange(args.agents)]],
                            "tags": [],
                        }
                    ),
                }
            )
        _bulk(conn, schema.maintenance_windows, windows)
        period = datetime.fromtimestamp(start, UTC).strftime("%Y-%m")
        _bulk(
            conn,
            schema.ticket_time,
            [
                {
                    "ticket_id": 1 + i,
                    "client_id": f"c{i % args.clients:03}",
                    "period": period,
                    "at": start + DAY,
                    "by": "bench",
                    "minutes": 15.0,
                    "note": "",
                }
                for i in range(200 * args.clients)
            ],
        )
        _bulk(
            conn,
            schema.patch_agents,
            [
                {"agent_id": agent_id, "digest": "d", "reported_digest": "d"}
                for agent_id in agent_ids
            ],
        )
        _bulk(
            conn,
            schema.patch_updates,
            [
                {
                    "agent_id": agent_id,
                    "update_id": f"pkg{u}",
                    "name": f"pkg{u}",
                    "available": "2",
                    "classification": "security",
                    "backend": "apt",
                    "first_seen": start,
                    "decision": "approved" if (n + u) % 7 == 0 else "pending",
                }
                for n, agent_id in enumerate(agent_ids)
                for u in range(10)
            ],
        )
    if store.dialect == "postgresql":
        # What autovacuum does on a live server after a bulk load.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="", help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, help="Write every sample here.")
    args = parser.parse_args()

    now = time.time()
    month, _start, _end = last_month(now)
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        data_dir = Path(tmp) / "server"
        data_dir.mkdir()
        store, url, drop = open_database(args.db, data_dir)
        try:
            began = time.perf_counter()
            names = populate(store, args, now)
            print(
                f"{store.dialect}: populated {args.agents} agents, {args.tickets} tickets, "
                f"{args.alerts} alerts over {args.clients} clients in "
                f"{time.perf_counter() - began:.1f} s"
            )
            client = names[len(names) // 2]
            samples, report = measure(store, url, data_dir, Path(tmp), client, month, args)
        finally:
            drop()

    medians = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    agents = report["availability"]["agents"]
    fired = sum(s["count"] for s in report["alerts"].values())
    print(
        f"{store.dialect}: {client}'s report for {month}: {len(agents)} agents, {fired} alerts, "
        f"{sum(t['opened'] for t in report['tickets'].values())} tickets opened; "
        f"median of {args.repeat} (load {os.getloadavg()[0]:.1f}):"
    )
    for name, figures in medians.items():
        cpu_text = f", CPU {figures['cpu'] * 1000:.0f} ms" if "cpu" in figures else ""
        print(f"  {name:<18} wall {figures['wall'] * 1000:7.0f} ms{cpu_text}")
    ratio = medians["report_cli"]["wall"] / medians["peer_tickets_cli"]["wall"]
    print(f"  report_cli / peer_tickets_cli: {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "dialect": store.dialect,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "month": month,
                    "client": client,
                    "samples": samples,
                    "medians": medians,
                },
                indent=2,
            )
        )
    return 0


def measure(
    store: Store,
    url: str,
    data_dir: Path,
    tmp: Path,
    client: str,
    month: str,
    args: argparse.Namespace,
) -> tuple[dict[str, list[dict[str, float]]], dict[str, Any]]:
    """Time the report in-process and through a real server and CLI; return the samples."""
    reports = Reports(store)
    server, port = spawn_server(
        data_dir, tmp / "server.log", url if store.dialect == "postgresql" else ""
    )
    samples: dict[str, list[dict[str, float]]] = {
        "report_inprocess": [],
        "report_cli": [],
        "peer_tickets_cli": [],
        "rmm_version": [],
    }
    report: dict[str, Any] = {}
    try:
        token = wait_until(
            lambda: (data_dir / "admin.token").read_text().strip(), 300, "the admin token"
        )
        env = dict(os.environ, RMM_SERVER=f"127.0.0.1:{port}", RMM_TOKEN=token, RMM_INSECURE="1")
        rmm = str(BIN / "rmm")
        wait_until(
            lambda: (
                subprocess.run([rmm, "clients", "list"], env=env, capture_output=True).returncode
                == 0
            ),
            300,  # a loaded machine: the server's start-up takes long under load
            "the server to answer",
        )
        for _ in range(args.repeat):
            began, cpu = time.perf_counter(), time.process_time()
            report = reports.contract(client, month)
            samples["report_inprocess"].append(
                {"wall": time.perf_counter() - began, "cpu": time.process_time() - cpu}
            )
            wall, cpu, _size = timed(
                [rmm, "reports", "contract", "--client", client, "--month", month, "-o", "json"],
                env,
            )
            samples["report_cli"].append({"wall": wall, "cpu": cpu})
            wall, cpu, _size = timed(
                [rmm, "tickets", "list", "--client", client, "-o", "json"], env
            )
            samples["peer_tickets_cli"].append({"wall": wall, "cpu": cpu})
            wall, cpu, _size = timed([rmm, "--version"], env)
            samples["rmm_version"].append({"wall": wall, "cpu": cpu})
    finally:
        stop_process(server)
    return samples, report


if __name__ == "__main__":
    sys.exit(main())
