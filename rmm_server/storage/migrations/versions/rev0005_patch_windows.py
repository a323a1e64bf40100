"""Patch windows: APScheduler's job store table (one job per window) and the opened windows' runs.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # APScheduler's SQLAlchemyJobStore columns, exactly (it skips creating a table that exists).
    op.create_table(
        "patch_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_patch_jobs_next_run_time", "patch_jobs", ["next_run_time"])
    op.create_table(
        "patch_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("window", sa.String(255), nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_patch_runs_window_start", "patch_runs", ["window", "starts_at"], unique=True
    )
    op.create_index("ix_patch_runs_state", "patch_runs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_patch_runs_state", "patch_runs")
    op.drop_index("ix_patch_runs_window_start", "patch_runs")
    op.drop_table("patch_runs")
    op.drop_index("ix_patch_jobs_next_run_time", "patch_jobs")
    op.drop_table("patch_jobs")
