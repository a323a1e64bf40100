"""Storage behaviour, the same on the embedded SQLite database and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rmm_common.tokens import hash_secret
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, StoredReport, open_store
from rmm_server.storage.store import AgentQuery


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def make_token(store: Store, max_uses: int | None = None, expires_at: float | None = None) -> str:
    store.create_token(
        EnrollmentTokenRecord(
            id="tok1",
            secret_hash=hash_secret("x"),
            client="acme",
            site="hq",
            created_at=time.time(),
            created_by="admin",
            max_uses=max_uses,
            expires_at=expires_at,
        )
    )
    return "tok1"


def make_agent(agent_id: str, tags: list[str] | None = None, client: str = "acme") -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        credential_hash="h",
        client=client,
        site="hq",
        enrolled_at=time.time(),
        tags=tags or [],
        hostname=f"host-{agent_id}",
    )


def report(agent_id: str, sequence: int, received_at: float, cpu: float = 0.5) -> StoredReport:
    return StoredReport(
        agent_id=agent_id,
        sequence=sequence,
        collected_at=received_at,
        received_at=received_at,
        body=b"body-%d" % sequence,
        host={"hostname": "h1", "os": "linux"},
        agent_version="1",
        interval_seconds=30,
        summary={"cpu_usage_ratio": cpu},
    )


def test_enrollment_uses_are_counted_atomically(store: Store) -> None:
    token = make_token(store, max_uses=2)
    assert store.enroll_agent(token, time.time(), make_agent("a1"))
    assert store.enroll_agent(token, time.time(), make_agent("a2"))
    assert not store.enroll_agent(token, time.time(), make_agent("a3"))
    assert store.get_agent("a3") is None
    recorded = store.get_token(token)
    assert recorded is not None and recorded.uses == 2 and recorded.state(time.time()) == "used-up"


def test_expired_and_revoked_tokens_enroll_nobody(store: Store) -> None:
    token = make_token(store, expires_at=time.time() - 1)
    assert not store.enroll_agent(token, time.time(), make_agent("a1"))
    store.create_token(
        EnrollmentTokenRecord(
            id="tok2",
            secret_hash="h",
            client="c",
            site="s",
            created_at=time.time(),
            created_by="admin",
        )
    )
    store.revoke_token("tok2", time.time())
    assert not store.enroll_agent("tok2", time.time(), make_agent("a2"))


def test_reports_are_stored_once_and_update_the_agent(store: Store) -> None:
    store.enroll_agent(make_token(store), time.time(), make_agent("a1"))
    now = time.time()
    store.write_reports([report("a1", 1, now), report("a1", 2, now + 1, cpu=0.9)])
    store.write_reports([report("a1", 2, now + 2, cpu=0.1), report("a1", 1, now + 2)])  # again
    first, last, count = store.report_stats("a1")
    assert (first, last, count) == (1, 2, 2)
    agent = store.get_agent("a1")
    assert agent is not None
    assert agent.last_sequence == 2 and agent.first_sequence == 1
    assert agent.summary == {"cpu_usage_ratio": 0.9}, "an old redelivery must not win"
    assert agent.hostname == "h1"
    assert store.latest_report_body("a1") == b"body-2"


def test_list_agents_filters_and_pages_on_the_server(store: Store) -> None:
    token = make_token(store)
    for index in range(25):
        tags = ["even"] if index % 2 == 0 else []
        client = "acme" if index < 20 else "globex"
        store.enroll_agent(token, time.time(), make_agent(f"a{index:02d}", tags, client))
    now = time.time()
    store.write_reports([report("a00", 1, now), report("a01", 1, now - 1000)])
    page, total = store.list_agents(AgentQuery(client="acme", limit=7), now)
    assert total == 20 and len(page) == 7
    second, _ = store.list_agents(AgentQuery(client="acme", limit=7, offset=7), now)
    assert not {a.id for a in page} & {a.id for a in second}
    evens, total = store.list_agents(AgentQuery(tag="even"), now)
    assert total == 13 and all(a.tags == ["even"] for a in evens)
    online, total = store.list_agents(AgentQuery(status="online"), now)
    assert [a.id for a in online] == ["a00"] and total == 1
    _, offline_total = store.list_agents(AgentQuery(status="offline"), now)
    assert offline_total == 24
    assert store.find_agents("host-a03") == []  # ids only: hostnames are the agents' word
    assert {a.id for a in store.find_agents("a1")} == {f"a{i}" for i in range(10, 20)}


def test_pruning_keeps_each_agents_latest_report(store: Store) -> None:
    store.enroll_agent(make_token(store), time.time(), make_agent("a1"))
    old = time.time() - 10 * 86400
    store.write_reports([report("a1", 1, old), report("a1", 2, old + 1)])
    assert store.prune_reports(time.time() - 86400) == 1
    assert store.report_stats("a1") == (2, 2, 1)
