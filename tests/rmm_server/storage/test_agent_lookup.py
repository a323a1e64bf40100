"""`host=NAME` through the hostname key's index (storage/agent_lookup.py) on SQLite and
PostgreSQL: look-alikes, duplicates across clients and revoked agents are all candidates, a
hostname changed by a report is keyed at the next lookup, and both statements are index reads
(issue #16)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text, update

from rmm_common.agent_words import parse_agent_word
from rmm_common.errors import InvalidArgument, NotFound
from rmm_common.tokens import hash_secret
from rmm_server.selection import resolve_agent
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, open_store, schema
from rmm_server.storage.agent_lookup import (
    HOSTNAME_KEY_CHARS,
    agents_by_hostname,
    client_count,
    key_new_hostnames,
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def enroll(store: Store, agent_id: str, client: str, hostname: str) -> None:
    token = f"tok-{agent_id}"
    store.create_token(EnrollmentTokenRecord(token, hash_secret(token), client, "hq", 1.0, "a"))
    record = AgentRecord(agent_id, "h", client, "hq", 1.0, hostname=hostname)
    assert store.enroll_agent(token, 2.0, record)


def rename(store: Store, agent_id: str, hostname: str) -> None:
    """Change a hostname as a report does: the key columns are left alone."""
    with store.transaction("rename") as conn:
        conn.execute(
            update(schema.agents).where(schema.agents.c.id == agent_id).values(hostname=hostname)
        )


def ids(store: Store, hostname: str) -> list[str]:
    return [agent.id for agent in agents_by_hostname(store, hostname)]


def test_every_look_alike_is_a_candidate_revoked_and_other_clients_too(store: Store) -> None:
    enroll(store, "a1", "acme", "web-01")
    enroll(store, "a2", "evil", "WEB-01")
    enroll(store, "a3", "evil", "w\u0435b-0l")  # Cyrillic e, l for 1
    enroll(store, "a4", "acme", "web-02")
    enroll(store, "a5", "acme", "x" * 250 + "\ufdfa")  # a key past HOSTNAME_KEY_CHARS
    store.revoke_agent("a2", 3.0)
    assert ids(store, "web-01") == ["a1", "a2", "a3"]
    assert ids(store, "web-02") == ["a4"]
    assert ids(store, "web-03") == []
    assert ids(store, "x" * 250 + "\ufdfa") == ["a5"]
    assert ids(store, "x" * 250) == []  # same stored prefix, another key
    assert client_count(store) == 2
    with pytest.raises(InvalidArgument, match="reported \\(or imitated\\) by 3 agents of 2"):
        resolve_agent(agents_by_hostname(store, "web-01"), parse_agent_word("host=web-01"))
    with pytest.raises(NotFound):
        resolve_agent(agents_by_hostname(store, "web-03"), parse_agent_word("host=web-03"))


def test_a_hostname_a_report_changed_is_keyed_at_the_next_lookup(store: Store) -> None:
    enroll(store, "a1", "acme", "web-01")
    enroll(store, "a2", "acme", "db-01")
    assert ids(store, "db-01") == ["a2"]
    with store.transaction("count") as conn:
        assert key_new_hostnames(conn) == 0, "every row keyed by the lookup before"
    rename(store, "a2", "web-01")
    assert ids(store, "db-01") == []
    assert ids(store, "web-01") == ["a1", "a2"]
    word = parse_agent_word("host=web-01")
    with pytest.raises(InvalidArgument, match="name it by id"):
        resolve_agent(agents_by_hostname(store, "web-01"), word)
    rename(store, "a1", "web-1")
    # Alone now, but the fleet spans one client only: no client needed.
    found = resolve_agent(agents_by_hostname(store, "web-01"), word, require_client=True,
                          clients=client_count(store))  # fmt: skip
    assert found.id == "a2"
    enroll(store, "b1", "beta", "mail")
    with pytest.raises(InvalidArgument, match="names no client, and an agent of any of the 2"):
        resolve_agent(agents_by_hostname(store, "web-01"), word, require_client=True,
                      clients=client_count(store))  # fmt: skip


def test_both_statements_read_an_index_not_every_agent(store: Store) -> None:
    agents = schema.agents
    statements = {
        "ix_agents_hostname_key": select(agents.c.id).where(agents.c.hostname_key == "web-ol"),
        "ix_agents_hostname_unkeyed": select(agents.c.id, agents.c.hostname).where(
            agents.c.hostname_keyed != agents.c.hostname
        ),
    }
    for index, statement in statements.items():
        sql = str(statement.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.transaction("explain") as conn:
            if store.dialect == "postgresql":
                # An empty table is never worth an index to the planner: forbid the scan.
                conn.execute(text("SET LOCAL enable_seqscan = off"))
                plan = " ".join(str(row[0]) for row in conn.execute(text(f"EXPLAIN {sql}")))
                assert index in plan and "Seq Scan" not in plan, plan
            else:
                plan = " ".join(
                    str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
                )
                assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, (
                    plan
                )
    assert HOSTNAME_KEY_CHARS <= 255  # the column's length
