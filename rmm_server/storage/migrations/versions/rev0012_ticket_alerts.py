"""Tickets opened by alerts (issue #15): the alert's fingerprint on its ticket, so that the
same problem firing again reopens the ticket.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(
            sa.Column("alert_fingerprint", sa.String(64), nullable=False, server_default="")
        )
    op.create_index("ix_tickets_alert_fingerprint", "tickets", ["alert_fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_tickets_alert_fingerprint", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("alert_fingerprint")
