"""What an agent's connection costs a bare grpc.aio server in memory, stage by stage.

The floor under rmm-server's memory per connected agent (issue #16 asks for at most 50 KB): a
grpc.aio AgentService that only acknowledges (bench.ingest_rate's bare peer) is started in a
process of its own (spawned, so none of this process's memory is in its RSS), and `--agents`
simulated agents, each on a TCP connection of its own, are taken through the stages an rmm agent
goes through; after each the server's RSS growth over its RSS before any agent, per agent:

1. connected (the channel ready, no call);
2. a report stream open (StreamReports called, nothing sent);
3. after 1, then `--reports` reports each (a real report of this host, as the agent sends it),
   the stream still open, as it stays between an agent's reports.

Each stage twice (`--read`): the server reading the stream by `async for` over grpc.aio's
request iterator, and by `context.read()` (what rmm-server does since this bench found the
iterator holding the last report it gave, about 40 KB, while it waits for the next).

Each stage is a fresh server. `--option NAME=INT` passes gRPC channel arguments to the server
(repeatable) to see whether one changes the figures.

    .venv/bin/python -m bench.stream_memory --agents 1000 --runs 3 --json /tmp/stream-memory.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import multiprocessing.queues
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench.agent_footprint import free_port, machine, rss_kb
from bench.ingest_rate import BareAgentService, capture_template
from rmm_proto import agent_pb2, agent_pb2_grpc

SETTLE_SECONDS = 1.0  # for the server's allocations to be done before its RSS is read


class ContextReadService(agent_pb2_grpc.AgentServiceServicer):
    """The bare peer reading with context.read() instead of iterating over the requests, as
    rmm-server's report stream does."""

    async def StreamReports(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        while (report := await context.read()) is not grpc.aio.EOF:
            sequence = report.sequence
            del report  # not held while the next one is awaited
            yield agent_pb2.ReportAck(sequence=sequence)


def serve(address: str, options: list[tuple[str, int]], ready: multiprocessing.queues.Queue[Any],
          read: str = "iterator") -> None:
    """The server process: a bare AgentService on `address` until terminated."""

    async def main() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                *options,
            ]
        )
        service = ContextReadService() if read == "context" else BareAgentService()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
        server.add_insecure_port(address)
        await server.start()
        ready.put(os.getpid())
        await asyncio.Event().wait()

    asyncio.run(main())


async def load(address: str, agents: int, stage: str, reports: int, body: bytes,
               measure: Any) -> int:
    """Take `agents` agents to `stage`; return the server's RSS (kB) read by `measure` there."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # a TCP connection per agent
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(agents)]
    calls: list[Any] = []
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        if stage != "connected":
            calls = [agent_pb2_grpc.AgentServiceStub(c).StreamReports() for c in channels]

            async def send(call: Any) -> None:
                for sequence in range(1, (reports if stage == "reports" else 0) + 1):
                    report = agent_pb2.Report.FromString(body)
                    report.sequence = sequence
                    await call.write(report)
                    ack = await call.read()
                    if ack is grpc.aio.EOF or ack.sequence != sequence:
                        raise RuntimeError(f"no acknowledgement of report {sequence}: {ack}")

            await asyncio.gather(*(send(call) for call in calls))
        await asyncio.sleep(SETTLE_SECONDS)
        return int(measure())
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


def one_stage(agents: int, stage: str, reports: int, body: bytes,
              options: list[tuple[str, int]], read: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    ready: multiprocessing.queues.Queue[Any] = ctx.Queue()
    address = f"127.0.0.1:{free_port()}"
    proc = ctx.Process(target=serve, args=(address, options, ready, read), daemon=True)
    proc.start()
    try:
        pid = int(ready.get(timeout=60))
        time.sleep(SETTLE_SECONDS)
        before = rss_kb(pid)
        after = asyncio.run(load(address, agents, stage, reports, body, lambda: rss_kb(pid)))
    finally:
        proc.terminate()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return {"rss_before_mb": before / 1024, "rss_after_mb": after / 1024,
            "kb_per_agent": (after - before) / agents}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream_memory",
        description="A bare grpc.aio server's memory per connected agent, stage by stage.",
    )
    parser.add_argument("--agents", type=int, default=1000, help="agents (default 1000)")
    parser.add_argument("--reports", type=int, nargs="+", default=[1, 3, 10],
                        help="reports per agent for the last stage (default 1 3 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs, medians shown (default 3)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=INT",
                        help="a gRPC channel argument for the server (repeatable)")
    parser.add_argument("--read", nargs="+", choices=("iterator", "context"),
                        default=["iterator", "context"],
                        help="how the server reads the report stream: `async for` over the "
                        "request iterator, or context.read() (default both)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 15_000:
        parser.error("--agents must be between 1 and 15000")
    try:
        args.options = [(k, int(v)) for k, _, v in (o.partition("=") for o in args.option)]
    except ValueError:
        parser.error("--option takes NAME=INT, e.g. grpc.http2.bdp_probe=0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    template, _inventory = capture_template()
    body = template.SerializeToString()
    stages = [("connected", 0), ("stream open", 0)] + [("reports", n) for n in args.reports]
    rows: dict[str, list[dict[str, float]]] = {}
    for run in range(1, args.runs + 1):
        for (stage, reports), read in itertools.product(stages, args.read):
            label = f"after {reports} report(s)" if stage == "reports" else stage
            label = f"{label}, {read}"
            figures = one_stage(args.agents, stage, reports, body, args.options, read)
            rows.setdefault(label, []).append(figures)
            print(f"run {run}: {label}: {figures['kb_per_agent']:.1f} KB an agent", flush=True)
    print(f"\nbare grpc.aio server (grpcio {grpc.__version__}), {args.agents} agents, a report "
          f"of {len(body):,} bytes, medians of {args.runs} runs, load "
          f"{os.getloadavg()[0]:.1f}:")
    summary = {}
    for label, measured in rows.items():
        summary[label] = statistics.median(f["kb_per_agent"] for f in measured)
        print(f"  {label:32s} {summary[label]:7.1f} KB an agent")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "benchmark": "stream_memory", "machine": machine(), "grpcio": grpc.__version__,
            "agents": args.agents, "report_bytes": len(body), "options": args.options,
            "runs": rows, "kb_per_agent_median": summary,
        }, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
