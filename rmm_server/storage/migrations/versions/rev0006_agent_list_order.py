"""Agents: an index in the order of `rmm agents list` (client, site, hostname, id), so that a
page is a range of it instead of a sort of every matching agent (issue #16).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_agents_list_order", "agents", ["client", "site", "hostname", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_agents_list_order", table_name="agents")
