"""when the API subscription a delivery was queued for was deleted: never redriven to another under its id

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # NULL for every delivery so far: those a deletion dropped before are known by their last_error, as before.
    op.add_column("deliveries", sa.Column("deleted_at", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("deliveries", "deleted_at", schema=SCHEMA)
