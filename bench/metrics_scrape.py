"""What one GET /metrics costs the server at 10,000 agents: whole page and shards, plain and gzip.

In-process, on the server's real objects: a `Fleet` of `--agents` agents (spread over `--clients`
x `--sites`), each holding one real report of this host (built from the agent's own collectors,
or `--report FILE`) with its own values, rendered into /metrics fragments as ingest does. Each
run first lets `--churn` of the agents (default half: a 15 s scrape of agents reporting every
30 s) send their next report, with new values in every sample that changed between two real
reports of this host, then times, one after the other:

- `naive`: the exporter as it was before shards and gzip members (every agent's fragments grouped
  per family in Python, one join, then `gzip.compress(body, 1)` as the HTTP side did), the peer;
- `page`: `MetricsRenderer.render()` and `render_gzip()`, the whole page;
- `shard K/N` for each `--shards` N: every shard of the fleet, plain and gzip (each shard's
  gzip right after the churn, so its reused members are only those whose agents did not report).

Wall time (`time.perf_counter`) and CPU of the whole process (`time.process_time`, gzip's
threads included), medians over `--runs`. The gzip bodies are checked to decode to the plain ones.

    .venv/bin/python -m bench.metrics_scrape --runs 3 --json /tmp/metrics-scrape.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder
from rmm_proto import agent_pb2
from rmm_server.exporter import MetricsRenderer, Shard, family_metadata
from rmm_server.exposition import agent_label_prefix, escape_label_value, format_value
from rmm_server.fleet import Fleet
from rmm_server.reports import validate_report
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord


def naive_render(renderer: MetricsRenderer) -> bytes:
    """Render the page as the exporter did before (the peer): per agent, per family, in Python."""
    now = renderer.clock()
    by_family: dict[str, list[bytes]] = defaultdict(list)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for state in renderer.fleet.snapshot():
        record = state.record
        online = record.online(now)
        counts[(record.client, record.site, "online" if online else "offline")] += 1
        prefix = agent_label_prefix(record)
        by_family["rmm_agent_up"].append(f"rmm_agent_up{{{prefix}}} {int(online)}\n".encode())
        if record.last_seen is not None:
            by_family["rmm_agent_last_report_timestamp_seconds"].append(
                f"rmm_agent_last_report_timestamp_seconds{{{prefix}}} "
                f"{format_value(record.last_seen)}\n".encode()
            )
        for family, text in state.fragments.items():
            by_family[family].append(text)
    for (client, site, status), count in counts.items():
        labels = (
            f'client="{escape_label_value(client)}",site="{escape_label_value(site)}",'
            f'status="{status}"'
        )
        by_family["rmm_agents"].append(f"rmm_agents{{{labels}}} {count}\n".encode())
    parts: list[bytes] = []
    for family in sorted(by_family):
        kind, help_text = family_metadata(family)
        parts.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n".encode())
        parts.extend(by_family[family])
    return b"".join(parts) + generate_latest(renderer.registry)


def host_reports() -> tuple[agent_pb2.Report, agent_pb2.Report]:
    """Two real reports of this host, one second apart (which samples move between reports)."""
    builder = ReportBuilder(make_collectors([]))
    try:
        builder.build()
        time.sleep(0.5)
        first = builder.build()
        time.sleep(1.0)
        second = builder.build()
    finally:
        builder.close()
    for report in (first, second):
        report.interval_seconds = 3600
        report.ClearField("inventory")  # travels with first reports only
    return first, second


def moving_samples(first: agent_pb2.Report, second: agent_pb2.Report) -> set[tuple[int, int]]:
    """Return (collector, sample) positions whose value differs between the two reports, and
    every counter's (over 30 s rather than 1 s, they all move)."""
    moving = set()
    for c, (one, two) in enumerate(zip(first.collectors, second.collectors, strict=False)):
        for s, (a, b) in enumerate(zip(one.samples, two.samples, strict=False)):
            if a.name != b.name or a.value != b.value or a.name.endswith("_total"):
                moving.add((c, s))
    return moving


class Population:
    """The fleet under test and what sends its agents' next reports."""

    def __init__(self, base: agent_pb2.Report, moving: set[tuple[int, int]], args: Any) -> None:
        self.base = base
        self.moving = moving
        self.metrics = ServerMetrics()
        self.fleet = Fleet()
        self.ids: list[str] = []
        self.sequence: dict[str, int] = {}
        self.random = random.Random(7)
        for index in range(args.agents):
            record = AgentRecord(
                id=str(uuid.UUID(int=self.random.getrandbits(128))),
                credential_hash="h",
                client=f"client-{index % args.clients:03d}",
                site=f"site-{index % args.sites}",
                enrolled_at=0,
                hostname=f"host-{index:05d}",
                interval_seconds=3600,  # online all along, however long a run takes
                os="linux",
                agent_version=base.agent_version,
            )
            self.fleet.add(record)
            self.ids.append(record.id)
            self.sequence[record.id] = 0
            self.report(record.id)

    def report(self, agent_id: str) -> None:
        """Apply the agent's next report: the moving samples get new values."""
        report = agent_pb2.Report()
        report.CopyFrom(self.base)
        for c, s in self.moving:
            sample = report.collectors[c].samples[s]
            sample.value = round(sample.value * (0.5 + self.random.random()), 3)
        for collector in report.collectors:
            collector.duration_seconds = round(self.random.random() / 100, 6)
        self.sequence[agent_id] += 1
        report.sequence = self.sequence[agent_id]
        self.fleet.apply_report(agent_id, report, time.time(), {}, validate_report(report))

    def churn(self, fraction: float) -> None:
        for agent_id in self.random.sample(self.ids, int(len(self.ids) * fraction)):
            self.report(agent_id)


def timed(call: Callable[[], bytes]) -> tuple[bytes, float, float]:
    """Return the call's body, wall ms and CPU ms."""
    wall, cpu = time.perf_counter(), time.process_time()
    body = call()
    return body, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def one_run(population: Population, renderer: MetricsRenderer, args: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    population.churn(args.churn)
    gz, wall, cpu = timed(renderer.render_gzip)
    figures["page gzip"] = {"wall_ms": wall, "cpu_ms": cpu, "bytes": len(gz)}
    body, wall, cpu = timed(renderer.render)
    figures["page plain"] = {"wall_ms": wall, "cpu_ms": cpu, "bytes": len(body)}
    if gzip.decompress(gz) != body:
        raise SystemExit("the gzip page does not decode to the plain page")
    naive, wall, cpu = timed(lambda: naive_render(renderer))
    figures["naive plain"] = {"wall_ms": wall, "cpu_ms": cpu, "bytes": len(naive)}
    if naive != body:
        raise SystemExit("the page differs from the naive render of the same fleet")
    naive_gz, wall, cpu = timed(lambda: gzip.compress(naive_render(renderer), 1))
    figures["naive gzip"] = {"wall_ms": wall, "cpu_ms": cpu, "bytes": len(naive_gz)}
    for count in args.shards:
        population.churn(args.churn)
        rows: dict[str, list[float]] = defaultdict(list)
        for index in range(count):
            shard = Shard(index, count)
            gz, wall, cpu = timed(partial(renderer.render_gzip, shard))
            rows["gzip_wall"].append(wall)
            rows["gzip_cpu"].append(cpu)
            rows["gzip_bytes"].append(len(gz))
            body, wall, cpu = timed(partial(renderer.render, shard))
            rows["plain_wall"].append(wall)
            rows["plain_cpu"].append(cpu)
            rows["plain_bytes"].append(len(body))
        for kind in ("plain", "gzip"):
            figures[f"shard of {count} {kind}"] = {
                "wall_ms": max(rows[f"{kind}_wall"]),  # the slowest shard
                "cpu_ms": max(rows[f"{kind}_cpu"]),
                "bytes": max(rows[f"{kind}_bytes"]),
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are shown")
    parser.add_argument("--churn", type=float, default=0.5, help="agents reporting per run")
    parser.add_argument("--shards", type=int, nargs="*", default=[4, 10], help="N to try")
    parser.add_argument("--report", type=Path, help="a saved Report (all its samples move)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    if args.report:
        base = agent_pb2.Report.FromString(args.report.read_bytes())
        base.ClearField("inventory")
        base.interval_seconds = 3600
        moving = {(c, s) for c, col in enumerate(base.collectors) for s in range(len(col.samples))}
    else:
        base, second = host_reports()
        moving = moving_samples(base, second)
    samples = sum(len(collector.samples) for collector in base.collectors)
    started = time.perf_counter()
    population = Population(base, moving, args)
    print(
        f"{args.agents} agents, {samples} samples a report ({len(moving)} moving), populated in "
        f"{time.perf_counter() - started:.1f} s; churn {args.churn:.0%} of agents before each run",
        file=sys.stderr,
    )
    renderer = MetricsRenderer(population.fleet, population.metrics.registry)
    renderer.render_gzip()  # a server that has been scraped before: its members exist
    runs = [one_run(population, renderer, args) for _ in range(args.runs)]
    renderer.close()
    medians = {
        name: {key: statistics.median([run[name][key] for run in runs]) for key in runs[0][name]}
        for name in runs[0]
    }
    print(f"medians of {args.runs} runs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'scrape':<22}{'wall ms':>10}{'CPU ms':>10}{'MB':>10}{'KB/agent':>10}")
    for name, row in medians.items():
        agents = args.agents / int(name.split()[2]) if name.startswith("shard") else args.agents
        print(
            f"{name:<22}{row['wall_ms']:>10.0f}{row['cpu_ms']:>10.0f}"
            f"{row['bytes'] / 2**20:>10.1f}{row['bytes'] / agents / 1024:>10.2f}"
        )
    if args.json:
        figures = {
            "benchmark": "metrics_scrape",
            "machine": {
                "nproc": len(os.sched_getaffinity(0)),
                "python": platform.python_version(),
                "load_average": os.getloadavg(),
            },
            "agents": args.agents,
            "samples_per_report": samples,
            "moving_samples": len(moving),
            "churn": args.churn,
            "runs": runs,
            "medians": medians,
            "at": time.time(),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
