"""Moving and retagging an agent: what a change may be, and what another replica sees of it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rmm_common.errors import InvalidArgument
from rmm_proto import agent_pb2, common_pb2
from rmm_server.fleet import Fleet
from rmm_server.placement import new_placement
from rmm_server.storage import Store, open_store
from tests.rmm_server.test_store import make_agent, make_token


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def test_new_placement_keeps_what_is_not_given_and_refuses_mistakes() -> None:
    agent = make_agent("a1", tags=["old", "web"])
    assert new_placement(agent, "globex", "", [], []) == ("globex", "hq", ["old", "web"])
    assert new_placement(agent, "", "branch", ["db"], ["old"]) == ("acme", "branch", ["db", "web"])
    for client, site, add, remove, why in (
        ("", "", [], ["wbe"], "no tag 'wbe'"),
        ("", "", ["web"], ["web"], "both added and removed"),
        ("acme", "hq", ["web"], [], "nothing to change"),
        ("bad\nname", "", [], [], "client name"),
        ("", "", ["has space"], [], "tag 'has space' is invalid"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            new_placement(agent, client, site, add, remove)


def test_a_move_is_stored_and_another_replica_drops_the_old_labels(store: Store) -> None:
    token = make_token(store)
    assert store.enroll_agent(token, time.time(), make_agent("a1", tags=["old"]))
    elsewhere = Fleet()  # the replica that holds the agent's report stream
    elsewhere.refresh(store.all_agents())
    report = agent_pb2.Report(
        sequence=1,
        collectors=[
            agent_pb2.CollectorResult(
                name="cpu",
                ok=True,
                samples=[common_pb2.Sample(name="cpu_usage_ratio", value=0.5)],
            )
        ],
    )
    assert elsewhere.apply_report("a1", report, time.time(), {})
    [state] = elsewhere.snapshot()
    assert any(b'client="acme"' in text for text in state.fragments.values())

    moved = store.place_agent("a1", "globex", "branch", ["web"])
    assert moved is not None and (moved.client, moved.site, moved.tags) == (
        "globex",
        "branch",
        ["web"],
    )
    elsewhere.refresh([moved])  # what the "agent" cluster message makes it do
    [state] = elsewhere.snapshot()
    assert (state.record.client, state.record.site, state.record.tags) == (
        "globex",
        "branch",
        ["web"],
    )
    assert not any(b'client="acme"' in text for text in state.fragments.values())
    assert store.place_agent("gone", "globex", "hq", []) is None
