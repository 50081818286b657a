"""how often a hand-off was recycled (sales rejected it, a touch sent it back): its events' ids follow it

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    # Hand-offs recycled before it count as their first cycle: their next events keep the ids they had.
    op.add_column("handoffs", sa.Column("cycle", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("handoffs", "cycle", schema=SCHEMA)
