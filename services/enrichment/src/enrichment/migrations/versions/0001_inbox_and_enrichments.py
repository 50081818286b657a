"""inbox and enrichments

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

SCHEMA = "enrichment"


def upgrade() -> None:
    create_inbox(SCHEMA)
    op.create_table(
        "enrichments",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("enriched_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("enrichments", schema=SCHEMA)
    op.drop_table("inbox", schema=SCHEMA)
