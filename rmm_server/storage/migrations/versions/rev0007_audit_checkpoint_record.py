"""Audit anchor: the newest signed checkpoint line written to a checkpoint file (its head seq,
time, line digest and replica), so a checkpoint file replaced by an older copy shows.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_anchor") as batch:
        batch.add_column(sa.Column("checkpoint_seq", sa.BigInteger))
        batch.add_column(sa.Column("checkpoint_at", sa.Float))
        batch.add_column(sa.Column("checkpoint_digest", sa.String(64)))
        batch.add_column(sa.Column("checkpoint_replica", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("audit_anchor") as batch:
        batch.drop_column("checkpoint_replica")
        batch.drop_column("checkpoint_digest")
        batch.drop_column("checkpoint_at")
        batch.drop_column("checkpoint_seq")
