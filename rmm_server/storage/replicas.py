"""What replicas read of each other's work: when agents reporting elsewhere last reported."""

from __future__ import annotations

from sqlalchemy import select

from rmm_server.storage import schema
from rmm_server.storage.store import Store


def agents_seen_since(store: Store, since: float) -> list[tuple[str, float, int, int]]:
    """Return (id, last_seen, last_sequence, interval_seconds) of agents that reported at or
    after `since`."""
    agents = schema.agents
    with store.transaction("read when agents last reported") as conn:
        rows = conn.execute(
            select(
                agents.c.id, agents.c.last_seen, agents.c.last_sequence, agents.c.interval_seconds
            ).where(agents.c.last_seen >= since)
        )
        return [(row[0], float(row[1]), int(row[2]), int(row[3])) for row in rows]
