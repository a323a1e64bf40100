"""Schema migrations on real SQLite and PostgreSQL: from an empty database and from the first
release's, the result is exactly schema.py, data kept; servers starting together migrate once."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, insert, inspect, text

from rmm_common.errors import ConfigError, StorageError
from rmm_server.storage import open_store, schema
from rmm_server.storage.alerts import AlertStore
from rmm_server.storage.migrate import (
    VERSION_TABLE,
    alembic_config,
    compare_options,
    current_state,
    head_revision,
    mask_url,
    upgrade,
    wait_until_reachable,
)
from rmm_server.storage.migrations import first_release
from rmm_server.storage.store import create_store_engine
from tests import databases
from tests.helpers import BIN

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=databases.DIALECTS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rmm.sqlite3'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    engine = create_store_engine(empty_url)
    yield engine
    engine.dispose()


def drift(engine: Engine, metadata: MetaData = schema.metadata) -> list[str]:
    """What the database lacks or has beyond `metadata`, one readable line per difference."""
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts=compare_options()), metadata)
    return [_describe(diff) for diff in diffs]


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe(item) for item in diff)
    kind, *rest = diff
    if kind in ("add_column", "remove_column"):
        _schema, table, column = rest
        return f"{kind} {table}.{column.name}"
    if kind.startswith("modify_"):
        _schema, table, column = rest[:3]
        return f"{kind} {table}.{column}: database {rest[-2]!r}, schema.py {rest[-1]!r}"
    name = getattr(rest[0], "name", rest[0])
    table = getattr(getattr(rest[0], "table", None), "name", "")
    return f"{kind} {table + '.' if table else ''}{name}"


def test_empty_to_head_is_exactly_schema_py(engine: Engine) -> None:
    before, after = upgrade(engine)
    assert (before.label, after.label) == ("empty", head_revision())
    problems = drift(engine)
    assert not problems, (
        "schema.py and the migrations differ; write a revision with "
        "`.venv/bin/python -m rmm_server.storage.migrations revision 'what changed'`:\n"
        + "\n".join(problems)
    )
    again_before, again_after = upgrade(engine)  # a second run has nothing to do
    assert again_before == again_after and again_after.at_head


def test_a_column_without_a_revision_is_named(engine: Engine) -> None:
    """The check above can fail: a column only schema.py has is reported by table and name."""
    upgrade(engine)
    metadata = MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["agents"].append_column(Column("favourite_colour", String(20)))
    assert drift(engine, metadata) == ["add_column agents.favourite_colour"]


def test_downgrades_return_to_the_first_release_and_back(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert drift(engine, first_release.metadata) == []
    upgrade(engine)
    assert drift(engine) == []


def test_a_failing_migration_changes_nothing(engine: Engine) -> None:
    """All revisions of one run share a transaction: 0003 failing takes 0002 back with it."""
    upgrade(engine, "0001")
    with engine.begin() as conn:  # what 0003 adds, there already: its ADD COLUMN fails
        conn.execute(text("ALTER TABLE agents ADD COLUMN rotate_requested_at FLOAT"))
    with pytest.raises(StorageError, match="nothing was changed"):
        upgrade(engine)
    assert current_state(engine).current == "0001"
    with engine.connect() as conn:
        assert "commands" not in inspect(conn).get_table_names()  # made by 0002, rolled back


def _first_release_database(engine: Engine) -> None:
    """What the first release left: its tables made by create_all, no version table, and rows."""
    tables = first_release.metadata.tables
    with engine.begin() as conn:
        first_release.metadata.create_all(conn)
        conn.execute(
            insert(tables["enrollment_tokens"]).values(
                id="tok1",
                secret_hash="s" * 64,
                client="acme",
                site="hq",
                created_at=1700000000.25,
                created_by="admin",
                max_uses=5,
                uses=1,
            )
        )
        conn.execute(
            insert(tables["agents"]).values(
                id="a" * 32,
                credential_hash="c" * 64,
                client="acme",
                site="hq",
                hostname="web01",
                os="linux",
                enrollment_token_id="tok1",
                enrolled_at=1700000001.5,
                last_seen=1700000100.123456,
                interval_seconds=30,
                first_sequence=1,
                last_sequence=2**40,
                summary='{"cpu_usage_ratio": 0.25}',
                inventory=bytes(range(256)),
            )
        )
        conn.execute(insert(tables["agent_tags"]).values(agent_id="a" * 32, tag="prod"))
        conn.execute(
            insert(tables["reports"]).values(
                agent_id="a" * 32,
                sequence=2**40,
                collected_at=1700000099.0,
                received_at=1700000100.123456,
                body=b"\x00\xffreport",
            )
        )
        conn.execute(
            insert(tables["operators"]).values(
                id="op1",
                name="admin",
                role="admin",
                token_hash="t" * 64,
                created_at=1700000000.0,
            )
        )
        conn.execute(
            insert(tables["alerts"]).values(
                id="al1",
                fingerprint="f" * 64,
                rule_key="servers/DiskLow",
                rule_name="DiskLow",
                agent_id="a" * 32,
                client="acme",
                site="hq",
                hostname="web01",
                series_labels='{"mountpoint": "/"}',
                labels="{}",
                state="firing",
                severity="warning",
                tier="L1",
                started_at=1700000050.0,
                last_active_at=1700000100.0,
                fired_at=1700000060.0,
                value=0.9512345678901234,
                annotations="{}",
                history='[{"at": 1700000060.0, "event": "firing"}]',
                updated_at=1700000100.0,
            )
        )


def test_the_first_releases_database_is_upgraded_with_its_data(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    try:
        _first_release_database(engine)
        assert current_state(engine).unversioned
        if engine.dialect.name == "postgresql":
            # A shared database is upgraded on the operator's word only.
            with pytest.raises(ConfigError, match=r"run `rmm-server migrate --db postgresql://"):
                open_store(empty_url)
            before, after = upgrade(engine)
            assert before.label == "unversioned (made before migrations)"
            assert after.at_head
    finally:
        engine.dispose()
    store = open_store(empty_url)  # SQLite: migrated here, as `serve` does
    try:
        assert drift(store.engine) == []
        agent = store.get_agent("a" * 32)
        assert agent is not None
        assert (agent.hostname, agent.tags, agent.last_sequence) == ("web01", ["prod"], 2**40)
        assert agent.last_seen == 1700000100.123456 and agent.summary == {"cpu_usage_ratio": 0.25}
        assert store.get_inventory("a" * 32) == bytes(range(256))
        assert store.latest_report_body("a" * 32) == b"\x00\xffreport"
        token = store.get_token("tok1")
        assert token is not None and (token.uses, token.max_uses) == (1, 5)
        operator = store.get_operator("op1")
        assert operator is not None and operator.created_by == ""  # the new column's default
        alert = AlertStore(store).get("al1")
        assert alert is not None and alert.state == "firing"
        assert alert.value == 0.9512345678901234 and alert.series_labels == {"mountpoint": "/"}
    finally:
        store.close()


def test_servers_starting_together_on_an_empty_database_migrate_once(empty_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            open_store(empty_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    engine = create_store_engine(empty_url)
    try:
        assert current_state(engine).at_head
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        assert rows == [(head_revision(),)]
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_a_sqlite_file_switched_to_wal_while_locked_is_waited_for(tmp_path: Path) -> None:
    """SQLite refuses to switch a file to WAL at once, without waiting, while another
    connection holds a lock on it: servers starting together on a new file hit that."""
    path = tmp_path / "rmm.sqlite3"
    locked = threading.Event()

    def hold_the_write_lock() -> None:
        holder = sqlite3.connect(path, isolation_level=None)  # rollback journal, not WAL
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("CREATE TABLE unrelated (id INTEGER)")
            locked.set()
            time.sleep(3.0)
            holder.execute("COMMIT")
        finally:
            holder.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        assert locked.wait(30)
        with pytest.raises(StorageError, match="database is locked"):
            current_state(engine, locked_wait=0)  # not waited for: refused at once
        assert current_state(engine).empty  # waited for the lock, then read
    finally:
        holder.join()
        engine.dispose()


def test_a_postgresql_database_behind_is_refused_until_migrated(pg_url: str) -> None:
    """SQLite is migrated at start (test_the_first_releases_database_... shows it); a shared
    PostgreSQL database waits for `rmm-server migrate`."""
    empty_url = pg_url
    engine = create_store_engine(empty_url)
    try:
        upgrade(engine, "0002")
    finally:
        engine.dispose()
    with pytest.raises(ConfigError) as refused:
        open_store(empty_url)
    assert f"at schema revision 0002, this server needs {head_revision()}" in str(refused.value)
    assert f"rmm-server migrate --db {empty_url}" in str(refused.value)

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "rmm-server"), "migrate", "--db", empty_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    check = migrate("--check")
    assert check.returncode == 1, check
    assert "schema at 0002" in check.stdout
    older = migrate("--to", "0001")
    assert older.returncode == 2 and "only upgrades" in older.stderr, older
    done = migrate()
    assert done.returncode == 0, done
    assert f"schema migrated from 0002 to {head_revision()}" in done.stdout
    assert migrate("--check").returncode == 0
    open_store(empty_url).close()


def test_a_database_from_a_newer_release_is_refused(engine: Engine, empty_url: str) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StorageError, match="revision 9999, which this release does not know"):
        open_store(empty_url)


def test_a_database_that_is_down_is_retried_then_named_with_the_fix() -> None:
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    url = "postgresql://rmm:hunter2@127.0.0.1:1/rmm"  # port 1: nothing listens there
    with pytest.raises(StorageError) as failed:
        wait_until_reachable(url, 10, sleep=sleep, clock=lambda: now[0])
    message = str(failed.value)
    assert "hunter2" not in message and mask_url(url) in message
    assert "--db-wait" in message and "unreachable after" in message
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0] and sum(pauses) == pytest.approx(10)


def test_the_frozen_first_release_is_the_first_releases_schema(tmp_path: Path) -> None:
    """first_release.py is a copy of schema.py at commit f9bc941; a history without that commit
    (a shallow clone) cannot check it."""
    shown = subprocess.run(
        ["git", "show", "f9bc941:rmm_server/storage/schema.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if shown.returncode != 0:
        pytest.skip(f"commit f9bc941 is not in this clone's history: {shown.stderr.strip()}")
    namespace: dict[str, Any] = {"__name__": "first_release_at_f9bc941"}
    exec(compile(shown.stdout, "f9bc941:schema.py", "exec"), namespace)
    engine = create_store_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        with engine.begin() as conn:
            namespace["metadata"].create_all(conn)
        assert drift(engine, first_release.metadata) == []
    finally:
        engine.dispose()


def test_a_wrong_database_name_is_not_waited_for() -> None:
    """PostgreSQL answering "no such database" will not change its mind: no retries."""
    url = databases.database_url("rmm_no_such_database")
    pauses: list[float] = []
    with pytest.raises(StorageError) as failed:
        wait_until_reachable(url, 60, sleep=pauses.append)
    assert pauses == []
    assert 'database "rmm_no_such_database" does not exist' in str(failed.value)
    assert "fix --db" in str(failed.value)
