"""when a lead was closed (won, lost, disqualified), as capture's lifecycle follower learns it

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # Leads closed before it stay NULL: a merge into one of them points its people at it, as it always did.
    op.add_column("leads", sa.Column("closed_at", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("leads", "closed_at", schema=SCHEMA)
