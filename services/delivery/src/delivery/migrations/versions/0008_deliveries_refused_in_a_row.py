"""a delivery is given up as refused after its receiver refused it so many attempts in a row, not at any attempt

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # A constant default: Postgres adds the column without rewriting the table, however long its history. Every
    # delivery starts with none in a row: one its receiver was refusing at the upgrade gets its
    # DELIVERY_REFUSED_ATTEMPTS refusals from here (the attempts log is numbered across redrives and enables, and
    # cannot tell where its count would have started).
    op.add_column("deliveries", sa.Column("refused_in_a_row", sa.Integer, nullable=False, server_default="0"),
                  schema=SCHEMA)


def downgrade() -> None:
    # The older release counts a refusal against every attempt since the delivery was queued or redriven: one that
    # failed for hours is given up at its receiver's first refusal.
    op.drop_column("deliveries", "refused_in_a_row", schema=SCHEMA)
