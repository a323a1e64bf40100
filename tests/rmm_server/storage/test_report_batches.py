"""Large report batches (the ingest writer's), the same on SQLite (written as few multi-row
statements) and on PostgreSQL: every report stored once, each agent's latest state from its
newest report, its first sequence from its oldest, an empty host field keeping what was known."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rmm_server.storage import Store, StoredReport, open_store
from tests.rmm_server.test_store import make_agent, make_token

AGENTS = 300  # more than one chunk of rows per statement on SQLite


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def stored(agent_id: str, sequence: int, at: float, hostname: str = "") -> StoredReport:
    return StoredReport(
        agent_id=agent_id,
        sequence=sequence,
        collected_at=at,
        received_at=at,
        body=b"%s-%d" % (agent_id.encode(), sequence),
        host={"hostname": hostname, "os": "linux", "kernel": f"k{sequence}"},
        agent_version=f"v{sequence}",
        interval_seconds=10 + sequence,
        summary={"cpu_usage_ratio": sequence / 100, "collector_errors": 0},
    )


def test_a_batch_over_many_agents_updates_each_from_its_newest_report(store: Store) -> None:
    token = make_token(store)
    ids = [f"agent-{index:03d}" for index in range(AGENTS)]
    for agent_id in ids:
        assert store.enroll_agent(token, time.time(), make_agent(agent_id))
    now = time.time()
    # Sequences 5..7 of every agent, interleaved and out of order; the newest has no hostname.
    batch = [stored(a, 6, now + 1, "named-6") for a in ids]
    batch += [stored(a, 7, now + 2) for a in ids]
    batch += [stored(a, 5, now, "named-5") for a in ids]
    assert store.write_reports(batch) == []
    # A redelivery of 6 and an older report: 6 is not stored twice, 3 lowers first_sequence.
    assert (
        store.write_reports([stored(ids[0], 6, now + 1, "named-6"), stored(ids[0], 3, now)]) == []
    )
    for agent_id in ids:
        agent = store.get_agent(agent_id)
        assert agent is not None
        assert (agent.first_sequence, agent.last_sequence) == (
            3 if agent_id == ids[0] else 5,
            7,
        )
        assert agent.last_seen == pytest.approx(now + 2)
        assert agent.summary == {"cpu_usage_ratio": 0.07, "collector_errors": 0}
        assert (agent.interval_seconds, agent.agent_version, agent.kernel) == (17, "v7", "k7")
        assert agent.hostname == f"host-{agent_id}"  # empty in every report: kept
        assert store.latest_report_body(agent_id) == b"%s-7" % agent_id.encode()
        assert store.report_stats(agent_id)[2] == (4 if agent_id == ids[0] else 3)


def test_a_conflicting_report_in_a_large_batch_is_returned_and_the_rest_stored(
    store: Store,
) -> None:
    token = make_token(store)
    ids = [f"agent-{index:03d}" for index in range(AGENTS)]
    for agent_id in ids:
        store.enroll_agent(token, time.time(), make_agent(agent_id))
    now = time.time()
    assert store.write_reports([stored(ids[5], 1, now)]) == []
    other = stored(ids[5], 1, now)
    other.body = b"other content"
    batch = [stored(a, 2, now + 1) for a in ids] + [other]
    assert store.write_reports(batch) == [other]
    assert store.report_stats(ids[5]) == (1, 2, 2)
    assert all(store.report_stats(a)[1] == 2 for a in ids)
