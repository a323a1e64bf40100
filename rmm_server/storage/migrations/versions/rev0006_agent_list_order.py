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

COLUMNS = ["client", "site", "hostname", "id"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The list sorts text by code point (COLLATE "C", Store.text_order) whatever the
        # database's collation: an index in another collation cannot give that order. The
        # columns stay plain column references, so the index still matches schema.py.
        op.execute(
            "CREATE INDEX ix_agents_list_order ON agents "
            '(client COLLATE "C", site COLLATE "C", hostname COLLATE "C", id)'
        )
    else:
        op.create_index("ix_agents_list_order", "agents", COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_agents_list_order", table_name="agents")
