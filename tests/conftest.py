"""Shared fixtures: a real server process on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_cli.client import Connection
from rmm_server.storage.store import open_store, sqlite_url
from tests import databases
from tests.helpers import ServerProcess, free_port

# No process a test starts outlives the session: tests/leaks.py notes them and errors loudly.
from tests.leaks import (  # noqa: F401  (a hook and an autouse fixture, found by name)
    no_process_outlives_the_session,
    pytest_runtest_teardown,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running `rmm-server serve` on SQLite in a temporary directory."""
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
    ).start()
    yield process
    process.stop()


@pytest.fixture
def conn(server: ServerProcess) -> Iterator[Connection]:
    """The admin operator's connection to `server` (a module's own `server` fixture if it has
    one), as the `rmm` CLI opens it."""
    connection = Connection(
        server=server.grpc_address, token=server.admin_token, insecure=True, ca_cert=None
    )
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per run, copied for each test module."""
    name = databases.create_database()
    try:
        open_store(databases.database_url(name)).close()
        yield name
    finally:
        databases.drop_database(name)


@pytest.fixture(scope="module")
def pg_module_database(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database (at head) for one test module, dropped afterwards."""
    name = databases.create_database(template=pg_template)
    yield name
    databases.drop_database(name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database of this test's own."""
    name = databases.create_database()
    try:
        yield databases.database_url(name)
    finally:
        databases.drop_database(name)


@pytest.fixture(params=databases.DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database at head: a SQLite file, then PostgreSQL (a database of the
    module's own, emptied before each test). Storage tests take it to run on both."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    name: str = request.getfixturevalue("pg_module_database")
    databases.reset_database(name)
    return databases.database_url(name)
