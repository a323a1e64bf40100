"""Sustained ingest rate of one rmm-server, with the shipped alert policies on and off.

One real `rmm-server serve --insecure` (SQLite in a temporary data directory, or with `--db` a
fresh database on that PostgreSQL server) per measurement, with its enrollment, report and
operator rate limits off (`--enroll-rate off` ...: they guard a real fleet, not this load), fed by
simulated agents that run in separate client processes, as real agents do:

1. one real report is built once in this process (`ReportBuilder` over every collector) and
   used as the template of every simulated agent's reports;
2. `--agents` agents are enrolled with one `--uses N` token through the Enroll RPC, half
   tagged `server` and half `workstation`, a quarter of them "hot" (CPU and memory around the
   alert thresholds, a failed systemd unit, a long uptime) so alerts go pending and fire;
3. every agent opens its own connection and StreamReports stream and keeps `--in-flight`
   reports unacknowledged (sequence 1, 2, 3..., CPU, memory and uptime moving a little each
   report); after `--warmup` seconds, acknowledgements are counted for `--duration` seconds.
   With `--rate R` the agents are paced instead (an open loop: each sends a report every
   agents/R seconds, at random phases) and latency is measured from when each report was due,
   so it is a response time, not queueing in a closed loop;
4. the server's CPU (utime+stime, /proc) over that window gives CPU per report; its /metrics
   give policy evaluation time and batch sizes; afterwards the stored reports are checked
   against what was acknowledged (`rmm agents list` / `rmm agents show`).

Configurations: (a) `--policies <repo>/policies` and (b) `--no-policies`, alternating
a, b, a, b... for `--runs` runs; the table shows medians and the ratio (b)/(a) within each run.
After (b) in each run, the same clients drive **the bare peer**: a grpc.aio AgentService in its
own process that only decodes each report and acknowledges it (no checks, no storage, no
policies, same message limits), the ceiling any server in Python with grpcio can reach on this
machine at this moment; (a)/(bare) is computed within each run (`--no-bare` leaves it out).

Run from the repository root:

    .venv/bin/python -m bench.ingest_rate --runs 2 --json /tmp/ingest.json
    .venv/bin/python -m bench.ingest_rate --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from bench.agent_footprint import (
    BIN,
    CLK_TCK,
    BenchError,
    cpu_ticks,
    cpu_ticks_of,
    ensure_alive,
    exit_on_sigterm,
    fmt,
    free_port,
    http_get,
    log_problems,
    machine,
    median_or_none,
    ratio,
    rss_kb,
    run_command,
    spawn,
    stop_process,
    wait_until,
)
from rmm_agent import __version__ as agent_version
from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc, common_pb2
from rmm_server.exporter import MAX_SHARDS
from rmm_server.policy import AgentContext, load_policy_dir
from rmm_server.storage.migrate import engine_url, mask_url

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
CONFIGS = ("policies", "no-policies")  # (a) and (b)
CLIENT = "acme"  # acme/hq: the shipped site layer (site-overrides.yaml) applies too
SITE = "hq"
REPORT_INTERVAL_SECONDS = 30
START_TIMEOUT_SECONDS = 30.0
# After the window, every report in flight must be acknowledged within 20 s plus 1 s per 50 of
# them (a bound: at 150/s the 800 of the defaults come back in about 5 s).
DRAIN_BASE_SECONDS = 20.0
DRAIN_REPORTS_PER_SECOND = 50.0
MAX_REPORTS_PER_STREAM = 1_000_000  # a bound on every loop; never reached in practice
HOT_EVERY = 4  # one agent in four runs hot
# The issue: 10,000 agents reporting every 30 s, and five times that on one process.
TARGET_FLEET_RATE = 10_000 / 30.0
TARGET_AIM_RATE = 5 * TARGET_FLEET_RATE
VERIFY_SHOW = 4  # agents checked one by one with `rmm agents show`
# The server's rate limits guard a real fleet (a flood of enrollments or reports from one
# address or agent); this load is one address and agents reporting as fast as acknowledged.
RATE_LIMITS_OFF = ("--enroll-rate", "off", "--report-rate", "off", "--operator-rate", "off")


# --------------------------------------------------------------------------------------------
# The simulated agents (shared by this process and the client processes)


@dataclass(frozen=True, slots=True)
class SimAgent:
    index: int
    agent_id: str
    credential: str
    hostname: str
    tag: str  # server or workstation
    hot: bool


@dataclass(frozen=True, slots=True)
class ClientJob:
    worker: int
    address: str
    agents: tuple[SimAgent, ...]
    template: bytes  # a serialised Report, without sequence or inventory
    inventory_hash: str
    inventory_json: bytes
    in_flight: int
    seed: int
    # Seconds between two reports of one agent (an open loop at a fixed offered rate, latency
    # measured from when each report was due, so a late send counts); 0: as fast as acked.
    interval: float = 0.0


@dataclass(slots=True)
class AgentOutcome:
    agent_id: str
    sent: int = 0
    acked: int = 0
    last_acked: int = 0
    rejected: int = 0
    first_rejection: str = ""
    need_inventory: int = 0
    need_inventory_sequences: list[int] = field(default_factory=list)  # the first few
    out_of_order: int = 0
    timed_out: bool = False
    error: str = ""
    error_at: float | None = None  # seconds after the load started
    first_ack_at: float | None = None

    def count_ack(self, ack: agent_pb2.ReportAck, expected: int) -> None:
        """Count one acknowledgement (`expected`: the sequence due next on its stream)."""
        if ack.sequence != expected:
            self.out_of_order += 1
        if ack.rejected:
            self.rejected += 1
            self.first_rejection = self.first_rejection or ack.rejected
        else:
            self.acked += 1
            self.last_acked = max(self.last_acked, ack.sequence)
        if ack.need_inventory:
            self.need_inventory += 1
            if len(self.need_inventory_sequences) < 5:
                self.need_inventory_sequences.append(ack.sequence)


@dataclass(slots=True)
class WorkerResult:
    worker: int
    acks_in_window: int = 0
    sent_in_window: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    acks_by_second: list[int] = field(default_factory=list)  # of the window
    acks_by_second_warmup: list[int] = field(default_factory=list)
    agents: list[AgentOutcome] = field(default_factory=list)


def is_hot(index: int) -> bool:
    """Return whether agent `index` runs hot: pairs of agents, so servers and workstations."""
    return (index // 2) % HOT_EVERY == 0


def find_sample(report: agent_pb2.Report, collector: str, name: str) -> common_pb2.Sample:
    """Return the unlabelled sample `name` of `collector` in `report`, adding it when missing."""
    result = next((c for c in report.collectors if c.name == collector), None)
    if result is None:
        result = report.collectors.add(name=collector, ok=True)
    for sample in result.samples:
        if sample.name == name and not sample.labels:
            return sample
    return result.samples.add(name=name, value=0.0)


class ReportMaker:
    """One simulated agent's reports: the template, its hostname, values moving each time."""

    def __init__(self, agent: SimAgent, job: ClientJob) -> None:
        self.report = agent_pb2.Report.FromString(job.template)
        self.report.host.hostname = agent.hostname
        self.rng = random.Random(job.seed * 100_003 + agent.index)
        self.hot = agent.hot
        self.inventory_hash = job.inventory_hash
        self.inventory_json = job.inventory_json
        self.cpu = find_sample(self.report, "cpu", "cpu_usage_ratio")
        self.memory = find_sample(self.report, "memory", "memory_usage_ratio")
        self.uptime = find_sample(self.report, "system", "system_uptime_seconds")
        days = 40.0 if agent.hot else self.rng.uniform(0.5, 20.0)  # UptimeLong: over 30 days
        self.boot = time.time() - days * 86400.0
        if agent.hot:  # SystemdUnitFailed fires at once
            services = next(c for c in self.report.collectors if c.name == "services")
            services.samples.add(
                name="service_failed", labels={"unit": "bench-failed.service"}, value=1.0
            )

    def next(self, sequence: int, with_inventory: bool) -> agent_pb2.Report:
        """Return the report numbered `sequence` (the same message, changed in place)."""
        report, rng = self.report, self.rng
        report.sequence = sequence
        report.collected_at = time.time()
        if self.hot:  # around the 0.9 (servers) and 0.95 (workstations) thresholds
            self.cpu.value = min(1.0, max(0.0, rng.gauss(0.92, 0.04)))
            self.memory.value = min(1.0, max(0.0, rng.gauss(0.93, 0.03)))
        else:
            self.cpu.value = rng.uniform(0.05, 0.6)
            self.memory.value = rng.uniform(0.3, 0.7)
        self.uptime.value = report.collected_at - self.boot
        if with_inventory:
            report.inventory.hash = self.inventory_hash
            report.inventory.json = self.inventory_json
        else:
            report.ClearField("inventory")
        return report


async def drive_agent(
    agent: SimAgent,
    channel: grpc.aio.Channel,
    job: ClientJob,
    timeline: tuple[float, float, float, float],
    outcome: AgentOutcome,
    result: WorkerResult,
    first_sequence: int = 1,
    with_inventory: bool = True,
) -> None:
    """Stream reports for one agent until the window ends, then wait for their acks.

    `first_sequence` and `with_inventory` let a later stream of the same agent go on where an
    earlier one stopped (bench.ingest_scale steps the rate over the same agents)."""
    start_at, window_start, window_end, drain_deadline = timeline
    maker = ReportMaker(agent, job)
    # Paced agents start at random phases over one interval, so the offered load is even.
    due = start_at + maker.rng.uniform(0.0, job.interval)
    if job.interval and due >= window_end:
        # Nothing due before the window ends (more agents than rate x window): no stream. One
        # opened and half-closed without a message never ends (no EOF comes back), and its
        # deadline would end it as CANCELLED, a failure that is the load generator's.
        return
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    call = stub.StreamReports(metadata=bearer_metadata(agent.credential))
    slots = asyncio.Semaphore(job.in_flight)
    sent_at: dict[int, float] = {}
    attach = [with_inventory]  # a new agent's first report carries its inventory
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))

    async def write() -> None:
        nonlocal due
        for sequence in range(first_sequence, first_sequence + MAX_REPORTS_PER_STREAM):
            if job.interval:
                if due >= window_end:
                    # Not due within the window: end the stream now, not after sleeping there
                    # (with more agents than the rate, agents/rate seconds can outlast the drain,
                    # and the stream then ended by its own deadline, counted as failed).
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await slots.acquire()
            now = time.monotonic()
            if now >= window_end:
                break
            report = maker.next(sequence, attach[0])
            attach[0] = False
            # Paced: latency from when the report was due, so a server that falls behind (and
            # holds sends back through the in-flight limit) shows it (no coordinated omission).
            sent_at[sequence] = min(now, due) if job.interval else now
            due += job.interval
            try:
                await call.write(report)  # serialised here: the message may change afterwards
            except asyncio.InvalidStateError:
                return  # the call ended (cancelled, or an error read() reports)
            outcome.sent = sequence
            if window_start <= now:
                result.sent_in_window += 1
        with contextlib.suppress(asyncio.InvalidStateError):
            await call.done_writing()

    async def read() -> None:
        expected = first_sequence
        for _ in range(MAX_REPORTS_PER_STREAM + 1):
            ack = await call.read()
            if ack is grpc.aio.EOF:
                return
            now = time.monotonic()
            if outcome.first_ack_at is None:
                outcome.first_ack_at = now - start_at
            outcome.count_ack(ack, expected)
            expected = ack.sequence + 1
            if ack.need_inventory:
                attach[0] = True
            sent = sent_at.pop(ack.sequence, None)
            if window_start <= now < window_end:
                result.acks_in_window += 1
                second = min(int(now - window_start), len(result.acks_by_second) - 1)
                result.acks_by_second[second] += 1
                if sent is not None:
                    result.latencies_ms.append((now - sent) * 1000.0)
            elif start_at <= now < window_start:
                second = min(int(now - start_at), len(result.acks_by_second_warmup) - 1)
                result.acks_by_second_warmup[second] += 1
            slots.release()

    try:
        await asyncio.wait_for(
            asyncio.gather(write(), read()), timeout=max(1.0, drain_deadline - time.monotonic())
        )
    except TimeoutError:
        outcome.timed_out = True
        call.cancel()
    except grpc.aio.AioRpcError as error:
        outcome.error = f"{error.code().name}: {error.details()}"
        outcome.error_at = time.monotonic() - start_at


async def run_client(
    job: ClientJob,
    inbox: multiprocessing.queues.Queue[Any],
    outbox: multiprocessing.queues.Queue[Any],
) -> None:
    options = [
        # One TCP connection per agent, as real agents have (channels otherwise share one).
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    channels = [grpc.aio.insecure_channel(job.address, options=options) for _ in job.agents]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in channels)), START_TIMEOUT_SECONDS
        )
        outbox.put(("ready", job.worker, os.getpid()))
        loop = asyncio.get_running_loop()
        timeline = await loop.run_in_executor(None, inbox.get, True, 2 * START_TIMEOUT_SECONDS)
        result = WorkerResult(job.worker)
        result.acks_by_second = [0] * max(1, math.ceil(timeline[2] - timeline[1]))
        result.acks_by_second_warmup = [0] * max(1, math.ceil(timeline[1] - timeline[0]))
        result.agents = [AgentOutcome(agent.agent_id) for agent in job.agents]
        await asyncio.gather(
            *(
                drive_agent(agent, channel, job, timeline, outcome, result)
                for agent, channel, outcome in zip(
                    job.agents, channels, result.agents, strict=True
                )
            )
        )
        outbox.put(("done", job.worker, asdict(result)))
    finally:
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


def client_main(
    job: ClientJob,
    inbox: multiprocessing.queues.Queue[Any],
    outbox: multiprocessing.queues.Queue[Any],
) -> None:
    """Entry point of a client process."""
    try:
        asyncio.run(run_client(job, inbox, outbox))
    except BaseException:
        outbox.put(("error", job.worker, traceback.format_exc()))
        raise


# --------------------------------------------------------------------------------------------
# /proc and /metrics


def thread_ticks(pid: int) -> dict[str, int]:
    """Return utime+stime of `pid`'s threads, grouped: the main thread (the event loop), the
    other Python threads (they keep the process's name: asyncio.to_thread workers, the
    scheduler...), and native threads by name ("event_engine" of gRPC...)."""
    main_name = (Path(f"/proc/{pid}/comm")).read_text().strip()
    groups: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ticks = cpu_ticks_of(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        if task.name == str(pid):
            group = "main thread"
        elif name == main_name:
            group = "other python threads"
        else:
            group = re.sub(r"[_-]?\d+$", "", name) or name
        groups[group] = groups.get(group, 0) + ticks
    return groups


def machine_ticks() -> tuple[int, int]:
    """Return (busy, total) clock ticks of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is counted in user already
    return total - idle, total


def socket_count(pid: int) -> int:
    """Return how many sockets `pid` has open (listeners and connections)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except FileNotFoundError:
            continue
    return count


SCRAPED = (
    "rmm_server_reports_received_total",
    "rmm_server_report_processing_seconds_sum",
    "rmm_server_report_processing_seconds_count",
    "rmm_server_storage_batch_seconds_sum",
    "rmm_server_storage_batch_seconds_count",
    "rmm_policy_evaluation_seconds_sum",
    "rmm_policy_evaluation_seconds_count",
)


def scrape(http_url: str) -> dict[str, float]:
    """Return the server's own counters this benchmark reads, from /metrics (none from the
    bare peer, which has no HTTP side)."""
    values: dict[str, float] = {}
    if not http_url:
        return values
    # Shard 0 of the most carries the server's own series with the fewest agents' (the whole
    # page is 150 MB at 10,000 agents: seconds to render, in the measured window).
    page = http_get(f"{http_url}/metrics?shard=0&of={MAX_SHARDS}", timeout=60.0)
    for line in page.decode().splitlines():
        name, _, rest = line.partition(" ")
        if name in SCRAPED:
            values[name] = float(rest.split()[0])
    return values


@dataclass(slots=True)
class Probe:
    at: float
    server_ticks: int
    server_threads: dict[str, int]
    client_ticks: list[int]
    machine_busy: int
    machine_total: int
    server_rss_kb: int = 0


def probe(server_pid: int, client_pids: Sequence[int]) -> Probe:
    busy, total = machine_ticks()
    return Probe(
        at=time.monotonic(),
        server_ticks=cpu_ticks(server_pid),
        server_threads=thread_ticks(server_pid),
        client_ticks=[cpu_ticks(pid) for pid in client_pids],
        machine_busy=busy,
        machine_total=total,
        server_rss_kb=rss_kb(server_pid),
    )


# --------------------------------------------------------------------------------------------
# Statistics and small helpers


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Return the nearest-rank `q` percentile (0-100) of sorted values, None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float | None:
    if name not in after or name not in before:
        return None
    return after[name] - before[name]


def capture_template() -> tuple[agent_pb2.Report, bytes]:
    """Build one real report of this host (after a priming one); return it and the inventory."""
    builder = ReportBuilder(make_collectors([]))
    try:
        builder.build()  # primes CPU counters and reads the inventory
        time.sleep(0.5)
        report = builder.build()
        inventory_json = builder.inventory_json
    finally:
        builder.close()
    report.interval_seconds = REPORT_INTERVAL_SECONDS
    for collector, name in (
        ("cpu", "cpu_usage_ratio"),
        ("memory", "memory_usage_ratio"),
        ("system", "system_uptime_seconds"),
    ):
        find_sample(report, collector, name)
    if not any(c.name == "services" for c in report.collectors):
        report.collectors.add(name="services", ok=True)
    return report, inventory_json


def rules_in_force() -> dict[str, int]:
    """Return how many shipped rules apply to a server and to a workstation of acme/hq."""
    policies = load_policy_dir(POLICIES)
    counts = {}
    for tag in ("server", "workstation"):
        context = AgentContext(
            agent_id="bench", hostname="bench", client=CLIENT, site=SITE,
            tags=frozenset({tag}), os="linux", interval_seconds=float(REPORT_INTERVAL_SECONDS),
            seconds_since_report=0.0, info={},
        )
        counts[tag] = len(policies.rules_for(context))
    return counts


# --------------------------------------------------------------------------------------------
# One measurement: a server, enrolled agents, client processes, a window


@dataclass(slots=True)
class Server:
    proc: subprocess.Popen[bytes]
    http_url: str
    grpc_address: str

    log_path: Path

    @property
    def pid(self) -> int:
        return int(self.proc.pid)


def enroll_agents(
    address: str, token: str, count: int, host: agent_pb2.HostFacts
) -> list[SimAgent]:
    """Enroll `count` agents through the Enroll RPC; half servers, half workstations."""
    agents = []
    channel = grpc.insecure_channel(address)
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        for index in range(count):
            tag = "server" if index % 2 == 0 else "workstation"
            hostname = f"bench-{'srv' if tag == 'server' else 'ws'}-{index:05d}"
            facts = agent_pb2.HostFacts()
            facts.CopyFrom(host)
            facts.hostname = hostname
            try:
                response = stub.Enroll(
                    agent_pb2.EnrollRequest(
                        token=token, host=facts, tags=[tag], agent_version=agent_version
                    ),
                    timeout=30,
                )
            except grpc.RpcError as error:
                raise BenchError(f"enrolling agent {index} failed: {error}") from error
            agents.append(
                SimAgent(index, response.agent_id, response.credential, hostname, tag,
                         is_hot(index))
            )
    finally:
        channel.close()
    return agents


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """Create an empty database on the PostgreSQL server of `url`, yield its URL, drop it
    afterwards; yield None (SQLite) when `url` is None."""
    if url is None:
        yield None
        return
    name = f"rmm_bench_{secrets.token_hex(5)}"
    engine = create_engine(engine_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        except Exception as exc:
            raise BenchError(
                f"cannot create a database on {mask_url(url)}: {exc}; is "
                "PostgreSQL running there (scripts/test.sh starts one)?"
            ) from exc
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


def database_label(url: str | None) -> str:
    return f"PostgreSQL {mask_url(url)}" if url else "SQLite"


def stop_clients(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Terminate client processes still running (SIGTERM, then SIGKILL)."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)


def run_clients(
    jobs: Sequence[ClientJob],
    server: Server,
    warmup: float,
    duration: float,
    drain: float,
) -> tuple[list[WorkerResult], Probe, Probe, list[int], dict[str, float], dict[str, float], int]:
    """Start the client processes, run the window, return their results and the probes."""
    ctx = multiprocessing.get_context("spawn")
    outbox: multiprocessing.queues.Queue[Any] = ctx.Queue()
    inboxes: list[multiprocessing.queues.Queue[Any]] = [ctx.Queue() for _ in jobs]
    processes = [
        ctx.Process(target=client_main, args=(job, inbox, outbox), daemon=True,
                    name=f"ingest-client-{job.worker}")
        for job, inbox in zip(jobs, inboxes, strict=True)
    ]
    try:
        for proc in processes:
            proc.start()

        def message(deadline: float, what: str) -> tuple[str, int, Any]:
            for _ in range(int(max(deadline - time.monotonic(), 0) / 0.5) + 2):
                ensure_alive(server.proc, "rmm-server", server.log_path)
                try:
                    kind, worker, payload = outbox.get(timeout=0.5)
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        break
                    if not all(p.is_alive() for p in processes):
                        raise BenchError(f"a client process died while {what}") from None
                    continue
                if kind == "error":
                    raise BenchError(f"client process {worker} failed:\n{payload}")
                return kind, worker, payload
            raise BenchError(f"timed out {what}")

        pids: dict[int, int] = {}
        deadline = time.monotonic() + 2 * START_TIMEOUT_SECONDS
        for _ in jobs:
            _kind, worker, pid = message(deadline, "waiting for the clients to connect")
            pids[worker] = int(pid)
        client_pids = [pids[job.worker] for job in jobs]
        start_at = time.monotonic() + 0.3
        window_start = start_at + warmup
        window_end = window_start + duration
        timeline = (start_at, window_start, window_end, window_end + drain)
        for inbox in inboxes:
            inbox.put(timeline)
        time.sleep(max(0.0, window_start - 0.5 - time.monotonic()))
        metrics_before = scrape(server.http_url)  # scraped outside the CPU window
        time.sleep(max(0.0, window_start - time.monotonic()))
        before = probe(server.pid, client_pids)
        sockets = socket_count(server.pid)
        time.sleep(max(0.0, window_end - time.monotonic()))
        after = probe(server.pid, client_pids)
        metrics_after = scrape(server.http_url)
        results: dict[int, WorkerResult] = {}
        deadline = window_end + drain + START_TIMEOUT_SECONDS
        for _ in jobs:
            _kind, worker, payload = message(deadline, "waiting for the clients' results")
            outcomes = [AgentOutcome(**a) for a in payload.pop("agents")]
            results[worker] = WorkerResult(**payload, agents=outcomes)
        for proc in processes:
            proc.join(10.0)
        return ([results[job.worker] for job in jobs], before, after, client_pids,
                metrics_before, metrics_after, sockets)
    finally:
        stop_clients(processes)
        outbox.close()
        for inbox in inboxes:
            inbox.close()


def verify(
    env: dict[str, str], outcomes: Sequence[AgentOutcome], agents: Sequence[SimAgent]
) -> dict[str, Any]:
    """Compare what the server stored with what was acknowledged."""
    listed = json.loads(
        run_command([BIN / "rmm", "agents", "list", "--client", CLIENT, "--output", "json"], env)
    )
    last_sequence = {row["id"]: int(row["last_sequence"]) for row in listed}
    problems: list[str] = []
    for outcome in outcomes:
        stored = last_sequence.get(outcome.agent_id)
        if stored != outcome.last_acked:
            problems.append(
                f"agent {outcome.agent_id}: server's last_sequence {stored}, "
                f"last acknowledged {outcome.last_acked}"
            )
        if outcome.rejected:
            problems.append(
                f"agent {outcome.agent_id}: {outcome.rejected} reports rejected, first: "
                f"{outcome.first_rejection}"
            )
        if outcome.out_of_order or outcome.timed_out or outcome.error:
            problems.append(
                f"agent {outcome.agent_id}: {outcome.out_of_order} acks out of order, "
                f"timed out {outcome.timed_out}, error {outcome.error or '-'} at "
                f"{fmt(outcome.error_at, '.1f')} s (first ack at "
                f"{fmt(outcome.first_ack_at, '.1f')} s)"
            )
        if outcome.acked != outcome.sent:
            problems.append(
                f"agent {outcome.agent_id}: sent {outcome.sent}, acknowledged {outcome.acked}"
            )
    # One by one: a hot and a cold agent of each kind.
    by_id = {o.agent_id: o for o in outcomes}
    picks: list[SimAgent] = []
    for hot in (True, False):
        for tag in ("server", "workstation"):
            pick = next((a for a in agents if a.hot == hot and a.tag == tag), None)
            if pick is not None and len(picks) < VERIFY_SHOW:
                picks.append(pick)
    shown = []
    for agent in picks:
        detail = json.loads(
            run_command([BIN / "rmm", "agents", "show", agent.agent_id, "--output", "json"], env)
        )
        outcome = by_id[agent.agent_id]
        row = {
            "agent_id": agent.agent_id,
            "hostname": detail.get("hostname"),
            "acked": outcome.acked,
            "reports_stored": detail.get("reports_stored"),
            "first_sequence": detail.get("first_sequence"),
            "last_sequence": detail.get("last_sequence"),
        }
        shown.append(row)
        if row["reports_stored"] != outcome.acked or row["first_sequence"] != 1:
            problems.append(f"agent {agent.agent_id}: `rmm agents show` says {row}")
        if row["hostname"] != agent.hostname:
            problems.append(f"agent {agent.agent_id}: hostname {row['hostname']!r}")
    alerts = json.loads(run_command([BIN / "rmm", "alerts", "list", "--output", "json"], env))
    open_alerts: dict[str, int] = {}
    for alert in alerts:
        key = f"{alert.get('rule')}:{alert.get('state')}"
        open_alerts[key] = open_alerts.get(key, 0) + 1
    return {
        "ok": not problems,
        "problems": problems[:20],
        "problem_count": len(problems),
        "agents_listed": len(listed),
        "agents_checked_last_sequence": len(outcomes),
        "shown": shown,
        "open_alerts": dict(sorted(open_alerts.items())),
    }


def measure(
    config: str,
    run: int,
    args: argparse.Namespace,
    template: agent_pb2.Report,
    inventory_json: bytes,
) -> dict[str, Any]:
    """Measure one configuration once, in a temporary directory removed afterwards."""
    started = datetime.now(UTC).isoformat()
    with (
        tempfile.TemporaryDirectory(prefix="rmm-bench-ingest-") as tmp,
        fresh_database(args.db) as db_url,
    ):
        workdir = Path(tmp)
        data_dir, server_log = workdir / "server", workdir / "server.log"
        grpc_address = f"127.0.0.1:{free_port()}"
        http_url = f"http://127.0.0.1:{free_port()}"
        policy_args = ["--policies", str(POLICIES)] if config == "policies" else ["--no-policies"]
        db_args = ["--db", db_url] if db_url else []
        proc = spawn(
            [
                BIN / "rmm-server",
                "serve",
                "--data-dir",
                data_dir,
                "--grpc-listen",
                grpc_address,
                "--http-listen",
                http_url.removeprefix("http://"),
                "--insecure",
                "--log-format",
                "json",
                *policy_args,
                *RATE_LIMITS_OFF,
                *db_args,
            ],
            server_log,
        )
        server = Server(proc, http_url, grpc_address, server_log)
        try:

            def ready() -> bool:
                ensure_alive(proc, "rmm-server", server_log)
                return (data_dir / "admin.token").exists() and bool(http_get(http_url + "/healthz"))

            wait_until(ready, START_TIMEOUT_SECONDS, f"rmm-server on {http_url}/healthz")
            rss_ready_kb = rss_kb(proc.pid)  # before any agent: the server's own floor
            env = dict(os.environ)
            env.update(
                RMM_SERVER=grpc_address,
                RMM_TOKEN=(data_dir / "admin.token").read_text().strip(),
                RMM_INSECURE="1",
            )
            created = json.loads(
                run_command(
                    [
                        BIN / "rmm",
                        "tokens",
                        "create",
                        "--client",
                        CLIENT,
                        "--site",
                        SITE,
                        "--uses",
                        str(args.agents),
                        "--expires",
                        "1h",
                        "--output",
                        "json",
                    ],
                    env,
                )
            )
            enroll_started = time.monotonic()
            agents = enroll_agents(grpc_address, created["token"], args.agents, template.host)
            enroll_seconds = time.monotonic() - enroll_started
            jobs = [
                ClientJob(
                    worker=worker,
                    address=grpc_address,
                    agents=tuple(agents[worker :: args.clients]),
                    template=template.SerializeToString(),
                    inventory_hash=template.inventory_hash,
                    inventory_json=inventory_json,
                    in_flight=args.in_flight,
                    seed=run,
                    interval=args.agents / args.rate if args.rate else 0.0,
                )
                for worker in range(args.clients)
            ]
            print(
                f"run {run} ({config_label(config)}): {args.agents} agents enrolled in "
                f"{enroll_seconds:.1f} s; {args.warmup:g} s warm-up, {args.duration:g} s "
                "measured...",
                flush=True,
            )
            results, before, after, client_pids, m_before, m_after, sockets = run_clients(
                jobs,
                server,
                args.warmup,
                args.duration,
                DRAIN_BASE_SECONDS + args.agents * args.in_flight / DRAIN_REPORTS_PER_SECOND,
            )
            ensure_alive(proc, "rmm-server", server_log)
            outcomes = [o for r in results for o in r.agents]
            checked = verify(env, outcomes, agents)
        finally:
            server_stop = stop_process(proc)
        problems = log_problems(server_log)

    window = after.at - before.at
    acks = sum(r.acks_in_window for r in results)
    latencies = sorted(v for r in results for v in r.latencies_ms)
    by_second = [sum(seconds) for seconds in zip(*(r.acks_by_second for r in results), strict=True)]
    half = len(by_second) // 2
    server_cpu = (after.server_ticks - before.server_ticks) / CLK_TCK
    client_cpu = [
        (a - b) / CLK_TCK for a, b in zip(after.client_ticks, before.client_ticks, strict=True)
    ]
    threads = {
        name: (after.server_threads[name] - before.server_threads.get(name, 0)) / CLK_TCK
        for name in after.server_threads
    }
    eval_count = delta(m_after, m_before, "rmm_policy_evaluation_seconds_count")
    eval_sum = delta(m_after, m_before, "rmm_policy_evaluation_seconds_sum")
    batches = delta(m_after, m_before, "rmm_server_storage_batch_seconds_count")
    processed = delta(m_after, m_before, "rmm_server_report_processing_seconds_count")
    figures: dict[str, float | None] = {
        "rate_per_second": acks / window,
        "rate_first_half": ratio(float(sum(by_second[:half])), float(half)),
        "rate_second_half": ratio(float(sum(by_second[half:])), float(len(by_second) - half)),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p99": percentile(latencies, 99),
        "latency_ms_max": latencies[-1] if latencies else None,
        "server_cpu_ms_per_report": ratio(server_cpu * 1000.0, float(acks)),
        "server_cpu_cores": server_cpu / window,
        "client_cpu_cores": sum(client_cpu) / window,
        "client_cpu_cores_max_process": max(client_cpu) / window,
        "machine_busy_ratio": ratio(
            float(after.machine_busy - before.machine_busy),
            float(after.machine_total - before.machine_total),
        ),
        "policy_eval_us_per_report": (
            ratio(eval_sum * 1e6, eval_count) if eval_sum is not None and eval_count else None
        ),
        "reports_per_batch": ratio(processed, batches),
        "storage_ms_per_batch": ratio(
            (delta(m_after, m_before, "rmm_server_storage_batch_seconds_sum") or 0.0) * 1000.0,
            batches,
        ),
        # At the end of the window, every agent connected and streaming: what each one costs
        # the server in memory, above the server's RSS before any agent enrolled.
        "server_rss_mb": after.server_rss_kb / 1024.0,
        "server_kb_per_agent": (after.server_rss_kb - rss_ready_kb) / args.agents,
    }
    return {
        "config": config,
        "run": run,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(),
        "window_seconds": window,
        "enroll_seconds": enroll_seconds,
        "acks_in_window": acks,
        "sent_in_window": sum(r.sent_in_window for r in results),
        "acks_by_second": by_second,
        "acks_by_second_warmup": [
            sum(seconds)
            for seconds in zip(*(r.acks_by_second_warmup for r in results), strict=True)
        ],
        "reports_acked_total": sum(o.acked for o in outcomes),
        "need_inventory_acks": sum(o.need_inventory for o in outcomes),
        "need_inventory_first": {
            o.agent_id: o.need_inventory_sequences for o in outcomes if o.need_inventory
        },
        "server_sockets": sockets,
        "server_cpu_seconds_by_thread": dict(sorted(threads.items(), key=lambda kv: -kv[1])),
        "client_cpu_seconds": client_cpu,
        "client_pids": client_pids,
        "metrics_before": m_before,
        "metrics_after": m_after,
        "figures": figures,
        "verification": checked,
        "server_stop": server_stop,
        "server_log": problems,
        "loadavg_after": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------------
# The bare peer: a grpc.aio AgentService that only decodes and acknowledges


class BareAgentService(agent_pb2_grpc.AgentServiceServicer):
    """Enroll anyone; acknowledge every report read (the ceiling of a Python grpc.aio server)."""

    def __init__(self) -> None:
        self.enrolled = 0

    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EnrollResponse:
        self.enrolled += 1
        return agent_pb2.EnrollResponse(
            agent_id=f"bare-{self.enrolled:05d}", credential="bare", client=CLIENT, site=SITE
        )

    async def StreamReports(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        async for report in request_iterator:
            yield agent_pb2.ReportAck(sequence=report.sequence)


# rmm-server's figure for the most agents one process holds here (pending_calls()).
BARE_PENDING_CALLS = 60_000


async def serve_bare(address: str) -> None:
    """Serve the bare peer on `address` until SIGTERM."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
            # As rmm-server sets them (rmm_server/listeners.py): a burst of new streams waits
            # for the server instead of gRPC core ending those past 1,000-3,000 waiting.
            ("grpc.server.max_pending_requests", BARE_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", BARE_PENDING_CALLS),
        ]
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareAgentService(), server)
    server.add_insecure_port(address)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=None)


def measure_bare(
    run: int,
    args: argparse.Namespace,
    template: agent_pb2.Report,
    inventory_json: bytes,
) -> dict[str, Any]:
    """Drive the bare peer with the same clients, agents and window as the real server."""
    started = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(prefix="rmm-bench-bare-") as tmp:
        log_path = Path(tmp) / "bare.log"
        grpc_address = f"127.0.0.1:{free_port()}"
        proc = spawn(
            [sys.executable, "-m", "bench.ingest_rate", "--bare-server", grpc_address], log_path
        )
        server = Server(proc, "", grpc_address, log_path)
        try:

            def ready() -> bool:
                ensure_alive(proc, "the bare peer", log_path)
                channel = grpc.insecure_channel(grpc_address)
                try:
                    grpc.channel_ready_future(channel).result(timeout=1.0)
                    return True
                except grpc.FutureTimeoutError:
                    return False
                finally:
                    channel.close()

            wait_until(ready, START_TIMEOUT_SECONDS, f"the bare peer on {grpc_address}")
            agents = enroll_agents(grpc_address, "bare", args.agents, template.host)
            jobs = [
                ClientJob(
                    worker=worker,
                    address=grpc_address,
                    agents=tuple(agents[worker :: args.clients]),
                    template=template.SerializeToString(),
                    inventory_hash=template.inventory_hash,
                    inventory_json=inventory_json,
                    in_flight=args.in_flight,
                    seed=run,
                    interval=args.agents / args.rate if args.rate else 0.0,
                )
                for worker in range(args.clients)
            ]
            print(f"run {run} (bare grpc.aio peer): same load...", flush=True)
            results, before, after, _pids, _m0, _m1, _sockets = run_clients(
                jobs,
                server,
                args.warmup,
                args.duration,
                DRAIN_BASE_SECONDS + args.agents * args.in_flight / DRAIN_REPORTS_PER_SECOND,
            )
        finally:
            stop_process(proc)
    window = after.at - before.at
    acks = sum(r.acks_in_window for r in results)
    latencies = sorted(v for r in results for v in r.latencies_ms)
    server_cpu = (after.server_ticks - before.server_ticks) / CLK_TCK
    outcomes = [o for r in results for o in r.agents]
    return {
        "config": "bare",
        "run": run,
        "started_at": started,
        "window_seconds": window,
        "acks_in_window": acks,
        "problems": sum(bool(o.error or o.timed_out or o.rejected) for o in outcomes),
        "figures": {
            "rate_per_second": acks / window,
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p99": percentile(latencies, 99),
            "server_cpu_ms_per_report": ratio(server_cpu * 1000.0, float(acks)),
            "server_cpu_cores": server_cpu / window,
            "machine_busy_ratio": ratio(
                float(after.machine_busy - before.machine_busy),
                float(after.machine_total - before.machine_total),
            ),
        },
        "loadavg_after": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------------
# Summary and table


def config_label(config: str) -> str:
    return "a: policies on" if config == "policies" else "b: --no-policies"


def summarise_runs(measurements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return per-configuration medians and the within-run ratios (b)/(a)."""
    by_config: dict[str, dict[str, float | None]] = {}
    for config in (*CONFIGS, "bare"):
        mine = [m for m in measurements if m["config"] == config]
        if not mine:
            continue
        names = list(mine[0]["figures"])
        by_config[config] = {n: median_or_none([m["figures"][n] for m in mine]) for n in names}
    pairs = []
    for run in sorted({m["run"] for m in measurements}):
        a = next(m for m in measurements if m["run"] == run and m["config"] == "policies")
        b = next(m for m in measurements if m["run"] == run and m["config"] == "no-policies")
        bare = next(
            (m for m in measurements if m["run"] == run and m["config"] == "bare"), None
        )
        pairs.append({
            "rate_a_over_bare": None if bare is None else ratio(
                a["figures"]["rate_per_second"], bare["figures"]["rate_per_second"]
            ),
            "rate_b_over_bare": None if bare is None else ratio(
                b["figures"]["rate_per_second"], bare["figures"]["rate_per_second"]
            ),
            "run": run,
            "rate_b_over_a": ratio(
                b["figures"]["rate_per_second"], a["figures"]["rate_per_second"]
            ),
            "cpu_per_report_a_over_b": ratio(
                a["figures"]["server_cpu_ms_per_report"], b["figures"]["server_cpu_ms_per_report"]
            ),
            "cpu_ms_per_report_a_minus_b": _minus(
                a["figures"]["server_cpu_ms_per_report"], b["figures"]["server_cpu_ms_per_report"]
            ),
        })
    return {
        "figures": by_config,
        "pairs": pairs,
        "rate_b_over_a": median_or_none([p["rate_b_over_a"] for p in pairs]),
        "rate_a_over_bare": median_or_none([p["rate_a_over_bare"] for p in pairs]),
        "rate_b_over_bare": median_or_none([p["rate_b_over_bare"] for p in pairs]),
        "cpu_per_report_a_over_b": median_or_none([p["cpu_per_report_a_over_b"] for p in pairs]),
        "cpu_ms_per_report_a_minus_b": median_or_none(
            [p["cpu_ms_per_report_a_minus_b"] for p in pairs]
        ),
    }


def _minus(one: float | None, other: float | None) -> float | None:
    return None if one is None or other is None else one - other


def targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Judge each configuration's median rate against 333/s and 1,667/s."""
    judged: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        rate = summary["figures"][config]["rate_per_second"]
        judged[config] = {
            "rate_per_second": rate,
            "agents_at_30s": None if rate is None else rate * REPORT_INTERVAL_SECONDS,
            "times_333": ratio(rate, TARGET_FLEET_RATE),
            "times_1667": ratio(rate, TARGET_AIM_RATE),
            "pass_333": rate is not None and rate >= TARGET_FLEET_RATE,
            "pass_1667": rate is not None and rate >= TARGET_AIM_RATE,
        }
    return judged


ROWS = (
    ("acknowledged reports/s", "rate_per_second", ".0f", True),
    ("latency send->ack p50 ms", "latency_ms_p50", ".1f", True),
    ("latency send->ack p99 ms", "latency_ms_p99", ".1f", True),
    ("server CPU ms per report", "server_cpu_ms_per_report", ".3f", True),
    ("server CPU, cores busy", "server_cpu_cores", ".2f", True),
    ("policy evaluation us/report (server)", "policy_eval_us_per_report", ".0f", False),
    ("reports per DB batch (mean)", "reports_per_batch", ".1f", False),
    ("DB batch write ms (mean)", "storage_ms_per_batch", ".1f", False),
    ("server RSS MB, end of window", "server_rss_mb", ".0f", False),
    ("server KB per connected agent", "server_kb_per_agent", ".1f", False),
    ("client CPU, cores busy (all procs)", "client_cpu_cores", ".2f", False),
    ("machine busy (all CPUs)", "machine_busy_ratio", ".0%", False),
)


def print_report(
    summary: dict[str, Any],
    judged: dict[str, dict[str, Any]],
    measurements: Sequence[dict[str, Any]],
    args: argparse.Namespace,
    rules: dict[str, int],
) -> None:
    fa, fb = summary["figures"]["policies"], summary["figures"]["no-policies"]
    runs = len(summary["pairs"])
    print()
    print(
        f"ingest rate of one rmm-server ({database_label(args.db)}): {args.agents} agents x "
        f"{args.in_flight} in flight"
        + (f", paced at {args.rate:g} reports/s offered" if args.rate else ", closed loop")
        + f", {args.clients} client "
        f"process{'es' if args.clients > 1 else ''}, "
        f"{args.duration:g} s windows; medians over {runs} run{'s' if runs > 1 else ''}"
    )
    print(f"  {'':<38} {'(a) policies':>13} {'(b) none':>11} {'b/a':>7}")
    for label, key, spec, with_ratio in ROWS:
        rat = fmt(ratio(fb[key], fa[key]), ".2f", "x") if with_ratio else ""
        print(f"  {label:<38} {fmt(fa[key], spec):>13} {fmt(fb[key], spec):>11} {rat:>7}")
    print(
        f"  rate (b)/(a), median of within-run ratios: "
        f"{fmt(summary['rate_b_over_a'], '.2f', 'x')}; server CPU per report (a)/(b): "
        f"{fmt(summary['cpu_per_report_a_over_b'], '.2f', 'x')} "
        f"(+{fmt(summary['cpu_ms_per_report_a_minus_b'], '.3f')} ms per report with policies)"
    )
    bare = summary["figures"].get("bare")
    if bare is not None:
        print(
            f"  bare grpc.aio peer (decode + ack only): {fmt(bare['rate_per_second'], '.0f')} "
            f"reports/s, p99 {fmt(bare['latency_ms_p99'], '.0f')} ms, "
            f"{fmt(bare['server_cpu_ms_per_report'], '.3f')} ms CPU/report; (a)/bare "
            f"{fmt(summary['rate_a_over_bare'], '.2f', 'x')}, (b)/bare "
            f"{fmt(summary['rate_b_over_bare'], '.2f', 'x')} (medians of within-run ratios)"
        )
    eval_us = fa["policy_eval_us_per_report"]
    mean_rules = (rules["server"] + rules["workstation"]) / 2.0
    print(
        f"  shipped rules in force: {rules['server']} per server, {rules['workstation']} per "
        f"workstation; evaluation {fmt(ratio(eval_us, mean_rules), '.1f')} us per rule "
        "(server's histogram mean)"
    )
    if runs > 1:
        print()
        print("each run (a | b | b/a)")
        for pair in summary["pairs"]:
            a = next(
                m for m in measurements if m["run"] == pair["run"] and m["config"] == "policies"
            )["figures"]
            b = next(
                m for m in measurements if m["run"] == pair["run"] and m["config"] == "no-policies"
            )["figures"]
            print(
                f"  run {pair['run']}: {fmt(a['rate_per_second'], '.0f')} | "
                f"{fmt(b['rate_per_second'], '.0f')} reports/s (halves "
                f"{fmt(a['rate_first_half'], '.0f')}/{fmt(a['rate_second_half'], '.0f')} | "
                f"{fmt(b['rate_first_half'], '.0f')}/{fmt(b['rate_second_half'], '.0f')}) | "
                f"{fmt(pair['rate_b_over_a'], '.2f', 'x')};  CPU ms/report "
                f"{fmt(a['server_cpu_ms_per_report'], '.3f')} | "
                f"{fmt(b['server_cpu_ms_per_report'], '.3f')};  p99 ms "
                f"{fmt(a['latency_ms_p99'], '.0f')} | {fmt(b['latency_ms_p99'], '.0f')}"
            )
    print()
    print("acks per second during the warm-up (last run of each)")
    for config in CONFIGS:
        last = [m for m in measurements if m["config"] == config][-1]
        print(
            f"  ({config_label(config)[0]}) "
            f"{' '.join(str(n) for n in last['acks_by_second_warmup'])}"
        )
    print("server CPU by thread over the window, share of one core (last run of each)")
    for config in CONFIGS:
        last = [m for m in measurements if m["config"] == config][-1]
        window = last["window_seconds"]
        parts = [
            f"{name} {seconds / window:.0%}"
            for name, seconds in list(last["server_cpu_seconds_by_thread"].items())[:5]
            if seconds > 0
        ]
        print(f"  ({config_label(config)[0]}) {', '.join(parts)}")
    client_max = max((m["figures"]["client_cpu_cores_max_process"] or 0.0) for m in measurements)
    if client_max > 0.85:
        print(
            f"  note: a client process used {client_max:.0%} of a core: the clients may limit "
            "the rate; try --clients 2"
        )
    print()
    print(
        f"targets (issue): 10,000 agents every 30 s = {TARGET_FLEET_RATE:.0f}/s; "
        f"aim 5x = {TARGET_AIM_RATE:,.0f}/s"
    )
    for config in CONFIGS:
        j = judged[config]
        print(
            f"  ({config_label(config)}) {fmt(j['rate_per_second'], '.0f')}/s = "
            f"{fmt(j['times_333'], '.2f', 'x')} of 333/s "
            f"{'PASS' if j['pass_333'] else 'FAIL'}, "
            f"{fmt(j['times_1667'], '.2f', 'x')} of 1,667/s "
            f"{'PASS' if j['pass_1667'] else 'FAIL'}  "
            f"(~{fmt(j['agents_at_30s'], ',.0f')} agents at 30 s)"
        )
    print()
    bad = [m for m in measurements if not m["verification"]["ok"]]
    checked = sum(m["verification"]["agents_checked_last_sequence"] for m in measurements)
    print(
        f"verification: {'OK' if not bad else 'FAILED'}: stored last_sequence = last "
        f"acknowledged for {checked} agent streams, reports_stored = acknowledged for "
        f"{sum(len(m['verification']['shown']) for m in measurements)} shown, no rejections"
    )
    for m in bad:
        for problem in m["verification"]["problems"][:5]:
            print(f"  run {m['run']} ({m['config']}): {problem}")
    inventory = sum(m["need_inventory_acks"] for m in measurements)
    if inventory:
        print(f"  acks asking for the inventory again (need_inventory): {inventory}")
    last_a = [m for m in measurements if m["config"] == "policies"][-1]["verification"]
    alerts = ", ".join(f"{k} {v}" for k, v in last_a["open_alerts"].items()) or "none"
    print(f"  open alerts at the end of the last (a) run: {alerts}")
    # One line that is not JSON is expected: "admin operator token written to ...".
    logs = [
        m
        for m in measurements
        if any(m["server_log"]["counts"][k] for k in ("warning", "error", "critical"))
        or m["server_log"]["counts"]["not_json"] > 1
    ]
    for m in logs:
        print(
            f"  server log of run {m['run']} ({m['config']}): {m['server_log']['counts']}; "
            f"first: {m['server_log']['first'][:2]}"
        )


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_rate",
        description="Measure one server's ingest rate with the shipped policies and without.",
    )
    parser.add_argument(
        "--agents",
        type=int,
        default=200,
        help="simulated agents, each with its own stream (default 200)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds measured, after the warm-up (default 20)",
    )
    # 10 s, not less: with policies on, the first evaluations of every agent create their
    # alerts, and the server acknowledges almost nothing for the first ~4 s.
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of load before measuring (default 10)"
    )
    parser.add_argument(
        "--runs", type=int, default=2, help="runs; each measures (a) then (b) (default 2)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=4, help="unacknowledged reports per stream (default 4)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="client processes the agents are spread over (default 1)",
    )
    parser.add_argument(
        "--db",
        help="postgresql://USER@HOST:PORT/DB: each measurement gets a "
        "fresh database on that server (dropped afterwards) instead of SQLite",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered reports/s in all, each agent paced at agents/rate seconds (an open loop: "
        "latency then means response time); default 0: as fast as acknowledged",
    )
    parser.add_argument(
        "--no-bare", action="store_true", help="leave out the bare grpc.aio peer of each run"
    )
    parser.add_argument("--bare-server", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.db and not args.db.startswith("postgresql"):
        parser.error("--db takes a postgresql:// URL (SQLite is the default)")
    if not 1 <= args.agents <= 20000:
        parser.error("--agents must be between 1 and 20000")
    if args.rate < 0:
        parser.error("--rate must be 0 (closed loop) or a positive rate")
    if not 2 <= args.duration <= 600:
        parser.error("--duration must be between 2 and 600 seconds")
    if not 0 <= args.warmup <= 120:
        parser.error("--warmup must be between 0 and 120 seconds")
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    if not 1 <= args.in_flight <= 64:
        parser.error("--in-flight must be between 1 and 64 (the server reads 64 ahead)")
    if not 1 <= args.clients <= min(8, args.agents):
        parser.error("--clients must be between 1 and 8, and at most --agents")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server:  # the bare peer's own process (measure_bare starts it)
        asyncio.run(serve_bare(args.bare_server))
        return 0
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if not sys.platform.startswith("linux"):
        print("ingest_rate needs Linux (/proc)", file=sys.stderr)
        return 2
    started = datetime.now(UTC).isoformat()
    print("capturing one real report of this host...", flush=True)
    template, inventory_json = capture_template()
    rules = rules_in_force()
    result: dict[str, Any] = {
        "benchmark": "ingest_rate",
        "started_at": started,
        "machine": machine(),
        "versions": {"rmm": agent_version, "grpcio": grpc.__version__},
        "options": {
            "agents": args.agents,
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "runs": args.runs,
            "in_flight": args.in_flight,
            "offered_rate": args.rate or None,
            "clients": args.clients,
            "policies": str(POLICIES),
            "database": "postgresql" if args.db else "sqlite",
            "server_flags": list(RATE_LIMITS_OFF),
            "hot_agents": sum(is_hot(i) for i in range(args.agents)),
        },
        "template": {
            "report_bytes": template.ByteSize(),
            "samples": sum(len(c.samples) for c in template.collectors),
            "collectors": [c.name for c in template.collectors],
            "inventory_bytes": len(inventory_json),
        },
        "rules_in_force": rules,
    }
    print(
        f"report: {template.ByteSize()} bytes, "
        f"{result['template']['samples']} samples; inventory {len(inventory_json)} bytes "
        "(sent with each agent's first report)",
        flush=True,
    )
    measurements: list[dict[str, Any]] = []
    try:
        for run in range(1, args.runs + 1):
            for config in CONFIGS:
                measurements.append(measure(config, run, args, template, inventory_json))
                f = measurements[-1]["figures"]
                print(
                    f"  {fmt(f['rate_per_second'], '.0f')} reports/s, p99 "
                    f"{fmt(f['latency_ms_p99'], '.0f')} ms, server "
                    f"{fmt(f['server_cpu_ms_per_report'], '.3f')} ms CPU/report",
                    flush=True,
                )
            if not args.no_bare:
                measurements.append(measure_bare(run, args, template, inventory_json))
                f = measurements[-1]["figures"]
                print(
                    f"  {fmt(f['rate_per_second'], '.0f')} reports/s, p99 "
                    f"{fmt(f['latency_ms_p99'], '.0f')} ms, bare peer "
                    f"{fmt(f['server_cpu_ms_per_report'], '.3f')} ms CPU/report",
                    flush=True,
                )
    except BenchError as exc:
        print(f"ingest_rate: {exc}", file=sys.stderr)
        return 1
    summary = summarise_runs(measurements)
    judged = targets(summary)
    result.update(
        finished_at=datetime.now(UTC).isoformat(),
        measurements=measurements,
        summary=summary,
        targets=judged,
    )
    print_report(summary, judged, [m for m in measurements if m["config"] != "bare"], args, rules)
    print(f"\nnproc {result['machine']['nproc']}, load {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    real = [m for m in measurements if m["config"] != "bare"]
    bare_ok = all(not m["problems"] for m in measurements if m["config"] == "bare")
    return 0 if all(m["verification"]["ok"] for m in real) and bare_ok else 1


if __name__ == "__main__":
    sys.exit(main())
