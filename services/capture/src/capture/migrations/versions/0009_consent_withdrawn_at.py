"""when a lead's person last said no to marketing, on the lead's first submission and on each touch

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # Rows stored before it stay NULL, their no (if any) of unknown time: a word on consent released from quarantine
    # applies to them as it always did, while a no given from now on holds against any older word.
    for table in ("leads", "touches"):
        op.add_column(table, sa.Column("consent_withdrawn_at", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    for table in ("leads", "touches"):
        op.drop_column(table, "consent_withdrawn_at", schema=SCHEMA)
