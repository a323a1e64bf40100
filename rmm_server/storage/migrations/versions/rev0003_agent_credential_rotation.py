"""Agents: an operator's credential rotation request, and the new credential's hash (valid
beside the old one until the agent first uses it).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("rotate_requested_at", sa.Float))
        batch.add_column(sa.Column("pending_credential_hash", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("pending_credential_hash")
        batch.drop_column("rotate_requested_at")
