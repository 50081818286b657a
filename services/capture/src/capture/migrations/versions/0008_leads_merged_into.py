"""which lead a lead was merged into, as capture's lifecycle follower learns it

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # Merges applied before it stay NULL: a later merge into one of those leads points its people at it, as it
    # always did, instead of at the lead it went on into.
    op.add_column("leads", sa.Column("merged_into", UUID(as_uuid=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("leads", "merged_into", schema=SCHEMA)
