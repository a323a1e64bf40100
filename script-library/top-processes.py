#!/usr/bin/env python3
# ---
# name: top-processes
# description: Show the processes using the most CPU (sampled over a second) and the most memory.
# shells: [python]
# timeout: 1m
# min_role: tier1
# params:
#   - name: count
#     type: int
#     min: 1
#     max: 100
#     default: 10
#     description: how many processes to list in each table
# ---
"""Top processes by CPU and by memory, on any OS the agent runs on (psutil)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import NamedTuple

try:
    import psutil
except ImportError:
    print("top-processes: needs psutil (the agent's Python has it)", file=sys.stderr)
    sys.exit(3)

SAMPLE_SECONDS = 1.0
USAGE = "top-processes: COUNT must be a whole number from 1 to 100, e.g. 10"


class Row(NamedTuple):
    pid: int
    name: str
    user: str
    cpu: float
    memory: float
    rss: int


def human(size: float) -> str:
    """Bytes as a short IEC size."""
    for unit in ("B", "K", "M", "G"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}T"


def sample() -> list[Row]:
    """Every readable process with its CPU share over SAMPLE_SECONDS and its memory."""
    processes = list(psutil.process_iter(["pid", "name", "username"]))
    psutil.cpu_percent(None)  # the first call of each starts its measurement
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.cpu_percent(None)
    time.sleep(SAMPLE_SECONDS)
    rows = []
    for process in processes:
        try:
            with process.oneshot():
                cpu = process.cpu_percent(None)
                rss = process.memory_info().rss
                memory = process.memory_percent()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # gone meanwhile, or not ours to read
        info = process.info
        rows.append(
            Row(info["pid"], info["name"] or "?", info["username"] or "?", cpu, memory, rss)
        )
    return rows


def show(title: str, rows: list[Row]) -> None:
    """Print one table."""
    print(f"== {title} ==")
    print(f"{'PID':>7}  {'CPU%':>6}  {'MEM%':>5}  {'RSS':>7}  {'USER':<16}  NAME")
    for row in rows:
        print(
            f"{row.pid:>7}  {row.cpu:>6.1f}  {row.memory:>5.1f}  {human(row.rss):>7}  "
            f"{row.user[:16]:<16}  {row.name}"
        )


def main(argv: list[str]) -> int:
    """Print the top COUNT processes by CPU, then by memory."""
    try:
        count = int(argv[0]) if argv else 10
    except ValueError:
        count = 0
    if len(argv) > 1 or not 1 <= count <= 100:
        print(USAGE, file=sys.stderr)
        return 2
    rows = sample()
    cpu = psutil.cpu_percent(None)
    memory = psutil.virtual_memory()
    print(
        f"{len(rows)} processes; CPU {cpu:.0f}% of {psutil.cpu_count()} cores; "
        f"memory {memory.percent:.0f}% of {human(memory.total)} used"
    )
    print()
    by_cpu = sorted(rows, key=lambda r: -r.cpu)[:count]
    show(f"Top {count} by CPU (over {SAMPLE_SECONDS:g}s; 100% is one core)", by_cpu)
    print()
    show(f"Top {count} by memory", sorted(rows, key=lambda r: -r.rss)[:count])
    return 0


if __name__ == "__main__":
    # The server passes the checked parameter as RMM_PARAM_COUNT; arguments when run by hand.
    given = os.environ.get("RMM_PARAM_COUNT")
    sys.exit(main([given] if given else sys.argv[1:]))
