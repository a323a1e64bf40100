"""Remote commands, the hash-chained audit log, and who created each operator.

Development builds between the first release and this revision made some of these with
`create_all` and an ad-hoc ADD COLUMN, so each step is skipped when its table or column is there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "commands" not in tables:
        op.create_table(
            "commands",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("agent_id", sa.String(64), nullable=False),
            sa.Column("hostname", sa.String(255), nullable=False),
            sa.Column("operator", sa.String(200), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Column("issued_at", sa.Float, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Column("sent_at", sa.Float),
            sa.Column("finished_at", sa.Float),
            sa.Column("signed", sa.LargeBinary, nullable=False),
            sa.Column("result", sa.LargeBinary),
            sa.Column("error", sa.Text, nullable=False),
        )
        op.create_index("ix_commands_agent_status", "commands", ["agent_id", "status"])
        op.create_index("ix_commands_run", "commands", ["run_id"])
        op.create_index("ix_commands_issued_at", "commands", ["issued_at"])
    if "audit_log" not in tables:
        op.create_table(
            "audit_log",
            # INTEGER on SQLite makes seq the rowid; the writer assigns it, never the database.
            sa.Column(
                "seq",
                sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                primary_key=True,
                autoincrement=False,
            ),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("operator", sa.String(200), nullable=False),
            sa.Column("action", sa.String(100), nullable=False),
            sa.Column("target", sa.String(400), nullable=False),
            sa.Column("details_json", sa.Text, nullable=False),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
        op.create_index("ix_audit_log_at", "audit_log", ["at"])
        op.create_index("ix_audit_log_operator", "audit_log", ["operator"])
        op.create_index("ix_audit_log_target", "audit_log", ["target"])
    if "audit_anchor" not in tables:
        op.create_table(
            "audit_anchor",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("archived_through", sa.BigInteger, nullable=False),
            sa.Column("anchor_hash", sa.String(64), nullable=False),
            sa.Column("archived_at", sa.Float),
            sa.Column("head_seq", sa.BigInteger, nullable=False),
            sa.Column("head_hash", sa.String(64), nullable=False),
        )
    if "created_by" not in {column["name"] for column in inspector.get_columns("operators")}:
        with op.batch_alter_table("operators") as batch:
            # Operators made before this revision were made by nobody on record.
            batch.add_column(
                sa.Column("created_by", sa.String(200), nullable=False, server_default="")
            )


def downgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("created_by")
    op.drop_table("audit_anchor")
    op.drop_table("audit_log")
    op.drop_table("commands")
