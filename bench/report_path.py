"""CPU the server spends on one report in its event loop, stage by stage, on a real report.

The ingest benchmark (bench.ingest_rate) measures the whole server and is noisy; this one times
the pure stages of the report path in-process: checking the report (in full, as for a new
series set, and as the server does for a report of its agent's known shape, on a freshly
parsed message each time as the server gets them), rendering its /metrics fragments, building
the policy input (the samples the agent's rules read), evaluating the shipped policies,
compressing the body. `total` adds the stages a report of a known shape goes through.
`policy_evaluate_reuse` evaluates reports whose CPU, memory and uptime move (as
bench.ingest_rate's agents'), each rule whose inputs did not change reusing its outcome, as the
server does; it is counted in the total instead of `policy_evaluate`, where every rule runs.
`compress_body` runs in the ingest writer thread, not on the event loop: printed, not counted.
`--save-report FILE` keeps the report it built and `--report FILE` reuses one, so that two
checkouts can be compared on the same report (run each with PYTHONPATH=<checkout>, alternating).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder
from rmm_proto import agent_pb2
from rmm_server.alerts.service import agent_context
from rmm_server.exposition import render_agent_fragments
from rmm_server.policy import AgentContext, PolicySet, SeriesSample, load_policy_dir
from rmm_server.report_shapes import ReportShapes
from rmm_server.reports import compress, validate_report
from rmm_server.storage import AgentRecord

ROOT = Path(__file__).resolve().parent.parent


def build_report() -> agent_pb2.Report:
    """Build one real report of this host, after a priming one (CPU counters, inventory)."""
    builder = ReportBuilder(make_collectors([]))
    try:
        builder.build()
        time.sleep(0.5)
        report = builder.build()
    finally:
        builder.close()
    report.sequence = 2
    report.interval_seconds = 30
    report.ClearField("inventory")  # travels with first reports only
    return report


def stages(report: agent_pb2.Report) -> dict[str, Callable[[], object]]:
    """Return each stage as a call, fed as ingest feeds it (the validated samples)."""
    record = AgentRecord(
        id="bench-agent",
        credential_hash="h",
        client="acme",
        site="hq",
        enrolled_at=0,
        hostname="bench-host",
        interval_seconds=30,
        tags=["server"],
    )
    policies = load_policy_dir(ROOT / "policies")
    series = validate_report(report)
    needed = policies.metrics_for
    context, samples = agent_context(record, report, time.time(), series=series, needed=needed)
    raw = report.SerializeToString()
    shapes = ReportShapes()
    shapes.validate(record.id, agent_pb2.Report.FromString(raw), raw)
    shape = shapes.shape_of(record.id)
    # The server checks each report once, as decoded from the wire: parse it afresh (the parse
    # is counted; protobuf's first access to each sample of a new message is its real cost).
    return {
        "validate_known_shape": lambda: shapes.validate(
            record.id, agent_pb2.Report.FromString(raw), raw
        ),
        # With the report's shape, as ingest renders it (the lines laid out once per shape).
        "render_fragments": lambda: render_agent_fragments(record, report, series, None, shape),
        LINE_BY_LINE: lambda: render_agent_fragments(record, report, series),
        "policy_input": lambda: agent_context(
            record, report, time.time(), series=series, needed=needed
        ),
        "policy_evaluate": lambda: policies.evaluate(context, samples),
        "policy_evaluate_reuse": moving_evaluation(policies, context, samples),
        "compress_body": lambda: compress(raw),
    }


def many_agents(report: agent_pb2.Report, agents: int) -> Callable[[], object]:
    """Return validation by shape and rendering of reports of `agents` agents in turn, each
    report decoded afresh with other values: what the two stages cost when every report
    meets another agent's state (cold in the CPU's caches), as in a server of many agents."""
    rng = random.Random(agents)
    variants = []
    for _ in range(64):
        variant = agent_pb2.Report()
        variant.CopyFrom(report)
        for collector in variant.collectors:
            for sample in collector.samples:
                sample.value *= 0.9 + 0.2 * rng.random()
        variants.append(variant.SerializeToString())
    records = [
        AgentRecord(
            id=f"agent-{n:06d}",
            credential_hash="h",
            client=f"client-{n % 50}",
            site="hq",
            enrolled_at=0,
            hostname=f"host-{n}",
            interval_seconds=30,
        )
        for n in range(agents)
    ]
    shapes = ReportShapes()
    fragments: dict[str, object] = {}  # each agent's last, held as the fleet holds them
    turn = itertools.count()

    def one() -> None:
        n = next(turn)
        record, raw = records[n % agents], variants[n % len(variants)]
        decoded = agent_pb2.Report.FromString(raw)
        series = shapes.validate(record.id, decoded, raw)
        shape = shapes.shape_of(record.id)
        fragments[record.id] = render_agent_fragments(record, decoded, series, None, shape)

    for _ in range(agents):
        one()  # every agent's state in place before the timing
    return one


# The values bench.ingest_rate's agents move at every report; the other inputs stay.
MOVING = ("cpu_usage_ratio", "memory_usage_ratio", "system_uptime_seconds")


def moving_evaluation(
    policies: PolicySet, context: AgentContext, samples: list[SeriesSample]
) -> Callable[[], object]:
    """Return the evaluation of reports whose MOVING values differ at each call, with the
    previous outcome of every rule whose inputs did not change reused, as the server does (a
    real host also moves disk usage, temperatures and its process list, so its rules reading
    those run as well: between this stage and policy_evaluate, where every rule runs)."""
    rng = random.Random(16)
    variants = [
        [SeriesSample(s.name, s.labels, rng.random()) if s.name in MOVING else s for s in samples]
        for _ in range(64)
    ]
    turn = itertools.cycle(variants)
    return lambda: policies.evaluate(context, next(turn), reuse=True)


# Not in the total: what a report with a new series set costs instead of validate_known_shape.
FULL_CHECK = "validate_report"
# Not in the total either: every rule run, as for a report whose every input changed.
EVERY_RULE = "policy_evaluate"
# Not on the event loop: the ingest writer thread compresses bodies (zlib lets go of the GIL).
WRITER_THREAD = "compress_body"
# Not in the total: the fragments rendered line by line, as for a report of no known shape.
LINE_BY_LINE = "render_line_by_line"
# Not in the total: validation and rendering together over N agents (--agents), and over 1.
MANY_AGENTS = "check_render_agents"


def full_check(report: agent_pb2.Report) -> Callable[[], object]:
    raw = report.SerializeToString()
    return lambda: validate_report(agent_pb2.Report.FromString(raw))


def measure(call: Callable[[], object], repeat: int) -> float:
    """Return CPU microseconds per call over `repeat` calls, after a warm-up."""
    for _ in range(max(repeat // 10, 20)):
        call()
    started = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - started) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs; medians are shown")
    parser.add_argument("--repeat", type=int, default=1000, help="calls per stage per run")
    parser.add_argument("--report", type=Path, help="a saved report (Report protobuf) to use")
    parser.add_argument("--save-report", type=Path, help="save the report built here")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--agents",
        type=int,
        default=0,
        help="also time validation and rendering over this many agents' reports in turn",
    )
    args = parser.parse_args()

    if args.report:
        report = agent_pb2.Report.FromString(args.report.read_bytes())
        report.sequence, report.collected_at = max(report.sequence, 1), time.time()
    else:
        report = build_report()
    if args.save_report:
        args.save_report.write_bytes(report.SerializeToString())
    calls = {**stages(report), FULL_CHECK: full_check(report)}
    if args.agents:
        calls[f"{MANY_AGENTS}_1"] = many_agents(report, 1)
        calls[f"{MANY_AGENTS}_{args.agents}"] = many_agents(report, args.agents)
    per_run: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.runs):
        for name, call in calls.items():
            per_run[name].append(measure(call, args.repeat))
    medians = {name: statistics.median(values) for name, values in per_run.items()}
    samples = sum(len(c.samples) for c in report.collectors)
    print(f"one report: {report.ByteSize()} bytes, {samples} samples; medians of {args.runs} runs")
    print(f"{'stage':<28}{'CPU µs/report':>15}")
    for name, value in medians.items():
        print(f"{name:<28}{value:>15.0f}")
    left_out = (FULL_CHECK, EVERY_RULE, WRITER_THREAD, LINE_BY_LINE)
    total = sum(
        value
        for name, value in medians.items()
        if name not in left_out and not name.startswith(MANY_AGENTS)
    )
    print(
        f"{'total':<28}{total:>15.0f}  (event loop; not counted: validate_report, a new series "
        "set only; policy_evaluate, every rule run; compress_body, in the writer thread; "
        "render_line_by_line, a report of no known shape; check_render_agents_N, --agents)"
    )
    if args.json:
        figures: dict[str, Any] = {
            "benchmark": "report_path",
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "load_average": os.getloadavg(),
            },
            "report_bytes": report.ByteSize(),
            "samples": samples,
            "runs": per_run,
            "median_us": medians,
            "total_median_us": total,
            "at": time.time(),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
