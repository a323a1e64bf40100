"""Real databases for the storage tests: a SQLite file, or a fresh PostgreSQL database.

PostgreSQL is the one at RMM_TEST_PG (default postgres@127.0.0.1:5432, trust auth; scripts/test.sh
installs and starts it where it is missing). When it cannot be reached the PostgreSQL tests fail:
they never skip, so a run without it cannot pass for one that tested both databases.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from rmm_server.storage.migrate import VERSION_TABLE, engine_url, mask_url

PG_ADMIN_URL = os.environ.get("RMM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DIALECTS = ("sqlite", "postgresql")


def _admin_engine() -> Engine:
    return create_engine(engine_url(PG_ADMIN_URL), poolclass=NullPool, isolation_level="AUTOCOMMIT")


def database_url(name: str) -> str:
    """The URL (as an operator writes it: postgresql://) of database `name` on the test server."""
    url: URL = make_url(PG_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False)


@contextmanager
def admin() -> Iterator[Connection]:
    """An autocommit connection to the test server's maintenance database, or a test failure."""
    engine = _admin_engine()
    try:
        try:
            conn = engine.connect()
        except OperationalError as exc:
            pytest.fail(
                f"PostgreSQL at {mask_url(PG_ADMIN_URL)} is unreachable ({exc.orig}): the storage "
                "tests run on it as well as on SQLite. Start it (scripts/test.sh installs and "
                "starts it on a fresh machine) or point RMM_TEST_PG at one.",
                pytrace=False,
            )
        with conn:
            yield conn
    finally:
        engine.dispose()


# Ordered as en_US orders text ("alpha" < "Beta"), as many production databases are, unlike
# SQLite and this machine's C default: what sorts or compares text must not depend on it.
NATURAL_COLLATION = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"


def create_database(template: str | None = None) -> str:
    """Create an empty database (or a copy of `template`) named rmm_test_<random>, with an
    en-US collation; return its name."""
    name = f"rmm_test_{secrets.token_hex(6)}"
    with admin() as conn:
        clause = f"TEMPLATE {template}" if template else NATURAL_COLLATION
        conn.execute(text(f"CREATE DATABASE {name} {clause}"))
    return name


def drop_database(name: str) -> None:
    """Drop a test database, ending any connection a test left open to it."""
    with admin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def reset_database(name: str) -> None:
    """Empty every table of a test database (the schema and its revision stay), after ending
    connections earlier tests left behind, so each test starts from an empty store."""
    with admin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
    engine = create_engine(engine_url(database_url(name)), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t != VERSION_TABLE]
            if tables:
                conn.execute(text(f"TRUNCATE {', '.join(tables)}"))
    finally:
        engine.dispose()


@contextmanager
def tamper(engine: Engine) -> Iterator[Any]:
    """A transaction that runs raw SQL written with ? placeholders on either database, the way
    someone with database access would change rows behind the server's back."""

    class Raw:
        def __init__(self, conn: Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, params: Any = ()) -> Any:
            if conn.dialect.name == "postgresql":
                sql = sql.replace("?", "%s")
            return self.conn.exec_driver_sql(sql, params)

        def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
            return self.execute(sql, rows)

    with engine.begin() as conn:
        yield Raw(conn)
