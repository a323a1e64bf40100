"""The highest sustained ingest rate with p99 <= 50 ms at 1k-20k connected agents (issue #16).

For every combination of `--agents`, `--db` and `--processes`:

1. `--processes` P real `rmm-server serve` processes (shipped policies on, rate limits off, as
   in bench.ingest_rate) on one fresh database: SQLite (P must be 1: an SQLite file has one
   server) or a fresh database on the PostgreSQL server of a `postgresql://` URL, P replicas
   sharing it and one data directory, each on its own gRPC and HTTP port (what a TCP load
   balancer in front of them does is done here by the agents: agent i connects to replica
   i mod P, so each holds 1/P of the streams and owns those agents' alert state: see
   rmm_server/cluster.py; with `--reuse-port` the replicas share one port instead, as
   `rmm-server serve --reuse-port` on one host, and the kernel spreads the connections);
2. the agents are enrolled through replica 0's Enroll RPC (`--enroll-concurrency` at a time),
   and spread over `--clients` client processes (grpc.aio, one TCP connection per agent, the
   real collectors' report as template, a quarter of them "hot": bench.ingest_rate's agents);
3. every agent connects, opens its report stream and sends one report carrying its inventory
   (the priming step, not measured: what a fleet does once when the server starts), then the
   offered rate is stepped: `--start-rate`, times `--growth` each step; at each, every agent's
   reports are paced at agents/rate seconds on the stream it holds from step to step, as a real
   agent holds one (at 10,000 agents and 300/s an agent reports every 33 s: a stream per step
   would be a new stream per report, which no fleet does); an open loop, random phases,
   latency from when each report was due; `--warmup` s then `--duration` s measured. A step
   passes when p99 <= `--p99-ms`, at least 95% of the offered rate was acknowledged in the
   window, and no stream failed or report was rejected; the first failing step ends the
   stepping (`--max-steps` at most);
4. the server's CPU (all P processes, /proc) per report in the window (on 2 cores the clients
   and the servers share the machine: this is the honest figure, the rate is what this machine
   does with its load generator on it), server RSS at the end of each step's window and, at the
   lowest step, its growth over the RSS before any agent enrolled divided by the agents
   (memory per connected agent: a connection, a stream, its fleet record and its state);
5. afterwards every agent's last acknowledged sequence must be the server's `last_sequence`
   (`rmm agents list`), or the combination is marked failed.

The bare peer (bench.ingest_rate's grpc.aio AgentService that only decodes and acknowledges, P
processes of it) is stepped the same way for each agent count and process count in the same run:
the ceiling. `--no-bare` leaves it out.

    .venv/bin/python -m bench.ingest_scale --agents 1000,5000,10000,20000 \\
        --db sqlite,postgresql://postgres@127.0.0.1:5432/test --processes 1,2 --json /tmp/s.json

This machine's open-file limit (hard 20,000 here) bounds the agents one process can hold: a
combination that needs more connections per process than the limit allows is skipped, saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench.agent_footprint import (
    BIN,
    CLK_TCK,
    BenchError,
    cpu_ticks,
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
from bench.ingest_rate import (
    CLIENT,
    POLICIES,
    RATE_LIMITS_OFF,
    REPORT_INTERVAL_SECONDS,
    SITE,
    AgentOutcome,
    ClientJob,
    ReportMaker,
    SimAgent,
    WorkerResult,
    capture_template,
    fresh_database,
    is_hot,
    machine_ticks,
    percentile,
    rules_in_force,
    scrape,
    stop_clients,
)
from rmm_agent import __version__ as agent_version
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

START_SECONDS = 60.0
# Connecting thousands of channels on a shared 2-core machine: a minute plus 1 s per 200.
CONNECT_AGENTS_PER_SECOND = 200.0
DRAIN_SECONDS = 30.0
# First reports (with the inventory: 59 kB, checked, diffed and stored) offered per second at
# most while priming: what one server takes on a busy 2-core machine.
PRIME_RATE = 100.0
# A step passes only if the window acknowledged at least this share of the offered rate.
KEPT_UP = 0.95
# File descriptors a process needs beside its connections (logs, database, epoll, pipes).
SPARE_FDS = 500


# --------------------------------------------------------------------------------------------
# Client processes: connect once, hold one report stream per agent, step the rate on it


@dataclass(frozen=True, slots=True)
class ScaleJob:
    worker: int
    addresses: tuple[str, ...]  # agent i of the whole fleet connects to addresses[i % P]
    agents: tuple[SimAgent, ...]
    template: bytes
    inventory_hash: str
    inventory_json: bytes
    in_flight: int


@dataclass(frozen=True, slots=True)
class Step:
    """What the client processes are told for one step."""

    timeline: tuple[float, float, float, float]  # start, window start, window end, drain end
    interval: float  # seconds between two reports of one agent
    seed: int


class HeldStream:
    """One agent's report stream, opened once and held across steps, as a real agent holds it.

    Each step paces the agent's reports at the step's interval on the same stream; the reader
    runs for the stream's life and credits each acknowledgement to the step whose report it is.
    A stream that fails is counted against its step and opened again at the next one (the
    sequence goes on, as an agent's does)."""

    def __init__(self, agent: SimAgent, channel: grpc.aio.Channel, maker: ReportMaker,
                 in_flight: int) -> None:
        self.agent = agent
        self.channel = channel
        self.maker = maker
        self.slots = asyncio.Semaphore(in_flight)
        self.in_flight = in_flight
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.next_sequence = 1
        self.expected = 1
        self.attach = True  # a new agent's first report carries its inventory
        # sequence -> (latency origin, the step's tallies, this agent's outcome in that step)
        self.pending: dict[int, tuple[float, WorkerResult, AgentOutcome, Step]] = {}
        self.settled = asyncio.Event()  # nothing pending
        self.settled.set()
        self.error = ""

    def _open(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.call = stub.StreamReports(metadata=bearer_metadata(self.agent.credential))
        self.error = ""
        self.expected = self.next_sequence
        self.slots = asyncio.Semaphore(self.in_flight)
        self.reader = asyncio.create_task(self._read(self.call))

    async def _read(self, call: Any) -> None:
        try:
            while True:
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    return
                now = time.monotonic()
                entry = self.pending.pop(ack.sequence, None)
                self.slots.release()
                if entry is None:
                    continue
                origin, result, outcome, step = entry
                outcome.count_ack(ack, self.expected)
                self.expected = ack.sequence + 1
                if outcome.first_ack_at is None:
                    outcome.first_ack_at = now - step.timeline[0]
                if ack.need_inventory:
                    self.attach = True
                record_ack(result, step, now, origin)
                if not self.pending:
                    self.settled.set()
        except grpc.aio.AioRpcError as error:
            self.error = f"{error.code().name}: {error.details()}"
        finally:
            for _origin, _result, outcome, step in self.pending.values():
                outcome.error = outcome.error or self.error or "stream ended without an ack"
                outcome.error_at = time.monotonic() - step.timeline[0]
            self.pending.clear()
            self.settled.set()

    async def run_step(self, step: Step, result: WorkerResult, outcome: AgentOutcome) -> None:
        start_at, window_start, window_end, drain_deadline = step.timeline
        # The interval the agent says it reports at is the one it keeps: an agent paced slower
        # than it says is "offline" between two reports (AgentOffline opening and resolving
        # all the time, which no fleet does).
        self.maker.report.interval_seconds = max(
            REPORT_INTERVAL_SECONDS, math.ceil(step.interval)
        )
        due = start_at + self.maker.rng.uniform(0.0, step.interval)
        while due < window_end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if self.call is None or self.reader is None or self.reader.done():
                self._open()
            try:
                await asyncio.wait_for(self.slots.acquire(), drain_deadline - time.monotonic())
            except TimeoutError:
                outcome.timed_out = True
                return
            now = time.monotonic()
            if now >= window_end:
                self.slots.release()
                break
            sequence = self.next_sequence
            report = self.maker.next(sequence, self.attach)
            self.attach = False
            # Latency from when the report was due: a server that falls behind shows it.
            self.pending[sequence] = (min(now, due), result, outcome, step)
            self.settled.clear()
            try:
                await self.call.write(report)
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                break  # the reader ends the call's pending reports with its error
            self.next_sequence += 1
            outcome.sent = sequence
            if window_start <= now:
                result.sent_in_window += 1
            due += step.interval
        try:
            await asyncio.wait_for(self.settled.wait(), max(1.0, drain_deadline - time.monotonic()))
        except TimeoutError:
            outcome.timed_out = True

    async def close(self) -> None:
        if self.call is not None and self.reader is not None and not self.reader.done():
            with contextlib.suppress(asyncio.InvalidStateError, grpc.aio.AioRpcError):
                await self.call.done_writing()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reader, DRAIN_SECONDS)
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()


def record_ack(result: WorkerResult, step: Step, now: float, origin: float) -> None:
    """Count an acknowledgement in its step's window (latency) or warm-up."""
    start_at, window_start, window_end, _ = step.timeline
    if window_start <= now < window_end:
        result.acks_in_window += 1
        second = min(int(now - window_start), len(result.acks_by_second) - 1)
        result.acks_by_second[second] += 1
        result.latencies_ms.append((now - origin) * 1000.0)
    elif start_at <= now < window_start:
        second = min(int(now - start_at), len(result.acks_by_second_warmup) - 1)
        result.acks_by_second_warmup[second] += 1


async def run_scale_client(
    job: ScaleJob,
    inbox: multiprocessing.queues.Queue[Any],
    outbox: multiprocessing.queues.Queue[Any],
) -> None:
    options = [
        ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per agent
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    channels = [
        grpc.aio.insecure_channel(job.addresses[agent.index % len(job.addresses)], options=options)
        for agent in job.agents
    ]
    makers_job = ClientJob(
        worker=job.worker, address="", agents=job.agents, template=job.template,
        inventory_hash=job.inventory_hash, inventory_json=job.inventory_json,
        in_flight=job.in_flight, seed=job.worker,
    )
    streams = [
        HeldStream(agent, channel, ReportMaker(agent, makers_job), job.in_flight)
        for agent, channel in zip(job.agents, channels, strict=True)
    ]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in channels)),
            START_SECONDS + len(channels) / CONNECT_AGENTS_PER_SECOND,
        )
        outbox.put(("ready", job.worker, os.getpid()))
        loop = asyncio.get_running_loop()
        while True:
            step: Step | None = await loop.run_in_executor(None, inbox.get)
            if step is None:
                break
            start_at, window_start, window_end, _ = step.timeline
            result = WorkerResult(job.worker)
            result.acks_by_second = [0] * max(1, math.ceil(window_end - window_start))
            result.acks_by_second_warmup = [0] * max(1, math.ceil(window_start - start_at))
            result.agents = [AgentOutcome(agent.agent_id) for agent in job.agents]
            await asyncio.gather(
                *(stream.run_step(step, result, outcome)
                  for stream, outcome in zip(streams, result.agents, strict=True))
            )
            outbox.put(("done", job.worker, result))
    finally:
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


def scale_client_main(
    job: ScaleJob,
    inbox: multiprocessing.queues.Queue[Any],
    outbox: multiprocessing.queues.Queue[Any],
) -> None:
    try:
        asyncio.run(run_scale_client(job, inbox, outbox))
    except BaseException:
        outbox.put(("error", job.worker, traceback.format_exc()))
        raise


class Clients:
    """The client processes of one combination, connected once, driven step by step."""

    def __init__(self, jobs: Sequence[ScaleJob], servers: Sequence[Any]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.servers = servers
        self.outbox: multiprocessing.queues.Queue[Any] = ctx.Queue()
        self.inboxes: list[multiprocessing.queues.Queue[Any]] = [ctx.Queue() for _ in jobs]
        self.processes = [
            ctx.Process(target=scale_client_main, args=(job, inbox, self.outbox), daemon=True,
                        name=f"ingest-scale-client-{job.worker}")
            for job, inbox in zip(jobs, self.inboxes, strict=True)
        ]
        self.pids: list[int] = []
        agents = sum(len(job.agents) for job in jobs)
        for proc in self.processes:
            proc.start()
        timeout = START_SECONDS + agents / CONNECT_AGENTS_PER_SECOND
        got = [self._message(time.monotonic() + timeout, "connecting") for _ in jobs]
        self.pids = [int(pid) for _kind, _worker, pid in sorted(got, key=lambda m: m[1])]

    def _message(self, deadline: float, what: str) -> tuple[str, int, Any]:
        while True:
            for server in self.servers:
                server.check()
            try:
                kind, worker, payload = self.outbox.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise BenchError(f"timed out: client processes {what}") from None
                if not all(p.is_alive() for p in self.processes):
                    raise BenchError(f"a client process died while {what}") from None
                continue
            if kind == "error":
                raise BenchError(f"client process {worker} failed:\n{payload}")
            return kind, worker, payload

    def step_results(self, step: Step) -> list[WorkerResult]:
        """Wait for every client's results of `step` (sent with `start`)."""
        deadline = step.timeline[3] + START_SECONDS
        return [self._message(deadline, "running a step")[2] for _ in self.inboxes]

    def start(self, step: Step) -> None:
        for inbox in self.inboxes:
            inbox.put(step)

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.processes:
            proc.join(10.0)
        stop_clients(self.processes)
        self.outbox.close()
        for inbox in self.inboxes:
            inbox.close()


# --------------------------------------------------------------------------------------------
# Servers: P real replicas, or P bare peers


@dataclass(slots=True)
class Proc:
    proc: Any  # subprocess.Popen[bytes]
    what: str
    log_path: Path
    grpc_address: str
    http_url: str = ""

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def check(self) -> None:
        ensure_alive(self.proc, self.what, self.log_path)


@contextmanager
def real_servers(
    count: int, db_url: str | None, workdir: Path, reuse_port: bool = False
) -> Iterator[tuple[list[Proc], dict[str, str]]]:
    """Start `count` rmm-server replicas on `db_url` (SQLite when None) with one data
    directory; yield them and the environment for `rmm` against the first. `reuse_port`: the
    replicas share one gRPC port (`--reuse-port`, the kernel spreading the connections)."""
    data_dir = workdir / "server"
    servers: list[Proc] = []
    shared = f"127.0.0.1:{free_port()}"
    try:
        for index in range(count):
            grpc_address = shared if reuse_port else f"127.0.0.1:{free_port()}"
            http_url = f"http://127.0.0.1:{free_port()}"
            log_path = workdir / f"server-{index}.log"
            argv: list[str | Path] = [
                BIN / "rmm-server", "serve", "--data-dir", data_dir,
                "--grpc-listen", grpc_address, "--http-listen", http_url.removeprefix("http://"),
                "--insecure", "--log-format", "json", "--policies", POLICIES,
                *RATE_LIMITS_OFF, "--replica-id", f"bench-{index}",
                *(["--reuse-port"] if reuse_port else []),
            ]
            if db_url:
                argv += ["--db", db_url]
            servers.append(
                Proc(spawn(argv, log_path), f"rmm-server {index}", log_path, grpc_address,
                     http_url)
            )
            if index == 0:  # the first migrates the fresh database and writes the token
                wait_ready(servers[0], data_dir)
        for server in servers[1:]:
            wait_ready(server, data_dir)
        env = dict(os.environ)
        env.update(
            RMM_SERVER=servers[0].grpc_address,
            RMM_TOKEN=(data_dir / "admin.token").read_text().strip(),
            RMM_INSECURE="1",
        )
        yield servers, env
    finally:
        for server in servers:
            stop_process(server.proc)


def wait_ready(server: Proc, data_dir: Path) -> None:
    def ready() -> bool:
        server.check()
        return (data_dir / "admin.token").exists() and bool(http_get(server.http_url + "/healthz"))

    wait_until(ready, START_SECONDS, f"{server.what} on {server.http_url}/healthz")


@contextmanager
def bare_servers(count: int, workdir: Path) -> Iterator[list[Proc]]:
    servers: list[Proc] = []
    try:
        for index in range(count):
            address = f"127.0.0.1:{free_port()}"
            log_path = workdir / f"bare-{index}.log"
            proc = spawn(
                [sys.executable, "-m", "bench.ingest_rate", "--bare-server", address], log_path
            )
            servers.append(Proc(proc, f"bare peer {index}", log_path, address))
        for server in servers:

            def ready(server: Proc = server) -> bool:
                server.check()
                channel = grpc.insecure_channel(server.grpc_address)
                try:
                    grpc.channel_ready_future(channel).result(timeout=1.0)
                    return True
                except grpc.FutureTimeoutError:
                    return False
                finally:
                    channel.close()

            wait_until(ready, START_SECONDS, f"{server.what} on {server.grpc_address}")
        yield servers
    finally:
        for server in servers:
            stop_process(server.proc)


async def _enroll_all(
    address: str, token: str, count: int, host: agent_pb2.HostFacts, concurrency: int
) -> list[SimAgent]:
    agents: list[SimAgent | None] = [None] * count
    slots = asyncio.Semaphore(concurrency)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)

        async def one(index: int) -> None:
            tag = "server" if index % 2 == 0 else "workstation"
            hostname = f"bench-{'srv' if tag == 'server' else 'ws'}-{index:05d}"
            facts = agent_pb2.HostFacts()
            facts.CopyFrom(host)
            facts.hostname = hostname
            async with slots:
                try:
                    response = await stub.Enroll(
                        agent_pb2.EnrollRequest(
                            token=token, host=facts, tags=[tag], agent_version=agent_version
                        ),
                        timeout=120,
                    )
                except grpc.aio.AioRpcError as error:
                    raise BenchError(f"enrolling agent {index} on {address} failed: "
                                     f"{error.code().name}: {error.details()}") from error
            agents[index] = SimAgent(index, response.agent_id, response.credential, hostname,
                                     tag, is_hot(index))

        await asyncio.gather(*(one(index) for index in range(count)))
    return [agent for agent in agents if agent is not None]


def enroll(
    address: str, token: str, count: int, host: agent_pb2.HostFacts, concurrency: int
) -> list[SimAgent]:
    return asyncio.run(_enroll_all(address, token, count, host, concurrency))


# --------------------------------------------------------------------------------------------
# Stepping the offered rate


@dataclass(slots=True)
class Combination:
    kind: str  # "rmm" or "bare"
    agents: int
    processes: int
    db: str  # "sqlite", "postgresql", or "-" (bare)
    steps: list[dict[str, Any]] = field(default_factory=list)
    skipped: str = ""
    error: str = ""
    verification: dict[str, Any] = field(default_factory=dict)
    rss_before_agents_mb: float | None = None
    enroll_seconds: float | None = None
    prime_seconds: float | None = None
    server_log: list[dict[str, Any]] = field(default_factory=list)

    def label(self) -> str:
        what = "bare peer" if self.kind == "bare" else f"rmm {self.db}"
        return f"{what}, {self.agents:,} agents, {self.processes} process(es)"

    def best(self) -> dict[str, Any] | None:
        passed = [s for s in self.steps if s["passed"] and not s["prime"]]
        return max(passed, key=lambda s: s["rate_per_second"]) if passed else None


def run_step(
    clients: Clients,
    servers: Sequence[Proc],
    agents: int,
    rate: float,
    warmup: float,
    duration: float,
    seed: int,
    prime: bool,
    p99_ms: float,
    drain: float = DRAIN_SECONDS,
) -> dict[str, Any]:
    interval = agents / rate
    start_at = time.monotonic() + 0.5
    window_start = start_at + warmup
    window_end = window_start + duration
    step = Step((start_at, window_start, window_end, window_end + drain), interval, seed)
    clients.start(step)
    pids = [s.pid for s in servers]
    time.sleep(max(0.0, window_start - 0.3 - time.monotonic()))
    # Read in the background: a busy server may take longer to answer than the window lasts,
    # and the window's CPU and time must start when the clients' window starts.
    scraper = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(servers)))
    before = [scraper.submit(scrape, s.http_url) for s in servers]
    time.sleep(max(0.0, window_start - time.monotonic()))
    busy0, total0 = machine_ticks()
    cpu0 = [cpu_ticks(pid) for pid in pids]
    client0 = [cpu_ticks(pid) for pid in clients.pids]
    at0 = time.monotonic()
    time.sleep(max(0.0, window_end - time.monotonic()))
    at1 = time.monotonic()
    cpu1 = [cpu_ticks(pid) for pid in pids]
    client1 = [cpu_ticks(pid) for pid in clients.pids]
    busy1, total1 = machine_ticks()
    rss = [rss_kb(pid) for pid in pids]  # every agent's stream still open
    metrics1 = [scrape(s.http_url) for s in servers]
    metrics0 = [future.result() for future in before]
    scraper.shutdown()
    results = clients.step_results(step)
    window = at1 - at0
    acks = sum(r.acks_in_window for r in results)
    latencies = sorted(v for r in results for v in r.latencies_ms)
    outcomes = [o for r in results for o in r.agents]
    failed = [o for o in outcomes if o.error or o.timed_out or o.rejected or o.out_of_order]
    server_cpu = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / CLK_TCK
    rate_done = acks / (window_end - window_start)  # the clients count acks in that window
    p99 = percentile(latencies, 99)
    reasons = []
    if p99 is None or p99 > p99_ms:
        reasons.append(f"p99 {fmt(p99, '.0f')} ms > {p99_ms:g} ms")
    if rate_done < KEPT_UP * rate:
        reasons.append(f"acknowledged {rate_done:.0f}/s < {KEPT_UP:.0%} of {rate:.0f}/s offered")
    if failed:
        first = failed[0]
        why = first.first_rejection or first.error or (
            "timed out" if first.timed_out else "acks out of order"
        )
        reasons.append(f"{len(failed)} streams failed (first: {why})")
    def summed(name: str) -> float:
        return sum(m1.get(name, 0.0) - m0.get(name, 0.0)
                   for m0, m1 in zip(metrics0, metrics1, strict=True))

    batches = summed("rmm_server_storage_batch_seconds_count")
    processed = summed("rmm_server_report_processing_seconds_count")
    return {
        "prime": prime,
        # The server's own view (none for the bare peer): from receiving a report to its ack,
        # and the database batches' size and time, over about the window.
        "server_processing_ms_mean": ratio(
            summed("rmm_server_report_processing_seconds_sum") * 1000.0, processed
        ),
        "reports_per_db_batch": ratio(processed, batches),
        "db_batch_ms_mean": ratio(
            summed("rmm_server_storage_batch_seconds_sum") * 1000.0, batches
        ),
        "offered_per_second": rate,
        "rate_per_second": rate_done,
        "window_seconds": window,
        "acks_in_window": acks,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p99": p99,
        "latency_ms_max": latencies[-1] if latencies else None,
        "server_cpu_ms_per_report": ratio(server_cpu * 1000.0, float(acks)),
        "server_cpu_cores": server_cpu / window,
        "server_cpu_cores_by_process": [
            (b - a) / CLK_TCK / window for a, b in zip(cpu0, cpu1, strict=True)
        ],
        "client_cpu_cores": (
            sum(b - a for a, b in zip(client0, client1, strict=True)) / CLK_TCK / window
        ),
        "machine_busy_ratio": ratio(float(busy1 - busy0), float(total1 - total0)),
        "server_rss_mb": sum(rss) / 1024.0,
        "streams_failed": len(failed),
        "reports_acked": sum(o.acked for o in outcomes),
        "reports_sent": sum(o.acked + o.rejected for o in outcomes),
        "passed": not reasons,
        "why_not": "; ".join(reasons),
        "loadavg": list(os.getloadavg()),
        "_last_acked": {o.agent_id: o.last_acked for o in outcomes if o.last_acked},
    }


def step_rates(
    combo: Combination,
    clients: Clients,
    servers: Sequence[Proc],
    args: argparse.Namespace,
    rss_floor_kb: int,
) -> dict[str, int]:
    """Prime, then step the rate until a step fails; return each agent's last acked sequence."""
    last_acked: dict[str, int] = {}
    # Priming: every agent's first report (its 59 kB inventory) once, not judged; spread so
    # the server is not asked for more than PRIME_RATE of them a second.
    prime_seconds = max(args.duration, combo.agents / PRIME_RATE)
    prime_rate = combo.agents / prime_seconds
    started = time.monotonic()
    print(f"  priming: {combo.agents:,} first reports at {prime_rate:.0f}/s offered...",
          flush=True)
    primed = run_step(clients, servers, combo.agents, prime_rate, 0.0, prime_seconds + 1.0, 0,
                      True, args.p99_ms, 2 * DRAIN_SECONDS + combo.agents / PRIME_RATE)
    combo.prime_seconds = time.monotonic() - started
    last_acked.update(primed.pop("_last_acked"))
    combo.steps.append(primed)
    rate = args.start_rate
    for number in range(1, args.max_steps + 1):
        # A failed step is run again up to --retries times: on a machine shared with other
        # work one stall of a few hundred ms in a 10 s window is enough to miss the p99.
        for attempt in range(args.retries + 1):
            print(f"  offered {rate:.0f}/s: running ({args.warmup:g} s warm-up, "
                  f"{args.duration:g} s measured)...", flush=True)
            result = run_step(clients, servers, combo.agents, rate, args.warmup, args.duration,
                              number * 10 + attempt, False, args.p99_ms)
            last_acked.update(result.pop("_last_acked"))
            result["attempt"] = attempt + 1
            if result["passed"] or attempt == args.retries:
                break
            combo.steps.append(result)
            print(f"  offered {rate:.0f}/s: failed ({result['why_not']}), once more...",
                  flush=True)
        if number == 1:  # the lowest rate: closest to what holding the agents costs
            result["server_kb_per_agent"] = (
                result["server_rss_mb"] * 1024.0 - rss_floor_kb
            ) / combo.agents
        combo.steps.append(result)
        print(
            f"  offered {rate:.0f}/s: {result['rate_per_second']:.0f}/s acknowledged, p50 "
            f"{fmt(result['latency_ms_p50'], '.0f')} ms, p99 {fmt(result['latency_ms_p99'], '.0f')}"
            f" ms, server {fmt(result['server_cpu_ms_per_report'], '.3f')} ms CPU/report "
            f"({result['server_cpu_cores']:.2f} cores), clients {result['client_cpu_cores']:.2f} "
            f"cores, RSS {result['server_rss_mb']:.0f} MB; server-side "
            f"{fmt(result['server_processing_ms_mean'], '.1f')} ms a report, DB batch "
            f"{fmt(result['reports_per_db_batch'], '.1f')} reports in "
            f"{fmt(result['db_batch_ms_mean'], '.1f')} ms"
            + ("" if result["passed"] else f": FAIL ({result['why_not']})"),
            flush=True,
        )
        if not result["passed"]:
            break
        rate *= args.growth
    return last_acked


def jobs_for(
    agents: Sequence[SimAgent],
    addresses: Sequence[str],
    clients: int,
    template: agent_pb2.Report,
    inventory_json: bytes,
    in_flight: int,
) -> list[ScaleJob]:
    body = template.SerializeToString()
    return [
        ScaleJob(worker, tuple(addresses), tuple(agents[worker::clients]), body,
                 template.inventory_hash, inventory_json, in_flight)
        for worker in range(clients)
    ]


def fd_problem(agents: int, processes: int, clients: int) -> str:
    """Say why this machine cannot hold the combination's connections, or ''."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_server = math.ceil(agents / processes) + SPARE_FDS
    per_client = math.ceil(agents / clients) + SPARE_FDS
    if per_server > soft:
        return (f"{math.ceil(agents / processes):,} connections per server process need more "
                f"than this machine's open-file limit ({soft:,}; raise it: ulimit -n / "
                "LimitNOFILE), or more processes")
    if per_client > soft:
        return f"{per_client:,} file descriptors per client process: use more --clients"
    return ""


def measure_rmm(
    combo: Combination, db: str | None, args: argparse.Namespace,
    template: agent_pb2.Report, inventory_json: bytes,
) -> None:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rmm-scale-")))
        db_url = stack.enter_context(fresh_database(db))
        reuse = args.reuse_port and db_url is not None and combo.processes > 1
        servers, env = stack.enter_context(
            real_servers(combo.processes, db_url, workdir, reuse_port=reuse)
        )
        try:
            floor = sum(rss_kb(s.pid) for s in servers)
            combo.rss_before_agents_mb = floor / 1024.0
            created = json.loads(run_command(
                [BIN / "rmm", "tokens", "create", "--client", CLIENT, "--site", SITE,
                 "--uses", str(combo.agents), "--expires", "2h", "--output", "json"], env))
            started = time.monotonic()
            agents = enroll(servers[0].grpc_address, created["token"], combo.agents,
                            template.host, args.enroll_concurrency)
            combo.enroll_seconds = time.monotonic() - started
            print(f"  {combo.agents:,} agents enrolled in {combo.enroll_seconds:.0f} s",
                  flush=True)
            jobs = jobs_for(agents, [s.grpc_address for s in servers], args.clients, template,
                            inventory_json, args.in_flight)
            clients = Clients(jobs, servers)
            try:
                last_acked = step_rates(combo, clients, servers, args, floor)
            finally:
                clients.close()
            combo.verification = verify_sequences(env, last_acked, combo.agents)
        finally:
            combo.server_log = [log_problems(s.log_path) for s in servers]


def verify_sequences(env: dict[str, str], last_acked: dict[str, int], agents: int
                     ) -> dict[str, Any]:
    """Every agent's last acknowledged sequence must be what the server stored as its last."""
    listed = json.loads(run_command(
        [BIN / "rmm", "agents", "list", "--client", CLIENT, "--output", "json"], env,
        timeout=300.0))
    stored = {row["id"]: int(row["last_sequence"]) for row in listed}
    wrong = [(agent, seq, stored.get(agent)) for agent, seq in last_acked.items()
             if stored.get(agent) != seq]
    return {
        "ok": not wrong and len(listed) == agents,
        "agents_listed": len(listed),
        "agents_with_acks": len(last_acked),
        "wrong": len(wrong),
        "first_wrong": [f"{a}: acked {s}, stored {t}" for a, s, t in wrong[:5]],
    }


def measure_bare(
    combo: Combination, args: argparse.Namespace, template: agent_pb2.Report,
    inventory_json: bytes,
) -> None:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rmm-scale-")))
        servers = stack.enter_context(bare_servers(combo.processes, workdir))
        floor = sum(rss_kb(s.pid) for s in servers)
        combo.rss_before_agents_mb = floor / 1024.0
        agents = [
            SimAgent(i, f"bare-{i:05d}", "bare", f"bench-{i:05d}",
                     "server" if i % 2 == 0 else "workstation", is_hot(i))
            for i in range(combo.agents)
        ]
        jobs = jobs_for(agents, [s.grpc_address for s in servers], args.clients, template,
                        inventory_json, args.in_flight)
        clients = Clients(jobs, servers)
        try:
            step_rates(combo, clients, servers, args, floor)
        finally:
            clients.close()
        combo.verification = {"ok": True}


# --------------------------------------------------------------------------------------------


def summary_row(combo: Combination) -> dict[str, Any]:
    best = combo.best()
    last = combo.steps[-1] if combo.steps else None
    failed = last if last is not None and not last["passed"] and not last["prime"] else None
    return {
        "what": combo.label(),
        "kind": combo.kind,
        "db": combo.db,
        "agents": combo.agents,
        "processes": combo.processes,
        "skipped": combo.skipped,
        "error": combo.error,
        "best_rate_per_second": best["rate_per_second"] if best else None,
        "best_offered_per_second": best["offered_per_second"] if best else None,
        "p99_ms_at_best": best["latency_ms_p99"] if best else None,
        "server_cpu_ms_per_report_at_best": best["server_cpu_ms_per_report"] if best else None,
        "server_cpu_cores_at_best": best["server_cpu_cores"] if best else None,
        "first_failure": failed["why_not"] if failed else None,
        "server_cpu_ms_per_report_median": median_or_none(
            [s["server_cpu_ms_per_report"] for s in combo.steps if not s["prime"]]
        ),
        # The lowest rate's last attempt (a first attempt that failed does not carry it).
        "server_kb_per_agent": next(
            (s["server_kb_per_agent"] for s in combo.steps if "server_kb_per_agent" in s), None
        ),
        "verified": combo.verification.get("ok") if combo.verification else None,
    }


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print("\n| combination | highest rate p99 <= target | p99 there | server CPU/report "
          "| server cores | memory/agent | first failing step | verified |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row["skipped"] or row["error"]:
            why = f"skipped: {row['skipped']}" if row["skipped"] else f"error: {row['error']}"
            print(f"| {row['what']} | {why[:300]} |||||||")
            continue
        print(
            f"| {row['what']} | {fmt(row['best_rate_per_second'], ',.0f')}/s | "
            f"{fmt(row['p99_ms_at_best'], '.0f')} ms | "
            f"{fmt(row['server_cpu_ms_per_report_at_best'], '.3f')} ms | "
            f"{fmt(row['server_cpu_cores_at_best'], '.2f')} | "
            f"{fmt(row['server_kb_per_agent'], '.0f')} KB | {row['first_failure'] or '-'} | "
            f"{row['verified']} |"
        )


def save(result: dict[str, Any], combos: Sequence[Combination], path: Path | None) -> None:
    """Write what is measured so far (with the summary rows) to `path`, if given."""
    if path is None:
        return
    result["summary"] = [summary_row(c) for c in combos]
    result["combinations"] = [
        {k: getattr(c, k) for k in Combination.__dataclass_fields__} for c in combos
    ]
    path.write_text(json.dumps(result, indent=2) + "\n")


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_scale",
        description="Step the offered report rate at each agent count, database and process "
        "count; find the highest rate with p99 within the target.",
    )
    parser.add_argument("--agents", type=int_list, default=[1000, 5000, 10000, 20000],
                        help="connected agents, comma-separated (default 1000,5000,10000,20000)")
    parser.add_argument("--db", default="sqlite",
                        help="comma-separated: sqlite and/or postgresql://USER@HOST:PORT/DB "
                        "(each combination gets a fresh database there) (default sqlite)")
    parser.add_argument("--processes", type=int_list, default=[1],
                        help="server processes, comma-separated; >1 needs PostgreSQL "
                        "(replicas) (default 1)")
    parser.add_argument("--clients", type=int, default=2,
                        help="client processes the agents are spread over (default 2)")
    parser.add_argument("--start-rate", type=float, default=200.0,
                        help="offered reports/s of the first step (default 200)")
    parser.add_argument("--growth", type=float, default=1.4,
                        help="the offered rate's factor from one step to the next (default 1.4)")
    parser.add_argument("--max-steps", type=int, default=10, help="at most (default 10)")
    parser.add_argument("--retries", type=int, default=1,
                        help="times a failed step is run again before it counts (default 1)")
    parser.add_argument("--warmup", type=float, default=6.0,
                        help="seconds of each step before measuring (default 6)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per step (default 10)")
    parser.add_argument("--p99-ms", type=float, default=50.0,
                        help="the latency target a step must meet (default 50)")
    parser.add_argument("--in-flight", type=int, default=4,
                        help="unacknowledged reports per stream at most (default 4)")
    parser.add_argument("--enroll-concurrency", type=int, default=16,
                        help="Enroll calls in flight (default 16)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="replicas share one gRPC port (rmm-server serve --reuse-port) and "
                        "every agent connects to it, instead of a port each with agents spread "
                        "over them")
    parser.add_argument("--no-bare", action="store_true", help="leave out the bare peer")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    args.dbs = [part.strip() for part in args.db.split(",") if part.strip()]
    for db in args.dbs:
        if db != "sqlite" and not db.startswith("postgresql://"):
            parser.error(f"--db: {db!r} is neither sqlite nor a postgresql:// URL")
    if not args.agents or not all(1 <= a <= 50_000 for a in args.agents):
        parser.error("--agents: each between 1 and 50000")
    if not args.processes or not all(1 <= p <= 8 for p in args.processes):
        parser.error("--processes: each between 1 and 8")
    if not 1 <= args.clients <= 16:
        parser.error("--clients must be between 1 and 16")
    if args.growth <= 1.0 or args.start_rate <= 0:
        parser.error("--growth must be above 1 and --start-rate above 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if not sys.platform.startswith("linux"):
        print("ingest_scale needs Linux (/proc)", file=sys.stderr)
        return 2
    print("capturing one real report of this host...", flush=True)
    template, inventory_json = capture_template()
    result: dict[str, Any] = {
        "benchmark": "ingest_scale",
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "open_file_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
        "versions": {"rmm": agent_version, "grpcio": grpc.__version__},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k not in ("db", "dbs")},
        "databases": ["postgresql" if d != "sqlite" else "sqlite" for d in args.dbs],
        "template": {"report_bytes": template.ByteSize(),
                     "samples": sum(len(c.samples) for c in template.collectors),
                     "inventory_bytes": len(inventory_json)},
        "rules_in_force": rules_in_force(),
    }
    combos: list[Combination] = []

    def run(combo: Combination, measure: Callable[[], None]) -> None:
        combos.append(combo)
        if combo.skipped:
            print(f"{combo.label()}: skipped: {combo.skipped}", flush=True)
        else:
            print(f"{combo.label()} (load {os.getloadavg()[0]:.1f})...", flush=True)
            try:
                measure()
            except BenchError as exc:
                combo.error = str(exc)
                print(f"  error: {exc}", flush=True)
        save(result, combos, args.json)  # after each: a long matrix cut short keeps its figures

    for agents in args.agents:
        for processes in args.processes:
            for db in args.dbs:
                combo = Combination("rmm", agents, processes,
                                    "sqlite" if db == "sqlite" else "postgresql")
                if db == "sqlite" and processes > 1:
                    combo.skipped = ("an SQLite file has one server process; replicas need "
                                     "PostgreSQL")
                else:
                    combo.skipped = fd_problem(agents, processes, args.clients)
                url = None if db == "sqlite" else db
                run(combo, lambda combo=combo, url=url: measure_rmm(  # type: ignore[misc]
                    combo, url, args, template, inventory_json))
            if not args.no_bare:
                combo = Combination("bare", agents, processes, "-")
                combo.skipped = fd_problem(agents, processes, args.clients)
                run(combo, lambda combo=combo: measure_bare(  # type: ignore[misc]
                    combo, args, template, inventory_json))
    print_table([summary_row(c) for c in combos])
    print(f"\nnproc {result['machine']['nproc']}, load {os.getloadavg()[0]:.2f} "
          "(clients and servers share these cores: server CPU per report is the firm figure)")
    result["finished_at"] = datetime.now(UTC).isoformat()
    save(result, combos, args.json)
    if args.json is not None:
        print(f"figures written to {args.json}")
    bad = [c for c in combos if c.error or (c.verification and not c.verification.get("ok"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
