"""Revision 0010 on SQLite and PostgreSQL: every client and site name agents and enrollment
tokens carried becomes a record, and agents and tokens are left exactly as they were."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert

from rmm_server.storage import open_store, schema
from rmm_server.storage.desk import DeskStore
from rmm_server.storage.migrate import upgrade
from rmm_server.storage.store import create_store_engine
from tests import databases


@pytest.fixture(params=databases.DIALECTS)
def empty_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/rmm.sqlite3"
    else:
        yield request.getfixturevalue("pg_url")


def _fleet_before_desk(engine: Engine) -> None:
    upgrade(engine, "0009")
    with engine.begin() as conn:
        for token_id, client, site in (
            ("t1", "acme", "hq"),
            ("t2", "acme", "branch"),
            ("t3", "initech", "lab"),
        ):
            conn.execute(
                insert(schema.enrollment_tokens).values(
                    id=token_id,
                    secret_hash="s" * 64,
                    client=client,
                    site=site,
                    created_at=1.0,
                    created_by="admin",
                    uses=0,
                )
            )
        agents = (
            ("a1", "acme", "hq"),
            ("a2", "acme", "hq"),
            ("a3", "globex", "hq"),
            ("a4", "acme", "branch"),
        )
        for agent_id, client, site in agents:
            conn.execute(
                insert(schema.agents).values(
                    id=agent_id,
                    credential_hash="c" * 64,
                    client=client,
                    site=site,
                    enrolled_at=2.0,
                    hostname=agent_id,
                )
            )


def test_existing_names_become_records_and_agents_keep_theirs(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    try:
        _fleet_before_desk(engine)
        upgrade(engine)
    finally:
        engine.dispose()
    store = open_store(empty_url)
    try:
        desk = DeskStore(store)
        clients = {c.name: (c.sites, c.agents, c.created_by) for c in desk.list_clients()}
        assert clients == {
            "acme": (2, 3, "migration 0010"),
            "globex": (1, 1, "migration 0010"),
            "initech": (1, 0, "migration 0010"),  # only a token named it: kept working
        }
        sites = [(s.client, s.name, s.time_zone, s.agents) for s in desk.list_sites()]
        assert sites == [
            ("acme", "branch", "UTC", 1),
            ("acme", "hq", "UTC", 2),
            ("globex", "hq", "UTC", 1),
            ("initech", "lab", "UTC", 0),
        ]
        agent = store.get_agent("a4")
        assert agent is not None and (agent.client, agent.site) == ("acme", "branch")
        token = store.get_token("t3")
        assert token is not None and (token.client, token.site) == ("initech", "lab")
    finally:
        store.close()
