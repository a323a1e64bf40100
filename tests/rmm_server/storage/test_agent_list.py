"""The operators' agent list (storage/agent_list.py) on SQLite and PostgreSQL: the same rows, in
the same order, as the whole records Store.list_agents reads, page after page, with every
filter; and on SQLite a page is read from the list-order index, not sorted (issue #16)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text, update

from rmm_common.tokens import hash_secret
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, open_store, schema
from rmm_server.storage.agent_list import AgentListRow, list_agent_rows
from rmm_server.storage.store import AgentQuery

NOW = 10_000.0


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def fill(store: Store) -> None:
    """Enroll 17 agents over two clients and sites, with tags, reports, a revoked one."""
    for client in ("acme", "Beta"):
        store.create_token(
            EnrollmentTokenRecord(f"tok-{client}", hash_secret(client), client, "hq", 1.0, "admin")
        )
    for index in range(17):
        client = "acme" if index % 2 else "Beta"  # "Beta" sorts first by code point
        tags = [["web", "db"], [], ["db"]][index % 3]
        record = AgentRecord(
            f"{(index * 7919) % 97:02d}-agent-{index:02d}",
            "h",
            client,
            "hq" if index % 4 else "branch",
            1.0,
            tags=tags,
            hostname=f"host-{index % 5}",  # repeated: the id breaks ties
            os="linux",
            os_name="Debian",
            os_version="12",
            agent_version="1.0",
        )
        assert store.enroll_agent(f"tok-{client}", 2.0, record)
        if index % 3 != 2:  # a report: online (hourly) or offline (every 30 s, long ago)
            summary = {"cpu_usage_ratio": index / 100, "disk_used_ratio_max_mountpoint": "/"}
            with store.transaction("report") as conn:
                conn.execute(
                    update(schema.agents)
                    .where(schema.agents.c.id == record.id)
                    .values(
                        last_seen=NOW - 100,
                        interval_seconds=3600 if index % 2 else 30,
                        last_sequence=index,
                        summary=json.dumps(summary),
                    )
                )
    store.revoke_agent(f"{(1 * 7919) % 97:02d}-agent-01", NOW - 50)


def as_row(record: AgentRecord) -> AgentListRow:
    return AgentListRow(
        id=record.id,
        hostname=record.hostname,
        client=record.client,
        site=record.site,
        tags=record.tags,
        os=record.os,
        os_name=record.os_name,
        os_version=record.os_version,
        agent_version=record.agent_version,
        enrolled_at=record.enrolled_at,
        last_seen=record.last_seen,
        interval_seconds=record.interval_seconds,
        last_sequence=record.last_sequence,
        revoked_at=record.revoked_at,
        online=record.online(NOW),
        summary=record.summary,
    )


QUERIES = [
    AgentQuery(),
    AgentQuery(client="acme"),
    AgentQuery(client="acme", site="hq"),
    AgentQuery(tag="db"),
    AgentQuery(tag="web"),
    AgentQuery(status="online"),
    AgentQuery(status="offline"),
    AgentQuery(status="online", client="acme", tag="db"),
    AgentQuery(client="nobody"),
]


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_pages_are_the_records_store_lists(store: Store, query: AgentQuery) -> None:
    fill(store)
    everything = AgentQuery(query.client, query.site, query.tag, query.status, limit=1000)
    records, total = store.list_agents(everything, NOW)
    expected = [as_row(record) for record in records]
    assert list_agent_rows(store, everything, NOW) == (expected, total)

    paged: list[AgentListRow] = []
    for offset in range(0, total + 3, 3):  # pages of 3, and one past the end
        page = AgentQuery(query.client, query.site, query.tag, query.status, 3, offset)
        rows, page_total = list_agent_rows(store, page, NOW)
        assert page_total == total
        assert len(rows) == min(3, max(0, total - offset))
        paged.extend(rows)
    assert paged == expected


def test_what_a_row_carries(store: Store) -> None:
    fill(store)
    rows, total = list_agent_rows(store, AgentQuery(limit=100), NOW)
    assert total == 17
    assert [row.client for row in rows] == sorted(row.client for row in rows)
    assert rows[0].client == "Beta", "code point order on both databases"
    tagged = next(row for row in rows if row.id.endswith("agent-00"))
    assert tagged.tags == ["db", "web"], "tags in order"
    assert tagged.summary == {"cpu_usage_ratio": 0.0, "disk_used_ratio_max_mountpoint": "/"}
    revoked = next(row for row in rows if row.id.endswith("agent-01"))
    assert revoked.revoked_at == NOW - 50 and not revoked.online
    assert sum(row.online for row in rows) == 5  # reported hourly, not revoked: 3, 7, 9, 13, 15
    silent = next(row for row in rows if row.id.endswith("agent-02"))
    assert (silent.last_seen, silent.summary, silent.online) == (None, {}, False)


def test_a_page_is_read_from_the_list_order_index(store: Store) -> None:
    """The page's statement, as list_agent_rows builds it, needs no sort step: the index gives
    its order (on PostgreSQL in the "C" collation the list sorts by, whatever the database's)."""
    query = select(schema.agents.c.id)
    order = (
        *(store.text_order(c) for c in (schema.agents.c.client, schema.agents.c.site)),
        store.text_order(schema.agents.c.hostname),
        schema.agents.c.id,
    )
    sql = str(
        query.order_by(*order)
        .limit(100)
        .offset(4900)
        .compile(store.engine, compile_kwargs={"literal_binds": True})
    )
    with store.transaction("explain") as conn:
        if store.dialect == "postgresql":
            # A 0-row table is never worth an index to the planner: forbid the sort instead,
            # so that a plan still sorting means no index can give this order.
            conn.execute(text("SET LOCAL enable_sort = off"))
            plan = " ".join(str(row[0]) for row in conn.execute(text(f"EXPLAIN {sql}")))
            assert "ix_agents_list_order" in plan and "Sort" not in plan, plan
        else:
            plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "ix_agents_list_order" in plan and "TEMP B-TREE" not in plan, plan
