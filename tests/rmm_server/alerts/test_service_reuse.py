"""Alerts on real storage when reports repeat the same values: rules whose inputs did not change
are not evaluated again, and time still moves their alerts (`for:`, `keep_firing_for:`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from rmm_proto import agent_pb2, common_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.notify.model import AlertNotice
from rmm_server.storage import AgentRecord, open_store

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: t}
scope: {all: true}
rules:
  - name: MemoryHigh
    expr: memory_usage_ratio > 0.9
    for: 5m
  - name: MemorySticky
    expr: memory_usage_ratio > 0.95
    keep_firing_for: 10m
  - name: DiskFull
    expr: disk_usage_ratio > 0.9
"""


class Harness:
    def __init__(self, tmp_path: Path, db_url: str) -> None:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "t.yaml").write_text(POLICY)
        self.now = 1_000_000.0
        self.told: list[tuple[str, str]] = []
        self.service = AlertService(
            open_store(db_url), CollectorRegistry(), tmp_path / "policies", clock=lambda: self.now
        )
        self.service.load()

        async def submit(notice: AlertNotice) -> None:
            self.told.append((notice.rule, notice.status))

        self.service.submit = submit
        self.agent = AgentRecord(
            id="a1",
            credential_hash="h",
            client="acme",
            site="hq",
            enrolled_at=0,
            hostname="web01",
            interval_seconds=30,
        )

    async def report(self, memory: float, disks: dict[str, float] | None = None) -> None:
        self.agent.last_seen = self.now
        result = agent_pb2.CollectorResult(name="memory", ok=True)
        result.samples.append(common_pb2.Sample(name="memory_usage_ratio", value=memory))
        collectors = [result]
        if disks:
            disk = agent_pb2.CollectorResult(name="disk", ok=True)
            for mount, ratio in disks.items():
                labels = {"mountpoint": mount, "device": "sda", "fstype": "ext4"}
                disk.samples.append(
                    common_pb2.Sample(name="disk_usage_ratio", labels=labels, value=ratio)
                )
            collectors.append(disk)
        report = agent_pb2.Report(sequence=1, collectors=collectors)
        await self.service.on_report(self.agent, report)
        await self.service.flush()

    def states(self) -> dict[str, str]:
        return {a.rule_name: a.state for a in self.service.manager.open_alerts_of("a1")}


def test_a_for_rule_fires_after_its_duration_on_unchanged_values(
    tmp_path: Path, db_url: str
) -> None:
    asyncio.run(_for_rule(Harness(tmp_path, db_url)))


async def _for_rule(harness: Harness) -> None:
    await harness.report(0.92)
    assert harness.states() == {"MemoryHigh": "pending"}
    for _ in range(9):  # the same value every 30 s: pending until 5 minutes have passed
        harness.now += 30
        await harness.report(0.92)
    assert harness.states() == {"MemoryHigh": "pending"}
    harness.now += 30
    await harness.report(0.92)
    assert harness.states() == {"MemoryHigh": "firing"}
    assert harness.told == [("MemoryHigh", "firing")]
    # Back to normal: resolved at once, and quiet while the value stays there.
    harness.now += 30
    await harness.report(0.5)
    assert harness.states() == {}
    assert harness.told[-1] == ("MemoryHigh", "resolved")
    for _ in range(3):
        harness.now += 30
        await harness.report(0.5)
    assert harness.states() == {}
    # Up again after many unchanged reports: a new incident.
    harness.now += 30
    await harness.report(0.92)
    assert harness.states() == {"MemoryHigh": "pending"}


def test_keep_firing_for_counts_from_the_last_unchanged_report_that_held(
    tmp_path: Path, db_url: str
) -> None:
    asyncio.run(_keep_firing(Harness(tmp_path, db_url)))


async def _keep_firing(harness: Harness) -> None:
    for _ in range(20):  # ten minutes of the same value: firing, its last activity moving
        await harness.report(0.97)
        harness.now += 30
    sticky = next(a for a in harness.service.manager.open_alerts() if a.rule_name == "MemorySticky")
    assert sticky.state == "firing" and sticky.last_active_at == harness.now - 30
    quiet_from = harness.now
    for _ in range(20):  # below: it keeps firing for 10 minutes from the last report above
        await harness.report(0.5)
        if harness.now - (quiet_from - 30) < 600:
            assert harness.states().get("MemorySticky") == "firing", harness.now - quiet_from
        harness.now += 30
    assert "MemorySticky" not in harness.states()
    assert harness.told.count(("MemorySticky", "resolved")) == 1


def test_a_series_appearing_mid_stream_is_judged(tmp_path: Path, db_url: str) -> None:
    asyncio.run(_new_series(Harness(tmp_path, db_url)))


async def _new_series(harness: Harness) -> None:
    for _ in range(3):
        await harness.report(0.5, {"/": 0.5})
        harness.now += 30
    assert harness.states() == {}
    await harness.report(0.5, {"/": 0.5, "/data": 0.99})
    assert harness.states() == {"DiskFull": "firing"}
    harness.now += 30
    await harness.report(0.5, {"/": 0.5})  # the series is gone: its alert ends
    assert harness.states() == {}
    assert harness.told == [("DiskFull", "firing"), ("DiskFull", "resolved")]
