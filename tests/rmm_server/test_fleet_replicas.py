"""A replica's in-memory fleet kept current from the database: agents enrolled through another
replica, credential and revocation changes, and when agents reporting elsewhere last reported."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.replicas import agents_seen_since
from tests.rmm_server.test_store import make_agent, make_token, report


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def test_an_agent_enrolled_elsewhere_is_read_once_and_unknown_ids_are_not_read_again(
    store: Store,
) -> None:
    token = make_token(store)
    assert store.enroll_agent(token, time.time(), make_agent("a1"))
    reads: list[str] = []

    def load(agent_id: str) -> AgentRecord | None:
        reads.append(agent_id)
        return store.get_agent(agent_id)

    fleet = Fleet()
    fleet.loader = load
    record = fleet.get_or_load("a1")
    assert record is not None and record.hostname == "host-a1"
    assert fleet.get_or_load("a1") is record
    for _ in range(3):
        assert fleet.get_or_load("made-up") is None
    assert reads == ["a1", "made-up"]


def test_refresh_takes_credentials_and_revocation_but_keeps_reported_state(store: Store) -> None:
    token = make_token(store)
    assert store.enroll_agent(token, time.time(), make_agent("a1"))
    fleet = Fleet()
    fleet.refresh(store.all_agents())
    here = fleet.get("a1")
    assert here is not None
    here.last_sequence = 7  # reported to this replica
    assert store.set_pending_credential("a1", "new-hash")
    revoked_at = store.revoke_agent("a1", time.time())
    fleet.refresh([record for record in [store.get_agent("a1")] if record is not None])
    assert fleet.get("a1") is here  # the same record callers hold
    assert here.revoked_at == revoked_at and here.pending_credential_hash is None
    assert here.last_sequence == 7
    assert fleet.snapshot() == []


def test_liveness_of_agents_reporting_elsewhere_is_taken_not_that_of_our_own(
    store: Store,
) -> None:
    token = make_token(store, max_uses=3)
    for agent_id in ("a1", "a2", "a3"):
        assert store.enroll_agent(token, time.time(), make_agent(agent_id))
    fleet = Fleet()
    fleet.refresh(store.all_agents())
    now = time.time()
    store.write_reports([report("a1", 5, now), report("a2", 9, now - 1000)])
    rows = agents_seen_since(store, now - 60)
    assert [row[0] for row in rows] == ["a1"]
    fleet.refresh_liveness(agents_seen_since(store, 0), skip=lambda agent_id: agent_id == "a2")
    a1, a2, a3 = (fleet.get(i) for i in ("a1", "a2", "a3"))
    assert a1 is not None and a1.last_seen == pytest.approx(now) and a1.last_sequence == 5
    assert a1.online(now)
    assert a2 is not None and a2.last_seen is None  # ours: this replica knows it better
    assert a3 is not None and a3.last_seen is None
