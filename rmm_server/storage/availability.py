"""Agents' offline periods: the record contract reports read availability from (docs/desk.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update

from rmm_server.storage import schema
from rmm_server.storage.store import Store

CHUNK = 500  # ids per IN list: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True, slots=True)
class OfflinePeriod:
    """An agent offline from `started_at` (its last report) until `ended_at` (None: still)."""

    agent_id: str
    started_at: float
    ended_at: float | None


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class AvailabilityStore:
    """Read and write offline periods through the server's Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def open_periods(self) -> dict[str, float]:
        """Return each agent offline now (a period without an end) and since when."""
        table = schema.agent_offline
        with self.store.transaction("read open offline periods") as conn:
            rows = conn.execute(
                select(table.c.agent_id, table.c.started_at).where(table.c.ended_at.is_(None))
            ).all()
        return {str(agent_id): float(started) for agent_id, started in rows}

    def begin(self, periods: Sequence[tuple[str, float]]) -> None:
        """Record agents gone offline: (agent id, since)."""
        if not periods:
            return
        with self.store.transaction(f"record {len(periods)} agents offline") as conn:
            conn.execute(
                insert(schema.agent_offline),
                [{"agent_id": agent_id, "started_at": at} for agent_id, at in periods],
            )

    def end(self, periods: Sequence[tuple[str, float]]) -> None:
        """Close the open period of agents back online: (agent id, first report after it)."""
        if not periods:
            return
        table = schema.agent_offline
        with self.store.transaction(f"record {len(periods)} agents back online") as conn:
            conn.execute(
                update(table)
                .where(table.c.agent_id == bindparam("a"), table.c.ended_at.is_(None))
                .values(ended_at=bindparam("e")),
                [{"a": agent_id, "e": at} for agent_id, at in periods],
            )

    def first_report_after(self, agent_id: str, after: float) -> float | None:
        """Return when the agent's first stored report after `after` arrived (None: none)."""
        reports = schema.reports
        with self.store.transaction("find an agent's first report after an outage") as conn:
            found = conn.execute(
                select(func.min(reports.c.received_at)).where(
                    reports.c.agent_id == agent_id, reports.c.received_at > after
                )
            ).scalar_one()
        return float(found) if found is not None else None

    def periods(
        self, agent_ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[OfflinePeriod]]:
        """Return the periods of these agents that overlap [start, end), oldest first."""
        table = schema.agent_offline
        found: dict[str, list[OfflinePeriod]] = {}
        with self.store.transaction("read offline periods") as conn:
            for chunk in _chunks(list(agent_ids)):
                rows = conn.execute(
                    select(table.c.agent_id, table.c.started_at, table.c.ended_at)
                    .where(
                        table.c.agent_id.in_(chunk),
                        table.c.started_at < end,
                        table.c.ended_at.is_(None) | (table.c.ended_at > start),
                    )
                    .order_by(table.c.agent_id, table.c.started_at)
                ).all()
                for agent_id, started, ended in rows:
                    found.setdefault(str(agent_id), []).append(
                        OfflinePeriod(str(agent_id), float(started), ended)
                    )
        return found
