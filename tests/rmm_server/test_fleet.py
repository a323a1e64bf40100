"""The in-memory fleet on its own: which report becomes an agent's latest, what /metrics shows of
it (rendered fragments), online and offline, revocation, moves, removal. Replicas' refreshes from
the database are in test_fleet_replicas.py."""

from __future__ import annotations

import threading

from rmm_proto import agent_pb2
from rmm_server.fleet import Fleet
from rmm_server.reports import inventory_hash, validate_report
from rmm_server.storage import AgentRecord
from rmm_server.storage.store import ONLINE_INTERVALS

T0 = 1_800_000_000.0


def record(agent_id: str = "a1", **fields: object) -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        credential_hash="h",
        client="acme",
        site="hq",
        enrolled_at=T0,
        hostname="old-name",
        **fields,  # type: ignore[arg-type]
    )


def report(sequence: int, value: float = 0.5, interval: int = 60) -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence,
        collected_at=T0 + sequence,
        interval_seconds=interval,
        agent_version=f"1.{sequence}",
    )
    made.host.hostname = "web-1"
    made.host.os_name = "Debian GNU/Linux"
    collector = made.collectors.add(name="cpu", ok=True)
    collector.samples.add(name="cpu_usage_ratio", value=value)
    return made


def exposition(fleet: Fleet, agent_id: str) -> str:
    for state in fleet.snapshot():
        if state.record.id == agent_id:
            return b"".join(state.fragments.values()).decode()
    return ""


def apply(fleet: Fleet, agent_id: str, made: agent_pb2.Report, at: float) -> bool:
    return fleet.apply_report(agent_id, made, at, {"collectors": 1}, validate_report(made))


def test_a_newer_report_becomes_the_latest_and_an_older_or_equal_one_does_not() -> None:
    fleet = Fleet()
    fleet.add(record())
    assert apply(fleet, "a1", report(5, 0.5), T0 + 10)
    agent = fleet.get("a1")
    assert agent is not None
    assert (agent.last_sequence, agent.first_sequence, agent.last_seen) == (5, 5, T0 + 10)
    assert (agent.interval_seconds, agent.agent_version) == (60, "1.5")
    assert (agent.hostname, agent.os_name) == ("web-1", "Debian GNU/Linux")  # host facts taken
    assert agent.summary == {"collectors": 1}
    shown = exposition(fleet, "a1")
    assert 'agent="a1"' in shown and 'client="acme"' in shown and " 0.5" in shown
    # A late copy of an older report (or the same one again) changes nothing.
    assert not apply(fleet, "a1", report(3, 0.9), T0 + 20)
    assert not apply(fleet, "a1", report(5, 0.9), T0 + 20)
    assert agent.last_sequence == 5 and agent.last_seen == T0 + 10 and agent.first_sequence == 5
    assert " 0.9" not in exposition(fleet, "a1")
    assert apply(fleet, "a1", report(6, 0.75, interval=0), T0 + 30)
    assert agent.interval_seconds == 60  # 0: keep the interval it had
    assert " 0.75" in exposition(fleet, "a1") and " 0.5" not in exposition(fleet, "a1")


def test_an_empty_host_fact_keeps_what_was_known_and_an_inventory_is_noted() -> None:
    fleet = Fleet()
    fleet.add(record(os_name="Known OS"))
    made = report(1)
    made.host.os_name = ""
    made.inventory.json = b"{}"
    made.inventory.hash = inventory_hash(b"{}")
    assert apply(fleet, "a1", made, T0 + 1)
    agent = fleet.get("a1")
    assert agent is not None and agent.os_name == "Known OS"
    assert (agent.inventory_hash, agent.inventory_updated_at) == (made.inventory.hash, T0 + 1)


def test_reports_of_unknown_or_revoked_agents_are_not_applied() -> None:
    fleet = Fleet()
    assert not apply(fleet, "nobody", report(1), T0)
    fleet.add(record())
    assert apply(fleet, "a1", report(1), T0)
    revoked = fleet.revoke("a1", T0 + 5)
    assert revoked is not None and revoked.revoked_at == T0 + 5
    assert fleet.revoke("nobody", T0) is None
    assert not apply(fleet, "a1", report(2), T0 + 6)
    assert fleet.snapshot() == []  # off /metrics at once
    assert fleet.get("a1") is revoked  # kept, so its calls are refused as revoked
    assert not revoked.online(T0 + 6)


def test_online_until_the_agent_misses_its_intervals() -> None:
    fleet = Fleet()
    fleet.add(record())
    agent = fleet.get("a1")
    assert agent is not None and not agent.online(T0)  # never reported
    apply(fleet, "a1", report(1, interval=60), T0)
    assert agent.online(T0 + ONLINE_INTERVALS * 60)
    assert not agent.online(T0 + ONLINE_INTERVALS * 60 + 1)


def test_add_with_a_latest_report_renders_it_and_without_one_shows_nothing() -> None:
    fleet = Fleet()
    fleet.add(record("a1"), latest=report(4, 0.25))
    fleet.add(record("a2"))
    fleet.add(record("a3", revoked_at=T0), latest=report(1))
    assert " 0.25" in exposition(fleet, "a1")
    assert exposition(fleet, "a2") == ""
    assert sorted(state.record.id for state in fleet.snapshot()) == ["a1", "a2"]
    assert len(fleet) == 3
    fleet.remove("a1")
    fleet.remove("never-known")
    assert fleet.get("a1") is None and len(fleet) == 2


def test_a_move_renders_the_latest_report_under_the_new_labels_at_once() -> None:
    fleet = Fleet()
    fleet.add(record())
    latest = report(2, 0.5)
    apply(fleet, "a1", latest, T0)
    moved = fleet.place("a1", "globex", "lab", ["db", "eu"], latest)
    assert moved is fleet.get("a1")
    assert moved is not None and (moved.client, moved.site, moved.tags) == (
        "globex",
        "lab",
        ["db", "eu"],
    )
    shown = exposition(fleet, "a1")
    assert 'client="globex"' in shown and 'site="lab"' in shown and 'client="acme"' not in shown
    # Without a stored report its series leave /metrics until its next report.
    fleet.place("a1", "initech", "hq", [], None)
    assert exposition(fleet, "a1") == ""
    apply(fleet, "a1", report(3, 0.5), T0 + 60)
    assert 'client="initech"' in exposition(fleet, "a1")
    assert fleet.place("nobody", "x", "y", [], None) is None


def test_a_snapshot_is_not_changed_by_later_reports() -> None:
    fleet = Fleet()
    fleet.add(record())
    apply(fleet, "a1", report(1, 0.5), T0)
    (before,) = fleet.snapshot()
    fragments = before.fragments
    apply(fleet, "a1", report(2, 0.75), T0 + 60)
    # The exporter may be writing the old fragments out: they are replaced, never mutated.
    old = b"".join(fragments.values()).decode()
    assert " 0.5" in old and " 0.75" not in old
    assert " 0.75" in exposition(fleet, "a1")


def test_reports_applied_from_many_threads_leave_the_newest() -> None:
    fleet = Fleet()
    agents = [f"a{i}" for i in range(4)]
    for agent_id in agents:
        fleet.add(record(agent_id))
    reports = [report(sequence) for sequence in range(1, 51)]

    def feed(agent_id: str) -> None:
        for made in reports:
            apply(fleet, agent_id, made, T0 + made.sequence)

    threads = [threading.Thread(target=feed, args=(agent_id,)) for agent_id in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for agent_id in agents:
        agent = fleet.get(agent_id)
        assert agent is not None and agent.last_sequence == 50 and agent.last_seen == T0 + 50
