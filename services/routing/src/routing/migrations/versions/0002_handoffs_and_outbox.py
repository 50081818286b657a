"""hand-offs (status, SLA deadline, dispositions) and the outbox for API and timer events

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.migrations import create_outbox

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    create_outbox(SCHEMA)
    op.create_table(
        "handoffs",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("grade", sa.Text),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("reassignments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("holders", JSONB, nullable=False, server_default="[]"),
        sa.Column("history", JSONB, nullable=False, server_default="[]"),
        sa.Column("lead", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("handoffs_due", "handoffs", ["due_at"], schema=SCHEMA,
                    postgresql_where=sa.text("status = 'routed' AND due_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("handoffs_due", table_name="handoffs", schema=SCHEMA)
    op.drop_table("handoffs", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
