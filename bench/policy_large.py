"""Measure loading and evaluating one policy of many rules (10,000 by default) against 50 rules.

Figures: the median time to load the set (YAML, checks, CEL compilation) and its share spent
composing YAML with PyYAML's pure-Python loader against its libyaml (C) loader on the same text;
the median time to evaluate one real report of this host against it, per report and per rule in
force, beside the same for 50 rules of the same kinds measured in the same run; and what the
server's alert service spends on one report (evaluation and alert bookkeeping, on the event loop)
for an agent's first report, which fires every alert at once, and for the next ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from bench.policy_eval import _RULE_KINDS, collect_context, measure
from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder
from rmm_proto import agent_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.policy import load_policy_dir
from rmm_server.storage import AgentRecord, open_store
from rmm_server.storage.store import sqlite_url


def rules_yaml(count: int) -> str:
    """Return one policy document with `count` rules of the kinds bench.policy_eval uses."""
    lines = [
        "apiVersion: rmm/v1",
        "kind: AlertPolicy",
        "metadata: {name: large}",
        "scope: {all: true}",
        "rules:",
    ]
    for i in range(count):
        expr, clear = _RULE_KINDS[i % len(_RULE_KINDS)]
        lines += [f"  - name: Rule{i}", f"    expr: {expr}", f"    params: {{t: 0.{50 + i % 50}}}"]
        if clear:
            lines.append(f"    clear: {clear}")
        lines.append('    annotations: {summary: "{{ hostname }} {{ value }}"}')
    return "\n".join(lines) + "\n"


def median_seconds(action: Any, runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def build_report() -> agent_pb2.Report:
    """Build one real report of this host (after a priming one, for CPU counters)."""
    builder = ReportBuilder(make_collectors(["patches"]))
    try:
        builder.build()
        time.sleep(0.5)
        return builder.build()
    finally:
        builder.close()


def alert_service_seconds(policies_dir: Path, report: agent_pb2.Report, runs: int) -> list[float]:
    """Return the time AlertService.on_report takes for an agent's first `runs` reports."""
    with tempfile.TemporaryDirectory() as data:
        store = open_store(sqlite_url(Path(data)))
        try:
            service = AlertService(store, CollectorRegistry(), policies_dir)
            service.load()
            record = AgentRecord(
                id="bench", credential_hash="", client="bench", site="hq", enrolled_at=0,
                hostname="bench", os="linux", tags=["server"],
            )  # fmt: skip

            async def run() -> list[float]:
                timings = []
                for sequence in range(1, runs + 1):
                    report.sequence = sequence
                    started = time.perf_counter()
                    await service.on_report(record, report)
                    timings.append(time.perf_counter() - started)
                await service.flush()
                return timings

            return asyncio.run(run())
        finally:
            store.close()


def main() -> None:
    """Generate the policies, load and evaluate them, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=10_000, help="rules in the large policy")
    parser.add_argument("--load-runs", type=int, default=3, help="loads of each set measured")
    parser.add_argument("--runs", type=int, default=50, help="evaluations measured per set")
    parser.add_argument(
        "--report-runs", type=int, default=4, help="reports through the alert service per set"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    agent, samples = collect_context()
    report = build_report()
    results: dict[str, Any] = {"samples_in_report": len(samples)}
    for name, count in (("fifty_rules", 50), ("large", args.rules)):
        text = rules_yaml(count)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "large.yaml").write_text(text)
            load = median_seconds(lambda tmp=tmp: load_policy_dir(tmp), args.load_runs)
            policies = load_policy_dir(tmp)
            on_report = alert_service_seconds(Path(tmp), report, args.report_runs)
        entry = measure(policies, agent, samples, args.runs)
        entry["median_s_load"] = round(load, 3)
        entry["s_alert_service_first_report"] = round(on_report[0], 3)
        entry["median_s_alert_service_next_reports"] = round(statistics.median(on_report[1:]), 3)
        entry["median_ms_load_per_rule"] = round(load * 1000 / count, 3)
        for loader in (yaml.SafeLoader, yaml.CSafeLoader):
            compose = median_seconds(
                lambda loader=loader, text=text: list(yaml.compose_all(text, Loader=loader)),
                args.load_runs,
            )
            entry[f"median_s_compose_{loader.__name__}"] = round(compose, 3)
        results[name] = entry
    for name in ("fifty_rules", "large"):
        r = results[name]
        print(
            f"{name:11} {r['rules']:6} rules: load {r['median_s_load']:8.3f} s "
            f"({r['median_ms_load_per_rule']:.3f} ms per rule; YAML compose "
            f"{r['median_s_compose_SafeLoader']:.3f} s pure Python, "
            f"{r['median_s_compose_CSafeLoader']:.3f} s libyaml), evaluation "
            f"{r['median_us_per_evaluation'] / 1000:8.2f} ms per report, "
            f"{r['median_us_per_rule']:6.2f} µs per rule, {r['conditions']} conditions; "
            f"alert service {r['s_alert_service_first_report']:.3f} s for the first report, "
            f"{r['median_s_alert_service_next_reports']:.3f} s for the next"
        )
    large, small = results["large"], results["fifty_rules"]
    load_ratio = large["median_ms_load_per_rule"] / max(small["median_ms_load_per_rule"], 1e-9)
    eval_ratio = large["median_us_per_rule"] / max(small["median_us_per_rule"], 1e-9)
    print(f"per rule, large / fifty: load {load_ratio:.2f}x, evaluation {eval_ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
