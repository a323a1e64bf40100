"""The dashboard's charts: each agent's 5-minute points of CPU, memory, disk and network for
24 h (issue #14).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agent_history",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("cpu_ratio", sa.Float),
        sa.Column("memory_ratio", sa.Float),
        sa.Column("disk_ratio", sa.Float),
        sa.Column("receive_bytes_per_second", sa.Float),
        sa.Column("transmit_bytes_per_second", sa.Float),
    )
    op.create_index("ix_agent_history_bucket", "agent_history", ["bucket"])


def downgrade() -> None:
    op.drop_index("ix_agent_history_bucket", "agent_history")
    op.drop_table("agent_history")
