"""A command's result note: what pages that list commands show of a result they do not read
(a pulled file's path, size and sha256, without its up to 8 MiB of data).

Commands answered before it have no note: their listings show none.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("result_note", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("result_note")
