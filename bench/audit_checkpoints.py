"""What signed audit checkpoints cost: on appends, and on a verify.

    .venv/bin/python -m bench.audit_checkpoints [--runs 3] [--entries 2000] [--json FILE]

Appends `--entries` audit entries to a fresh SQLite log in a temporary directory without
checkpoints, with one every 100 entries (the default) and with one after every entry (each a
signature, a write and an fsync), and verifies a log of that many entries with and without a
checkpoint per entry. Prints medians of the runs; ratios are taken within each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rmm_server.audit import AuditLog
from rmm_server.audit_checkpoints import CheckpointLog
from rmm_server.signing import CommandSigner
from rmm_server.storage import open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import sqlite_url


def appended(directory: Path, entries: int, every: int) -> tuple[float, AuditLog]:
    """Return the wall seconds per append, and the log (its store still open)."""
    store = open_store(sqlite_url(directory))
    log = AuditLog(AuditStore(store))
    log.prepare()
    if every:
        log.checkpoints = CheckpointLog(
            directory, CommandSigner.load_or_create(directory), every=every
        )
    started = time.perf_counter()
    for i in range(entries):
        log.append("alice", "AckAlert", f"alert{i}", {"id": f"alert{i}"}, "ok")
    return (time.perf_counter() - started) / entries, log


def one_run(entries: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for every, name in ((0, "none"), (100, "every_100"), (1, "every_1")):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, log = appended(Path(tmp), entries, every)
            figures[f"append_ms_{name}"] = seconds * 1e3
            if every == 1:
                started = time.perf_counter()
                result = log.verify()
                figures["verify_s_with_checkpoints"] = time.perf_counter() - started
                assert result.ok and result.checkpoints == entries, result
                started = time.perf_counter()
                assert AuditLog(log.store).verify().ok
                figures["verify_s_chain_only"] = time.perf_counter() - started
            log.store.store.close()
    figures["append_ratio_every_100"] = figures["append_ms_every_100"] / figures["append_ms_none"]
    figures["verify_ratio"] = figures["verify_s_with_checkpoints"] / figures["verify_s_chain_only"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    runs = [one_run(args.entries) for _ in range(args.runs)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        f"append: {median['append_ms_none']:.2f} ms without checkpoints, "
        f"{median['append_ms_every_100']:.2f} ms with one every 100 "
        f"({median['append_ratio_every_100']:.2f}x), {median['append_ms_every_1']:.2f} ms with "
        f"one per entry; verify of {args.entries} entries: "
        f"{median['verify_s_chain_only']:.3f} s chain only, "
        f"{median['verify_s_with_checkpoints']:.3f} s with {args.entries} checkpoints "
        f"({median['verify_ratio']:.1f}x) (medians of {args.runs})"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
