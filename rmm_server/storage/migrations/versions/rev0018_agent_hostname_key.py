"""Agents: each hostname's look-alike key, indexed, so that `host=NAME` reads the agents that
share NAME's key instead of every agent's name (issue #16; storage/agent_lookup.py).

The key is computed in Python (rmm_common.agent_words.hostname_key), so existing rows are not
keyed here: their `hostname_keyed` is empty, which puts them in the partial index of rows to
key, and the first lookup keys them all (a few tens of ms at 10,000 agents).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("hostname_key", sa.String(255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("hostname_keyed", sa.String(255), nullable=False, server_default="")
        )
    op.create_index("ix_agents_hostname_key", "agents", ["hostname_key"])
    unkeyed = sa.text("hostname_keyed != hostname")
    op.create_index(
        "ix_agents_hostname_unkeyed",
        "agents",
        ["id"],
        sqlite_where=unkeyed,
        postgresql_where=unkeyed,
    )


def downgrade() -> None:
    op.drop_index("ix_agents_hostname_unkeyed", table_name="agents")
    op.drop_index("ix_agents_hostname_key", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("hostname_keyed")
        batch.drop_column("hostname_key")
