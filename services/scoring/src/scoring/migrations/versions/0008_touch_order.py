"""a touch handled late is judged in time: each touch keeps a digest of its person's message, each score the time
of the touch its lead is from

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "scoring"


def upgrade() -> None:
    # Rows before it stay NULL: a touch after one kept without a digest is judged by the lead's message as last
    # scored, and a lead kept without its time is taken as of its newest touch, as before.
    op.add_column("touches", sa.Column("message", sa.Text), schema=SCHEMA)
    op.add_column("scores", sa.Column("lead_at", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("scores", "lead_at", schema=SCHEMA)
    op.drop_column("touches", "message", schema=SCHEMA)
