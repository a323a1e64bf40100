"""What operators ask of patching, in-process on SQLite and PostgreSQL: scopes from targets,
refusals that name the fix, the fleet view's filters, marks for the next window, the report.
(`install --now` through real agents: tests/e2e/test_patches_cli.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import operator_pb2
from rmm_server.fleet import Fleet
from rmm_server.patching.inventory import PatchInventory
from rmm_server.patching.operations import MARKED, PatchOperations, check_patterns
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.patches import PatchStore
from tests.rmm_server.patching.test_inventory import Clock, Host, agent, pkg


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def setup(store: Store) -> tuple[PatchOperations, list[AgentRecord], Clock]:
    clock = Clock()
    agents = [
        agent("a1", site="hq"),
        agent("a2", site="branch"),
        agent("b1", client="beta"),
        agent("q1", client="quiet"),  # never sends a list
    ]
    fleet = Fleet()
    for record in agents:
        fleet.add(record)
    inventory = PatchInventory(
        store,
        fleet.get,
        clock=clock,
        agents=lambda: [s.record for s in fleet.snapshot()],
    )
    for record in agents[:3]:
        host = Host(record, clock, [pkg("openssl"), pkg("curl", classification="bugfix")])
        asyncio.run(inventory.observe(record, host.report()))
    return PatchOperations(inventory, fleet, clock=clock), agents, clock


def target(**fields: object) -> operator_pb2.TargetSelector:
    return operator_pb2.TargetSelector(**fields)  # type: ignore[arg-type]


def test_update_names_are_checked_before_anything_is_recorded() -> None:
    assert check_patterns([" apt:openssl ", "apt:linux-*"]) == ["apt:openssl", "apt:linux-*"]
    with pytest.raises(InvalidArgument, match=r"name at least one update"):
        check_patterns([" "])
    with pytest.raises(InvalidArgument, match=r"'openssl' is not an id: ids are <backend>:<key>"):
        check_patterns(["openssl"])


def test_targets_become_scopes(store: Store) -> None:
    operations, _, _ = setup(store)

    def scope(selector: operator_pb2.TargetSelector | None) -> str:
        outcome = asyncio.run(operations.decide("approve", ["apt:openssl"], selector, "op"))
        return outcome.scope

    assert scope(None) == "everywhere"
    assert scope(target(all=True)) == "everywhere"
    assert scope(target(client="acme")) == "for client acme"
    assert scope(target(client="acme", site="hq")) == "for site acme/hq"
    # A site without its client, or anything agents say of themselves: each agent selected.
    assert scope(target(site="branch")) == "for 1 agent (site=branch)"
    assert scope(target(agents=["a1", "b1"])) == "for 2 agents (agent=a1,agent=b1)"
    records = PatchStore(store).decision_records()
    assert {(r.scope, r.target) for r in records} == {
        ("everywhere", ""),
        ("client", "acme"),
        ("site", "acme/hq"),
        ("agent", "a1"),
        ("agent", "a2"),
        ("agent", "b1"),
    }
    with pytest.raises(NotFound, match="no agent matches the target 'client=acmee'"):
        scope(target(client="acmee"))


def test_unknown_ids_are_recorded_and_named(store: Store) -> None:
    operations, _, _ = setup(store)
    outcome = asyncio.run(
        operations.decide("decline", ["apt:nosuch", "apt:cu*"], None, "op", "not here")
    )
    assert outcome.unknown == ["apt:nosuch"] and outcome.changed == 3


def test_the_fleet_view_filters_by_target_and_state(store: Store) -> None:
    operations, _, _ = setup(store)
    asyncio.run(operations.decide("approve", ["apt:curl"], target(client="acme"), "op"))
    everything = asyncio.run(operations.fleet_list(None, ""))
    assert everything.agents == 4 and everything.without_list == 1
    by_id = {u.update_id: u for u in everything.updates}
    assert (by_id["apt:curl"].agents, by_id["apt:curl"].approved) == (3, 2)
    approved = asyncio.run(operations.fleet_list(None, "approved"))
    assert [u.update_id for u in approved.updates] == ["apt:curl"]
    beta = asyncio.run(operations.fleet_list(target(client="beta"), ""))
    assert beta.agents == 1 and {u.update_id: u.approved for u in beta.updates} == {
        "apt:curl": 0,
        "apt:openssl": 0,
    }
    # A revoked agent's updates are no longer counted.
    operations.fleet.revoke("b1", 1.0)
    after = {u.update_id: u for u in asyncio.run(operations.fleet_list(None, "")).updates}
    assert after["apt:curl"].agents == 2
    with pytest.raises(InvalidArgument, match="state 'waiting' is not one of"):
        asyncio.run(operations.fleet_list(None, "waiting"))
    one = asyncio.run(operations.agent_list("a1", "approved"))
    assert one.agent.id == "a1" and [r.update_id for r in one.rows] == ["apt:curl"]


def test_install_without_now_marks_agents_for_their_next_window(store: Store) -> None:
    operations, _, clock = setup(store)

    async def run() -> list[str]:
        return [e.status async for e in operations.install(target(client="acme"), False, "op")]

    assert asyncio.run(run()) == [MARKED, MARKED]
    states = PatchStore(store).agent_states()
    assert states["a1"].install_requested_at == clock.now
    assert states["a1"].install_requested_by == "op"
    assert states["b1"].install_requested_at is None

    async def without_target() -> None:
        async for _ in operations.install(target(), False, "op"):
            pass

    with pytest.raises(InvalidArgument, match="--target is required"):
        asyncio.run(without_target())


def test_the_report_is_per_agent_sorted_by_client_site_host(store: Store) -> None:
    operations, _, _ = setup(store)
    asyncio.run(operations.decide("approve", ["apt:openssl"], None, "op"))
    rows = asyncio.run(operations.report(""))
    assert [(a.client, a.site, a.id) for a, _ in rows] == [
        ("acme", "branch", "a2"),
        ("acme", "hq", "a1"),
        ("beta", "hq", "b1"),
        ("quiet", "hq", "q1"),
    ]
    compliance = {a.id: c for a, c in rows}
    assert compliance["a1"].approved_missing == 1 and not compliance["a1"].compliant
    assert not compliance["q1"].listed and not compliance["q1"].compliant
    with pytest.raises(NotFound, match="no agent of client 'nobody'"):
        asyncio.run(operations.report("nobody"))
