"""Alerts in the database: open ones are loaded at start-up, every change is written through."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from rmm_server.storage import schema
from rmm_server.storage.store import Store, record_values


@dataclass(slots=True)
class AlertRecord:
    """An alert with everything operators see of it."""

    id: str
    fingerprint: str
    rule_key: str
    rule_name: str
    agent_id: str
    client: str
    site: str
    hostname: str
    series_labels: dict[str, str]
    state: str
    severity: str
    tier: str
    started_at: float
    last_active_at: float
    updated_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    ack_comment: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AlertQuery:
    states: tuple[str, ...] = ()
    client: str = ""
    severity: str = ""
    agent_id: str = ""
    limit: int = 1000


_JSON_COLUMNS = ("series_labels", "labels", "annotations", "history")


def _to_row(record: AlertRecord) -> dict[str, Any]:
    row = record_values(record)
    for name in _JSON_COLUMNS:
        row[name] = json.dumps(row[name], sort_keys=True)
    return row


def _from_row(row: Any) -> AlertRecord:
    values = dict(row)
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name])
    return AlertRecord(**values)


_UPDATED_COLUMNS = [column.name for column in schema.alerts.c if column.name != "id"]


class AlertStore:
    """Read and write alerts through the server's Store (same engine, same errors)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, records: Sequence[AlertRecord]) -> None:
        """Insert or update alerts in one transaction."""
        if not records:
            return
        statement = self.store.upsert(schema.alerts, ["id"], _UPDATED_COLUMNS)
        with self.store.transaction(f"save {len(records)} alerts") as conn:
            conn.execute(statement, [_to_row(record) for record in records])

    def open_alerts(self) -> list[AlertRecord]:
        """Return every pending or firing alert."""
        return self.query(AlertQuery(states=("pending", "firing"), limit=10_000_000))

    def get(self, alert_id: str) -> AlertRecord | None:
        """Return one alert by id, or None."""
        with self.store.transaction("read an alert") as conn:
            row = (
                conn.execute(select(schema.alerts).where(schema.alerts.c.id == alert_id))
                .mappings()
                .first()
            )
        return _from_row(row) if row else None

    def query(self, query: AlertQuery) -> list[AlertRecord]:
        """Return alerts matching `query`, most recently changed first."""
        table = schema.alerts
        statement = select(table)
        if query.states:
            statement = statement.where(table.c.state.in_(query.states))
        if query.client:
            statement = statement.where(table.c.client == query.client)
        if query.severity:
            statement = statement.where(table.c.severity == query.severity)
        if query.agent_id:
            statement = statement.where(table.c.agent_id == query.agent_id)
        statement = statement.order_by(table.c.updated_at.desc()).limit(query.limit)
        with self.store.transaction("list alerts") as conn:
            return [_from_row(row) for row in conn.execute(statement).mappings()]
