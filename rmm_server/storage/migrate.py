"""Schema migrations: Alembic, configured here (no alembic.ini), with the revisions shipped in
rmm_server/storage/migrations/versions/; and what a server does about them at start.

A new column or table in schema.py needs a revision. Make one with
    .venv/bin/python -m rmm_server.storage.migrations revision "what changed"
(it compares a database at head with schema.py and writes the difference), then read it:
columns added to existing tables must be nullable or have a server_default.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from rmm_common.errors import ConfigError, StorageError
from rmm_server.storage.migrations import first_release

log = logging.getLogger(__name__)
# Alembic narrates every step at INFO; the server logs one line per migration itself.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Not Alembic's default name, so that a database shared with another Alembic-managed
# application keeps both applications' revisions apart.
VERSION_TABLE = "rmm_alembic_version"
# pg_advisory_xact_lock key every rmm server shares: one migrates, the others wait and then find
# the schema at head ("rmm_migr" as a big-endian 64-bit integer).
ADVISORY_LOCK_KEY = int.from_bytes(b"rmm_migr", "big") - 2**63


def _default_text(value: str) -> str:
    """A server default as the databases echo it, reduced to its value: "('')" on SQLite,
    "''::character varying" on PostgreSQL and the metadata's '' are all the empty string."""
    value = value.strip()
    while value.startswith("(") and value.endswith(")"):
        value = value[1:-1].strip()
    value = re.sub(r"::[\w ]+$", "", value)
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1].replace("''", "'")
    return value


def _same_server_default(
    _context: Any,
    _inspected_column: Any,
    _metadata_column: Any,
    inspected_default: str | None,
    _metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    # Alembic's own comparison reports an empty-string default on SQLite as changed; False
    # here means "the same", None leaves the decision to Alembic.
    if inspected_default is None or rendered_metadata_default is None:
        return None
    if _default_text(inspected_default) == _default_text(rendered_metadata_default):
        return False
    return None


def compare_options() -> dict[str, Any]:
    """Alembic's autogenerate comparison settings, shared by revisions and the drift test."""
    return {
        "version_table": VERSION_TABLE,
        "compare_type": True,
        "compare_server_default": _same_server_default,
    }


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic configuration for the shipped revisions, running on `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "rev%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    """Return the shipped revisions."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Return the revision this code's schema.py corresponds to."""
    head = scripts().get_current_head()
    if head is None:  # pragma: no cover - the package ships revisions
        raise RuntimeError(f"no migration revisions in {MIGRATIONS_DIR / 'versions'}")
    return head


def mask_url(url: str | URL) -> str:
    """Return `url` as operators write it (postgresql://), its password hidden, for logs and
    messages."""
    try:
        parsed = make_url(url)
    except Exception:  # a URL SQLAlchemy cannot parse holds no password it could hide
        return str(url)
    if parsed.drivername == "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def engine_url(url: str) -> str:
    """Map the URLs operators write to the driver this package ships (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this code."""

    current: str | None  # the revision in the version table; None when there is none
    head: str
    unversioned: bool  # tables but no version table: made before migrations (first release)

    @property
    def empty(self) -> bool:
        return self.current is None and not self.unversioned

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def label(self) -> str:
        """The current revision as people read it."""
        if self.current is not None:
            return self.current
        return "unversioned (made before migrations)" if self.unversioned else "empty"


def read_state(conn: Connection) -> SchemaState:
    """Read which revision the database at `conn` is at."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    current = context.get_current_revision()
    unversioned = False
    if current is None:
        tables = set(inspect(conn).get_table_names())
        unversioned = bool(tables & set(first_release.metadata.tables))
    return SchemaState(current=current, head=head_revision(), unversioned=unversioned)


def _known(revision: str) -> bool:
    try:
        return scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """An engine whose transactions really begin (BEGIN IMMEDIATE) before DDL.

    Python's sqlite3 only opens a transaction before DML, so Alembic's DDL would otherwise
    commit statement by statement, and a migration that fails half-way would stay half-done.
    IMMEDIATE also takes the write lock at once, so two processes migrating one file take turns.
    """
    migration_engine = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migration_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(migration_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migration_engine


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for a whole migration, holding the lock that serializes migrators."""
    if engine.dialect.name == "sqlite":
        sqlite_engine = _sqlite_migration_engine(engine)
        try:
            with sqlite_engine.begin() as conn:
                yield conn
        finally:
            sqlite_engine.dispose()
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Held until commit: servers starting together on an empty database queue here,
            # and each one after the first finds the schema at head.
            conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        yield conn


def upgrade(engine: Engine, target: str = "head") -> tuple[SchemaState, SchemaState]:
    """Migrate the database up to `target` in one transaction; return the states before and
    after. A database made before migrations (no version table) is taken from the first
    release's schema."""
    try:
        with _migration_transaction(engine) as conn:
            before = read_state(conn)
            if before.current is not None and not _known(before.current):
                raise StorageError(_unknown_revision_message(before, engine))
            if target != before.current and _is_older(target, before):
                raise StorageError(
                    f"{mask_url(engine.url)} is at schema revision {before.current}, newer than "
                    f"{target}: this command only upgrades (to go back, restore a backup)"
                )
            try:
                command.upgrade(alembic_config(conn), target)
            except CommandError as exc:
                raise StorageError(
                    f"cannot migrate {mask_url(engine.url)} from {before.label} to "
                    f"{target}: {exc} (known revisions: {', '.join(_revision_ids())}; this "
                    "command only upgrades: to go back, restore a backup)"
                ) from exc
            after = read_state(conn)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip()
        raise StorageError(
            f"migrating the schema of {mask_url(engine.url)} failed and nothing was changed "
            f"(a migration is one transaction): {reason}"
        ) from exc
    return before, after


# Servers starting together on a new SQLite file all switch it to WAL as they connect, and
# SQLite refuses such a switch at once ("database is locked", without waiting out busy_timeout)
# while another connection holds a lock on the file. That passes in moments, so it is retried.
SQLITE_LOCKED_WAIT_SECONDS = 60.0


def _sqlite_locked(engine: Engine, exc: SQLAlchemyError) -> bool:
    return engine.dialect.name == "sqlite" and "database is locked" in str(
        getattr(exc, "orig", None) or exc
    )


def current_state(
    engine: Engine,
    *,
    locked_wait: float = SQLITE_LOCKED_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SchemaState:
    """Read the database's schema state (StorageError when it cannot be reached); a SQLite
    file another process holds locked is retried for up to `locked_wait` seconds."""
    deadline = clock() + locked_wait
    delay = 0.05
    while True:
        try:
            with engine.connect() as conn:
                return read_state(conn)
        except SQLAlchemyError as exc:
            if _sqlite_locked(engine, exc) and clock() < deadline:
                sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            raise StorageError(
                f"cannot read the schema revision of {mask_url(engine.url)}: "
                f"{getattr(exc, 'orig', exc)}"
            ) from exc


def _is_older(target: str, state: SchemaState) -> bool:
    """Say whether `target` is a revision the database has passed already."""
    if state.current is None:
        return False
    try:
        return any(s.revision == target for s in scripts().walk_revisions("base", state.current))
    except CommandError:
        return False


def _revision_ids() -> list[str]:
    return [script.revision for script in reversed(list(scripts().walk_revisions()))]


def _unknown_revision_message(state: SchemaState, engine: Engine) -> str:
    return (
        f"the database {mask_url(engine.url)} is at schema revision {state.current}, which "
        f"this release does not know (a newer release migrated it; this one knows up to "
        f"{state.head}): run the newer release, or restore the backup taken before upgrading"
    )


def prepare_schema(engine: Engine) -> None:
    """Bring the schema to head where that is safe to do unasked, else refuse to go on.

    The embedded SQLite database belongs to this server alone, so it is migrated. A shared
    (PostgreSQL) database is migrated only when empty (a first start); otherwise it must be at
    head already, because replicas of the older release may still be running against it and
    upgrades are the operator's decision (`rmm-server migrate`).
    """
    url = mask_url(engine.url)
    state = current_state(engine)  # a plain read: the usual start finds the schema at head
    if state.at_head:
        return
    if state.current is not None and not _known(state.current):
        raise StorageError(_unknown_revision_message(state, engine))
    if engine.dialect.name != "sqlite" and not state.empty:
        raise ConfigError(
            f"the database {url} is at schema revision {state.label}, this server needs "
            f"{state.head}: back it up, then run `rmm-server migrate --db {url}` "
            "(docs/deployment.md, 'Upgrading')"
        )
    started = time.perf_counter()
    before, after = upgrade(engine)
    if before.current != after.current:
        log.info(
            "database schema migrated from %s to %s in %.2fs",
            before.label,
            after.label,
            time.perf_counter() - started,
            extra={"db": url, "from_revision": before.label, "to_revision": after.label},
        )


# PostgreSQL answers FATAL both when it is not ready yet and when the URL is wrong: only the
# former is worth waiting for.
_TRANSIENT_FATAL = ("starting up", "shutting down", "recovery mode", "too many clients")


def _refused_for_good(detail: str) -> bool:
    """Say whether the server answered and refused for a reason time does not fix (unknown
    database or user, wrong password, no pg_hba.conf entry)."""
    return "FATAL:" in detail and not any(word in detail for word in _TRANSIENT_FATAL)


def wait_until_reachable(
    url: str,
    wait_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Connect to the database at `url`, retrying with backoff for up to `wait_seconds`.

    A database that starts after the server (a reboot, a failover) is waited for with a log line
    per attempt, instead of the server exiting and its service manager restarting it in a loop.
    """
    engine = create_engine(engine_url(url), poolclass=NullPool)
    masked = mask_url(url)
    deadline = clock() + wait_seconds
    delay = 0.5
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                with engine.connect():
                    pass
            except OperationalError as exc:
                detail = str(exc.orig or exc).strip()
                reason = " ".join(line.strip() for line in detail.splitlines())
                if _refused_for_good(detail):
                    raise StorageError(
                        f"database {masked} refused the connection: {reason}; fix --db (or "
                        "RMM_DB): the user, its password, the database name, or pg_hba.conf"
                    ) from exc
                left = deadline - clock()
                if left <= 0:
                    raise StorageError(
                        f"database {masked} unreachable after {attempt} attempt(s) over "
                        f"{wait_seconds:g}s: {reason}; start it or fix --db (or RMM_DB), or wait "
                        "longer with --db-wait"
                    ) from exc
                pause = min(delay, left)
                log.warning(
                    "database %s unreachable (attempt %d): %s; retrying in %.1fs",
                    masked,
                    attempt,
                    reason,
                    pause,
                    extra={"db": masked, "attempt": attempt, "retry_in_seconds": pause},
                )
                sleep(pause)
                delay = min(delay * 2, 15.0)
                continue
            if attempt > 1:
                log.info("database %s reachable after %d attempts", masked, attempt)
            return
    finally:
        engine.dispose()
