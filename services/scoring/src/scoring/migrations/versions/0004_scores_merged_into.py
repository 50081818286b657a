"""which lead a merged lead was merged into

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

SCHEMA = "scoring"


def upgrade() -> None:
    # Leads merged before it stay NULL: a later merge into one of them leaves the touches with it, as it always did.
    op.add_column("scores", sa.Column("merged_into", UUID(as_uuid=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("scores", "merged_into", schema=SCHEMA)
