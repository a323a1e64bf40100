"""The desk (issue #15): clients, sites and contracts as records. Every client and site name an
agent or an enrollment token carries becomes a record (sites in UTC until an operator sets their
time zone), so existing agents and tokens keep working unchanged.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

MIGRATED_BY = "migration 0010"


def upgrade() -> None:
    clients = op.create_table(
        "clients",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_clients_name", "clients", ["name"], unique=True)
    sites = op.create_table(
        "sites",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sites_client_name", "sites", ["client_id", "name"], unique=True)
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("hours_per_period", sa.Float),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("warn_below_hours", sa.Float),
        sa.Column("rate", sa.Float),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("business_hours", sa.String(64), nullable=False),
        sa.Column("sla", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_contracts_client", "contracts", ["client_id"], unique=True)
    _records_from_names(clients, sites)


def _records_from_names(clients: sa.Table, sites: sa.Table) -> None:
    """Create a client and a site record for every distinct name pair agents and tokens carry."""
    bind = op.get_bind()
    pairs = bind.execute(
        sa.text("SELECT client, site FROM agents UNION SELECT client, site FROM enrollment_tokens")
    ).all()
    now = time.time()
    client_ids: dict[str, str] = {}
    for client, _site in pairs:
        client_ids.setdefault(client, secrets.token_hex(6))
    if client_ids:
        op.bulk_insert(
            clients,
            [
                {
                    "id": ident,
                    "name": name,
                    "created_at": now,
                    "created_by": MIGRATED_BY,
                    "updated_at": now,
                }
                for name, ident in client_ids.items()
            ],
        )
    if pairs:
        op.bulk_insert(
            sites,
            [
                {
                    "id": secrets.token_hex(6),
                    "client_id": client_ids[client],
                    "name": site,
                    "time_zone": "UTC",
                    "created_at": now,
                    "created_by": MIGRATED_BY,
                    "updated_at": now,
                }
                for client, site in sorted(set(pairs))
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_contracts_client", "contracts")
    op.drop_table("contracts")
    op.drop_index("ix_sites_client_name", "sites")
    op.drop_table("sites")
    op.drop_index("ix_clients_name", "clients")
    op.drop_table("clients")
