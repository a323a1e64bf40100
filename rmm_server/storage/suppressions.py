"""Silences, maintenance windows and failed notifications in the database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from rmm_server.alerts.suppression import (
    MaintenanceWindow,
    Silence,
    format_matchers,
    parse_matchers,
)
from rmm_server.storage import schema
from rmm_server.storage.store import Store


@dataclass(frozen=True, slots=True)
class NotificationFailure:
    at: float
    receiver: str
    notifier: str
    error: str
    status: str
    group_key: str
    alert_ids: tuple[str, ...]


class SuppressionStore:
    """Read and write silences, maintenance windows and notification failures."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_silence(self, silence: Silence) -> None:
        """Store a new silence."""
        with self.store.transaction("create a silence") as conn:
            conn.execute(
                insert(schema.silences).values(
                    id=silence.id,
                    matchers=format_matchers(silence.matchers),
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_by=silence.created_by,
                    comment=silence.comment,
                    created_at=silence.created_at,
                )
            )

    def expire_silence(self, silence_id: str, now: float) -> None:
        """End a silence now (if it has not ended already)."""
        table = schema.silences
        with self.store.transaction(f"expire silence {silence_id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == silence_id, table.c.ends_at > now)
                .values(ends_at=now)
            )

    def silences(self) -> list[Silence]:
        """Return every silence, newest first."""
        table = schema.silences
        with self.store.transaction("list silences") as conn:
            rows = conn.execute(select(table).order_by(table.c.created_at.desc())).mappings()
            return [
                Silence(
                    id=row["id"],
                    matchers=tuple(parse_matchers(row["matchers"])),
                    starts_at=row["starts_at"],
                    ends_at=row["ends_at"],
                    created_by=row["created_by"],
                    comment=row["comment"],
                    created_at=row["created_at"],
                )
                for row in rows
            ]

    def add_window(self, window: MaintenanceWindow) -> None:
        """Store a new maintenance window."""
        scope = {
            "clients": list(window.clients),
            "sites": list(window.sites),
            "agents": list(window.agents),
            "tags": list(window.tags),
        }
        with self.store.transaction("add a maintenance window") as conn:
            conn.execute(
                insert(schema.maintenance_windows).values(
                    id=window.id,
                    name=window.name,
                    schedule=window.schedule,
                    start_at=window.start_at,
                    duration_seconds=window.duration_seconds,
                    timezone=window.timezone,
                    scope=json.dumps(scope),
                    created_by=window.created_by,
                    comment=window.comment,
                    created_at=window.created_at,
                    ended_at=window.ended_at,
                )
            )

    def end_window(self, window_id: str, now: float) -> None:
        """End a maintenance window for good."""
        table = schema.maintenance_windows
        with self.store.transaction(f"end maintenance window {window_id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == window_id, table.c.ended_at.is_(None))
                .values(ended_at=now)
            )

    def windows(self) -> list[MaintenanceWindow]:
        """Return every maintenance window, newest first."""
        table = schema.maintenance_windows
        with self.store.transaction("list maintenance windows") as conn:
            rows = list(conn.execute(select(table).order_by(table.c.created_at.desc())).mappings())
        windows = []
        for row in rows:
            scope = json.loads(row["scope"])
            windows.append(
                MaintenanceWindow.create(
                    id=row["id"],
                    name=row["name"],
                    schedule=row["schedule"],
                    start_at=row["start_at"],
                    duration_seconds=row["duration_seconds"],
                    timezone=row["timezone"],
                    clients=tuple(scope.get("clients", ())),
                    sites=tuple(scope.get("sites", ())),
                    agents=tuple(scope.get("agents", ())),
                    tags=tuple(scope.get("tags", ())),
                    created_by=row["created_by"],
                    comment=row["comment"],
                    created_at=row["created_at"],
                    ended_at=row["ended_at"],
                )
            )
        return windows

    def record_failure(self, failure: NotificationFailure) -> None:
        """Keep a notification that could not be delivered after its retries."""
        with self.store.transaction("record a failed notification") as conn:
            conn.execute(
                insert(schema.notification_failures).values(
                    at=failure.at,
                    receiver=failure.receiver,
                    notifier=failure.notifier,
                    error=failure.error,
                    status=failure.status,
                    group_key=failure.group_key,
                    alert_ids=json.dumps(list(failure.alert_ids)),
                )
            )

    def failures(self, limit: int) -> Sequence[NotificationFailure]:
        """Return the most recent failed notifications."""
        table = schema.notification_failures
        with self.store.transaction("list failed notifications") as conn:
            rows = conn.execute(select(table).order_by(table.c.at.desc()).limit(limit)).mappings()
            return [
                NotificationFailure(
                    at=row["at"],
                    receiver=row["receiver"],
                    notifier=row["notifier"],
                    error=row["error"],
                    status=row["status"],
                    group_key=row["group_key"],
                    alert_ids=tuple(json.loads(row["alert_ids"])),
                )
                for row in rows
            ]
