"""touches: every touch of every lead (its capture, then each later submission), for multi-touch attribution

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "reporting"
DIMENSIONS = ("form_id", "offer", "utm_source", "utm_medium", "utm_campaign", "utm_content")


def upgrade() -> None:
    op.create_table(
        "touches",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("touch_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(c, sa.Text) for c in DIMENSIONS),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("touches", schema=SCHEMA)
