"""Revision 0015 on SQLite and PostgreSQL: tickets opened before it get a verification code
each, and stay as they were otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from rmm_common.helpdesk import code_problem
from rmm_server.storage import schema
from rmm_server.storage.migrate import upgrade
from rmm_server.storage.store import create_store_engine
from tests import databases

OLD_COLUMNS = {
    "client_id": "c1",
    "site": "",
    "agent_id": "",
    "alert_id": "",
    "title": "VPN drops",
    "tier": "L1",
    "priority": "warning",
    "status": "new",
    "assignee": "",
    "opened_at": 1.0,
    "opened_by": "alice",
    "updated_at": 1.0,
    "sla_breaches": "",
    "resolution": "",
    "archived_by": "",
}


@pytest.fixture(params=databases.DIALECTS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/rmm.sqlite3"
    else:
        yield request.getfixturevalue("pg_url")


def test_tickets_opened_before_get_a_code_each(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    try:
        upgrade(engine, "0014")
        with engine.begin() as conn:
            for title in ("VPN drops", "printer", "mail"):
                conn.execute(insert(schema.tickets).values(**{**OLD_COLUMNS, "title": title}))
        upgrade(engine)
        with engine.begin() as conn:
            rows = conn.execute(
                select(
                    schema.tickets.c.title, schema.tickets.c.verify_code, schema.tickets.c.snapshot
                )
            ).all()
    finally:
        engine.dispose()
    assert sorted(row.title for row in rows) == ["VPN drops", "mail", "printer"]
    assert all(code_problem(row.verify_code) is None for row in rows), rows
    assert len({row.verify_code for row in rows}) == 3 and {row.snapshot for row in rows} == {""}
