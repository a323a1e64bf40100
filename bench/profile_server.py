"""Run a benchmark with its rmm-server under cProfile, to see where the server's time goes.

Every `rmm-server` the benchmark starts runs as `python -m cProfile -o DIR/server-N.prof
.venv/bin/rmm-server ...`; the profile covers the server's main thread (the asyncio event loop:
gRPC handlers, validation, policy evaluation, metric rendering), not its worker threads (the
database writes) nor gRPC's native threads. The server writes the profile when it stops on
SIGTERM, as benchmarks stop it. Profiling slows the server about two-fold: read shares, not
rates. At the end the top functions of each profile are printed.

    .venv/bin/python -m bench.profile_server --out /tmp/prof ingest_rate --runs 1 --duration 15

With `--py-spy PATH` (py-spy's binary: `pip install py-spy`), each server runs unprofiled and
py-spy samples it from outside instead (`py-spy record --pid`, 100 Hz, every thread, native
frames off): no two-fold slowdown, and the database threads show too. Each profile is written
as `server-N.txt` (collapsed stacks) and summarised: the share of samples by function, own and
inclusive, for the main thread and all threads.

py-spy samples wall time: on a machine whose cores are shared with the load generator, a thread
that holds the GIL but waits for a core is counted in whatever it runs, so every function looks
slower in proportion. With `--perf` (Linux `perf`, and a Python of 3.12 or later for the server's
venv, whose `PYTHONPERFSUPPORT=1` names Python functions to perf), perf samples CPU time, each
thread's, from `--perf-after` seconds after the server starts for `--perf-seconds`, and each
sample is charged to its innermost Python function (perf unwinds no further than it): the
server's own CPU, by Python function and thread, as `server-N.perf.txt`.

    .venv/bin/python -m bench.profile_server --perf --perf-after 100 --perf-seconds 15 \
        --out /tmp/prof ingest_scale --agents 1000 --start-rate 300 --max-steps 1 \
        --retries 0 --duration 40 --no-bare
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import pstats
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUPPORTED = ("ingest_rate", "ingest_scale", "operator_queries")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_server")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .prof files")
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("--py-spy", type=Path, help="sample with this py-spy binary instead")
    parser.add_argument("--perf", action="store_true", help="sample CPU time with Linux perf")
    parser.add_argument("--perf-after", type=float, default=30.0, help="seconds before perf")
    parser.add_argument("--perf-seconds", type=float, default=15.0, help="seconds perf samples")
    parser.add_argument("benchmark", choices=SUPPORTED)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"bench.{args.benchmark}")
    real_spawn = module.spawn
    profiles: list[Path] = []
    samplers: list[subprocess.Popen[bytes]] = []

    def spawn(command: Sequence[str | Path], log_path: Path, env: Any = None) -> Any:
        is_server = Path(str(command[0])).name == "rmm-server"
        if is_server and args.perf:
            profiles.append(args.out / f"server-{len(profiles) + 1}.perf.txt")
            env = {**(env if env is not None else os.environ), "PYTHONPERFSUPPORT": "1"}
            proc = real_spawn(command, log_path, env)
            sampler = perf_sampler(proc.pid, profiles[-1], args.perf_after, args.perf_seconds)
            samplers.append(sampler)
            return proc
        if is_server and args.py_spy is None:
            profiles.append(args.out / f"server-{len(profiles) + 1}.prof")
            command = [sys.executable, "-m", "cProfile", "-o", str(profiles[-1]), *command]
        proc = real_spawn(command, log_path, env)
        if is_server and args.py_spy is not None:
            profiles.append(args.out / f"server-{len(profiles) + 1}.txt")
            # py-spy ends by itself when the server exits, and then writes the profile.
            samplers.append(
                subprocess.Popen(
                    [
                        str(args.py_spy),
                        "record",
                        "--pid",
                        str(proc.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "100",
                        "--threads",
                        "--nonblocking",
                        "-o",
                        str(profiles[-1]),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        return proc

    setattr(module, "spawn", spawn)  # noqa: B010 (the module is chosen at run time)
    try:
        code = int(module.main(args.args))
    finally:
        for sampler in samplers:
            try:
                sampler.wait(args.perf_after + args.perf_seconds + 120 if args.perf else 30)
            except subprocess.TimeoutExpired:
                sampler.kill()
                sampler.wait()
    for path in profiles:
        if not path.exists():
            continue
        if path.name.endswith(".perf.txt"):
            summarise_perf(path, args.top)
        elif path.suffix == ".prof":
            print(f"\n{path}: by own time")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(args.top)
        else:
            summarise_collapsed(path, args.top)
    return code


def perf_sampler(pid: int, out: Path, after: float, seconds: float) -> subprocess.Popen[bytes]:
    """Start a shell that waits `after` seconds, has perf sample `pid` for `seconds` (CPU
    time, every thread, DWARF stacks as far as the innermost Python function) and writes
    `perf script`'s text to `out`."""
    data = out.with_suffix(".data")
    script = (
        f"sleep {after}; perf record -q -F 499 --call-graph dwarf,32768 -p {pid} -o {data} "
        f"-- sleep {seconds} >/dev/null 2>&1; perf script -i {data} -F tid,ip,sym > {out} "
        f"2>/dev/null; rm -f {data}"
    )
    return subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL)


def summarise_perf(path: Path, top: int) -> None:
    """Print CPU samples by thread and by innermost Python function from `perf script` text."""
    by_thread: collections.Counter[str] = collections.Counter()
    by_function: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    thread = ""
    frames: list[str] = []

    def close() -> None:
        if not thread:
            return
        by_thread[thread] += 1
        python = next((f for f in frames if f.startswith("py::")), None)
        name = python.split("+")[0][4:] if python else f"(native) {frames[-1] if frames else '?'}"
        by_function[thread][name] += 1

    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            close()
            thread, frames = "", []
        elif line.startswith("\t"):  # a frame; a sample's first line is its thread id
            parts = line.split(None, 1)
            frames.append(parts[1].rsplit(" (", 1)[0] if len(parts) > 1 else "?")
        else:
            thread = line.split()[0]
    close()
    total = sum(by_thread.values())
    print(f"\n{path}: {total} CPU samples at 499 Hz")
    if not total:
        print("  none: is `perf` installed, and did the server run past --perf-after?")
    busiest = by_thread.most_common(8)
    for tid, count in busiest:
        print(f"  thread {tid}: {count / max(total, 1):6.1%} of the samples")
        for name, hits in by_function[tid].most_common(top if tid == busiest[0][0] else 5):
            print(f"    {hits / count:6.1%}  {name}")


def summarise_collapsed(path: Path, top: int) -> None:
    """Print the functions with the most samples in py-spy's collapsed stacks at `path`."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    main_own: collections.Counter[str] = collections.Counter()
    total = main_total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        # py-spy names each thread's first frame "thread (0x...)"; the main thread's stack
        # starts in the server's entry point.
        is_main = any("rmm-server" in frame or "<module>" in frame for frame in frames[1:3])
        leaf = _function(frames[-1])
        own[leaf] += count
        if is_main:
            main_total += count
            main_own[leaf] += count
        for name in {_function(frame) for frame in frames[1:]}:
            inclusive[name] += count
    print(f"\n{path}: {total} samples, {main_total} in the main thread")
    for title, counter, base in (
        ("own, main thread", main_own, main_total),
        ("inclusive, all threads", inclusive, total),
        ("own, all threads", own, total),
    ):
        print(f"  by {title}:")
        for name, count in counter.most_common(top):
            print(f"    {count / max(base, 1):6.1%}  {name}")


def _function(frame: str) -> str:
    """Return 'function (file)' of a py-spy frame 'function (path:line)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})"


if __name__ == "__main__":
    sys.exit(main())
