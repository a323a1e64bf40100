"""The alert service on real storage and real policies: who is told, who is kept quiet."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rmm_proto import agent_pb2, common_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.notify.model import AlertNotice
from rmm_server.storage import AgentRecord, open_store
from rmm_server.storage.alerts import AlertQuery
from rmm_server.storage.suppressions import MaintenanceWindow

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: t}
scope: {all: true}
rules:
  - name: Offline
    expr: agent.seconds_since_report > 3.0 * agent.interval_seconds
    severity: critical
    tier: L1
    inhibits: [{rules: ["*"], equal: [agent]}]
  - name: MemoryBusy
    expr: memory_usage_ratio > 0.5
    severity: warning
    tier: L1
  - name: MemoryFull
    expr: memory_usage_ratio > 0.9
    severity: critical
    tier: L1
    inhibits: [{rules: [MemoryBusy], equal: [agent]}]
"""


class Harness:
    def __init__(self, tmp_path: Path, db_url: str) -> None:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "t.yaml").write_text(POLICY)
        self.now = 1_000_000.0
        self.told: list[AlertNotice] = []
        self.service = AlertService(
            open_store(db_url),
            CollectorRegistry(),
            tmp_path / "policies",
            offline_grace_seconds=120,
            clock=lambda: self.now,
        )
        self.service.load()

        async def submit(notice: AlertNotice) -> None:
            self.told.append(notice)

        self.service.submit = submit
        self.agent = AgentRecord(
            id="a1",
            credential_hash="h",
            client="acme",
            site="hq",
            enrolled_at=0,
            hostname="web01",
            interval_seconds=30,
            last_seen=self.now,
        )

    async def report(self, memory: float) -> None:
        self.agent.last_seen = self.now
        result = agent_pb2.CollectorResult(name="memory", ok=True)
        result.samples.append(common_pb2.Sample(name="memory_usage_ratio", value=memory))
        await self.service.on_report(self.agent, agent_pb2.Report(sequence=1, collectors=[result]))
        await self.service.flush()

    def told_about(self) -> list[tuple[str, str]]:
        return [(n.rule, n.status) for n in self.told]


@pytest.fixture
def harness(tmp_path: Path, db_url: str) -> Harness:
    return Harness(tmp_path, db_url)


def test_inhibition_and_resolution_notices(harness: Harness) -> None:
    asyncio.run(_test_inhibition_and_resolution_notices(harness))


async def _test_inhibition_and_resolution_notices(harness: Harness) -> None:
    await harness.report(0.6)
    assert harness.told_about() == [("MemoryBusy", "firing")]
    harness.now += 30
    await harness.report(0.95)  # MemoryFull fires and inhibits MemoryBusy's (already sent) news
    assert harness.told_about()[-1] == ("MemoryFull", "firing")
    harness.now += 30
    await harness.report(0.2)
    assert sorted(harness.told_about()[-2:]) == [
        ("MemoryBusy", "resolved"),
        ("MemoryFull", "resolved"),
    ]


def test_an_inhibited_alert_is_listed_but_never_announced(harness: Harness) -> None:
    asyncio.run(_test_an_inhibited_alert_is_listed_but_never_announced(harness))


async def _test_an_inhibited_alert_is_listed_but_never_announced(harness: Harness) -> None:
    await harness.report(0.95)
    assert harness.told_about() == [("MemoryFull", "firing")]
    listed = {a.rule_name: reason for a, reason in harness.service.query(AlertQuery())}
    assert listed == {"MemoryFull": "", "MemoryBusy": "inhibited:MemoryFull"}
    harness.now += 30
    await harness.report(0.1)
    assert harness.told_about() == [("MemoryFull", "firing"), ("MemoryFull", "resolved")]


def test_an_inhibition_reaches_other_agents_only_when_it_says_so(
    harness: Harness, tmp_path: Path
) -> None:
    asyncio.run(_test_an_inhibition_reaches_other_agents_only_when_it_says_so(harness, tmp_path))


async def _test_an_inhibition_reaches_other_agents_only_when_it_says_so(
    harness: Harness, tmp_path: Path
) -> None:
    other = AgentRecord(
        id="a2",
        credential_hash="h",
        client="acme",
        site="hq",
        enrolled_at=0,
        hostname="web02",
        interval_seconds=30,
        last_seen=harness.now,
    )

    async def report_other(memory: float) -> None:
        result = agent_pb2.CollectorResult(name="memory", ok=True)
        result.samples.append(common_pb2.Sample(name="memory_usage_ratio", value=memory))
        await harness.service.on_report(other, agent_pb2.Report(sequence=1, collectors=[result]))
        await harness.service.flush()

    def reasons() -> dict[tuple[str, str], str]:
        return {
            (a.agent_id, a.rule_name): reason for a, reason in harness.service.query(AlertQuery())
        }

    await harness.report(0.95)  # MemoryFull on a1 inhibits MemoryBusy on a1 only
    await report_other(0.6)
    assert ("MemoryBusy", "firing") in harness.told_about()
    assert reasons()[("a1", "MemoryBusy")] == "inhibited:MemoryFull"
    assert reasons()[("a2", "MemoryBusy")] == ""
    # The same rule inhibiting across its site reaches the other agent's alert.
    policy = tmp_path / "policies" / "t.yaml"
    policy.write_text(
        POLICY.replace(
            "[{rules: [MemoryBusy], equal: [agent]}]", "[{rules: [MemoryBusy], equal: [site]}]"
        )
    )
    assert harness.service.reload_policies() == (True, [])
    harness.now += 30
    await harness.report(0.95)
    assert reasons()[("a2", "MemoryBusy")] == "inhibited:MemoryFull"


def test_an_agent_of_another_client_naming_itself_alike_inhibits_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    asyncio.run(
        _test_an_agent_of_another_client_naming_itself_alike_inhibits_nothing(harness, tmp_path)
    )


async def _test_an_agent_of_another_client_naming_itself_alike_inhibits_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    policy = tmp_path / "policies" / "t.yaml"
    policy.write_text(
        POLICY.replace(
            "[{rules: [MemoryBusy], equal: [agent]}]", "[{rules: [MemoryBusy], equal: [hostname]}]"
        )
    )
    assert harness.service.reload_policies() == (True, [])
    spoof = AgentRecord(
        id="e1",
        credential_hash="h",
        client="evil",
        site="hq",
        enrolled_at=0,
        hostname=harness.agent.hostname,  # says it is acme's web01
        interval_seconds=30,
        last_seen=harness.now,
    )
    result = agent_pb2.CollectorResult(name="memory", ok=True)
    result.samples.append(common_pb2.Sample(name="memory_usage_ratio", value=0.95))
    await harness.service.on_report(spoof, agent_pb2.Report(sequence=1, collectors=[result]))
    await harness.service.flush()
    await harness.report(0.6)
    reasons = {
        (a.agent_id, a.rule_name): reason for a, reason in harness.service.query(AlertQuery())
    }
    assert reasons[("e1", "MemoryFull")] == ""
    assert reasons[("a1", "MemoryBusy")] == "", "acme's alert was kept quiet by another client"
    assert ("MemoryBusy", "firing") in harness.told_about()


def test_offline_waits_for_the_grace_period_after_a_start(harness: Harness) -> None:
    asyncio.run(_test_offline_waits_for_the_grace_period_after_a_start(harness))


async def _test_offline_waits_for_the_grace_period_after_a_start(harness: Harness) -> None:
    harness.agent.last_seen = harness.now - 600  # silent for 10 minutes already
    await harness.service.check_offline([harness.agent])
    assert harness.told_about() == [], "within the start-up grace nobody is paged"
    harness.now += 121
    await harness.service.check_offline([harness.agent])
    assert harness.told_about() == [("Offline", "firing")]
    await harness.report(0.6)  # back, and busy: Offline resolves, MemoryBusy is told
    assert harness.told_about()[1:] == [("Offline", "resolved"), ("MemoryBusy", "firing")]


def test_maintenance_window_keeps_alerts_quiet_but_listed(harness: Harness) -> None:
    asyncio.run(_test_maintenance_window_keeps_alerts_quiet_but_listed(harness))


async def _test_maintenance_window_keeps_alerts_quiet_but_listed(harness: Harness) -> None:
    window = MaintenanceWindow.create(
        id="w1",
        name="patching",
        start_at=harness.now - 60,
        duration_seconds=3600,
        timezone="UTC",
        created_by="admin",
        created_at=harness.now,
        sites=("hq",),
    )
    await harness.service.add_window(window)
    await harness.report(0.6)
    assert harness.told_about() == []
    [(alert, reason)] = harness.service.query(AlertQuery())
    assert alert.state == "firing" and reason == "maintenance:w1"
    assert alert.history[-1]["event"] == "suppressed"
    harness.now += 30
    await harness.report(0.1)
    assert harness.told_about() == [], "a resolution of an unannounced alert is not news"
    ended = await harness.service.end_window("w1")
    assert ended.ended_at == harness.now
