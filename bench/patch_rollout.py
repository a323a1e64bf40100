"""Opening a patch window for many agents, and the rollout's periodic tick while they install.

Real Store (SQLite in a temporary directory), real CommandService (signed, audited, stored) and
Rollout; the agents are offline, so every install is stored and queued as for agents that come
back during the window. Measured per run:
- peer: one CommandService.issue() of the same InstallUpdates to all agents at once (the floor
  of signing, auditing and storing that many commands);
- open: Rollout.open() of a window holding every agent in one ring (one command per agent);
- tick: Rollout.tick() while every install is in flight (what the leader pays every 10 s),
  the first after a start (it reads the open runs) and a later one (runs kept in memory).

    .venv/bin/python -m bench.patch_rollout --agents 2000 --runs 3 [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_proto import commands_pb2
from rmm_server.commands import AuditEntry, CommandService
from rmm_server.patching.model import PatchSchedule, PatchSettings
from rmm_server.patching.rollout import Rollout
from rmm_server.patching.windows import plan_windows
from rmm_server.runs import summarize
from rmm_server.scripts import ScriptLibrary
from rmm_server.signing import CommandSigner
from rmm_server.storage import AgentRecord, open_store
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.store import sqlite_url

SCHEDULE = PatchSchedule(name="bench", duration_seconds=6 * 3600, cron="0 22 * * 5")
UPDATES = [f"apt:package-{i}" for i in range(50)]


class Updates:
    def approved_updates(self, agent_id: str) -> list[str]:
        return list(UPDATES)

    def record_outcomes(self, records: Sequence[CommandRecord]) -> object:
        return None

    def install_request_met(self, agent_id: str) -> None:
        return None


async def one_run(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(sqlite_url(Path(tmp)))
        audited: list[AuditEntry] = []
        commands = CommandService(
            store, CommandSigner(Ed25519PrivateKey.generate()), audited.extend
        )
        commands.start()
        agents = {
            f"agent-{i:05d}": AgentRecord(
                id=f"agent-{i:05d}", credential_hash="h", client="acme", site="hq",
                enrolled_at=0.0, hostname=f"host-{i}",
            )
            for i in range(count)
        }  # fmt: skip
        settings = {a: PatchSettings(agent_id=a, schedule=SCHEDULE) for a in agents}
        try:
            started = time.perf_counter()
            await commands.issue(
                "bench",
                list(agents.values()),
                "install_updates",
                commands_pb2.InstallUpdates(update_ids=UPDATES),
                3600.0,
                3600.0,
                lambda _agent: commands_pb2.CONSENT_NOTIFY,
                summarize,
            )
            peer = time.perf_counter() - started
            rollout = Rollout(
                store,
                commands,
                agents.get,
                lambda record: settings.get(record.id),
                Updates(),
                ScriptLibrary,
            )
            windows, _ = plan_windows([(a, SCHEDULE, "UTC") for a in agents])
            (window,) = windows.values()
            now = time.time()
            started = time.perf_counter()
            await rollout.open(window, now - 60, now + SCHEDULE.duration_seconds)
            opened = time.perf_counter() - started
            started = time.perf_counter()
            await rollout.tick()  # the first: reads the open runs from the database
            ticked = time.perf_counter() - started
            started = time.perf_counter()
            await rollout.tick()  # later ones: runs kept in memory while leading
            steady = time.perf_counter() - started
        finally:
            await commands.stop()
            store.close()
    return {"peer_issue_s": peer, "open_s": opened, "first_tick_s": ticked, "tick_s": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.agents)) for _ in range(args.runs)]
    summary: dict[str, Any] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    summary["open_per_agent_ms"] = summary["open_s"] / args.agents * 1000
    summary["open_over_peer"] = statistics.median(r["open_s"] / r["peer_issue_s"] for r in runs)
    print(f"{args.agents} agents, {len(UPDATES)} updates each, median of {args.runs} runs")
    print(f"  peer: one issue() to all      {summary['peer_issue_s']:8.2f} s")
    print(
        f"  Rollout.open() (per agent)    {summary['open_s']:8.2f} s "
        f"({summary['open_per_agent_ms']:.2f} ms/agent, {summary['open_over_peer']:.1f}x peer)"
    )
    print(f"  first tick (runs read)        {summary['first_tick_s']:8.2f} s")
    print(f"  Rollout.tick(), all in flight {summary['tick_s']:8.2f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "agents": args.agents,
                    "runs": runs,
                    "summary": summary,
                    "machine": {"python": platform.python_version(), "node": platform.node()},
                    "at": time.time(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
