"""Business hours per weekday and holidays (issue #15): a contract's business hours hold
several clauses ("mon-fri 08:00-18:00; sat 09:00-12:00"), so the column widens from 64 to 400
characters, and a contract keeps its holidays (JSON list of YYYY-MM-DD dates, none at first).

Existing contracts keep their one range a week, which the new grammar reads the same.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.alter_column(
            "business_hours",
            existing_type=sa.String(64),
            type_=sa.String(400),
            existing_nullable=False,
        )
        batch.add_column(sa.Column("holidays", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.drop_column("holidays")
        batch.alter_column(
            "business_hours",
            existing_type=sa.String(400),
            type_=sa.String(64),
            existing_nullable=False,
        )
