"""What the agent's report spool costs per report, on this machine's disk.

Three patterns, each over `--reports` real reports (one built by the agent's collectors on this
host, renumbered), in a fresh spool in a temporary directory on the file system of `--dir`:

1. steady state: add a report, acknowledge it (what a connected agent does every interval);
2. outage: add reports with no acknowledgement (the server is away);
3. catch-up: read the backlog 64 at a time and acknowledge each report, as the sender does.

Wall time includes SQLite's fsync per added report (synchronous=FULL); CPU is this process's.

    .venv/bin/python -m bench.spool_cost --reports 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rmm_agent.cli import make_collectors
from rmm_agent.spool import SPOOL_FILE, Spool
from rmm_proto import agent_pb2


def sample_report() -> agent_pb2.Report:
    """One real report of this host (the slow patches collector left out)."""
    from rmm_agent.report import ReportBuilder  # noqa: PLC0415

    builder = ReportBuilder(
        [c for c in make_collectors([]) if c.name != "patches"], wait_for_slow=True
    )
    builder.build()
    time.sleep(0.5)  # rates (cpu, disk and network I/O) need two readings
    report = builder.build()
    builder.close()
    return report


def timed(action: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    count: int = args.reports
    report = sample_report()
    figures: dict[str, float] = {"report_bytes": float(len(report.SerializeToString()))}

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        spool = Spool(Path(tmp) / SPOOL_FILE, max_reports=count * 2, max_bytes=1 << 40)

        def steady() -> None:
            for seq in range(1, count + 1):
                report.sequence = seq
                spool.add(report)
                spool.ack(seq)

        def outage() -> None:
            for seq in range(count + 1, 2 * count + 1):
                report.sequence = seq
                spool.add(report)
            spooled = sum(f.stat().st_size for f in Path(tmp).iterdir())
            figures["spool_bytes_per_report"] = spooled / count

        def catch_up() -> None:
            sent = count
            while batch := spool.pending(sent, 64):
                for item in batch:
                    sent = item.sequence
                    spool.ack(sent)

        for name, action in (("steady", steady), ("outage_add", outage), ("catch_up", catch_up)):
            wall, cpu = timed(action)
            figures[f"{name}_wall_us_per_report"] = wall / count * 1e6
            figures[f"{name}_cpu_us_per_report"] = cpu / count * 1e6
        assert len(spool) == 0, "the catch-up left reports behind"
        spool.close()

    print(
        f"spool cost per report ({count} reports of {figures['report_bytes']:.0f} bytes, "
        f"{figures['spool_bytes_per_report']:.0f} bytes each on disk)"
    )
    for name in ("steady", "outage_add", "catch_up"):
        print(
            f"  {name:<11} wall {figures[f'{name}_wall_us_per_report']:8.1f} us"
            f"   cpu {figures[f'{name}_cpu_us_per_report']:8.1f} us"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
