"""merges: leads sales said are one person; a merged lead is left out of every report

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

SCHEMA = "reporting"


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("survivor_id", UUID(as_uuid=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("merges_survivor", "merges", ["survivor_id"], schema=SCHEMA)
    op.add_column("leads", sa.Column("merged_into", UUID(as_uuid=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("leads", "merged_into", schema=SCHEMA)
    op.drop_table("merges", schema=SCHEMA)
