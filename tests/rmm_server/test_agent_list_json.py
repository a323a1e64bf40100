"""AgentRowTexts (ListAgents json_rows) on SQLite and PostgreSQL: each row is rendered once and
then kept until a column or tag it shows changes, the two time-dependent values are put in at
every page, and a page's text stops at its byte limit (issue #16)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from rmm_common.agent_rows import agent_row
from rmm_server.agent_list_json import AgentRowTexts
from rmm_server.grpc_api.operator_service import list_row_to_summary
from rmm_server.storage import Store, open_store, schema
from rmm_server.storage.agent_list import list_agent_columns, list_agent_rows
from rmm_server.storage.store import AgentQuery
from tests.rmm_server.storage.test_agent_list import NOW, fill


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    fill(store)
    yield store
    store.close()


def page_text(texts: AgentRowTexts, store: Store, now: float, clock: float = NOW) -> str:
    rows, tags, _total = list_agent_columns(store, AgentQuery(limit=100), clock)
    return texts.page(rows, tags, now).text.decode()


def expected_text(store: Store, now: float, clock: float = NOW) -> str:
    """The rows as json.dumps prints the CLI's rows made from ListAgents' messages, inside the
    list's brackets."""
    rows, _total = list_agent_rows(store, AgentQuery(limit=100), clock)
    summaries = [list_row_to_summary(row) for row in rows]
    whole = json.dumps(
        [agent_row(summary, now) for summary in summaries],
        indent=2,
        sort_keys=True,
        allow_nan=False,
    )
    return whole.removeprefix("[\n").removesuffix("\n]")


def test_rows_are_rendered_once_until_they_change(store: Store) -> None:
    texts = AgentRowTexts(list_row_to_summary)
    assert page_text(texts, store, NOW + 5) == expected_text(store, NOW + 5)
    assert texts.rendered == 17
    # Later, and by a clock past some agents' online window: only the two values move.
    assert page_text(texts, store, NOW + 99.25, NOW + 500) == expected_text(
        store, NOW + 99.25, NOW + 500
    )
    assert texts.rendered == 17

    rows, _tags, _total = list_agent_columns(store, AgentQuery(limit=100), NOW)
    agent_id = next(row[0] for row in rows if row[12] is None)
    store.place_agent(agent_id, "acme", "hq", ["moved"])
    with store.transaction("report") as conn:
        conn.execute(
            update(schema.agents)
            .where(schema.agents.c.id == rows[-1][0])
            .values(summary=json.dumps({"cpu_usage_ratio": 0.5}), last_sequence=99)
        )
    assert page_text(texts, store, NOW + 5) == expected_text(store, NOW + 5)
    assert texts.rendered == 19


def test_a_page_stops_at_its_byte_limit(store: Store) -> None:
    texts = AgentRowTexts(list_row_to_summary)
    rows, tags, _total = list_agent_columns(store, AgentQuery(limit=100), NOW)
    whole = texts.page(rows, tags, NOW)
    assert whole.rows == 17
    cut = texts.page(rows, tags, NOW, max_bytes=len(whole.text) // 2)
    assert 0 < cut.rows < 17
    assert whole.text.startswith(cut.text + b",\n")
    assert texts.page(rows, tags, NOW, max_bytes=1).rows == 1  # a page has a row at least
