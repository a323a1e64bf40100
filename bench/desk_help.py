"""What a user waits for: `rmm-agent help` (collect a report now, send it, a ticket opened) and
`rmm-agent verify`, against one real `rmm-server serve --insecure` on SQLite with one enrolled
agent; `rmm-agent collect --once` (the same collection, no server) is the peer measured in the
same rounds, so the ratio says what the request adds to collecting.

Medians are printed; `--json FILE` keeps every sample. At most 5 help requests an hour are
taken from one agent, so each round enrolls its own agent.

    .venv/bin/python -m bench.desk_help --rounds 4 --json /tmp/desk_help.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.agent_footprint import BIN, machine, stop_process, wait_until
from bench.desk import spawn_server


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run `argv`; return its wall time and stdout (exit 0 or 1 only: verify says no with 1)."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path, help="Write every sample here.")
    args = parser.parse_args()
    agent, rmm = str(BIN / "rmm-agent"), str(BIN / "rmm")
    samples: dict[str, list[float]] = {"help": [], "collect_once": [], "verify": []}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-desk-help-") as tmp:
        data_dir = Path(tmp) / "server"
        server, port = spawn_server(data_dir, Path(tmp) / "server.log")
        try:
            token = wait_until(
                lambda: (data_dir / "admin.token").read_text().strip(), 60, "the admin token"
            )
            env = dict(
                os.environ, RMM_SERVER=f"127.0.0.1:{port}", RMM_TOKEN=token, RMM_INSECURE="1"
            )
            for round_ in range(args.rounds):
                enroll = wait_until(
                    lambda: json.loads(
                        subprocess.run(
                            [rmm, "tokens", "create", "--client", "acme", "--site", "hq",
                             "--output", "json"],
                            capture_output=True, text=True, env=env, check=True,
                        ).stdout
                    )["token"],
                    60,
                    "an enrollment token",
                )  # fmt: skip
                state = str(Path(tmp) / f"agent{round_}")
                subprocess.run(
                    [agent, "enroll", "--server", f"127.0.0.1:{port}", "--token", enroll,
                     "--state-dir", state, "--insecure"],
                    check=True, capture_output=True,
                )  # fmt: skip
                loads.append(os.getloadavg()[0])
                asked = [agent, "help", "bench", "--state-dir", state, "--output", "json"]
                wall, out = timed(asked)
                samples["help"].append(wall)
                code = json.loads(out)["verify_code"]
                samples["collect_once"].append(timed([agent, "collect", "--once"])[0])
                samples["verify"].append(timed([agent, "verify", code, "--state-dir", state])[0])
        finally:
            stop_process(server)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"{name:<13} median {medians[name]:.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"help / collect --once: {medians['help'] / medians['collect_once']:.2f}")
    print(f"load (1 min) during the rounds: {', '.join(f'{x:.1f}' for x in loads)}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": machine(), "samples": samples, "loads": loads}, indent=2)
        )


if __name__ == "__main__":
    main()
