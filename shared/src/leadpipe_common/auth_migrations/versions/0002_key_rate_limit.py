"""a key's own rate limit (capture counts a capture:write key's submissions against it)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "auth"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("api_keys", "rate_limit", schema=SCHEMA)
