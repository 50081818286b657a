"""leads, which are also the transactional outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("request_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("form_id", sa.Text),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traceparent", sa.Text, nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("leads_captured_at", "leads", ["captured_at"], schema=SCHEMA)
    # The relay's work queue: small, because published rows leave it.
    op.create_index("leads_unpublished", "leads", ["seq"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_table("leads", schema=SCHEMA)
