"""The audit log's tables: entries keyed by seq, and one anchor row (archive anchor and head)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from rmm_common.audit_chain import GENESIS_HASH, AuditRecord
from rmm_common.errors import StorageError
from rmm_server.storage import schema
from rmm_server.storage.store import Store

ANCHOR_ID = 1  # the anchor table holds this one row
MAX_LIST = 5000

_log = schema.audit_log
_anchor = schema.audit_anchor


@dataclass(frozen=True, slots=True)
class WrittenCheckpoint:
    """What the database remembers of the newest checkpoint line written to a file."""

    seq: int
    at: float
    digest: str  # SHA-256 of the line (audit_checkpoints.line_digest)
    replica: str


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the database's chain starts (after the archived entries) and where it ends."""

    archived_through: int
    anchor_hash: str
    head_seq: int
    head_hash: str
    archived_at: float | None = None
    # The newest checkpoint line the server wrote (audit_checkpoints): None before any.
    checkpoint: WrittenCheckpoint | None = None


def _record(row: Any) -> AuditRecord:
    # Positional: the table's columns are in the record's field order, and this runs once per
    # entry in a verify.
    seq, at, *rest = row
    return AuditRecord(int(seq), float(at), *rest)


# Built once: building statements cost more than running them in a one-row append.
_HEAD = (
    select(_anchor.c.head_seq, _anchor.c.head_hash)
    .where(_anchor.c.id == ANCHOR_ID)
    # FOR UPDATE is what serializes appends across server replicas on PostgreSQL; SQLite has
    # one writer at a time anyway and SQLAlchemy leaves the clause out for it.
    .with_for_update()
)
_INSERT = insert(_log)
_MOVE_HEAD = (
    update(_anchor)
    .where(_anchor.c.id == ANCHOR_ID)
    .values(head_seq=bindparam("b_seq"), head_hash=bindparam("b_hash"))
)
_ANY_ENTRY = select(_log.c.seq).limit(1)


class AuditStore:
    """Read and write audit entries and the anchor row."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def ensure_anchor(self) -> bool:
        """Create the anchor row on a log that has never had one; return whether it exists.

        A missing row beside existing entries is not recreated: that is tampering for
        `verify` to report, not something to paper over.
        """
        with self.store.transaction("prepare the audit log") as conn:
            if conn.execute(select(_anchor.c.id)).first() is not None:
                return True
            if conn.execute(_ANY_ENTRY).first() is not None:
                return False
            # Ignored when another server made it meanwhile (replicas starting together on one
            # new PostgreSQL database both get here).
            conn.execute(self.store._insert_ignore(_anchor).values(**_genesis_values()))
            return True

    def append_many(self, makes: Sequence[Callable[[int, str], AuditRecord]]) -> list[AuditRecord]:
        """In one transaction: lock the head, build each next entry with `make(seq, prev_hash)`,
        each linked to the one before, insert them and move the head to the last."""
        with self.store.transaction(f"write {len(makes)} audit entries") as conn:
            head = self._locked_head(conn)
            if head is None:
                raise StorageError(
                    "cannot write an audit entry: the audit_anchor row is missing while entries "
                    "exist (it was deleted); run `rmm audit verify` and restore the row from a "
                    "backup (docs/audit.md)"
                )
            head_seq, head_hash = head
            entries: list[AuditRecord] = []
            for make in makes:
                entry = make(head_seq + 1, head_hash)
                entries.append(entry)
                head_seq, head_hash = entry.seq, entry.hash
            if not entries:
                return entries
            try:
                conn.execute(_INSERT, [entry.to_json() for entry in entries])
            except IntegrityError as exc:
                raise StorageError(
                    f"cannot write audit entries from seq {entries[0].seq}: an entry with such a "
                    "seq exists beyond the head row, so the audit tables were changed outside the "
                    "server; run `rmm audit verify`"
                ) from exc
            conn.execute(_MOVE_HEAD, {"b_seq": head_seq, "b_hash": head_hash})
            return entries

    def _locked_head(self, conn: Connection) -> tuple[int, str] | None:
        row = conn.execute(_HEAD).first()
        if row is not None:
            return int(row.head_seq), str(row.head_hash)
        if conn.execute(_ANY_ENTRY).first() is not None:
            return None
        # A log that has never been written (the row is made at start-up; this covers a store
        # used without that step, e.g. in tests). Another writer may make it at the same time:
        # read it back, locked.
        conn.execute(self.store._insert_ignore(_anchor).values(**_genesis_values()))
        row = conn.execute(_HEAD).first()
        assert row is not None  # made just now, by this transaction or a committed one
        return int(row.head_seq), str(row.head_hash)

    def read_anchor(self) -> Anchor | None:
        """Return the anchor row, or None when it is missing."""
        with self.store.transaction("read the audit anchor") as conn:
            row = conn.execute(select(_anchor).where(_anchor.c.id == ANCHOR_ID)).first()
        if row is None:
            return None
        written = (
            WrittenCheckpoint(
                int(row.checkpoint_seq or 0),
                float(row.checkpoint_at or 0.0),
                row.checkpoint_digest,
                row.checkpoint_replica or "",
            )
            if row.checkpoint_digest
            else None
        )
        return Anchor(
            archived_through=int(row.archived_through),
            anchor_hash=row.anchor_hash,
            head_seq=int(row.head_seq),
            head_hash=row.head_hash,
            archived_at=row.archived_at,
            checkpoint=written,
        )

    def record_checkpoint(self, written: WrittenCheckpoint) -> None:
        """Remember the newest checkpoint line written to a file, in the anchor row."""
        with self.store.transaction("record the audit checkpoint") as conn:
            conn.execute(
                update(_anchor)
                .where(_anchor.c.id == ANCHOR_ID)
                .values(
                    checkpoint_seq=written.seq,
                    checkpoint_at=written.at,
                    checkpoint_digest=written.digest,
                    checkpoint_replica=written.replica,
                )
            )

    def page(self, after_seq: int, limit: int, through: int | None = None) -> list[AuditRecord]:
        """Return up to `limit` entries with seq > `after_seq` (and <= `through`), in order."""
        query = select(_log).where(_log.c.seq > after_seq).order_by(_log.c.seq).limit(limit)
        if through is not None:
            query = query.where(_log.c.seq <= through)
        with self.store.transaction("read audit entries") as conn:
            return [_record(row) for row in conn.execute(query)]

    def max_seq(self) -> int | None:
        """Return the newest entry's seq, or None on an empty log."""
        with self.store.transaction("read the newest audit seq") as conn:
            value = conn.execute(select(func.max(_log.c.seq))).scalar_one_or_none()
        return int(value) if value is not None else None

    def list(
        self, since: float, operator: str, agent: str, limit: int
    ) -> builtins.list[AuditRecord]:
        """Return the newest `limit` matching entries, oldest first."""
        query = select(_log)
        if since:
            query = query.where(_log.c.at >= since)
        if operator:
            query = query.where(_log.c.operator == operator)
        if agent:
            # Commands name the agent by id; an operator may give the start of one, in any case
            # (ids are lowercase hex). Compared, not LIKEd, as Store.find_agents does: LIKE
            # ignores case on SQLite only.
            prefix = func.lower(func.substr(_log.c.target, 1, len(agent))) == agent.lower()
            query = query.where(or_(_log.c.target == agent, prefix))
        query = query.order_by(_log.c.seq.desc()).limit(max(1, min(limit, MAX_LIST)))
        with self.store.transaction("list audit entries") as conn:
            rows = [_record(row) for row in conn.execute(query)]
        rows.reverse()
        return rows

    def count(self, operator: str, action: str, outcome: str, since: float) -> int:
        """Return how many entries `operator` wrote of `action` with `outcome` at or after
        `since` (what bounds an agent's wrong verification codes: rmm_server/desk/help.py)."""
        query = select(func.count()).where(
            _log.c.operator == operator,
            _log.c.action == action,
            _log.c.outcome == outcome,
            _log.c.at >= since,
        )
        with self.store.transaction("count audit entries") as conn:
            return int(conn.execute(query).scalar_one())

    def archive(self, expected: Anchor, through_seq: int, through_hash: str, now: float) -> int:
        """Delete entries up to `through_seq` and make it the anchor, in one transaction.

        `expected` is the anchor the caller verified from; a different one now (another archive
        got there first) refuses the change.
        """
        with self.store.transaction(f"archive audit entries through seq {through_seq}") as conn:
            current = conn.execute(
                select(_anchor.c.archived_through, _anchor.c.anchor_hash)
                .where(_anchor.c.id == ANCHOR_ID)
                .with_for_update()
            ).first()
            if current is None or (int(current.archived_through), current.anchor_hash) != (
                expected.archived_through,
                expected.anchor_hash,
            ):
                raise StorageError(
                    "the audit anchor changed while archiving (another archive ran at the same "
                    "time?): run `rmm audit verify` and archive again"
                )
            stored = conn.execute(
                select(_log.c.hash).where(_log.c.seq == through_seq)
            ).scalar_one_or_none()
            if stored != through_hash:
                raise StorageError(
                    f"audit entry seq {through_seq} changed while archiving: run `rmm audit verify`"
                )
            removed = conn.execute(delete(_log).where(_log.c.seq <= through_seq)).rowcount
            conn.execute(
                update(_anchor)
                .where(_anchor.c.id == ANCHOR_ID)
                .values(archived_through=through_seq, anchor_hash=through_hash, archived_at=now)
            )
            return int(removed or 0)


def _genesis_values() -> dict[str, Any]:
    return {
        "id": ANCHOR_ID,
        "archived_through": 0,
        "anchor_hash": GENESIS_HASH,
        "archived_at": None,
        "head_seq": 0,
        "head_hash": GENESIS_HASH,
    }
