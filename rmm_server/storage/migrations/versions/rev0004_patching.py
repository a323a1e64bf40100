"""Patching: each agent's pending updates with their decisions, the per-agent patch state,
operators' approve/decline records, and install outcomes (issue #13).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "patch_updates",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("update_id", sa.String(400), primary_key=True),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("current", sa.String(200)),
        sa.Column("available", sa.String(200), nullable=False),
        sa.Column("classification", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("severity", sa.String(64), nullable=False),
        sa.Column("published", sa.Float),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("reboot_required", sa.Boolean, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("not_before", sa.Float),
        sa.Column("last_status", sa.String(16), nullable=False),
        sa.Column("last_message", sa.Text, nullable=False),
        sa.Column("last_attempt_at", sa.Float),
    )
    op.create_index("ix_patch_updates_update", "patch_updates", ["update_id"])
    op.create_table(
        "patch_agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("reported_digest", sa.String(64), nullable=False),
        sa.Column("listed_at", sa.Float),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("reboot_pending", sa.Boolean, nullable=False),
        sa.Column("last_install_at", sa.Float),
        sa.Column("install_requested_at", sa.Float),
        sa.Column("install_requested_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "patch_decisions",
        sa.Column("update_pattern", sa.String(400), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("target", sa.String(400), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
    )
    op.create_table(
        "patch_results",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("update_id", sa.String(400), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("command_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_patch_results_update", "patch_results", ["update_id"])


def downgrade() -> None:
    op.drop_index("ix_patch_results_update", "patch_results")
    op.drop_table("patch_results")
    op.drop_table("patch_decisions")
    op.drop_table("patch_agents")
    op.drop_index("ix_patch_updates_update", "patch_updates")
    op.drop_table("patch_updates")
