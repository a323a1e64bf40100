"""The dashboard's sessions in the database: one row per session, found by a hash of its id."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, or_, select, update

from rmm_server.storage import schema
from rmm_server.storage.store import Store

_sessions = schema.dashboard_sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One stored session: who, with which role, since when, last used when."""

    id_hash: str
    operator_id: str
    operator: str
    role: str
    created_at: float
    last_used: float


class SessionStore:
    """Insert, read, touch and delete dashboard sessions through the server's Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, row: SessionRow, keep_per_operator: int) -> None:
        """Store a new session; the operator's oldest beyond `keep_per_operator` go (a flood of
        logins with a valid token cannot grow the table without end)."""
        with self.store.transaction("store a dashboard session") as conn:
            conn.execute(_sessions.insert().values(asdict(row)))
            count = conn.execute(
                select(func.count()).where(_sessions.c.operator_id == row.operator_id)
            ).scalar_one()
            if count > keep_per_operator:
                oldest = (
                    select(_sessions.c.id_hash)
                    .where(_sessions.c.operator_id == row.operator_id)
                    .order_by(_sessions.c.last_used)
                    .limit(int(count) - keep_per_operator)
                )
                conn.execute(delete(_sessions).where(_sessions.c.id_hash.in_(oldest)))

    def get(self, id_hash: str) -> SessionRow | None:
        """Return the session with this hash, or None."""
        with self.store.transaction("read a dashboard session") as conn:
            row = conn.execute(select(_sessions).where(_sessions.c.id_hash == id_hash)).first()
        return SessionRow(**row._mapping) if row is not None else None

    def touch(self, id_hash: str, last_used: float) -> None:
        """Record a use (never moving last_used back: another replica may have written later)."""
        with self.store.transaction("touch a dashboard session") as conn:
            conn.execute(
                update(_sessions)
                .where(_sessions.c.id_hash == id_hash, _sessions.c.last_used < last_used)
                .values(last_used=last_used)
            )

    def delete(self, id_hash: str) -> None:
        """End one session (logout, or found expired)."""
        with self.store.transaction("end a dashboard session") as conn:
            conn.execute(delete(_sessions).where(_sessions.c.id_hash == id_hash))

    def delete_operator(self, operator_id: str) -> int:
        """End every session of an operator (revoked); return how many."""
        with self.store.transaction("end an operator's dashboard sessions") as conn:
            result = conn.execute(delete(_sessions).where(_sessions.c.operator_id == operator_id))
            return int(result.rowcount or 0)

    def prune(self, idle_before: float, created_before: float) -> int:
        """Delete sessions idle since before `idle_before` or created before `created_before`;
        return how many."""
        with self.store.transaction("prune dashboard sessions") as conn:
            result = conn.execute(
                delete(_sessions).where(
                    or_(
                        _sessions.c.last_used < idle_before,
                        _sessions.c.created_at < created_before,
                    )
                )
            )
            return int(result.rowcount or 0)

    def count(self) -> int:
        """Return how many sessions are stored."""
        with self.store.transaction("count dashboard sessions") as conn:
            return int(conn.execute(select(func.count()).select_from(_sessions)).scalar_one())
