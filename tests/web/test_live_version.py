"""The live overview's tag changes with what it must show at once, with no walk of the fleet per
poll: the fleet's and the alert manager's version counters, the online count recounted at most
every few seconds (going offline is time's doing), the minute slot and the filters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from rmm_proto import agent_pb2
from rmm_server.alerts.manager import AgentIdentity, AlertManager
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord, open_store
from rmm_server.storage.alerts import AlertStore
from rmm_server.web.views import LIVE_SLOT_SECONDS, OnlineCount, live_version
from tests.rmm_server.alerts.test_manager import RULE, disk

NOW = 1_800_000_040.0


def record(index: int) -> AgentRecord:
    return AgentRecord(
        id=f"a{index}", credential_hash="x", client="acme", site="hq", enrolled_at=0.0,
        interval_seconds=10,
    )  # fmt: skip


def report(sequence: int) -> agent_pb2.Report:
    return agent_pb2.Report(sequence=sequence, interval_seconds=10)


def test_fleet_version_moves_on_joins_moves_and_returns_not_on_every_report() -> None:
    fleet = Fleet()
    fleet.add(record(1))
    fleet.add(record(2))
    joined = fleet.version
    assert fleet.apply_report("a1", report(1), NOW, {})  # first seen: online now
    assert fleet.version == joined + 1
    assert fleet.apply_report("a1", report(2), NOW + 10, {})  # still online: nothing to show
    assert fleet.version == joined + 1
    assert fleet.apply_report("a1", report(3), NOW + 1000, {})  # back after being offline
    assert fleet.version == joined + 2
    fleet.place("a2", "acme", "branch", [], None)
    fleet.revoke("a1", NOW)
    fleet.remove("a2")
    assert fleet.version == joined + 5


def test_online_count_sees_agents_go_offline_within_its_period() -> None:
    fleet = Fleet()
    for index in range(3):
        fleet.add(record(index))
        fleet.apply_report(f"a{index}", report(1), NOW - 5 * index, {})
    online = OnlineCount(fleet, every=10.0)
    # Offline 3 intervals (30 s) after the last report: a2 at NOW + 20, a1 at NOW + 25.
    assert online.count(NOW + 15) == 3
    assert online.count(NOW + 22) == 3  # not recounted yet: a2 went offline 2 s ago
    assert online.count(NOW + 26) == 1  # recounted


def test_tag_follows_firing_alerts_online_count_filters_and_the_minute(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/alerts.db")
    try:
        manager = AlertManager(AlertStore(store), CollectorRegistry(), clock=lambda: clock[0])
        clock = [NOW]
        manager.load()
        agent = AgentIdentity("agent1", "web01", "acme", "hq")

        def tag(online: int = 5, query: str = "", now: float = NOW) -> str:
            return live_version(7, manager.version, online, now, query, 0)

        before = tag()
        assert tag() == before
        manager.apply(agent, [disk("/", 0.95)], "report")  # pending: not shown, but a change
        pending = tag()
        manager.apply(agent, [disk("/", 0.96)], "report")  # the value moved, nothing else
        assert tag() == pending
        clock[0] += RULE.for_seconds + 1
        _, transitions = manager.apply(agent, [disk("/", 0.97)], "report")
        assert [t.event for t in transitions] == ["firing"] and tag() != pending
        firing = tag()
        assert tag(online=4) != firing and tag(query="status=offline") != firing
        assert tag(now=NOW + LIVE_SLOT_SECONDS) != firing
        manager.apply(agent, [disk("/", 0.2)], "report")  # resolved
        assert tag() != firing
    finally:
        store.close()
