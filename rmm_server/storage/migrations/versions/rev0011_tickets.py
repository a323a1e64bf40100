"""The desk (issue #15): tickets, their events and time entries.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("acknowledged_at", sa.Float),
        sa.Column("ack_due_at", sa.Float),
        sa.Column("resolve_due_at", sa.Float),
        sa.Column("sla_breaches", sa.String(32), nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("resolution", sa.Text, nullable=False),
        sa.Column("closed_at", sa.Float),
        sa.Column("archived_at", sa.Float),
        sa.Column("archived_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_tickets_client_status", "tickets", ["client_id", "status"])
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_ticket_events_ticket", "ticket_events", ["ticket_id"])
    op.create_table(
        "ticket_time",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("minutes", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("billable_amount", sa.Float),
    )
    op.create_index("ix_ticket_time_client_period", "ticket_time", ["client_id", "period"])
    op.create_index("ix_ticket_time_ticket", "ticket_time", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_time_ticket", "ticket_time")
    op.drop_index("ix_ticket_time_client_period", "ticket_time")
    op.drop_table("ticket_time")
    op.drop_index("ix_ticket_events_ticket", "ticket_events")
    op.drop_table("ticket_events")
    op.drop_index("ix_tickets_status", "tickets")
    op.drop_index("ix_tickets_client_status", "tickets")
    op.drop_table("tickets")
