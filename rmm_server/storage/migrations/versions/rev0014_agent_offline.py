"""Contract reports (issue #15): each period an agent was offline, so that a month's
availability is read from what was recorded, not guessed from retained reports.

Nothing before this revision recorded offline periods for a month: agents' availability counts
from the first offline check after the upgrade (docs/desk.md).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agent_offline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
    )
    op.create_index("ix_agent_offline_agent_start", "agent_offline", ["agent_id", "started_at"])
    op.create_index("ix_agent_offline_ended", "agent_offline", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_offline_ended", "agent_offline")
    op.drop_index("ix_agent_offline_agent_start", "agent_offline")
    op.drop_table("agent_offline")
