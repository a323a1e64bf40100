"""PolicySet.evaluate(reuse=True): a rule whose inputs did not change gives its conditions of
last time without running, and never anything a fresh evaluation would not give."""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path
from typing import Any

from rmm_server.policy import AgentContext, PolicySet, SeriesSample, load_policy_dir
from rmm_server.policy.model import Condition

ROOT = Path(__file__).resolve().parents[3]

# Every kind of input a rule can read: a scalar, two scalars, a series with a joined metric and
# labels, `agent` fields (the time since the last report among them), inventory changes, the
# info functions, and a value expression.
POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: t}
scope: {all: true}
rules:
  - name: Offline
    expr: agent.seconds_since_report > 3.0 * agent.interval_seconds
    value: agent.seconds_since_report
  - name: MemoryHigh
    expr: memory_usage_ratio > 0.9
    clear: memory_usage_ratio < 0.8
    for: 5m
    annotations: {summary: "memory at {{ value }} on {{ hostname }}"}
  - name: Swapping
    expr: swap_usage_ratio > 0.5 && memory_usage_ratio > 0.5
    value: swap_usage_ratio * 100.0
  - name: DiskFull
    expr: disk_usage_ratio > 0.9 && disk_free_bytes < 1000.0
    match: {fstype: "!~tmpfs"}
    annotations: {summary: "{{ mountpoint }} {{ value }}"}
  - name: WhereAmI
    expr: agent.os == "linux" && agent.interval_seconds > 45.0 && cpu_usage_ratio > 0.5
  - name: Installed
    expr: size(inventory.added) > 0
    annotations: {summary: "{{ inventory_added }}"}
  - name: SshDown
    expr: service_state("ssh.service") != "active"
  - name: NoNginx
    expr: "!process_running(\\"nginx\\")"
  - name: Kernel
    expr: info_value("system", "kernel", "") == "6.1"
"""

MOUNTS = ("/", "/data", "/tmp", "/srv")


def context(
    agent_id: str,
    interval: float,
    since: float,
    info: dict[str, Any],
    added: tuple[str, ...],
) -> AgentContext:
    raw = {name: json.dumps(section).encode() for name, section in info.items()}
    return AgentContext(
        agent_id=agent_id,
        hostname=f"host-{agent_id}",
        client="acme",
        site="hq",
        tags=frozenset({"server"}),
        os="linux",
        interval_seconds=interval,
        seconds_since_report=since,
        info=info,
        inventory_added=added,
        info_raw=raw,
    )


def outcome(conditions: list[Condition]) -> list[tuple[Any, ...]]:
    """Every field of every condition, floats by their bytes (-0.0 is not 0.0, NaN is NaN)."""

    def bits(value: float | None) -> bytes | None:
        return None if value is None else struct.pack("d", value)

    return [
        (
            c.rule.key,
            sorted(c.series_labels.items()),
            c.active,
            c.clear,
            bits(c.value),
            sorted(c.annotations.items()),
        )
        for c in conditions
    ]


def random_input(rng: random.Random, agent_id: str) -> tuple[AgentContext, list[SeriesSample]]:
    """One report of `agent_id`: each input either keeps one of very few values (so that
    consecutive reports often repeat it) or is absent, including -0.0, 0.0 and NaN."""
    few = [0.0, -0.0, 0.6, 0.95, math.nan]
    samples = [
        SeriesSample(name, {}, rng.choice(few))
        for name in ("memory_usage_ratio", "swap_usage_ratio", "cpu_usage_ratio")
        if rng.random() < 0.9  # now and then a metric is missing (a collector failed)
    ]
    for mount in rng.sample(MOUNTS, rng.randint(0, 3)):  # series come and go
        labels = {"mountpoint": mount, "device": "sda", "fstype": rng.choice(["ext4", "tmpfs"])}
        samples.append(SeriesSample("disk_usage_ratio", labels, rng.choice([0.5, 0.95])))
        if rng.random() < 0.8:  # the joined metric is missing for some series
            samples.append(SeriesSample("disk_free_bytes", dict(labels), rng.choice([10.0, 1e6])))
    rng.shuffle(samples)
    info: dict[str, Any] = {}
    if rng.random() < 0.8:
        info["services"] = {
            "services": [{"unit": "ssh.service", "active": rng.choice(["active", "failed"])}]
        }
    if rng.random() < 0.8:
        info["processes"] = {"names": rng.choice([["nginx"], ["sshd"], []])}
    if rng.random() < 0.8:
        info["system"] = {"kernel": rng.choice(["6.1", "6.8"])}
    added = rng.choice([(), (), ("curl 8.0",)])
    since = rng.choice([1.0, 1.0, 500.0])
    interval = rng.choice([30.0, 60.0])
    return context(agent_id, interval, since, info, added), samples


def test_reuse_gives_what_a_fresh_evaluation_gives_on_every_input_sequence(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    reusing = load_policy_dir(tmp_path)
    fresh = load_policy_dir(tmp_path)
    rng = random.Random(16)
    reused = 0
    last: dict[str, list[Condition]] = {}
    for step in range(3000):
        agent_id = rng.choice(["a1", "a2", "a3"])
        agent, samples = random_input(rng, agent_id)
        got = reusing.evaluate(agent, samples, reuse=True)
        want = fresh.evaluate(agent, samples)
        assert outcome(got) == outcome(want), step
        before = last.get(agent_id, [])
        reused += sum(1 for c in got if any(c is b for b in before))
        last[agent_id] = got
    assert reused > 1000  # the inputs repeat often enough that reuse was exercised


def test_unchanged_rules_are_not_run_again_and_changed_ones_are(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    policies = load_policy_dir(tmp_path)
    info = {"services": {"services": [{"unit": "ssh.service", "active": "active"}]}}
    agent = context("a1", 60.0, 1.0, info, ())
    disk = {"mountpoint": "/", "device": "sda", "fstype": "ext4"}
    samples = [
        SeriesSample("memory_usage_ratio", {}, 0.95),
        SeriesSample("swap_usage_ratio", {}, 0.1),
        SeriesSample("cpu_usage_ratio", {}, 0.1),
        SeriesSample("disk_usage_ratio", disk, 0.5),
        SeriesSample("disk_free_bytes", disk, 1e6),
    ]
    first = by_rule(policies.evaluate(agent, samples, reuse=True))
    # The same inputs: the very same conditions come back (not run again), except the rule
    # that reads the time since the last report.
    again = by_rule(policies.evaluate(agent, samples, reuse=True))
    for rule in ("MemoryHigh", "Swapping", "DiskFull", "WhereAmI", "Installed", "SshDown"):
        assert same(again[rule], first[rule]), rule
    assert not same(again["Offline"], first["Offline"])
    # One value changes: the rules reading it run, the others do not.
    samples[0] = SeriesSample("memory_usage_ratio", {}, 0.5)
    third = by_rule(policies.evaluate(agent, samples, reuse=True))
    assert not same(third["MemoryHigh"], again["MemoryHigh"])
    assert [c.active for c in third["MemoryHigh"]] == [False]
    assert not same(third["Swapping"], again["Swapping"])
    assert same(third["DiskFull"], again["DiskFull"])
    # A new series mid-stream: the series rule runs and speaks of it.
    full = {"mountpoint": "/data", "device": "sdb", "fstype": "ext4"}
    samples += [
        SeriesSample("disk_usage_ratio", full, 0.99),
        SeriesSample("disk_free_bytes", full, 10.0),
    ]
    fourth = by_rule(policies.evaluate(agent, samples, reuse=True))
    assert [(c.series_labels["mountpoint"], c.active) for c in fourth["DiskFull"]] == [
        ("/", False),
        ("/data", True),
    ]
    # A metric gone (its collector failed), then back with its old value: the rule says
    # nothing while it is gone, and what it said before once it is back.
    gone = [s for s in samples if s.name != "swap_usage_ratio"]
    assert "Swapping" not in by_rule(policies.evaluate(agent, gone, reuse=True))
    back = by_rule(policies.evaluate(agent, samples, reuse=True))
    assert outcome(list(back["Swapping"])) == outcome(list(third["Swapping"]))
    # Other info: the rule calling the function on it runs again.
    stopped = {"services": {"services": [{"unit": "ssh.service", "active": "failed"}]}}
    changed = by_rule(policies.evaluate(context("a1", 60.0, 1.0, stopped, ()), samples, reuse=True))
    assert [c.active for c in changed["SshDown"]] == [True]
    # Info without its bytes: such rules always run (nothing to compare).
    unknown = AgentContext(**{**agent.__dict__, "info_raw": None})
    twice = [by_rule(policies.evaluate(unknown, samples, reuse=True)) for _ in range(2)]
    assert not same(twice[0]["SshDown"], twice[1]["SshDown"])
    assert same(twice[0]["MemoryHigh"], twice[1]["MemoryHigh"])


def test_a_reload_starts_without_outcomes(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(POLICY)
    old = load_policy_dir(tmp_path)
    agent = context("a1", 60.0, 1.0, {}, ())
    samples = [SeriesSample("memory_usage_ratio", {}, 0.95)]
    old.evaluate(agent, samples, reuse=True)
    (tmp_path / "t.yaml").write_text(
        POLICY.replace("memory_usage_ratio > 0.9", "memory_usage_ratio > 2.0")
    )
    new = load_policy_dir(tmp_path)
    conditions = by_rule(new.evaluate(agent, samples, reuse=True))
    assert [c.active for c in conditions["MemoryHigh"]] == [False]


def test_the_shipped_policies_reuse_like_a_fresh_evaluation() -> None:
    reusing: PolicySet = load_policy_dir(ROOT / "policies")
    fresh: PolicySet = load_policy_dir(ROOT / "policies")
    rng = random.Random(7)
    for step in range(500):
        agent = AgentContext(
            agent_id=rng.choice(["a1", "a2"]),
            hostname="h",
            client="acme",
            site=rng.choice(["hq", "branch"]),
            tags=frozenset({rng.choice(["server", "workstation"])}),
            os="linux",
            interval_seconds=30.0,
            seconds_since_report=1.0,
            info={},
            info_raw={},
        )
        samples = [
            SeriesSample("cpu_usage_ratio", {}, rng.choice([0.5, 0.97])),
            SeriesSample("memory_usage_ratio", {}, rng.choice([0.5, 0.97])),
            SeriesSample("system_uptime_seconds", {}, rng.choice([10.0, 1e9])),
            SeriesSample("service_failed", {"unit": "x.service"}, 1.0),
        ][: rng.randint(1, 4)]
        got = reusing.evaluate(agent, samples, reuse=True)
        assert outcome(got) == outcome(fresh.evaluate(agent, samples)), step


def by_rule(conditions: list[Condition]) -> dict[str, tuple[Condition, ...]]:
    found: dict[str, list[Condition]] = {}
    for condition in conditions:
        found.setdefault(condition.rule.name, []).append(condition)
    return {name: tuple(items) for name, items in found.items()}


def same(one: tuple[Condition, ...], other: tuple[Condition, ...]) -> bool:
    """Whether two rules' conditions are the very same objects (reused, not made again)."""
    return len(one) == len(other) and all(a is b for a, b in zip(one, other, strict=True))
