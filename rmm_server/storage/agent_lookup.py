"""Agents named by hostname, found through an index of each hostname's look-alike key.

An operator's `host=NAME` must match every agent whose hostname looks like NAME (case,
compatibility forms, invisible characters, letters of other scripts drawn alike:
rmm_common.agent_words.hostname_key), so that an agent imitating another's hostname makes the
name ambiguous instead of taking it. SQL cannot compute that key, so it is kept in the agents
table (`hostname_key`, cut to HOSTNAME_KEY_CHARS, indexed) beside the hostname it was made from
(`hostname_keyed`). Whatever writes a hostname (enrollment, every report) leaves the key alone:
a row whose hostname is not the one keyed is found through a partial index of exactly those
rows and keyed here, before each lookup. A lookup so reads the few agents that share the key and
the few renamed since the last one, never every agent's name (issue #16: `rmm agents show
host=NAME` read all 10,000).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select, update

from rmm_common.agent_words import hostname_key
from rmm_server.storage import schema
from rmm_server.storage.store import AgentName, Store

# A prefix of the key is stored: NFKD can make a 255-character hostname's key many times longer,
# past what a PostgreSQL index entry holds. Equal keys have equal prefixes; the full keys of
# the rows found are compared in Python.
HOSTNAME_KEY_CHARS = 200

_agents = schema.agents
_KEY_ROW = (
    update(_agents)
    # Only if the hostname is still the one read: a report renaming the agent meanwhile leaves
    # the row for the next lookup to key.
    .where(_agents.c.id == bindparam("b_id"), _agents.c.hostname == bindparam("b_hostname"))
    .values(hostname_key=bindparam("b_key"), hostname_keyed=bindparam("b_hostname"))
)


def stored_key(hostname: str) -> str:
    """Return what the agents table keeps as `hostname`'s look-alike key."""
    return hostname_key(hostname)[:HOSTNAME_KEY_CHARS]


def key_new_hostnames(conn: Connection) -> int:
    """Key every agent whose hostname changed since it was keyed; return how many."""
    unkeyed = conn.execute(
        select(_agents.c.id, _agents.c.hostname).where(
            _agents.c.hostname_keyed != _agents.c.hostname
        )
    ).all()
    if unkeyed:
        conn.execute(
            _KEY_ROW,
            [
                {"b_id": row.id, "b_hostname": row.hostname, "b_key": stored_key(row.hostname)}
                for row in unkeyed
            ],
        )
    return len(unkeyed)


def agents_by_hostname(store: Store, hostname: str) -> list[AgentName]:
    """Return every agent (revoked ones too) whose hostname has `hostname`'s look-alike key,
    by id: the candidates rmm_server.selection.resolve_agent decides among."""
    key = hostname_key(hostname)
    with store.transaction(f"find agents by hostname {hostname!r}") as conn:
        key_new_hostnames(conn)
        rows = conn.execute(
            select(
                _agents.c.id,
                _agents.c.client,
                _agents.c.site,
                _agents.c.hostname,
                _agents.c.revoked_at,
            )
            .where(_agents.c.hostname_key == key[:HOSTNAME_KEY_CHARS])
            .order_by(_agents.c.id)
        ).all()
    return [
        AgentName(row.id, row.client, row.site, row.hostname or "", row.revoked_at)
        for row in rows
        # A longer key sharing the stored prefix, or a row renamed since it was keyed above.
        if hostname_key(row.hostname or "") == key
    ]


def client_count(store: Store) -> int:
    """Return how many clients the agents (revoked ones too) belong to."""
    with store.transaction("count the fleet's clients") as conn:
        return int(conn.execute(select(func.count(func.distinct(_agents.c.client)))).scalar_one())
