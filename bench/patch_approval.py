"""Measure deciding every pending update of a fleet: 10,000 agents x 50 updates by default.

The way P2's state code calls it (per agent: settings, compiled rules and manual records looked
up once, then `approval.decide` per update) against the peer in the same run: `decide_for` per
update, which looks the agent's rules and manual records up again for every update.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rmm_server.patching import approval
from rmm_server.patching.model import CLASSIFICATIONS, ManualDecision, UpdateFacts
from rmm_server.policy import AgentContext, load_policy_dir

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0
DAY = 86400.0

# The shipped policy plus a client layer with excludes (glob and regex) and a decline rule, so
# that the patterns cost what they cost in a real set.
CLIENT_LAYER = """\
apiVersion: rmm/v1
kind: PatchPolicy
metadata: {name: bench-client}
layer: client
scope: {clients: [c0, c1, c2]}
approval:
  - name: bugfix
    exclude: ["linux-image-*", {regex: "^kernel(-[a-z]+)*$"}]
  - name: no-previews
    action: decline
    classifications: [bugfix, security, feature]
    include: [{regex: ".*preview.*"}]
"""


def fleet(agents: int) -> list[AgentContext]:
    """Return `agents` agents over 20 clients of 5 sites, a tenth tagged pilot."""
    return [
        AgentContext(
            agent_id=f"{i:032x}",
            hostname=f"host{i}",
            client=f"c{i % 20}",
            site=f"s{i % 5}",
            tags=frozenset({"pilot"}) if i % 10 == 0 else frozenset(),
            os="linux",
            interval_seconds=60.0,
            seconds_since_report=1.0,
            info={},
        )
        for i in range(agents)
    ]


def updates(count: int) -> list[UpdateFacts]:
    """Return `count` updates of every classification, released over the last 20 days."""
    return [
        UpdateFacts(
            id=f"apt:pkg{i}",
            name=f"pkg{i}" if i % 13 else f"linux-image-{i}",
            current="1.0",
            available="1.1",
            classification=CLASSIFICATIONS[i % len(CLASSIFICATIONS)],
            backend="apt",
            severity=("critical", "important", "")[i % 3],
            published=NOW - (i % 20) * DAY,
        )
        for i in range(count)
    ]


def manual_records(agents: list[AgentContext]) -> list[ManualDecision]:
    """Return 1,000 manual records: fleet-wide, per client, per site and per agent."""
    out = [ManualDecision("apt:pkg3", "decline", "everywhere", "", "bench", NOW)]
    out += [ManualDecision("apt:pkg*9", "approve", "client", f"c{i}", "b", NOW) for i in range(20)]
    out += [
        ManualDecision(f"apt:pkg{i}", "approve", "site", f"c{i % 20}/s{i % 5}", "b", NOW)
        for i in range(100)
    ]
    out += [
        ManualDecision(f"apt:pkg{i % 50}", "decline", "agent", a.agent_id, "b", NOW)
        for i, a in enumerate(agents[:879])
    ]
    return out


def per_agent(patches: Any, agents: list[AgentContext], pending: list[UpdateFacts]) -> float:
    """Decide everything the way P2 does; return the seconds taken."""
    index = approval.ManualIndex(manual_records(agents))
    start = time.perf_counter()
    for agent in agents:
        settings = patches.settings_for(agent)
        rules = approval.rule_book(settings.rules)
        mine = index.for_agent(agent.agent_id, agent.client, agent.site)
        for update in pending:
            approval.decide(update, rules, mine, NOW)
    return time.perf_counter() - start


def per_update(patches: Any, agents: list[AgentContext], pending: list[UpdateFacts]) -> float:
    """The peer: decide_for per update; return the seconds taken."""
    index = approval.ManualIndex(manual_records(agents))
    start = time.perf_counter()
    for agent in agents:
        settings = patches.settings_for(agent)
        for update in pending:
            approval.decide_for(update, settings, index, agent.client, agent.site, NOW)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "patching.yaml").write_text(
            (ROOT / "policies" / "patching.yaml").read_text()
        )
        (Path(directory) / "client.yaml").write_text(CLIENT_LAYER)
        load_start = time.perf_counter()
        patches = load_policy_dir(directory).patches
        load_seconds = time.perf_counter() - load_start
    agents, pending = fleet(args.agents), updates(args.updates)
    start = time.perf_counter()
    for agent in agents:
        patches.settings_for(agent)
    settings_seconds = time.perf_counter() - start
    decisions = args.agents * args.updates
    ours = [per_agent(patches, agents, pending) for _ in range(args.runs)]
    peer = [per_update(patches, agents, pending) for _ in range(args.runs)]
    results = {
        "agents": args.agents,
        "updates_per_agent": args.updates,
        "decisions": decisions,
        "runs": args.runs,
        "load_seconds": load_seconds,
        "first_settings_seconds": settings_seconds,
        "per_agent_median_seconds": statistics.median(ours),
        "per_update_median_seconds": statistics.median(peer),
        "per_agent_all_seconds": ours,
        "per_update_all_seconds": peer,
    }
    print(f"{decisions:,} decisions ({args.agents:,} agents x {args.updates} updates)")
    print(f"  policy load (shipped + a client layer):  {load_seconds * 1000:8.1f} ms")
    print(f"  settings_for, first time, every agent:   {settings_seconds * 1000:8.1f} ms")
    for label, values in (("per agent (decide)", ours), ("per update (decide_for)", peer)):
        median = statistics.median(values)
        print(
            f"  {label:<26} median {median * 1000:8.1f} ms, "
            f"{median / decisions * 1e9:6.0f} ns per decision "
            f"(runs: {', '.join(f'{v * 1000:.0f}' for v in values)} ms)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
