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
"""

from __future__ import annotations

import argparse
import collections
import importlib
import pstats
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUPPORTED = ("ingest_rate", "operator_queries")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_server")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .prof files")
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("--py-spy", type=Path, help="sample with this py-spy binary instead")
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
        if is_server and args.py_spy is None:
            profiles.append(args.out / f"server-{len(profiles) + 1}.prof")
            command = [sys.executable, "-m", "cProfile", "-o", str(profiles[-1]), *command]
        proc = real_spawn(command, log_path, env)
        if is_server and args.py_spy is not None:
            profiles.append(args.out / f"server-{len(profiles) + 1}.txt")
            # py-spy ends by itself when the server exits, and then writes the profile.
            samplers.append(
                subprocess.Popen(
                    [str(args.py_spy), "record", "--pid", str(proc.pid), "--format", "raw",
                     "--rate", "100", "--threads", "--nonblocking", "-o", str(profiles[-1])],
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
                sampler.wait(30)
            except subprocess.TimeoutExpired:
                sampler.kill()
                sampler.wait()
    for path in profiles:
        if not path.exists():
            continue
        if path.suffix == ".prof":
            print(f"\n{path}: by own time")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(args.top)
        else:
            summarise_collapsed(path, args.top)
    return code


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
