"""Measure evaluating one real report against the shipped policies and against 50 rules."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rmm_server.policy import AgentContext, PolicySet, SeriesSample, load_policy_dir
from rmm_server.policy.report import report_json_to_context

ROOT = Path(__file__).resolve().parent.parent

# 50 rules over the metrics every Linux host reports, half per-series, with clear expressions.
_RULE_KINDS = [
    ("cpu_usage_ratio > params.t", "cpu_usage_ratio < params.t - 0.1"),
    ("memory_usage_ratio > params.t", "memory_usage_ratio < params.t - 0.05"),
    ("disk_usage_ratio > params.t", "disk_usage_ratio < params.t - 0.02"),
    ("network_up < params.t", None),
    ("system_uptime_seconds > params.t * 86400.0", None),
]


def fifty_rules_yaml() -> str:
    """Return one policy document with 50 rules."""
    lines = [
        "apiVersion: rmm/v1",
        "kind: AlertPolicy",
        "metadata: {name: bench}",
        "scope: {all: true}",
        "rules:",
    ]
    for i in range(50):
        expr, clear = _RULE_KINDS[i % len(_RULE_KINDS)]
        lines += [f"  - name: Rule{i}", f"    expr: {expr}", f"    params: {{t: 0.{50 + i}}}"]
        if clear:
            lines.append(f"    clear: {clear}")
        lines.append('    annotations: {summary: "{{ hostname }} {{ value }}"}')
    return "\n".join(lines) + "\n"


def measure(
    policies: PolicySet, agent: AgentContext, samples: list[SeriesSample], runs: int
) -> dict[str, Any]:
    """Return the median cost of one evaluation, per evaluation and per rule in force."""
    rules = len(policies.rules_for(agent))
    for _ in range(50):
        policies.evaluate(agent, samples)  # warm caches
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        policies.evaluate(agent, samples)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings) * 1e6
    conditions = len(policies.evaluate(agent, samples))
    return {
        "rules": rules,
        "conditions": conditions,
        "median_us_per_evaluation": round(median, 1),
        "median_us_per_rule": round(median / max(rules, 1), 2),
    }


def collect_context() -> tuple[AgentContext, list[SeriesSample]]:
    """Collect one real report from this host with rmm-agent and return it as policy input."""
    agent_bin = Path(sys.executable).with_name("rmm-agent")
    raw = subprocess.run(
        [str(agent_bin), "collect", "--once", "--output", "json"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return report_json_to_context(
        json.loads(raw), client="bench", site="hq", tags={"server"}, interval_seconds=60.0
    )


def main() -> None:
    """Collect one real report, evaluate it many times, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    agent, samples = collect_context()
    results: dict[str, Any] = {"samples_in_report": len(samples)}
    results["shipped"] = measure(load_policy_dir(ROOT / "policies"), agent, samples, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench.yaml").write_text(fifty_rules_yaml())
        results["fifty_rules"] = measure(load_policy_dir(tmp), agent, samples, args.runs)
    for name in ("shipped", "fifty_rules"):
        r = results[name]
        print(
            f"{name:12} {r['rules']:3} rules, {r['conditions']:3} conditions: "
            f"{r['median_us_per_evaluation']:8.1f} µs per report, "
            f"{r['median_us_per_rule']:6.2f} µs per rule"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
