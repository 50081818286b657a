"""spam: submissions capture quarantined, by form and source

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.create_table(
        "spam",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("form_id", sa.Text),
        sa.Column("utm_source", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("spam_received_at", "spam", ["received_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("spam", schema=SCHEMA)
