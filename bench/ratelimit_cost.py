"""CPU cost of the operator rate limit, which sits on every operator call.

    .venv/bin/python -m bench.ratelimit_cost [--runs 5] [--json FILE]

Prints CPU microseconds per `TokenBuckets.take` over 100 keys (median of runs), beside a peer
measured in the same run: a bare dict lookup-and-store of a float, the least such a limiter does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rmm_server.ratelimit import Rate, TokenBuckets

CALLS = 200_000


def per_call_limiter() -> float:
    buckets = TokenBuckets(Rate(1e9, 10**9))
    keys = [f"operator-{i}" for i in range(100)]
    started = time.process_time()
    for i in range(CALLS):
        buckets.take(keys[i % 100])
    return (time.process_time() - started) / CALLS


def per_call_dict() -> float:
    table: dict[str, float] = {}
    keys = [f"operator-{i}" for i in range(100)]
    started = time.process_time()
    for i in range(CALLS):
        key = keys[i % 100]
        table[key] = table.get(key, 0.0) + time.monotonic()
    return (time.process_time() - started) / CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    limiter = [per_call_limiter() for _ in range(args.runs)]
    peer = [per_call_dict() for _ in range(args.runs)]
    figures = {
        "limiter_us_per_call": statistics.median(limiter) * 1e6,
        "dict_us_per_call": statistics.median(peer) * 1e6,
    }
    figures["ratio"] = figures["limiter_us_per_call"] / figures["dict_us_per_call"]
    print(
        f"token bucket take(): {figures['limiter_us_per_call']:.2f} µs CPU per call; "
        f"bare dict update: {figures['dict_us_per_call']:.2f} µs; ratio {figures['ratio']:.1f}x "
        f"(medians of {args.runs})"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
