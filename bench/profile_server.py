"""Run a benchmark with its rmm-server under cProfile, to see where the server's time goes.

Every `rmm-server` the benchmark starts runs as `python -m cProfile -o DIR/server-N.prof
.venv/bin/rmm-server ...`; the profile covers the server's main thread (the asyncio event loop:
gRPC handlers, validation, policy evaluation, metric rendering), not its worker threads (the
database writes) nor gRPC's native threads. The server writes the profile when it stops on
SIGTERM, as benchmarks stop it. Profiling slows the server about two-fold: read shares, not
rates. At the end the top functions of each profile are printed.

    .venv/bin/python -m bench.profile_server --out /tmp/prof ingest_rate --runs 1 --duration 15
"""

from __future__ import annotations

import argparse
import importlib
import pstats
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUPPORTED = ("ingest_rate", "operator_queries")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_server")
    parser.add_argument("--out", type=Path, required=True, help="directory for the .prof files")
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("benchmark", choices=SUPPORTED)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"bench.{args.benchmark}")
    real_spawn = module.spawn
    profiles: list[Path] = []

    def spawn(command: Sequence[str | Path], log_path: Path, env: Any = None) -> Any:
        if Path(str(command[0])).name == "rmm-server":
            profiles.append(args.out / f"server-{len(profiles) + 1}.prof")
            command = [sys.executable, "-m", "cProfile", "-o", str(profiles[-1]), *command]
        return real_spawn(command, log_path, env)

    setattr(module, "spawn", spawn)  # noqa: B010 (the module is chosen at run time)
    code = int(module.main(args.args))
    for path in profiles:
        if path.exists():
            print(f"\n{path}: by own time")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(args.top)
    return code


if __name__ == "__main__":
    sys.exit(main())
