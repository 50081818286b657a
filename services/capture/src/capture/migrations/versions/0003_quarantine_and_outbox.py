"""quarantine for submissions taken for bots', and an outbox for the events that announce them

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from leadpipe_common.migrations import create_outbox

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    create_outbox(SCHEMA)
    op.create_table(
        "quarantine",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reasons", ARRAY(sa.Text), nullable=False),
        sa.Column("form_id", sa.Text),
        sa.Column("utm_source", sa.Text),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("quarantine_received", "quarantine", ["received_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("quarantine_received", table_name="quarantine", schema=SCHEMA)
    op.drop_table("quarantine", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
