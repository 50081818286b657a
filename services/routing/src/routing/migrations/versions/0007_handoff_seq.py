"""the number of each lead's hand-off to its holder now, which its lead.routed records carry (lead.routed v5)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("seq", sa.Integer, nullable=False, server_default="1"), schema=SCHEMA)
    # The hand-offs a stored row can tell of: its first, one a recycle (cycle) and one a missed deadline of the
    # current hand-off (reassignments). Hand-overs, hand-outs and moves between queues before it left no count,
    # and need none: no lead.routed before it carried a number, so any start that only grows from here keeps a
    # lead's records in order.
    op.execute(f"UPDATE {SCHEMA}.handoffs SET seq = 1 + cycle + reassignments WHERE cycle > 0 OR reassignments > 0")


def downgrade() -> None:
    # The older release writes lead.routed v4, without a number: receivers go by arrival again.
    op.drop_column("handoffs", "seq", schema=SCHEMA)
