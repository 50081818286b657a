"""a hand-off remembers the lead it was merged into

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("merged_into", UUID(as_uuid=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("handoffs", "merged_into", schema=SCHEMA)
