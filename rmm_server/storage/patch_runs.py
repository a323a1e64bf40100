"""Patch runs in the database: a row per opened occurrence of a patch window, with its progress."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from rmm_server.storage import schema
from rmm_server.storage.store import Store

OPEN = "open"
CLOSED = "closed"


@dataclass(slots=True)
class PatchRun:
    """One occurrence of a window: when it is open, and how far its rollout got."""

    id: str
    window: str
    starts_at: float
    ends_at: float
    state: str = OPEN
    progress: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0
    # The progress as stored (JSON): a run whose progress encodes the same is not written again.
    stored: str = field(default="", compare=False, repr=False)

    def progress_json(self) -> str:
        """Return the progress as it is stored."""
        return json.dumps(self.progress, separators=(",", ":"))


def _run_of(row: Any) -> PatchRun:
    return PatchRun(
        id=row.id,
        window=row.window,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        state=row.state,
        progress=json.loads(row.progress_json),
        updated_at=row.updated_at,
        stored=row.progress_json,
    )


class PatchRunStore:
    """Read and write patch runs through the server's Store (same engine, same errors)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, run: PatchRun) -> PatchRun:
        """Store a new run; return the one already stored for its window and start, if any.

        The (window, start) index is unique: an occurrence opened twice (a job that fired again
        after a restart, two replicas in a leadership change) is one run.
        """
        table = schema.patch_runs
        with self.store.transaction(f"open patch window {run.window}") as conn:
            found = conn.execute(
                select(table).where(
                    table.c.window == run.window, table.c.starts_at == run.starts_at
                )
            ).first()
            if found is not None:
                return _run_of(found)
            inserted = conn.execute(
                self.store._insert_ignore(table).values(
                    id=run.id,
                    window=run.window,
                    starts_at=run.starts_at,
                    ends_at=run.ends_at,
                    state=run.state,
                    progress_json=run.progress_json(),
                    updated_at=run.updated_at,
                )
            )
            if inserted.rowcount == 0:  # another writer got there between the two statements
                found = conn.execute(
                    select(table).where(
                        table.c.window == run.window, table.c.starts_at == run.starts_at
                    )
                ).one()
                return _run_of(found)
        return run

    def save(self, run: PatchRun, progress_json: str | None = None) -> None:
        """Write a run's state and progress (`progress_json`: already encoded)."""
        table = schema.patch_runs
        text = run.progress_json() if progress_json is None else progress_json
        with self.store.transaction(f"save patch run {run.id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == run.id)
                .values(
                    state=run.state,
                    progress_json=text,
                    updated_at=run.updated_at,
                )
            )
        run.stored = text

    def open_runs(self) -> list[PatchRun]:
        """Return the runs not closed yet, oldest first."""
        table = schema.patch_runs
        with self.store.transaction("read the open patch runs") as conn:
            rows = conn.execute(
                select(table).where(table.c.state == OPEN).order_by(table.c.starts_at)
            ).all()
        return [_run_of(row) for row in rows]

    def get(self, run_id: str) -> PatchRun | None:
        """Return one run, or None."""
        table = schema.patch_runs
        with self.store.transaction(f"read patch run {run_id}") as conn:
            row = conn.execute(select(table).where(table.c.id == run_id)).first()
        return _run_of(row) if row is not None else None

    def open_occurrences(self, window: str) -> list[tuple[str, float, float]]:
        """Return (id, start, end) of a window's runs not closed yet (progress left unread)."""
        table = schema.patch_runs
        with self.store.transaction(f"read the open runs of patch window {window}") as conn:
            rows = conn.execute(
                select(table.c.id, table.c.starts_at, table.c.ends_at).where(
                    table.c.window == window, table.c.state == OPEN
                )
            )
            return [(str(i), float(start), float(end)) for i, start, end in rows]

    def run_command_statuses(self, run_id: str) -> dict[str, int]:
        """Return the status of every command of a run (their blobs left unread)."""
        table = schema.commands
        with self.store.transaction(f"read the commands of patch run {run_id}") as conn:
            rows = conn.execute(select(table.c.id, table.c.status).where(table.c.run_id == run_id))
            return {str(command_id): int(status) for command_id, status in rows}

    def recent(self, window: str = "", limit: int = 50) -> list[PatchRun]:
        """Return the newest runs (of one window when given), newest first."""
        table = schema.patch_runs
        query = select(table).order_by(table.c.starts_at.desc()).limit(limit)
        if window:
            query = query.where(table.c.window == window)
        with self.store.transaction("read recent patch runs") as conn:
            rows = conn.execute(query).all()
        return [_run_of(row) for row in rows]
