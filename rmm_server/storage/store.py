"""The one storage interface. Synchronous SQLAlchemy Core; the asyncio server calls it from a
worker thread, and batches report writes so that one transaction carries many reports."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from rmm_common.errors import AlreadyExists, StorageError
from rmm_server.storage import migrate, schema

ONLINE_INTERVALS = 3  # an agent is offline once it missed this many report intervals


@dataclass(slots=True)
class EnrollmentTokenRecord:
    id: str
    secret_hash: str
    client: str
    site: str
    created_at: float
    created_by: str
    expires_at: float | None = None
    max_uses: int | None = None
    uses: int = 0
    revoked_at: float | None = None

    def state(self, now: float) -> str:
        """Return active, expired, used-up or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used-up"
        return "active"


@dataclass(slots=True)
class AgentRecord:
    id: str
    credential_hash: str
    client: str
    site: str
    enrolled_at: float
    tags: list[str] = field(default_factory=list)
    hostname: str = ""
    os: str = ""
    os_name: str = ""
    os_version: str = ""
    kernel: str = ""
    arch: str = ""
    agent_version: str = ""
    enrollment_token_id: str | None = None
    last_seen: float | None = None
    interval_seconds: int = 30
    first_sequence: int | None = None
    last_sequence: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    inventory_hash: str = ""
    inventory_updated_at: float | None = None
    revoked_at: float | None = None
    rotate_requested_at: float | None = None
    pending_credential_hash: str | None = None

    def online(self, now: float) -> bool:
        """Say whether the agent reported within its last few intervals (never once revoked)."""
        if self.last_seen is None or self.revoked_at is not None:
            return False
        return now - self.last_seen <= ONLINE_INTERVALS * max(self.interval_seconds, 1)


@dataclass(frozen=True, slots=True)
class AgentName:
    """What a name lookup reads of an agent (Store.agent_names): no credential, no state."""

    id: str
    client: str
    site: str
    hostname: str  # as the agent reports it: never an identity
    revoked_at: float | None = None


@dataclass(slots=True)
class OperatorRecord:
    id: str
    name: str
    role: str
    token_hash: str
    created_at: float
    revoked_at: float | None = None
    created_by: str = ""


@dataclass(slots=True)
class StoredReport:
    """One report ready to be written, with what it changes on its agent's row."""

    agent_id: str
    sequence: int
    collected_at: float
    received_at: float
    body: bytes  # compressed protobuf
    host: dict[str, str]
    agent_version: str
    interval_seconds: int
    summary: dict[str, Any]
    inventory_hash: str = ""
    inventory: bytes | None = None  # compressed JSON, only when the report carried it


@dataclass(frozen=True, slots=True)
class AgentQuery:
    client: str = ""
    site: str = ""
    tag: str = ""
    status: str = ""  # "", online, offline
    limit: int = 500
    offset: int = 0


# Not the inventory (read on its own), nor the hostname lookup's key (storage/agent_lookup.py).
_AGENT_COLUMNS = [
    c for c in schema.agents.c if c.name not in ("inventory", "hostname_key", "hostname_keyed")
]


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (operator queries, /metrics start-up) run beside the single writer;
    # synchronous=NORMAL in WAL mode still never corrupts and loses at most the last commit on
    # power loss, not on a process crash.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """Return the engine for `url` (sqlite:///path or postgresql://), without touching it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    return create_engine(migrate.engine_url(url), pool_pre_ping=True)


def open_store(url: str) -> Store:
    """Open the database at `url` (sqlite:///path or postgresql://), its schema migrated where
    that is safe unasked (migrate.prepare_schema), or raise ConfigError saying what to run."""
    engine = create_store_engine(url)
    try:
        migrate.prepare_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


def sqlite_url(data_dir: Path) -> str:
    """Return the URL of the embedded database inside `data_dir`."""
    return f"sqlite:///{data_dir / 'rmm.sqlite3'}"


class Store:
    """Every read and write of the server's durable state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._upserts: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}

    @contextmanager
    def transaction(self, what: str) -> Iterator[Connection]:
        """Run a block in one transaction; a database failure becomes StorageError naming `what`."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StorageError(f"database unavailable while trying to {what}: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error while trying to {what}: {exc}") from exc

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def text_order(self, column: Any) -> Any:
        """Return `column` to sort by its characters' code points, as SQLite does, whatever
        collation a PostgreSQL database was created with (en_US would put "alpha" before
        "Beta"), so that lists and their pages come in one order on both."""
        return column.collate("C") if self.dialect == "postgresql" else column

    def upsert(self, table: Table, keys: Sequence[str], columns: Sequence[str]) -> Any:
        """Return an INSERT that, where a row with the same `keys` exists, sets its `columns`
        instead: one statement, so two writers of one row cannot both find it missing
        and both insert (a check-then-insert fails the second with an IntegrityError on
        PostgreSQL). Built once per shape: it sits on the report path."""
        shape = (table.name, tuple(keys), tuple(columns))
        statement = self._upserts.get(shape)
        if statement is None:
            dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            new_row = dialect_insert(table)
            statement = new_row.on_conflict_do_update(
                index_elements=[table.c[key] for key in keys],
                set_={name: new_row.excluded[name] for name in columns},
            )
            self._upserts[shape] = statement
        return statement

    def _insert_ignore(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table).on_conflict_do_nothing()

    # --- operators -------------------------------------------------------------------------

    def count_operators(self) -> int:
        """Return how many operators exist (revoked ones included)."""
        with self.transaction("count operators") as conn:
            return int(
                conn.execute(select(func.count()).select_from(schema.operators)).scalar_one()
            )

    def create_operator(self, record: OperatorRecord) -> None:
        """Add an operator; raise AlreadyExists when the name is taken."""
        with self.transaction(f"create operator {record.name}") as conn:
            taken = conn.execute(
                select(schema.operators.c.id).where(schema.operators.c.name == record.name)
            ).first()
            if taken:
                raise AlreadyExists(f"operator {record.name!r} exists already")
            try:
                conn.execute(insert(schema.operators).values(**record_values(record)))
            except IntegrityError as exc:
                # Another transaction took the name between the check and the insert (the
                # check sees only committed rows on PostgreSQL).
                raise AlreadyExists(f"operator {record.name!r} exists already") from exc

    def get_operator(self, operator_id: str) -> OperatorRecord | None:
        """Return the operator with this id, or None."""
        with self.transaction("read an operator") as conn:
            row = (
                conn.execute(select(schema.operators).where(schema.operators.c.id == operator_id))
                .mappings()
                .first()
            )
        return OperatorRecord(**row) if row else None

    # --- enrollment tokens -----------------------------------------------------------------

    def create_token(self, record: EnrollmentTokenRecord) -> None:
        """Store a new enrollment token (its secret's hash only)."""
        with self.transaction("create an enrollment token") as conn:
            conn.execute(insert(schema.enrollment_tokens).values(**record_values(record)))

    def get_token(self, token_id: str) -> EnrollmentTokenRecord | None:
        """Return the enrollment token with this id, or None."""
        with self.transaction("read an enrollment token") as conn:
            row = (
                conn.execute(
                    select(schema.enrollment_tokens).where(
                        schema.enrollment_tokens.c.id == token_id
                    )
                )
                .mappings()
                .first()
            )
        return EnrollmentTokenRecord(**row) if row else None

    def list_tokens(self) -> list[EnrollmentTokenRecord]:
        """Return every enrollment token, newest first."""
        with self.transaction("list enrollment tokens") as conn:
            rows = conn.execute(
                select(schema.enrollment_tokens).order_by(
                    schema.enrollment_tokens.c.created_at.desc()
                )
            ).mappings()
            return [EnrollmentTokenRecord(**row) for row in rows]

    def revoke_token(self, token_id: str, now: float) -> EnrollmentTokenRecord | None:
        """Mark a token revoked (idempotent); return it, or None when unknown."""
        table = schema.enrollment_tokens
        with self.transaction(f"revoke enrollment token {token_id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == token_id, table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return self.get_token(token_id)

    def enroll_agent(self, token_id: str, now: float, agent: AgentRecord) -> bool:
        """Use one use of an active token and create `agent`, atomically.

        Return False (and change nothing) when the token is not active any more; the caller
        reads the token to say why.
        """
        table = schema.enrollment_tokens
        with self.transaction("enroll an agent") as conn:
            used = conn.execute(
                update(table)
                .where(
                    table.c.id == token_id,
                    table.c.revoked_at.is_(None),
                    or_(table.c.expires_at.is_(None), table.c.expires_at > now),
                    or_(table.c.max_uses.is_(None), table.c.uses < table.c.max_uses),
                )
                .values(uses=table.c.uses + 1)
            )
            if used.rowcount != 1:
                return False
            values = record_values(agent)
            tags = values.pop("tags")
            values["summary"] = json.dumps(values["summary"])
            conn.execute(insert(schema.agents).values(**values))
            if tags:
                conn.execute(
                    insert(schema.agent_tags),
                    [{"agent_id": agent.id, "tag": tag} for tag in tags],
                )
        return True

    # --- agents ----------------------------------------------------------------------------

    def _agent_from_row(self, row: Any, tags: list[str]) -> AgentRecord:
        values = dict(row)
        values["summary"] = json.loads(values["summary"] or "{}")
        return AgentRecord(tags=tags, **values)

    def _tags_for(self, conn: Connection, agent_ids: Sequence[str]) -> dict[str, list[str]]:
        tags: dict[str, list[str]] = {agent_id: [] for agent_id in agent_ids}
        if not agent_ids:
            return tags
        rows = conn.execute(
            select(schema.agent_tags.c.agent_id, schema.agent_tags.c.tag)
            .where(schema.agent_tags.c.agent_id.in_(agent_ids))
            .order_by(self.text_order(schema.agent_tags.c.tag))
        )
        for agent_id, tag in rows:
            tags[agent_id].append(tag)
        return tags

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        """Return the agent with exactly this id, or None."""
        with self.transaction("read an agent") as conn:
            row = (
                conn.execute(select(*_AGENT_COLUMNS).where(schema.agents.c.id == agent_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            return self._agent_from_row(row, self._tags_for(conn, [agent_id])[agent_id])

    def find_agents(self, prefix: str, limit: int = 10) -> list[AgentRecord]:
        """Return agents whose id starts with `prefix`, in any case; never by hostname.

        A hostname is text the agent reports and is resolved by rmm_server.selection from
        agent_names(), never here: an agent naming itself after another's id must not match.
        """
        # A prefix compared, not LIKEd: LIKE ignores case on SQLite and not on PostgreSQL, and
        # this needs no escaping of % and _.
        prefix = prefix.lower()
        agents = schema.agents
        with self.transaction("find agents") as conn:
            rows = list(
                conn.execute(
                    select(*_AGENT_COLUMNS)
                    .where(func.lower(func.substr(agents.c.id, 1, len(prefix))) == prefix)
                    .order_by(agents.c.id)
                    .limit(limit)
                ).mappings()
            )
            tags = self._tags_for(conn, [row["id"] for row in rows])
            return [self._agent_from_row(row, tags[row["id"]]) for row in rows]

    def agent_names(self) -> list[AgentName]:
        """Return every agent's id, client, site, hostname and revocation, for name lookups.

        Hostnames are compared with their look-alikes (rmm_server.selection), which SQL cannot
        do, so the few columns of every agent are read and compared in Python.
        """
        agents = schema.agents
        columns = (agents.c.id, agents.c.client, agents.c.site, agents.c.hostname)
        with self.transaction("read agent names") as conn:
            rows = conn.execute(select(*columns, agents.c.revoked_at).order_by(agents.c.id))
            return [
                AgentName(row.id, row.client, row.site, row.hostname or "", row.revoked_at)
                for row in rows
            ]

    def list_agents(self, query: AgentQuery, now: float) -> tuple[list[AgentRecord], int]:
        """Return one page of agents matching `query`, and how many match in all."""
        agents = schema.agents
        conditions: list[Any] = []
        if query.client:
            conditions.append(agents.c.client == query.client)
        if query.site:
            conditions.append(agents.c.site == query.site)
        if query.tag:
            conditions.append(
                exists().where(
                    schema.agent_tags.c.agent_id == agents.c.id,
                    schema.agent_tags.c.tag == query.tag,
                )
            )
        online = and_(
            agents.c.last_seen.is_not(None),
            agents.c.last_seen + ONLINE_INTERVALS * agents.c.interval_seconds >= now,
            agents.c.revoked_at.is_(None),
        )
        if query.status == "online":
            conditions.append(online)
        elif query.status == "offline":
            conditions.append(~online)
        where = and_(True, *conditions)
        with self.transaction("list agents") as conn:
            total = int(
                conn.execute(select(func.count()).select_from(agents).where(where)).scalar_one()
            )
            rows = list(
                conn.execute(
                    select(*_AGENT_COLUMNS)
                    .where(where)
                    .order_by(
                        *(
                            self.text_order(column)
                            for column in (agents.c.client, agents.c.site, agents.c.hostname)
                        ),
                        agents.c.id,
                    )
                    .limit(query.limit)
                    .offset(query.offset)
                ).mappings()
            )
            tags = self._tags_for(conn, [row["id"] for row in rows])
        return [self._agent_from_row(row, tags[row["id"]]) for row in rows], total

    def place_agent(
        self, agent_id: str, client: str, site: str, tags: Sequence[str]
    ) -> AgentRecord | None:
        """Set an agent's client, site and tags (the whole set), atomically; return the record
        as stored, or None when there is no such agent."""
        table = schema.agents
        with self.transaction("move or retag an agent") as conn:
            moved = conn.execute(
                update(table).where(table.c.id == agent_id).values(client=client, site=site)
            )
            if moved.rowcount != 1:
                return None
            conn.execute(delete(schema.agent_tags).where(schema.agent_tags.c.agent_id == agent_id))
            if tags:
                conn.execute(
                    insert(schema.agent_tags),
                    [{"agent_id": agent_id, "tag": tag} for tag in tags],
                )
        return self.get_agent(agent_id)

    def revoke_agent(self, agent_id: str, now: float) -> float | None:
        """Mark an agent revoked (idempotent); return when it was revoked, None when unknown."""
        table = schema.agents
        with self.transaction("revoke an agent") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == agent_id, table.c.revoked_at.is_(None))
                .values(revoked_at=now, pending_credential_hash=None, rotate_requested_at=None)
            )
            value = conn.execute(
                select(table.c.revoked_at).where(table.c.id == agent_id)
            ).scalar_one_or_none()
        return float(value) if value is not None else None

    def request_rotation(self, agent_id: str, now: float) -> bool:
        """Ask a (not revoked) agent to replace its credential; False when there is none."""
        table = schema.agents
        with self.transaction("request a credential rotation") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.id == agent_id, table.c.revoked_at.is_(None))
                .values(rotate_requested_at=now)
            )
            return result.rowcount == 1

    def set_pending_credential(self, agent_id: str, credential_hash: str) -> bool:
        """Store a new credential's hash beside the current one; False when revoked or unknown."""
        table = schema.agents
        with self.transaction("store a new agent credential") as conn:
            result = conn.execute(
                update(table)
                .where(table.c.id == agent_id, table.c.revoked_at.is_(None))
                .values(pending_credential_hash=credential_hash)
            )
            return result.rowcount == 1

    def promote_credential(self, agent_id: str, credential_hash: str) -> bool:
        """Make the pending credential the only one (the old stops working); False if it is not
        pending any more."""
        table = schema.agents
        with self.transaction("replace an agent credential") as conn:
            result = conn.execute(
                update(table)
                .where(
                    table.c.id == agent_id,
                    table.c.pending_credential_hash == credential_hash,
                    table.c.revoked_at.is_(None),
                )
                .values(
                    credential_hash=credential_hash,
                    pending_credential_hash=None,
                    rotate_requested_at=None,
                )
            )
            return result.rowcount == 1

    def all_agents(self) -> list[AgentRecord]:
        """Return every agent (for the server's start-up)."""
        records, _total = self.list_agents(AgentQuery(limit=1_000_000_000), time.time())
        return records

    def get_inventory(self, agent_id: str) -> bytes | None:
        """Return an agent's compressed inventory JSON, or None."""
        with self.transaction("read an inventory") as conn:
            value = conn.execute(
                select(schema.agents.c.inventory).where(schema.agents.c.id == agent_id)
            ).scalar_one_or_none()
        return bytes(value) if value is not None else None

    # --- reports ---------------------------------------------------------------------------

    def write_reports(self, batch: Sequence[StoredReport]) -> list[StoredReport]:
        """Store a batch of reports in one transaction; a report stored before is skipped.

        Return the reports that were not stored because another body is stored under their
        (agent, sequence): a reused sequence, which the caller must not acknowledge as stored.
        """
        if not batch:
            return []
        with self.transaction(f"store {len(batch)} reports") as conn:
            inserted = _insert_reports(conn, batch, self.dialect)
            # Fewer rows than reports (rare: a redelivery racing its first copy, or a reused
            # sequence): compare what is stored now, in this transaction, with what was sent.
            conflicts = _stored_elsewhere(conn, batch) if inserted != len(batch) else []
            refused = {id(r) for r in conflicts}
            newest, oldest, inventory = _per_agent([r for r in batch if id(r) not in refused])
            _update_agents(conn, newest, oldest, self.dialect)
            if inventory:
                conn.execute(
                    _INVENTORY_UPDATE,
                    [
                        {
                            "b_id": r.agent_id,
                            "b_inventory": r.inventory,
                            "b_hash": r.inventory_hash,
                            "b_at": r.received_at,
                        }
                        for r in inventory.values()
                    ],
                )
        return conflicts

    def report_body(self, agent_id: str, sequence: int) -> bytes | None:
        """Return the compressed body stored for (agent, sequence), or None."""
        reports = schema.reports
        with self.transaction("read a report") as conn:
            body = conn.execute(
                select(reports.c.body).where(
                    reports.c.agent_id == agent_id, reports.c.sequence == sequence
                )
            ).scalar_one_or_none()
        return bytes(body) if body is not None else None

    def latest_report_bodies(self) -> Iterator[tuple[str, bytes]]:
        """Yield (agent id, compressed body) of each agent's latest stored report."""
        reports, agents = schema.reports, schema.agents
        with self.transaction("read the latest reports") as conn:
            rows = conn.execute(
                select(reports.c.agent_id, reports.c.body).join(
                    agents,
                    and_(
                        agents.c.id == reports.c.agent_id,
                        agents.c.last_sequence == reports.c.sequence,
                    ),
                )
            )
            for agent_id, body in rows:
                yield agent_id, bytes(body)

    def latest_report_body(self, agent_id: str) -> bytes | None:
        """Return the compressed body of one agent's latest report, or None."""
        reports, agents = schema.reports, schema.agents
        with self.transaction("read a report") as conn:
            body = conn.execute(
                select(reports.c.body)
                .join(agents, agents.c.id == reports.c.agent_id)
                .where(reports.c.agent_id == agent_id, reports.c.sequence == agents.c.last_sequence)
            ).scalar_one_or_none()
        return bytes(body) if body is not None else None

    def report_stats(self, agent_id: str) -> tuple[int | None, int | None, int]:
        """Return (first, last, count) of the sequences stored for an agent."""
        reports = schema.reports
        with self.transaction("count reports") as conn:
            first, last, count = conn.execute(
                select(
                    func.min(reports.c.sequence),
                    func.max(reports.c.sequence),
                    func.count(),
                ).where(reports.c.agent_id == agent_id)
            ).one()
        return first, last, int(count)

    def prune_reports(self, received_before: float) -> int:
        """Delete raw reports received before a time, but never an agent's latest one."""
        reports, agents = schema.reports, schema.agents
        with self.transaction("prune old reports") as conn:
            result = conn.execute(
                delete(reports).where(
                    reports.c.received_at < received_before,
                    ~exists().where(
                        agents.c.id == reports.c.agent_id,
                        agents.c.last_sequence == reports.c.sequence,
                    ),
                )
            )
            return int(result.rowcount or 0)


# One compiled statement each, run with executemany over the batch: per-agent statements built
# in Python were the writer's main cost.
_HOST_COLUMNS = ("hostname", "os", "os_name", "os_version", "kernel", "arch")
_agents = schema.agents
_INVENTORY_UPDATE = (
    update(_agents)
    .where(_agents.c.id == bindparam("b_id"))
    .values(
        inventory=bindparam("b_inventory"),
        inventory_hash=bindparam("b_hash"),
        inventory_updated_at=bindparam("b_at"),
    )
)


# One statement per chunk of rows, not one statement (or one step of it) per row. Report writes
# run in a worker thread, and the database driver gives up the GIL around every step or round
# trip; getting it back while the event loop runs takes up to the interpreter's switch interval
# (5 ms). Three statements per report made a batch that takes 5 ms alone take 70-150 ms beside
# a busy event loop on SQLite (measured), and 1.2-1.5 s for 400 reports on PostgreSQL: the batch
# writer, not the event loop, set the ingest rate. UPDATE ... FROM (VALUES ...) needs SQLite
# 3.33 (2020); PostgreSQL has it. The VALUES columns are named column1, column2... (SQLite's own
# names, given explicitly on PostgreSQL), and typed by casts on PostgreSQL, where a parameter
# in VALUES has no column to take its type from.
_CHUNK_ROWS = 200  # 200 x 12 parameters: far below SQLite's 32,766 and PostgreSQL's 65,535
# The agent's newest report: (id, sequence, seen, summary, interval, version, host columns...).
_LATEST_TYPES: tuple[str, ...] = ("text", "bigint", "double precision", "text", "integer")
_LATEST_TYPES += ("text",) * (1 + len(_HOST_COLUMNS))
_LATEST_SET = ", ".join(
    [
        "last_sequence = v.column2",
        "last_seen = v.column3",
        "summary = v.column4",
        "interval_seconds = v.column5",
        "agent_version = v.column6",
        # An empty host field (a collector that failed) keeps what the agent said before.
        *(
            f"{column} = coalesce(nullif(v.column{7 + index}, ''), {_agents.name}.{column})"
            for index, column in enumerate(_HOST_COLUMNS)
        ),
    ]
)
_FIRST_TYPES = ("text", "bigint")


def _values(dialect: str, rows: int, types: Sequence[str]) -> str:
    """Return `(VALUES (...), ...) AS v` for `rows` rows of `types` in the driver's style."""
    if dialect == "sqlite":
        row = "(" + ",".join("?" * len(types)) + ")"
        alias = "v"
    else:
        row = "(" + ",".join(f"%s::{kind}" for kind in types) + ")"
        alias = "v(" + ",".join(f"column{n + 1}" for n in range(len(types))) + ")"
    return "(VALUES " + ",".join([row] * rows) + f") AS {alias}"


def _insert_reports(conn: Connection, batch: Sequence[StoredReport], dialect: str) -> int:
    """Insert the reports not stored yet, in few statements; return how many were new."""
    mark = "?" if dialect == "sqlite" else "%s"
    row = "(" + ",".join([mark] * 5) + ")"
    inserted = 0
    for start in range(0, len(batch), _CHUNK_ROWS):
        chunk = batch[start : start + _CHUNK_ROWS]
        inserted += conn.exec_driver_sql(
            f"INSERT INTO {schema.reports.name} "
            "(agent_id, sequence, collected_at, received_at, body) VALUES "
            + ",".join([row] * len(chunk))
            + " ON CONFLICT DO NOTHING",
            tuple(
                value
                for r in chunk
                for value in (r.agent_id, r.sequence, r.collected_at, r.received_at, r.body)
            ),
        ).rowcount
    return inserted


def _update_agents(
    conn: Connection, newest: dict[str, StoredReport], oldest: dict[str, int], dialect: str
) -> None:
    """Make each agent's newest report its latest state (never an older one over a newer:
    a redelivery) and lower its first sequence to its oldest, in few statements."""
    agents = _agents.name
    latest = list(newest.values())
    for start in range(0, len(latest), _CHUNK_ROWS):
        chunk = latest[start : start + _CHUNK_ROWS]
        params: list[Any] = []
        for report in chunk:
            params += (
                report.agent_id,
                report.sequence,
                report.received_at,
                json.dumps(report.summary),
                report.interval_seconds,
                report.agent_version,
            )
            params += (report.host.get(column, "") for column in _HOST_COLUMNS)
        conn.exec_driver_sql(
            f"UPDATE {agents} SET {_LATEST_SET} FROM "
            + _values(dialect, len(chunk), _LATEST_TYPES)
            + f" WHERE {agents}.id = v.column1 AND {agents}.last_sequence < v.column2",
            tuple(params),
        )
    firsts = list(oldest.items())
    for start in range(0, len(firsts), _CHUNK_ROWS):
        pairs = firsts[start : start + _CHUNK_ROWS]
        conn.exec_driver_sql(
            f"UPDATE {agents} SET first_sequence = v.column2 FROM "
            + _values(dialect, len(pairs), _FIRST_TYPES)
            + f" WHERE {agents}.id = v.column1 AND "
            f"({agents}.first_sequence IS NULL OR {agents}.first_sequence > v.column2)",
            tuple(value for pair in pairs for value in pair),
        )


def _stored_elsewhere(conn: Connection, batch: Sequence[StoredReport]) -> list[StoredReport]:
    """Return the reports of `batch` whose (agent, sequence) holds another body in the table."""
    reports = schema.reports
    stored: dict[tuple[str, int], bytes] = {}
    for agent_id in {r.agent_id for r in batch}:
        numbers = [r.sequence for r in batch if r.agent_id == agent_id]
        rows = conn.execute(
            select(reports.c.sequence, reports.c.body).where(
                reports.c.agent_id == agent_id, reports.c.sequence.in_(numbers)
            )
        )
        stored.update(((agent_id, int(seq)), bytes(body)) for seq, body in rows)
    return [r for r in batch if stored.get((r.agent_id, r.sequence), r.body) != r.body]


def _per_agent(
    batch: Sequence[StoredReport],
) -> tuple[dict[str, StoredReport], dict[str, int], dict[str, StoredReport]]:
    """Return, per agent in one pass: its newest report, its oldest sequence, and its newest
    report that carried an inventory."""
    newest: dict[str, StoredReport] = {}
    oldest: dict[str, int] = {}
    inventory: dict[str, StoredReport] = {}
    for report in batch:
        agent = report.agent_id
        if agent not in newest or report.sequence > newest[agent].sequence:
            newest[agent] = report
        if agent not in oldest or report.sequence < oldest[agent]:
            oldest[agent] = report.sequence
        if report.inventory is not None and (
            agent not in inventory or report.sequence > inventory[agent].sequence
        ):
            inventory[agent] = report
    return newest, oldest, inventory


def record_values(record: Any) -> dict[str, Any]:
    """Return a slotted record's fields as a column -> value mapping."""
    return {name: getattr(record, name) for name in record.__slots__}
