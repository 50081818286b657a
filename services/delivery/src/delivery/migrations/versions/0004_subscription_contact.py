"""a subscription made through the admin API may name the contact fields its receiver is sent

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # NULL, as every subscription made before: sent the whole contact, as it always was.
    op.add_column("subscriptions", sa.Column("contact", ARRAY(sa.Text)), schema=SCHEMA)


def downgrade() -> None:
    # The older release sends every subscription the whole contact, whatever it was limited to.
    op.drop_column("subscriptions", "contact", schema=SCHEMA)
