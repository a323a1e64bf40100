"""The agent list operators page through (`rmm agents list`): few columns, two statements a page.

Store.list_agents reads whole records (every column, then each page's tags through an IN list
of its ids, the list compiled into one bound parameter per agent) for the server's start-up.
Operators' pages need only what a summary row shows, so this reads those columns as plain
tuples, the online state computed by the database with the same expression the status filter
uses, and the page's tags with a second statement that selects the same page again (served from
the ix_agents_list_order index) instead of naming its ids: 5,000 rows cost 2 statements, not a
5,000-parameter IN list and a record built per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, func, select

from rmm_server.storage import schema
from rmm_server.storage.store import ONLINE_INTERVALS, AgentQuery, Store


@dataclass(frozen=True, slots=True)
class AgentListRow:
    """What one row of the agent list shows: no credential, host details or inventory."""

    id: str
    hostname: str
    client: str
    site: str
    tags: list[str]
    os: str
    os_name: str
    os_version: str
    agent_version: str
    enrolled_at: float
    last_seen: float | None
    interval_seconds: int
    last_sequence: int
    revoked_at: float | None
    online: bool  # reported within its last ONLINE_INTERVALS intervals, not revoked
    summary: dict[str, Any]  # key metrics of its latest report


_agents = schema.agents
_tags = schema.agent_tags
_ROW_COLUMNS = (
    _agents.c.id,
    _agents.c.hostname,
    _agents.c.client,
    _agents.c.site,
    _agents.c.os,
    _agents.c.os_name,
    _agents.c.os_version,
    _agents.c.agent_version,
    _agents.c.enrolled_at,
    _agents.c.last_seen,
    _agents.c.interval_seconds,
    _agents.c.last_sequence,
    _agents.c.revoked_at,
    _agents.c.summary,
)
# Where a list_agent_columns row holds online: after the columns.
ONLINE_COLUMN = len(_ROW_COLUMNS)


def online_clause(now: float) -> Any:
    """Return the SQL condition "reported within its last few intervals and not revoked"."""
    return and_(
        _agents.c.last_seen.is_not(None),
        _agents.c.last_seen + ONLINE_INTERVALS * _agents.c.interval_seconds >= now,
        _agents.c.revoked_at.is_(None),
    )


def _where(query: AgentQuery, now: float) -> Any:
    conditions: list[Any] = []
    if query.client:
        conditions.append(_agents.c.client == query.client)
    if query.site:
        conditions.append(_agents.c.site == query.site)
    if query.tag:
        conditions.append(
            exists().where(_tags.c.agent_id == _agents.c.id, _tags.c.tag == query.tag)
        )
    if query.status == "online":
        conditions.append(online_clause(now))
    elif query.status == "offline":
        conditions.append(~online_clause(now))
    return and_(True, *conditions)


def _page(store: Store, select_: Select[Any], query: AgentQuery, where: Any) -> Select[Any]:
    # The order of ix_agents_list_order: a page is a range of the index, not a sort of all rows.
    order = (
        *(store.text_order(column) for column in (_agents.c.client, _agents.c.site)),
        store.text_order(_agents.c.hostname),
        _agents.c.id,
    )
    return select_.where(where).order_by(*order).limit(query.limit).offset(query.offset)


# One row of list_agent_columns: the _ROW_COLUMNS in their order, then online.
AgentColumns = tuple[Any, ...]


def list_agent_columns(
    store: Store, query: AgentQuery, now: float
) -> tuple[list[AgentColumns], dict[str, list[str]], int]:
    """Return one page of the agents matching `query` in list order as plain tuples (the
    _ROW_COLUMNS, then online), each listed agent's tags by id (in tag order), and how many
    agents match in all."""
    where = _where(query, now)
    online = online_clause(now).label("online")
    tags: dict[str, list[str]] = {}
    with store.transaction("list agents") as conn:
        total = int(
            conn.execute(select(func.count()).select_from(_agents).where(where)).scalar_one()
        )
        rows = conn.execute(_page(store, select(*_ROW_COLUMNS, online), query, where)).all()
        if not rows:
            return [], tags, total
        page_ids = _page(store, select(_agents.c.id), query, where)
        for agent_id, tag in conn.execute(
            select(_tags.c.agent_id, _tags.c.tag)
            .where(_tags.c.agent_id.in_(page_ids.scalar_subquery()))
            .order_by(store.text_order(_tags.c.tag))
        ):
            tags.setdefault(agent_id, []).append(tag)
    return [tuple(row) for row in rows], tags, total


def row_from_columns(row: AgentColumns, tags: list[str]) -> AgentListRow:
    """Return the AgentListRow of one list_agent_columns row and its tags."""
    return AgentListRow(
        id=row[0],
        hostname=row[1] or "",
        client=row[2],
        site=row[3],
        tags=tags,
        os=row[4] or "",
        os_name=row[5] or "",
        os_version=row[6] or "",
        agent_version=row[7] or "",
        enrolled_at=row[8],
        last_seen=row[9],
        interval_seconds=row[10],
        last_sequence=row[11],
        revoked_at=row[12],
        summary=json.loads(row[13] or "{}"),
        online=bool(row[ONLINE_COLUMN]),
    )


def list_agent_rows(store: Store, query: AgentQuery, now: float) -> tuple[list[AgentListRow], int]:
    """Return one page of the agents matching `query` in list order, and how many match in all."""
    rows, tags, total = list_agent_columns(store, query, now)
    return [row_from_columns(row, tags.get(row[0], [])) for row in rows], total
