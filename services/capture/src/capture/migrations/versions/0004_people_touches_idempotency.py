"""people (one open lead each), touches of open leads, and Idempotency-Key answers

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("person_key", sa.Text, primary_key=True),
        sa.Column("person_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("open_lead_id", UUID(as_uuid=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("people_open_lead", "people", ["open_lead_id"], schema=SCHEMA)
    op.create_table(
        "touches",
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("touch_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traceparent", sa.Text, nullable=False),
        sa.Column("event", sa.LargeBinary, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("touches_unpublished", "touches", ["seq"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "idempotency",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("answer", JSONB),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("idempotency_created_at", "idempotency", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    for table in ("idempotency", "touches", "people"):
        op.drop_table(table, schema=SCHEMA)
