"""Dashboard sessions in the database (issue #14): a server restart keeps operators logged in,
and replicas on one database share them (no sticky sessions). Only a hash of each session's id
is stored.

Sessions held in memory before this revision end with the upgrade's restart: log in again.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(32), nullable=False),
        sa.Column("operator", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used", sa.Float, nullable=False),
    )
    op.create_index("ix_dashboard_sessions_operator", "dashboard_sessions", ["operator_id"])
    op.create_index("ix_dashboard_sessions_last_used", "dashboard_sessions", ["last_used"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_last_used", "dashboard_sessions")
    op.drop_index("ix_dashboard_sessions_operator", "dashboard_sessions")
    op.drop_table("dashboard_sessions")
