"""inbox, assignments and rotation state

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.migrations import create_inbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    create_inbox(SCHEMA)
    op.create_table(
        "assignments",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "rotation",
        sa.Column("team", sa.Text, primary_key=True),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("turns", sa.BigInteger, nullable=False, server_default="0"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("rotation", schema=SCHEMA)
    op.drop_table("assignments", schema=SCHEMA)
    op.drop_table("inbox", schema=SCHEMA)
