"""Latency of a remote command fanned out to N connected agents, against a bare gRPC fan-out.

Issue #4's target: from `rmm run` to every result for 1, 100 and 1,000 connected (simulated)
agents running a trivial command, under 2 s at 1,000. For each size N (`--sizes`):

1. one real `rmm-server serve --insecure --no-policies` (SQLite in a temporary data directory);
   an enrollment token for client `bench`, site `hq` (OperatorService.CreateEnrollmentToken,
   unlimited uses), and N agents enrolled through AgentService.Enroll with grpc.aio, many calls
   in flight (hostnames sim-0001...);
2. the floor: a minimal grpc.aio fan-out service (`bench.Floor`, raw bytes, no business logic)
   in its own process, built like the server's command stream: each agent's stream has an
   asyncio.Queue outbox drained by the handler's generator and a reader task; one unary-stream
   call queues a small message on every stream, answers "started", then streams each agent's
   reply back to the caller;
3. `--clients` client processes hold the simulated agents (grpc.aio). Each agent has its own
   channel, hence its own TCP connection, to each server (`--shared-channels K` shares K per
   process instead). On the rmm stream (AgentService.Commands) an agent says hello, then for
   every SignedCommand runs the real agent's checks (`rmm_agent.commands.verify.
   CommandVerifier`: the Ed25519 signature against the key pinned at enrollment, addressee,
   expiry) and answers SUCCEEDED with exit code 0 and stdout "ok" at once: it does NOT spawn a
   process. On the floor stream it answers each message at once;
4. once /metrics shows `rmm_server_command_streams N` and the floor counts N streams, a warm-up
   run of each (`--warmup-runs`, not counted), then `--runs` runs, each timing both on warm
   connections from this process, alternating which goes first:
   - ours: OperatorService.RunCommand(target client=bench, run_script sh "true", timeout
     `--command-timeout` 10 s) from the call until the stream has delivered the `started` event
     (dispatch) and N `outcome` events (each must be SUCCEEDED with stdout "ok"); then until
     every agent has heard `result_stored` and the server's CPU is quiet again;
   - floor: the fan-out call until its started message and N replies;
   per-agent times (outcome arrival at the operator, command arrival at the agent: CLOCK_MONOTONIC
   is shared by every process) give p50/p99; the server's CPU (utime+stime, /proc) over each
   run, by thread, and the clients' CPU. A run in which an agent's outcome is missing or wrong
   ends that size (the server's log errors are shown) rather than repeating a 25 s wait;
5. `--breakdown` (on by default; `--no-breakdown`): with the server stopped, its database and
   signing key are reopened in this process and the server's own code (CommandService wired
   with the audit log as rmm_server/app.py does) times its steps for N commands: building and
   signing, the insert, the `command.sent` audit entries, marking them sent, settling N results
   (`CommandService._settle`: loading each command, the result update, the `command.result`
   audit entries) and converting N outcomes for the operator.

`--rmm-server PATH` measures another server executable (another build or virtualenv).

The table shows medians over runs and the ratio ours/floor computed within each run, then its
median. Run from the repository root:

    .venv/bin/python -m bench.command_latency --runs 5 --json /tmp/command-latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import re
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psutil

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
    spawn,
    stop_process,
    wait_until,
)
from bench.ingest_rate import percentile, stop_clients, thread_ticks
from rmm_agent import __version__ as agent_version
from rmm_agent.commands.verify import CommandRefused, CommandVerifier
from rmm_common.tokens import bearer_metadata, new_ident
from rmm_proto import (
    agent_pb2,
    agent_pb2_grpc,
    commands_pb2,
    operator_pb2,
    operator_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "bench"
SITE = "hq"
DEFAULT_SIZES = (1, 100, 1000)
# The issue's target.
TARGET_AGENTS = 1000
TARGET_SECONDS = 2.0
START_TIMEOUT_SECONDS = 30.0
# The command's timeout: the server reports a missing result 15 s after it (`rmm run`'s 60 s
# would make a failing run last 75 s).
COMMAND_TIMEOUT_SECONDS = 10.0
# After a run, every agent must hear that its result is stored within this.
SETTLE_TIMEOUT_SECONDS = 30.0
# Between measurements, wait at most this long for the server to stop using CPU.
QUIET_TIMEOUT_SECONDS = 20.0
# The floor's messages: about the size of a signed run_script command, a result, an outcome.
FLOOR_SERVICE = "bench.Floor"
FLOOR_AGENT = f"/{FLOOR_SERVICE}/Agent"
FLOOR_FANOUT = f"/{FLOOR_SERVICE}/Fanout"
FLOOR_COUNT = f"/{FLOOR_SERVICE}/Count"
FLOOR_DOWN_BYTES = 160
FLOOR_UP_BYTES = 48
FLOOR_OUTCOME_BYTES = 200
TAG_BYTES = 12  # new_ident(): 12 hex characters
HELLO_STARTED_AT = time.time()
MAX_MESSAGES_PER_STREAM = 10_000_000  # a bound on every loop; never reached in practice


# --------------------------------------------------------------------------------------------
# The floor: a bare grpc.aio fan-out service, in its own process


class Floor:
    """Streams like the server's command streams, without signing, database or checks."""

    def __init__(self) -> None:
        self.links: dict[int, asyncio.Queue[bytes | None]] = {}
        self.collector: asyncio.Queue[bytes] | None = None
        self._next = 0

    async def agent(self, request_iterator: AsyncIterator[bytes], _context: Any
                    ) -> AsyncIterator[bytes]:
        incoming = request_iterator.__aiter__()
        try:
            await incoming.__anext__()  # the hello
        except StopAsyncIteration:
            return
        outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        key = self._next
        self._next += 1
        self.links[key] = outbox

        async def read() -> None:
            try:
                async for message in incoming:
                    if self.collector is not None:
                        self.collector.put_nowait(message)
            finally:
                outbox.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (message := await outbox.get()) is not None:
                yield message
        finally:
            reader.cancel()
            self.links.pop(key, None)

    async def fanout(self, request: bytes, _context: Any) -> AsyncIterator[bytes]:
        tag = request[:TAG_BYTES]
        collector: asyncio.Queue[bytes] = asyncio.Queue()
        self.collector = collector
        targets = list(self.links.values())
        message = tag.ljust(FLOOR_DOWN_BYTES, b"\0")
        for outbox in targets:
            outbox.put_nowait(message)
        yield b"started %d" % len(targets)
        try:
            for _ in range(len(targets)):
                reply = await collector.get()
                yield reply.ljust(FLOOR_OUTCOME_BYTES, b"\0")
        finally:
            if self.collector is collector:
                self.collector = None

    async def count(self, _request: bytes, _context: Any) -> bytes:
        return b"%d" % len(self.links)


async def serve_floor(address: str) -> None:
    floor = Floor()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(FLOOR_SERVICE, {
        "Agent": grpc.stream_stream_rpc_method_handler(floor.agent),
        "Fanout": grpc.unary_stream_rpc_method_handler(floor.fanout),
        "Count": grpc.unary_unary_rpc_method_handler(floor.count),
    }),))
    if server.add_insecure_port(address) == 0:
        raise BenchError(f"the floor cannot listen on {address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"floor serving on {address}", flush=True)
    await stop.wait()
    await server.stop(1.0)


# --------------------------------------------------------------------------------------------
# The simulated agents (client processes)


@dataclass(frozen=True, slots=True)
class SimAgent:
    index: int
    agent_id: str
    credential: str
    hostname: str


@dataclass(frozen=True, slots=True)
class ClientJob:
    worker: int
    address: str
    floor_address: str
    public_key: bytes
    agents: tuple[SimAgent, ...]
    shared_channels: int  # 0: one channel (one TCP connection) per agent and server


@dataclass(slots=True)
class Book:
    """What one client process saw, by run tag (the rmm run_id or the floor's tag)."""

    received: dict[str, list[float]] = field(default_factory=dict)
    answered: dict[str, list[float]] = field(default_factory=dict)
    stored: dict[str, list[float]] = field(default_factory=dict)
    run_of: dict[str, str] = field(default_factory=dict)  # command id -> run id
    errors: list[str] = field(default_factory=list)
    streams_ended: int = 0

    def note(self, table: dict[str, list[float]], tag: str, at: float) -> None:
        table.setdefault(tag, []).append(at)

    def error(self, text: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(text)

    def take(self, tag: str) -> dict[str, Any]:
        return {
            "received": self.received.pop(tag, []),
            "answered": self.answered.pop(tag, []),
            "stored": self.stored.pop(tag, []),
            "errors": list(self.errors),
            "streams_ended": self.streams_ended,
        }


def trivial_result(command: commands_pb2.Command) -> commands_pb2.AgentCommandMessage:
    """Return what a real agent answers after running `sh -c true`, without running it."""
    now = time.time()
    action = command.WhichOneof("action")
    if action == "run_script" and command.run_script.body == "true":
        return commands_pb2.AgentCommandMessage(result=commands_pb2.CommandResult(
            command_id=command.id,
            status=commands_pb2.COMMAND_SUCCEEDED,
            started_at=now,
            finished_at=now,
            script=commands_pb2.ScriptResult(exit_code=0, stdout="ok\n"),
        ))
    return commands_pb2.AgentCommandMessage(result=commands_pb2.CommandResult(
        command_id=command.id,
        status=commands_pb2.COMMAND_FAILED,
        error=f"the benchmark's agents only run `true`, not {action}",
        started_at=now,
        finished_at=now,
    ))


async def rmm_agent(agent: SimAgent, channel: grpc.aio.Channel, public_key: bytes,
                    book: Book) -> None:
    """One agent's command stream: hello, then verify and answer every command at once."""
    verifier = CommandVerifier(public_key, agent.agent_id)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    call = stub.Commands(metadata=bearer_metadata(agent.credential))
    try:
        await call.write(commands_pb2.AgentCommandMessage(hello=commands_pb2.CommandHello(
            agent_started_at=HELLO_STARTED_AT,
            boot_time=psutil.boot_time(),
            agent_version=agent_version,
        )))
        for _ in range(MAX_MESSAGES_PER_STREAM):
            message = await call.read()
            if message is grpc.aio.EOF:
                break
            now = time.monotonic()
            if message.HasField("command"):
                try:
                    command = verifier.verify(message.command)
                except CommandRefused as refusal:
                    book.error(f"{agent.hostname} refused {refusal.command_id}: {refusal.reason}")
                    continue
                book.run_of[command.id] = command.run_id
                book.note(book.received, command.run_id, now)
                await call.write(trivial_result(command))
                book.note(book.answered, command.run_id, time.monotonic())
            elif message.result_stored:
                run_id = book.run_of.pop(message.result_stored, "")
                book.note(book.stored, run_id, now)
    except grpc.aio.AioRpcError as error:
        book.error(f"{agent.hostname} command stream: {error.code().name}: {error.details()}")
    finally:
        book.streams_ended += 1


async def floor_agent(agent: SimAgent, channel: grpc.aio.Channel, book: Book) -> None:
    """One agent's floor stream: hello, then answer every message at once."""
    call = channel.stream_stream(FLOOR_AGENT)()
    try:
        await call.write(agent.hostname.encode())
        reply_tail = b" " + agent.hostname.encode()
        for _ in range(MAX_MESSAGES_PER_STREAM):
            message = await call.read()
            if message is grpc.aio.EOF:
                break
            now = time.monotonic()
            tag = message[:TAG_BYTES]
            book.note(book.received, tag.decode(), now)
            await call.write((tag + reply_tail).ljust(FLOOR_UP_BYTES, b"\0"))
            book.note(book.answered, tag.decode(), time.monotonic())
    except grpc.aio.AioRpcError as error:
        book.error(f"{agent.hostname} floor stream: {error.code().name}: {error.details()}")
    finally:
        book.streams_ended += 1


def channel_options() -> list[tuple[str, int]]:
    # One TCP connection per channel, as real agents have (channels otherwise share one).
    return [("grpc.use_local_subchannel_pool", 1)]


async def run_client(job: ClientJob, inbox: multiprocessing.queues.Queue[Any],
                     outbox: multiprocessing.queues.Queue[Any]) -> None:
    count = job.shared_channels or len(job.agents)
    rmm_channels = [grpc.aio.insecure_channel(job.address, options=channel_options())
                    for _ in range(count)]
    floor_channels = [grpc.aio.insecure_channel(job.floor_address, options=channel_options())
                      for _ in range(count)]
    book = Book()
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.channel_ready() for c in [*rmm_channels, *floor_channels])),
            START_TIMEOUT_SECONDS,
        )
        for agent in job.agents:
            slot = agent.index % count
            tasks.append(asyncio.create_task(
                rmm_agent(agent, rmm_channels[slot], job.public_key, book)))
            tasks.append(asyncio.create_task(floor_agent(agent, floor_channels[slot], book)))
        outbox.put(("ready", job.worker, os.getpid()))
        loop = asyncio.get_running_loop()
        for _ in range(MAX_MESSAGES_PER_STREAM):
            request = await loop.run_in_executor(None, inbox.get)
            if request[0] == "stop":
                break
            outbox.put(("times", job.worker, book.take(request[1])))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in [*rmm_channels, *floor_channels]),
                             return_exceptions=True)


def client_main(job: ClientJob, inbox: multiprocessing.queues.Queue[Any],
                outbox: multiprocessing.queues.Queue[Any]) -> None:
    """Entry point of a client process."""
    try:
        asyncio.run(run_client(job, inbox, outbox))
    except BaseException:
        outbox.put(("error", job.worker, traceback.format_exc()))
        raise


class Clients:
    """The client processes of one size, and the conversation with them."""

    def __init__(self, jobs: Sequence[ClientJob], watched: Sequence[tuple[Any, str, Path]]
                 ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.jobs = list(jobs)
        self.watched = watched  # (process, what, log) that must stay alive meanwhile
        self.outbox: multiprocessing.queues.Queue[Any] = ctx.Queue()
        self.inboxes: list[multiprocessing.queues.Queue[Any]] = [ctx.Queue() for _ in jobs]
        self.processes: list[multiprocessing.process.BaseProcess] = [
            ctx.Process(target=client_main, args=(job, inbox, self.outbox), daemon=True,
                        name=f"command-latency-client-{job.worker}")
            for job, inbox in zip(jobs, self.inboxes, strict=True)
        ]
        self.pids: list[int] = []

    def start(self) -> None:
        for proc in self.processes:
            proc.start()
        pids: dict[int, int] = {}
        deadline = time.monotonic() + 2 * START_TIMEOUT_SECONDS
        for _ in self.jobs:
            _kind, worker, pid = self._message(deadline, "waiting for the clients to connect")
            pids[worker] = int(pid)
        self.pids = [pids[job.worker] for job in self.jobs]

    def _message(self, deadline: float, what: str) -> tuple[str, int, Any]:
        for _ in range(int(max(deadline - time.monotonic(), 0) / 0.5) + 2):
            for proc, name, log in self.watched:
                ensure_alive(proc, name, log)
            try:
                kind, worker, payload = self.outbox.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() >= deadline:
                    break
                if not all(p.is_alive() for p in self.processes):
                    raise BenchError(f"a client process died while {what}") from None
                continue
            if kind == "error":
                raise BenchError(f"client process {worker} failed:\n{payload}")
            return kind, worker, payload
        raise BenchError(f"timed out {what}")

    def times(self, tag: str) -> dict[str, Any]:
        """Collect (and forget) what every client saw of run `tag`."""
        for inbox in self.inboxes:
            inbox.put(("times", tag))
        merged: dict[str, Any] = {"received": [], "answered": [], "stored": [], "errors": [],
                                  "streams_ended": 0}
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for _ in self.jobs:
            _kind, _worker, payload = self._message(deadline, f"collecting the times of {tag}")
            for key in ("received", "answered", "stored", "errors"):
                merged[key].extend(payload[key])
            merged["streams_ended"] += payload["streams_ended"]
        return merged

    def stop(self) -> None:
        for inbox in self.inboxes:
            inbox.put(("stop",))
        for proc in self.processes:
            proc.join(5.0)
        stop_clients(self.processes)
        self.outbox.close()
        for inbox in self.inboxes:
            inbox.close()


# --------------------------------------------------------------------------------------------
# Setting up one size


@dataclass(slots=True)
class Proc:
    proc: Any  # subprocess.Popen[bytes]
    log_path: Path
    name: str

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def check(self) -> None:
        ensure_alive(self.proc, self.name, self.log_path)


async def enroll_agents(address: str, admin_token: str, count: int, in_flight: int
                        ) -> tuple[list[SimAgent], bytes]:
    """Create a token for bench/hq and enroll `count` agents, `in_flight` calls at a time."""
    async with grpc.aio.insecure_channel(address) as channel:
        operator = operator_pb2_grpc.OperatorServiceStub(channel)
        created = await operator.CreateEnrollmentToken(
            operator_pb2.CreateEnrollmentTokenRequest(client=CLIENT, site=SITE, max_uses=0),
            metadata=bearer_metadata(admin_token), timeout=30,
        )
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        slots = asyncio.Semaphore(in_flight)

        async def enroll(index: int) -> tuple[SimAgent, bytes]:
            hostname = f"sim-{index + 1:04d}"
            request = agent_pb2.EnrollRequest(
                token=created.secret,
                host=agent_pb2.HostFacts(hostname=hostname, os="linux",
                                         os_name="Debian GNU/Linux", os_version="12",
                                         kernel="6.1.0", arch="x86_64"),
                agent_version=agent_version,
            )
            async with slots:
                try:
                    response = await stub.Enroll(request, timeout=60)
                except grpc.aio.AioRpcError as error:
                    raise BenchError(f"enrolling {hostname} failed: {error.code().name}: "
                                     f"{error.details()}") from error
            return (SimAgent(index, response.agent_id, response.credential, hostname),
                    response.command_public_key)

        enrolled = await asyncio.gather(*(enroll(i) for i in range(count)))
    keys = {key for _agent, key in enrolled}
    if len(keys) != 1 or len(next(iter(keys))) != 32:
        raise BenchError(f"Enroll gave {len(keys)} different command keys, or not 32 bytes")
    return [agent for agent, _key in enrolled], keys.pop()


def command_streams(http_url: str) -> int:
    """Return the server's rmm_server_command_streams gauge."""
    for line in http_get(http_url + "/metrics").decode().splitlines():
        if line.startswith("rmm_server_command_streams "):
            return int(float(line.split()[1]))
    raise BenchError("no rmm_server_command_streams in the server's /metrics")


async def floor_count(channel: grpc.aio.Channel) -> int:
    return int(await channel.unary_unary(FLOOR_COUNT)(b"", timeout=10))


# --------------------------------------------------------------------------------------------
# One timed run


@dataclass(slots=True)
class RunTiming:
    kind: str  # rmm or floor
    tag: str
    complete: bool  # every agent's outcome arrived, and it is the expected one
    started_s: float  # the call until its started event
    total_s: float  # the call until the last outcome
    outcome_s: list[float]  # each outcome's arrival, from the call
    targets: int
    problems: list[str]
    cpu_s: dict[str, float]  # server, clients, this process
    server_threads_s: dict[str, float]
    agent: dict[str, Any]  # what the agents saw (times from the call)


@dataclass(slots=True)
class CpuProbe:
    server: int
    threads: dict[str, int]
    clients: int
    me: float

    @classmethod
    def take(cls, server_pid: int, client_pids: Sequence[int]) -> CpuProbe:
        return cls(cpu_ticks(server_pid), thread_ticks(server_pid),
                   sum(cpu_ticks(pid) for pid in client_pids), time.process_time())

    def since(self, before: CpuProbe) -> tuple[dict[str, float], dict[str, float]]:
        threads = {name: (ticks - before.threads.get(name, 0)) / CLK_TCK
                   for name, ticks in self.threads.items()}
        return ({"server": (self.server - before.server) / CLK_TCK,
                 "clients": (self.clients - before.clients) / CLK_TCK,
                 "bench": self.me - before.me},
                dict(sorted(threads.items(), key=lambda kv: -kv[1])))


def agent_side(seen: dict[str, Any], t0: float) -> dict[str, Any]:
    """Summarise the agents' own clock readings of one run, relative to the call."""
    received = sorted(at - t0 for at in seen["received"])
    answered = sorted(at - t0 for at in seen["answered"])
    stored = sorted(at - t0 for at in seen["stored"])
    return {
        "received": len(received),
        "delivered_p50_s": percentile(received, 50),
        "delivered_p99_s": percentile(received, 99),
        "delivered_last_s": received[-1] if received else None,
        "answered_last_s": answered[-1] if answered else None,
        "stored_acks": len(stored),
        "stored_last_s": stored[-1] if stored else None,
        "errors": seen["errors"][:10],
        "streams_ended": seen["streams_ended"],
    }


@dataclass(slots=True)
class Rig:
    """What one size runs against."""

    count: int
    server: Proc
    floor: Proc
    clients: Clients
    admin_token: str
    hostnames: dict[str, str]  # agent id -> hostname
    command_timeout: float

    @property
    def call_timeout(self) -> float:
        # The server waits timeout + 15 s for a missing result, then reports it.
        return self.command_timeout + 30.0


async def quiet(pid: int, limit: float = QUIET_TIMEOUT_SECONDS) -> float:
    """Wait until `pid` uses at most one clock tick per 0.1 s; return its CPU s meanwhile."""
    began = cpu_ticks(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_ticks(pid)
        await asyncio.sleep(0.1)
        if cpu_ticks(pid) - before <= 1:
            break
    return (cpu_ticks(pid) - began) / CLK_TCK


async def run_rmm(stub: Any, rig: Rig) -> RunTiming:
    """Time one RunCommand to every agent of client `bench`."""
    request = operator_pb2.RunCommandRequest(
        target=operator_pb2.TargetSelector(client=CLIENT),
        run_script=commands_pb2.RunScript(shell="sh", body="true"),
        timeout_seconds=rig.command_timeout,
    )
    problems: list[str] = []
    outcomes: list[float] = []
    succeeded: set[str] = set()
    run_id, started_s, targets = "", math.nan, 0
    before = CpuProbe.take(rig.server.pid, rig.clients.pids)
    t0 = time.monotonic()
    call = stub.RunCommand(request, metadata=bearer_metadata(rig.admin_token),
                           timeout=rig.call_timeout)
    async for event in call:
        now = time.monotonic() - t0
        if event.HasField("started"):
            started_s, run_id = now, event.started.run_id
            targets = len(event.started.targets)
            offline = [t.hostname for t in event.started.targets if not t.online]
            if offline:
                problems.append(f"{len(offline)} targets not online, e.g. {offline[:3]}")
            continue
        outcome = event.outcome
        outcomes.append(now)
        if (outcome.status == commands_pb2.COMMAND_SUCCEEDED
                and outcome.result.script.stdout == "ok\n" and outcome.agent_id in rig.hostnames):
            succeeded.add(outcome.agent_id)
        elif len(problems) < 5:
            problems.append(f"{outcome.hostname}: "
                            f"{commands_pb2.CommandStatus.Name(outcome.status)} {outcome.error!r}")
    total = time.monotonic() - t0
    cpu, threads = CpuProbe.take(rig.server.pid, rig.clients.pids).since(before)
    complete = len(succeeded) == len(outcomes) == targets == rig.count
    if not complete:
        problems.append(f"{len(succeeded)} of {rig.count} agents succeeded ({len(outcomes)} "
                        f"outcomes, {targets} targets) after {total:.1f} s")
    seen = await asyncio.to_thread(rig.clients.times, run_id)
    # Let the server finish with this run: every agent hears that its result is stored.
    deadline = time.monotonic() + (SETTLE_TIMEOUT_SECONDS if complete else 0.0)
    while len(seen["stored"]) < rig.count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        more = await asyncio.to_thread(rig.clients.times, run_id)
        for key in ("received", "answered", "stored"):
            seen[key].extend(more[key])
        seen["errors"], seen["streams_ended"] = more["errors"], more["streams_ended"]
    if len(seen["stored"]) < rig.count:
        problems.append(f"{len(seen['stored'])} of {rig.count} agents heard that their result "
                        f"was stored (of {len(seen['answered'])} that answered)")
    # The server goes on after the last outcome (e.g. auditing results): until it is quiet.
    cpu["server_after"] = await quiet(rig.server.pid)
    return RunTiming("rmm", run_id, complete, started_s, total, outcomes, targets, problems,
                     cpu, threads, agent_side(seen, t0))


async def run_floor(channel: grpc.aio.Channel, rig: Rig) -> RunTiming:
    """Time one fan-out through the floor service."""
    tag = new_ident()
    problems: list[str] = []
    outcomes: list[float] = []
    started_s, targets = math.nan, 0
    before = CpuProbe.take(rig.floor.pid, rig.clients.pids)
    t0 = time.monotonic()
    call = channel.unary_stream(FLOOR_FANOUT)(tag.encode(), timeout=rig.call_timeout)
    async for message in call:
        now = time.monotonic() - t0
        if message.startswith(b"started "):
            started_s, targets = now, int(message.split()[1])
            continue
        outcomes.append(now)
        if not message.startswith(tag.encode()) and len(problems) < 5:
            problems.append(f"a reply for another fan-out: {message[:40]!r}")
    total = time.monotonic() - t0
    cpu, threads = CpuProbe.take(rig.floor.pid, rig.clients.pids).since(before)
    cpu["server_after"] = await quiet(rig.floor.pid)
    complete = len(outcomes) == targets == rig.count and not problems
    if not complete:
        problems.append(f"{len(outcomes)} replies from {targets} streams, not {rig.count}")
    return RunTiming("floor", tag, complete, started_s, total, outcomes, targets, problems, cpu,
                     threads, agent_side(await asyncio.to_thread(rig.clients.times, tag), t0))


def run_figures(timing: RunTiming) -> dict[str, Any]:
    ordered = sorted(timing.outcome_s)
    return {
        "tag": timing.tag,
        "complete": timing.complete,
        "started_s": timing.started_s,
        "total_s": timing.total_s,
        "first_outcome_s": ordered[0] if ordered else None,
        "outcome_p50_s": percentile(ordered, 50),
        "outcome_p99_s": percentile(ordered, 99),
        "outcomes": len(ordered),
        "targets": timing.targets,
        "cpu_s": timing.cpu_s,
        "server_threads_s": {k: v for k, v in timing.server_threads_s.items() if v > 0},
        "agents": timing.agent,
        "problems": timing.problems,
    }


# --------------------------------------------------------------------------------------------
# The server's own steps, in this process (`--breakdown`)


def breakdown(data_dir: Path, count: int, reps: int) -> dict[str, Any]:
    """Time the server's steps for `count` commands against its database, in this process."""
    from rmm_server.audit import AuditLog  # noqa: PLC0415
    from rmm_server.commands import CommandService, PendingResult  # noqa: PLC0415
    from rmm_server.grpc_api.command_api import command_info  # noqa: PLC0415
    from rmm_server.runs import summarize  # noqa: PLC0415
    from rmm_server.signing import CommandSigner  # noqa: PLC0415
    from rmm_server.storage.audit import AuditStore  # noqa: PLC0415
    from rmm_server.storage.store import open_store, sqlite_url  # noqa: PLC0415

    store = open_store(sqlite_url(data_dir))
    try:
        agents = [a for a in store.all_agents() if a.client == CLIENT][:count]
        signer = CommandSigner.load_or_create(data_dir)
        audit = AuditLog(AuditStore(store))  # as the server wires it (rmm_server/app.py)
        audit.prepare()
        service = CommandService(store, signer, audit=audit.append_many)
        spent: dict[str, float] = {}

        def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - began
            return wrapper

        # Instance attributes shadow the methods: the server's code calls these wrappers.
        service._store_new = timed(  # type: ignore[method-assign]
            "audit_sent_and_insert", service._store_new)
        service.commands.record_results = timed(  # type: ignore[method-assign]
            "db_record_results", service.commands.record_results)
        service._load = timed("db_load", service._load)  # type: ignore[method-assign]
        service._audit_results = timed(  # type: ignore[method-assign]
            "audit_results", service._audit_results)
        script = commands_pb2.RunScript(shell="sh", body="true")
        summarize(commands_pb2.Command(run_script=script))
        steps: dict[str, list[float]] = {}
        errors: list[str] = []

        async def one() -> None:
            spent.clear()
            began = time.perf_counter()
            records = await service.issue(
                "admin", agents, "run_script", script, 60.0, 120.0,
                lambda _agent: commands_pb2.CONSENT_NOTIFY, summarize, run_id=new_ident(),
            )
            issue_s = time.perf_counter() - began
            commands = [commands_pb2.Command.FromString(
                commands_pb2.SignedCommand.FromString(r.signed).command) for r in records]
            began = time.perf_counter()
            for command in commands:
                signer.sign(command)
            sign_s = time.perf_counter() - began
            began = time.perf_counter()
            await asyncio.to_thread(service.commands.mark_sent, [r.id for r in records],
                                    time.time())
            mark_s = time.perf_counter() - began
            batch = [PendingResult(c.agent_id, trivial_result(c).result, None) for c in commands]
            began = time.perf_counter()
            settled = True
            try:
                await service._settle(batch)
            except Exception as exc:  # the server's own failure: shown, not fatal here
                settled = False
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                errors.append(f"_settle({len(batch)} results): {type(exc).__name__}: "
                              f"{first_line}"[:400])
            settle_s = time.perf_counter() - began
            for record, pending in zip(records, batch, strict=True):
                record.status = pending.result.status
                record.result = pending.result.SerializeToString()
            began = time.perf_counter()
            for record in records:
                operator_pb2.RunEvent(outcome=command_info(record)).SerializeToString()
            info_s = time.perf_counter() - began
            for name, value in (
                ("issue_total", issue_s),
                ("sign_and_build", issue_s - spent.get("audit_sent_and_insert", 0.0)),
                ("sign_only", sign_s),
                ("audit_sent_and_insert", spent.get("audit_sent_and_insert", 0.0)),
                ("db_mark_sent", mark_s),
                ("settle_total", settle_s),
                ("db_load", spent.get("db_load", 0.0)),
                ("db_record_results", spent.get("db_record_results", 0.0)),
                ("audit_results", spent.get("audit_results", 0.0) if settled else math.nan),
                ("outcome_messages", info_s),
            ):
                steps.setdefault(name, []).append(value)

        for _ in range(reps):
            asyncio.run(one())
        return {"agents": len(agents), "reps": reps,
                "seconds": {name: None if any(map(math.isnan, v)) else statistics.median(v)
                            for name, v in steps.items()},
                "errors": errors[:3]}
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# One size: servers, agents, runs


def server_errors(log_path: Path, limit: int = 5) -> list[str]:
    """Return the first error lines of a JSON-lines log with the last line of their traceback."""
    found: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") not in ("error", "critical"):
            continue
        # The exception's own line (a traceback may end with SQL parameters).
        causes = [line for line in str(entry.get("exc", "")).splitlines()
                  if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b.*: ", line)]
        found.append(f"{entry.get('logger')}: {entry.get('msg')}"
                     + (f" [{causes[-1][:300]}]" if causes else ""))
        if len(found) >= limit:
            break
    return found


async def measure_size(count: int, args: argparse.Namespace) -> dict[str, Any]:
    started_at = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(prefix="rmm-bench-command-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "server"
        grpc_address = f"127.0.0.1:{free_port()}"
        http_url = f"http://127.0.0.1:{free_port()}"
        floor_address = f"127.0.0.1:{free_port()}"
        server = Proc(spawn(
            [args.rmm_server, "serve", "--data-dir", data_dir, "--grpc-listen", grpc_address,
             "--http-listen", http_url.removeprefix("http://"), "--insecure", "--no-policies",
             "--log-format", "json"],
            workdir / "server.log",
        ), workdir / "server.log", "rmm-server")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        floor = Proc(spawn([sys.executable, "-m", "bench.command_latency", "--floor-server",
                            floor_address], workdir / "floor.log", env), workdir / "floor.log",
                     "the floor server")
        clients: Clients | None = None
        timings: list[tuple[RunTiming, RunTiming]] = []
        warmups: list[tuple[RunTiming, RunTiming]] = []
        aborted = ""
        enroll_s = connect_s = math.nan
        jobs: list[ClientJob] = []
        streams_after = -1
        try:

            def ready() -> bool:
                server.check()
                floor.check()
                return (data_dir / "admin.token").exists() and bool(http_get(
                    http_url + "/healthz"))

            await asyncio.to_thread(wait_until, ready, START_TIMEOUT_SECONDS,
                                    f"rmm-server on {http_url}/healthz")
            admin_token = (data_dir / "admin.token").read_text().strip()
            began = time.monotonic()
            agents, public_key = await enroll_agents(grpc_address, admin_token, count,
                                                     args.enroll_in_flight)
            enroll_s = time.monotonic() - began
            jobs = [
                ClientJob(worker, grpc_address, floor_address, public_key,
                          tuple(agents[worker :: args.clients]), args.shared_channels)
                for worker in range(min(args.clients, count))
            ]
            began = time.monotonic()
            clients = Clients(jobs, [(server.proc, server.name, server.log_path),
                                     (floor.proc, floor.name, floor.log_path)])
            await asyncio.to_thread(clients.start)
            rig = Rig(count, server, floor, clients, admin_token,
                      {agent.agent_id: agent.hostname for agent in agents}, args.command_timeout)
            async with (grpc.aio.insecure_channel(grpc_address) as operator_channel,
                        grpc.aio.insecure_channel(floor_address) as floor_channel):
                await asyncio.to_thread(
                    wait_until, lambda: command_streams(http_url) == count,
                    START_TIMEOUT_SECONDS, f"rmm_server_command_streams {count}")
                for _ in range(int(START_TIMEOUT_SECONDS / 0.1)):
                    if await floor_count(floor_channel) == count:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise BenchError(f"the floor never counted {count} streams")
                connect_s = time.monotonic() - began
                channels = (f"{args.shared_channels} shared channels" if args.shared_channels
                            else "one channel")
                print(f"N={count}: {count} agents enrolled in {enroll_s:.1f} s, streams to both "
                      f"servers open in {connect_s:.1f} s ({len(jobs)} client process"
                      f"{'es' if len(jobs) > 1 else ''}, "
                      f"{channels} per agent and server)", flush=True)
                stub = operator_pb2_grpc.OperatorServiceStub(operator_channel)

                async def pair(index: int) -> tuple[RunTiming, RunTiming]:
                    ours_first = index % 2 == 0
                    first = (await run_rmm(stub, rig) if ours_first
                             else await run_floor(floor_channel, rig))
                    await asyncio.sleep(args.pause)
                    second = (await run_floor(floor_channel, rig) if ours_first
                              else await run_rmm(stub, rig))
                    await asyncio.sleep(args.pause)
                    return (first, second) if ours_first else (second, first)

                def show(label: str, ours: RunTiming, bare: RunTiming) -> None:
                    problems = ours.problems + bare.problems
                    print(f"  {label}: rmm {ours.total_s:.3f} s (started "
                          f"{ours.started_s:.3f} s, server CPU {ours.cpu_s['server']:.2f} s) | "
                          f"floor {bare.total_s:.3f} s | "
                          f"{fmt(ratio(ours.total_s, bare.total_s), '.1f', 'x')}"
                          f"{'  PROBLEMS: ' + '; '.join(problems[:3]) if problems else ''}",
                          flush=True)

                for index in range(args.warmup_runs + args.runs):
                    warm = index < args.warmup_runs
                    ours, bare = await pair(index)
                    (warmups if warm else timings).append((ours, bare))
                    show("warm-up" if warm else f"run {index - args.warmup_runs + 1}", ours,
                         bare)
                    if not (ours.complete and bare.complete):
                        aborted = (f"{'warm-up' if warm else 'run'} {index + 1} did not "
                                   f"complete: {'; '.join((ours.problems + bare.problems)[:2])}")
                        print(f"  N={count}: no further runs ({aborted})", flush=True)
                        break
                server.check()
                streams_after = command_streams(http_url)
        finally:
            if clients is not None:
                clients.stop()
            floor_stop = stop_process(floor.proc)
            server_stop = stop_process(server.proc)
        problems_in_log = log_problems(server.log_path)
        errors_in_log = server_errors(server.log_path)
        parts = None
        if args.breakdown:
            parts = await asyncio.to_thread(breakdown, data_dir, count, min(args.runs, 3))

    runs: list[dict[str, Any]] = [
        {"run": i + 1, "rmm": run_figures(o), "floor": run_figures(f),
         "ratio_total": ratio(o.total_s, f.total_s) if o.complete and f.complete else None}
        for i, (o, f) in enumerate(timings)
    ]
    problems = [p for o, f in [*warmups, *timings] for p in o.problems + f.problems]
    return {
        "agents": count,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "enroll_seconds": enroll_s,
        "connect_seconds": connect_s,
        "client_processes": len(jobs),
        "channels": ("one per agent and server" if not args.shared_channels
                     else f"{args.shared_channels} shared per client process and server"),
        "warmup_runs": [{"rmm": run_figures(o), "floor": run_figures(f)} for o, f in warmups],
        "runs": runs,
        "aborted": aborted,
        "summary": summarise_size(runs),
        "breakdown": parts,
        "command_streams_after": streams_after,
        "server_stop": server_stop,
        "floor_stop": floor_stop,
        "server_log": problems_in_log,
        "server_errors": errors_in_log,
        "problems": problems,
    }


def summarise_size(all_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs in which both measurements completed."""
    runs = [r for r in all_runs if r["rmm"]["complete"] and r["floor"]["complete"]]

    def med(kind: str, key: str) -> float | None:
        return median_or_none([r[kind][key] for r in runs])

    def med_agent(kind: str, key: str) -> float | None:
        return median_or_none([r[kind]["agents"][key] for r in runs])

    def med_cpu(kind: str, key: str) -> float | None:
        return median_or_none([r[kind]["cpu_s"][key] for r in runs])

    def extreme(kind: str, pick: Callable[[list[float]], float]) -> float | None:
        values = [float(r[kind]["total_s"]) for r in runs]
        return pick(values) if values else None

    return {
        "complete_runs": len(runs),
        "rmm_total_s": med("rmm", "total_s"),
        "rmm_total_min_s": extreme("rmm", min),
        "rmm_total_max_s": extreme("rmm", max),
        "rmm_started_s": med("rmm", "started_s"),
        "rmm_first_outcome_s": med("rmm", "first_outcome_s"),
        "rmm_outcome_p50_s": med("rmm", "outcome_p50_s"),
        "rmm_outcome_p99_s": med("rmm", "outcome_p99_s"),
        "rmm_delivered_p50_s": med_agent("rmm", "delivered_p50_s"),
        "rmm_delivered_last_s": med_agent("rmm", "delivered_last_s"),
        "rmm_answered_last_s": med_agent("rmm", "answered_last_s"),
        "rmm_stored_last_s": med_agent("rmm", "stored_last_s"),
        "rmm_server_cpu_s": med_cpu("rmm", "server"),
        "rmm_server_cpu_after_s": med_cpu("rmm", "server_after"),
        "rmm_client_cpu_s": med_cpu("rmm", "clients"),
        "rmm_bench_cpu_s": med_cpu("rmm", "bench"),
        "floor_total_s": med("floor", "total_s"),
        "floor_total_min_s": extreme("floor", min),
        "floor_total_max_s": extreme("floor", max),
        "floor_started_s": med("floor", "started_s"),
        "floor_outcome_p50_s": med("floor", "outcome_p50_s"),
        "floor_outcome_p99_s": med("floor", "outcome_p99_s"),
        "floor_delivered_last_s": med_agent("floor", "delivered_last_s"),
        "floor_server_cpu_s": med_cpu("floor", "server"),
        "floor_client_cpu_s": med_cpu("floor", "clients"),
        "ratio_total": median_or_none([r["ratio_total"] for r in runs]),
        "ratio_server_cpu": median_or_none([
            ratio(r["rmm"]["cpu_s"]["server"], r["floor"]["cpu_s"]["server"]) for r in runs]),
    }


# --------------------------------------------------------------------------------------------
# The table


ROWS = (
    ("rmm: RunCommand -> all outcomes", "rmm_total_s", ".3f"),
    ("  min / max over runs", ("rmm_total_min_s", "rmm_total_max_s"), ".3f"),
    ("  -> started event (dispatched)", "rmm_started_s", ".3f"),
    ("  -> command at agent p50 / last", ("rmm_delivered_p50_s", "rmm_delivered_last_s"), ".3f"),
    ("  -> last agent answered", "rmm_answered_last_s", ".3f"),
    ("  -> first outcome at operator", "rmm_first_outcome_s", ".3f"),
    ("  per-agent outcome p50 / p99", ("rmm_outcome_p50_s", "rmm_outcome_p99_s"), ".3f"),
    ("  -> last 'stored' ack at agent", "rmm_stored_last_s", ".3f"),
    ("floor: fan-out -> all replies", "floor_total_s", ".3f"),
    ("  min / max over runs", ("floor_total_min_s", "floor_total_max_s"), ".3f"),
    ("  per-agent reply p50 / p99", ("floor_outcome_p50_s", "floor_outcome_p99_s"), ".3f"),
    ("ratio rmm/floor (within-run median)", "ratio_total", ".1f"),
    ("server CPU s per run: rmm", "rmm_server_cpu_s", ".2f"),
    ("  after the last outcome, until quiet", "rmm_server_cpu_after_s", ".2f"),
    ("server CPU s per run: floor", "floor_server_cpu_s", ".2f"),
    ("agents' CPU s per run: rmm / floor", ("rmm_client_cpu_s", "floor_client_cpu_s"), ".2f"),
)

BREAKDOWN_ROWS = (
    ("issue(): to the started event", "issue_total"),
    ("  build, sign, summarise N commands", "sign_and_build"),
    ("    of which Ed25519 signing", "sign_only"),
    ("  audit command.sent + insert (two transactions)", "audit_sent_and_insert"),
    ("mark N sent (one UPDATE)", "db_mark_sent"),
    ("_settle(N results)", "settle_total"),
    ("  _load: one SELECT per 500", "db_load"),
    ("  record_results (one executemany)", "db_record_results"),
    ("  audit command.result (one transaction)", "audit_results"),
    ("N outcome messages (command_info)", "outcome_messages"),
)


def cell(summary: dict[str, Any], key: str | tuple[str, str], spec: str) -> str:
    if isinstance(key, tuple):
        return " / ".join(fmt(summary[k], spec) for k in key)
    suffix = "x" if key == "ratio_total" else ""
    return fmt(summary[key], spec, suffix)


def print_report(sizes: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"command latency: RunCommand(run_script sh 'true', target client={CLIENT}) to every "
          f"outcome; medians over {args.runs} run{'s' if args.runs > 1 else ''}, seconds")
    print("(simulated agents verify each signed command like a real agent and answer 'ok' at "
          "once: no process is spawned)")
    header = "".join(f"{'N=' + format(s['agents'], ','):>19}" for s in sizes)
    print(f"  {'':<38}{header}")
    complete = "".join(f"{s['summary']['complete_runs']:>17}/{args.runs}" for s in sizes)
    print(f"  {'runs that completed':<38}{complete}")
    for label, key, spec in ROWS:
        print(f"  {label:<38}" + "".join(f"{cell(s['summary'], key, spec):>19}" for s in sizes))
    if any(s["breakdown"] for s in sizes):
        print()
        print("the server's steps for N commands, its own code in this process against its "
              "database (median, s)")
        for label, key in BREAKDOWN_ROWS:
            values = "".join(
                f"{fmt(s['breakdown']['seconds'].get(key) if s['breakdown'] else None, '.3f'):>19}"
                for s in sizes)
            print(f"  {label:<38}{values}")
        for s in sizes:
            for error in (s["breakdown"] or {}).get("errors", [])[:1]:
                print(f"  N={s['agents']}: {error}")
    last = sizes[-1]
    if last["runs"]:
        threads = last["runs"][-1]["rmm"]["server_threads_s"]
        parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in list(threads.items())[:5])
        print()
        print(f"server CPU by thread, last rmm run at N={last['agents']:,} (s): {parts or '-'}")
    print()
    target = next((s for s in sizes if s["agents"] == TARGET_AGENTS), None)
    if target is not None:
        value = target["summary"]["rmm_total_s"]
        verdict = "PASS" if value is not None and value < TARGET_SECONDS else "FAIL"
        print(f"target (issue #4): all results from {TARGET_AGENTS:,} agents in under "
              f"{TARGET_SECONDS:g} s: "
              f"{fmt(value, '.3f') + ' s' if value is not None else 'never completed'}  {verdict}")
    else:
        print(f"target (issue #4) not judged: --sizes has no {TARGET_AGENTS}")
    for s in sizes:
        if s["aborted"]:
            print(f"  N={s['agents']}: FAILED, {s['aborted']}")
        elif s["problems"]:
            print(f"  N={s['agents']}: {len(s['problems'])} problems, first: {s['problems'][:3]}")
        for error in s["server_errors"][:2]:
            print(f"    server log: {error}")
        logged = s["server_log"]["counts"]
        if (logged["warning"] or logged["error"] or logged["critical"]) and not s["server_errors"]:
            print(f"  N={s['agents']} server log: {logged}; first: {s['server_log']['first'][:2]}")
        if s["command_streams_after"] != s["agents"]:
            print(f"  N={s['agents']}: {s['command_streams_after']} command streams at the end")


# --------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or not all(1 <= n <= 5000 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be between 1 and 5000")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.command_latency",
        description="Time RunCommand to N connected simulated agents against a bare gRPC "
                    "fan-out.",
    )
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="agent counts, comma-separated (default 1,100,1000)")
    parser.add_argument("--runs", type=int, default=5,
                        help="timed runs per size, each rmm and floor (default 5)")
    parser.add_argument("--warmup-runs", type=int, default=1,
                        help="untimed runs per size first (default 1)")
    parser.add_argument("--clients", type=int, default=1,
                        help="client processes the agents are spread over (default 1)")
    parser.add_argument("--shared-channels", type=int, default=0,
                        help="channels per client process and server shared by its agents; "
                             "0: one per agent, as real agents have (default 0)")
    parser.add_argument("--command-timeout", type=float, default=COMMAND_TIMEOUT_SECONDS,
                        help="the command's timeout_seconds; a missing result is reported "
                             "15 s after it (default 10)")
    parser.add_argument("--rmm-server", type=Path, default=BIN / "rmm-server",
                        help="the server executable to measure (default: the virtualenv's)")
    parser.add_argument("--enroll-in-flight", type=int, default=32,
                        help="Enroll calls in flight at once (default 32)")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="seconds between measurements (default 0.3)")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip timing the server's steps in this process")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--floor-server", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be between 1 and 50")
    if not 0 <= args.warmup_runs <= 10:
        parser.error("--warmup-runs must be between 0 and 10")
    if not 1 <= args.clients <= 8:
        parser.error("--clients must be between 1 and 8")
    if args.shared_channels < 0:
        parser.error("--shared-channels must be 0 or more")
    if not 1 <= args.enroll_in_flight <= 256:
        parser.error("--enroll-in-flight must be between 1 and 256")
    if not 1 <= args.command_timeout <= 600:
        parser.error("--command-timeout must be between 1 and 600 seconds")
    if not 0 <= args.pause <= 10:
        parser.error("--pause must be between 0 and 10 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_server:
        asyncio.run(serve_floor(args.floor_server))
        return 0
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if not sys.platform.startswith("linux"):
        print("command_latency needs Linux (/proc)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "benchmark": "command_latency",
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "versions": {"rmm": agent_version, "grpcio": grpc.__version__},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k != "floor_server"},
        "notes": [
            "simulated agents verify every signed command (Ed25519, rmm_agent CommandVerifier) "
            "and answer SUCCEEDED, exit code 0, stdout 'ok' at once: no process is spawned",
            "the operator channel and the floor channel are opened once per size (warm); "
            "`rmm run` opens a new connection each time (a few ms more)",
            "times are from the call in this process; agents' times use CLOCK_MONOTONIC, "
            "shared by every process",
        ],
    }
    sizes: list[dict[str, Any]] = []
    try:
        for count in args.sizes:
            sizes.append(asyncio.run(measure_size(count, args)))
    except BenchError as exc:
        print(f"command_latency: {exc}", file=sys.stderr)
        return 1
    target = next((s for s in sizes if s["agents"] == TARGET_AGENTS), None)
    value = target["summary"]["rmm_total_s"] if target else None
    result.update(
        finished_at=datetime.now(UTC).isoformat(),
        sizes=sizes,
        target={"agents": TARGET_AGENTS, "seconds": TARGET_SECONDS, "measured_s": value,
                "pass": None if value is None else value < TARGET_SECONDS},
    )
    print_report(sizes, args)
    print(f"\nnproc {result['machine']['nproc']}, load {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if not any(s["problems"] for s in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
