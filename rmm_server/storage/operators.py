"""Operators in the database beyond what start-up and sign-in need: listing, finding, revoking."""

from __future__ import annotations

import builtins

from sqlalchemy import func, or_, select, update

from rmm_server.storage import schema
from rmm_server.storage.store import OperatorRecord, Store

ADMIN_ROLE = "admin"
_ops = schema.operators


class OperatorStore:
    """Queries on the operators table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list(self, include_revoked: bool) -> builtins.list[OperatorRecord]:
        """Return operators in name order, revoked ones only when asked."""
        query = select(_ops).order_by(self.store.text_order(_ops.c.name))
        if not include_revoked:
            query = query.where(_ops.c.revoked_at.is_(None))
        with self.store.transaction("list operators") as conn:
            return [OperatorRecord(**row) for row in conn.execute(query).mappings()]

    def find(self, name_or_id: str) -> OperatorRecord | None:
        """Return the operator with this name (any case) or id, or None."""
        with self.store.transaction("find an operator") as conn:
            rows = list(
                conn.execute(
                    select(_ops).where(
                        or_(
                            func.lower(_ops.c.name) == name_or_id.lower(),
                            _ops.c.id == name_or_id,
                        )
                    )
                ).mappings()
            )
        exact = [row for row in rows if row["name"] == name_or_id or row["id"] == name_or_id]
        chosen = exact or rows
        return OperatorRecord(**chosen[0]) if chosen else None

    def revoke(self, operator_id: str, now: float) -> bool:
        """Revoke an active operator unless it is the last active admin; return whether it was.

        One conditional UPDATE, so two admins revoking each other at the same time cannot both
        succeed and leave nobody able to manage operators.
        """
        other_admins = (
            select(func.count())
            .select_from(_ops)
            .where(
                _ops.c.role == ADMIN_ROLE,
                _ops.c.revoked_at.is_(None),
                _ops.c.id != operator_id,
            )
            .scalar_subquery()
        )
        with self.store.transaction(f"revoke operator {operator_id}") as conn:
            if self.store.dialect == "postgresql":
                # Under READ COMMITTED each UPDATE's count would miss the other's uncommitted
                # revocation: lock the active admins first, so the second one waits and then
                # counts afresh. (SQLite runs one writer at a time.)
                conn.execute(
                    select(_ops.c.id)
                    .where(_ops.c.role == ADMIN_ROLE, _ops.c.revoked_at.is_(None))
                    .with_for_update()
                )
            result = conn.execute(
                update(_ops)
                .where(
                    _ops.c.id == operator_id,
                    _ops.c.revoked_at.is_(None),
                    or_(_ops.c.role != ADMIN_ROLE, other_admins > 0),
                )
                .values(revoked_at=now)
            )
            return bool(result.rowcount == 1)
