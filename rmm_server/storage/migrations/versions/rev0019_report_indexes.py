"""Reports (issue #15): a ticket's category (rmm tickets open --category), which trends count,
and alerts found by client and firing time (a client's month in a contract report) and by
firing time alone (trends over every client), instead of reading every alert ever raised.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("category", sa.String(100), nullable=False, server_default=""))
    op.create_index("ix_alerts_client_fired", "alerts", ["client", "fired_at"])
    op.create_index("ix_alerts_fired", "alerts", ["fired_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_fired", "alerts")
    op.drop_index("ix_alerts_client_fired", "alerts")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("category")
