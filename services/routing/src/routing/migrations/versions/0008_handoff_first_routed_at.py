"""when each lead was first routed, kept on its hand-off: no sales report on the lead is dated earlier

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("first_routed_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # A lead's assignment is written when it is first routed, and over only by a recycle: a hand-off never recycled
    # has its first routing there. A recycled one's is lost, and stays NULL (its reports are not bounded by it);
    # one recycled before 0006 counted no cycle, and gets its last recycle's routing.
    op.execute(f"UPDATE {SCHEMA}.handoffs h SET first_routed_at = a.routed_at FROM {SCHEMA}.assignments a "
               "WHERE a.lead_id = h.lead_id AND h.cycle = 0")


def downgrade() -> None:
    # The older release neither reads nor writes it.
    op.drop_column("handoffs", "first_routed_at", schema=SCHEMA)
