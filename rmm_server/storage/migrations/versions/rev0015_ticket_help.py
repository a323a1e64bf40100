"""The user's own help request (issue #15): each ticket's caller verification code, the
diagnostic snapshot a help request carries, and an index to find a host's tickets.

Tickets opened before this revision get a code too, so every open ticket can be verified.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

# As rmm_common.helpdesk has it at this revision; written out so the migration stays as it is.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("verify_code", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("snapshot", sa.Text, nullable=False, server_default=""))
    op.create_index("ix_tickets_agent", "tickets", ["agent_id"])
    tickets = sa.table("tickets", sa.column("id", sa.Integer), sa.column("verify_code"))
    conn = op.get_bind()
    for (ticket_id,) in conn.execute(sa.select(tickets.c.id)).all():
        code = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        conn.execute(tickets.update().where(tickets.c.id == ticket_id).values(verify_code=code))


def downgrade() -> None:
    op.drop_index("ix_tickets_agent", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("snapshot")
        batch.drop_column("verify_code")
