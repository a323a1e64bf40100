"""Dashboard sessions in the database (SQLite and PostgreSQL): idle and absolute expiry, logout
and revocation seen by another server on the same database, expired ones pruned, only a hash of
the id stored, CSRF bound to the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from rmm_common.errors import StorageError
from rmm_server.roles import Role
from rmm_server.storage import Store, open_store, schema
from rmm_server.storage.dashboard_sessions import SessionStore
from rmm_server.web.sessions import MAX_SESSIONS_PER_OPERATOR, Sessions, csrf_matches


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def sessions_on(store: Store, clock: Clock, **kw: float) -> Sessions:
    return Sessions(SessionStore(store), clock=clock, **kw)


def test_an_idle_session_expires_and_a_used_one_lives_until_its_absolute_end(
    store: Store,
) -> None:
    clock = Clock()
    sessions = sessions_on(store, clock, idle_seconds=60, absolute_seconds=300)
    idle = sessions.create("o1", "ann", Role.VIEWER)
    used = sessions.create("o2", "bob", Role.TIER1)
    for _ in range(4):
        clock.now += 50
        assert sessions.get(used.id) is not None
    assert sessions.get(idle.id) is None  # 200 s without a request
    clock.now += 50
    # Another server reads it from the database: the uses were written back.
    other = sessions_on(store, clock, idle_seconds=60, absolute_seconds=300)
    found = other.get(used.id)
    assert found is not None and (found.operator, found.role) == ("bob", Role.TIER1)
    assert found.csrf == used.csrf
    clock.now += 55
    assert sessions.get(used.id) is None  # past 300 s, however busy
    assert other.get(used.id) is None
    assert SessionStore(store).count() == 0  # both met expired: deleted


def test_logout_and_revocation_end_sessions_on_every_server(store: Store) -> None:
    clock = Clock()
    here, there = sessions_on(store, clock), sessions_on(store, clock)
    first = here.create("o1", "ann", Role.ADMIN)
    second = here.create("o1", "ann", Role.ADMIN)
    other = here.create("o2", "bob", Role.VIEWER)
    assert there.get(first.id) is not None and there.get(second.id) is not None
    here.end(first.id)
    assert here.get(first.id) is None
    clock.now += there.cache_seconds  # what `there` read is trusted this long
    assert there.get(first.id) is None and there.get(second.id) is not None
    there.end_operator("o1")
    clock.now += here.cache_seconds
    assert here.get(second.id) is None and here.get(other.id) is not None
    assert here.get("") is None and here.get(None) is None and here.get("made-up") is None


def test_expired_sessions_are_pruned_and_logins_per_operator_bounded(store: Store) -> None:
    clock = Clock()
    sessions = sessions_on(store, clock, idle_seconds=60, absolute_seconds=300)
    sessions.create("o1", "ann", Role.VIEWER)
    clock.now += 61
    kept = sessions.create("o2", "bob", Role.VIEWER)  # a login prunes the expired
    assert SessionStore(store).count() == 1
    clock.now += 61
    assert sessions.prune() == 1 and sessions.get(kept.id) is None
    for _ in range(MAX_SESSIONS_PER_OPERATOR + 3):
        sessions.create("o3", "cy", Role.VIEWER)
    assert SessionStore(store).count() == MAX_SESSIONS_PER_OPERATOR


def test_the_table_holds_no_cookie_value_nor_csrf_token(store: Store) -> None:
    session = sessions_on(store, Clock()).create("o1", "ann", Role.TIER1)
    with store.transaction("read") as conn:
        rows = [tuple(row) for row in conn.execute(select(schema.dashboard_sessions))]
    text = repr(rows)
    assert len(rows) == 1 and session.id not in text and session.csrf not in text


def test_csrf_tokens_are_per_session(store: Store) -> None:
    sessions = sessions_on(store, Clock())
    one, two = sessions.create("o1", "a", Role.TIER1), sessions.create("o1", "a", Role.TIER1)
    assert one.csrf not in (two.csrf, one.id)
    assert csrf_matches(one, one.csrf)
    assert (
        not csrf_matches(one, two.csrf)
        and not csrf_matches(one, "")
        and not csrf_matches(one, None)
    )


def test_a_known_session_outlasts_a_database_blip_and_an_unknown_one_is_an_error(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'rmm.sqlite3'}")
    try:
        clock = Clock()
        sessions = sessions_on(store, clock)
        known = sessions.create("o1", "ann", Role.TIER1)
        with store.transaction("break the table") as conn:
            conn.execute(text("ALTER TABLE dashboard_sessions RENAME TO away"))
        clock.now += sessions.touch_seconds  # a query is due: read again and a use to write
        assert sessions.get(known.id) is not None
        with pytest.raises(StorageError, match="dashboard session"):
            sessions.get("never-seen")
    finally:
        store.close()
