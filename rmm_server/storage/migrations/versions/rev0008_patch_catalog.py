"""Patching: the fleet view counts states from one covering index (update_id, decision,
last_status, not_before) instead of reading every agent's rows, and names updates from a
catalog of one row per update id (issue #13).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_index("ix_patch_updates_update", "patch_updates")
    op.create_index(
        "ix_patch_updates_state",
        "patch_updates",
        ["update_id", "decision", "last_status", "not_before"],
    )
    op.create_table(
        "patch_catalog",
        sa.Column("update_id", sa.String(400), primary_key=True),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("classification", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(64), nullable=False),
        sa.Column("available", sa.String(200), nullable=False),
        sa.Column("reboot_required", sa.Boolean, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    # The ids agents list now (their newest facts stand: any one row of each id).
    op.execute(
        "INSERT INTO patch_catalog (update_id, name, classification, backend, severity, "
        "available, reboot_required, seen_at) "
        "SELECT update_id, MIN(name), MIN(classification), MIN(backend), MAX(severity), "
        "MAX(available), MAX(CASE WHEN reboot_required THEN 1 ELSE 0 END) = 1, MAX(first_seen) "
        "FROM patch_updates GROUP BY update_id"
    )


def downgrade() -> None:
    op.drop_table("patch_catalog")
    op.drop_index("ix_patch_updates_state", "patch_updates")
    op.create_index("ix_patch_updates_update", "patch_updates", ["update_id"])
