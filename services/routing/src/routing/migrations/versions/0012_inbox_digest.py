"""the digest of each report's record beside its id in the inbox, so that a report under a used ce_id is told
from a redelivery

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    # Rows kept before stay NULL: their reports are taken as before, a record under their id for a redelivery.
    op.add_column("inbox", sa.Column("digest", sa.LargeBinary), schema=SCHEMA)


def downgrade() -> None:
    # The older release takes any report under a used ce_id for a redelivery again.
    op.drop_column("inbox", "digest", schema=SCHEMA)
