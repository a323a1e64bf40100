"""Patching: keep each driver or firmware update's hardware ids in patch_updates, so a patch
policy's hardware_ids pin matches when decisions are recomputed from the database (a policy
reload, an approve by scope) as it does when the agent's list arrives (issue #13).

Rows stored before hold no ids: the digest held for an agent with driver or firmware rows is
cleared, so its next list (sent on change, or the collector's resend within 6 h) is stored
again with them; until then such a row is decided as before the pin (unpinned).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "patch_updates",
        sa.Column("hardware_ids", sa.Text, nullable=False, server_default=""),
    )
    op.execute(
        "UPDATE patch_agents SET digest = '' WHERE agent_id IN (SELECT agent_id FROM "
        "patch_updates WHERE classification IN ('driver', 'firmware'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("patch_updates") as batch:
        batch.drop_column("hardware_ids")
