"""The first release's schema (commit f9bc941).

It creates what that release's `create_all` created, table by table and only those missing: a
database made before migrations existed has no version table and starts here, so its tables are
kept and any it lacks are made.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from rmm_server.storage.migrations import first_release

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    first_release.metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    first_release.metadata.drop_all(op.get_bind(), checkfirst=True)
