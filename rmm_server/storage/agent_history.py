"""The dashboard's chart points: one row per agent per 5-minute bucket, kept for 24 hours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select

from rmm_server.storage import schema
from rmm_server.storage.store import Store


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One agent's means over one bucket (None where the agent reported nothing of it)."""

    agent_id: str
    bucket: int
    cpu_ratio: float | None
    memory_ratio: float | None
    disk_ratio: float | None
    receive_bytes_per_second: float | None
    transmit_bytes_per_second: float | None


_KEYS = ("agent_id", "bucket")
_COLUMNS = [c.name for c in schema.agent_history.c if c.name not in _KEYS]


class AgentHistoryStore:
    """Write, read and prune chart points through the server's Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, points: Sequence[HistoryPoint]) -> None:
        """Store closed buckets; a bucket stored already (a replica took the agent over
        mid-bucket, or a flush was retried) is replaced."""
        if not points:
            return
        table = schema.agent_history
        with self.store.transaction("store chart points") as conn:
            # An upsert: two replicas may flush one agent's bucket at once (the agent moved).
            conn.execute(
                self.store.upsert(table, _KEYS, _COLUMNS),
                [
                    {
                        "agent_id": p.agent_id,
                        "bucket": p.bucket,
                        "cpu_ratio": p.cpu_ratio,
                        "memory_ratio": p.memory_ratio,
                        "disk_ratio": p.disk_ratio,
                        "receive_bytes_per_second": p.receive_bytes_per_second,
                        "transmit_bytes_per_second": p.transmit_bytes_per_second,
                    }
                    # One statement cannot touch a row twice: the last point of a bucket stands.
                    for p in {(p.agent_id, p.bucket): p for p in points}.values()
                ],
            )

    def points(self, agent_id: str, since: int) -> list[HistoryPoint]:
        """Return one agent's points from bucket `since` on, oldest first."""
        table = schema.agent_history
        with self.store.transaction("read chart points") as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.agent_id == agent_id, table.c.bucket >= since)
                .order_by(table.c.bucket)
            ).all()
        return [HistoryPoint(**row._mapping) for row in rows]

    def prune(self, before: int) -> int:
        """Delete every point of a bucket before `before`; return how many."""
        table = schema.agent_history
        with self.store.transaction("prune chart points") as conn:
            return int(conn.execute(delete(table).where(table.c.bucket < before)).rowcount or 0)
