"""inbox and scores

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

SCHEMA = "scoring"


def upgrade() -> None:
    create_inbox(SCHEMA)
    op.create_table(
        "scores",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("score", sa.SmallInteger, nullable=False),
        sa.Column("grade", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("rules_version", sa.Text, nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("scores_decision", "scores", ["decision"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("scores", schema=SCHEMA)
    op.drop_table("inbox", schema=SCHEMA)
