"""the read model: leads, steps, hand-offs

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "reporting"
STAGES = ("captured", "enriched", "mql", "routed", "accepted", "qualified", "won",
          "contacted", "nurture", "disqualified", "rejected", "lost")


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("form_id", sa.Text),
        sa.Column("offer", sa.Text),
        sa.Column("utm_source", sa.Text),
        sa.Column("utm_medium", sa.Text),
        sa.Column("utm_campaign", sa.Text),
        sa.Column("utm_content", sa.Text),
        sa.Column("grade", sa.Text),
        sa.Column("furthest", sa.SmallInteger, nullable=False),
        *(sa.Column(f"{stage}_at", sa.DateTime(timezone=True)) for stage in STAGES),
        sa.Column("won_amount", sa.Numeric(20, 2)),
        sa.Column("won_currency", sa.Text),
        sa.Column("rejected_reason", sa.Text),
        sa.Column("lost_reason", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("leads_captured_at", "leads", ["captured_at"], schema=SCHEMA)
    op.create_table(
        "steps",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_stage", sa.Text),
        sa.Column("to_stage", sa.Text, nullable=False),
        sa.Column("by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("steps_lead", "steps", ["lead_id", "at"], schema=SCHEMA)
    op.create_table(
        "handoffs",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("holder", sa.SmallInteger, primary_key=True),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("breached_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("handoffs", "steps", "leads"):
        op.drop_table(table, schema=SCHEMA)
