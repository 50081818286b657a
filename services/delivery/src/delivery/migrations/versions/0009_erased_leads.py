"""the leads whose person was erased (lead.erased), so that what is queued for one after its erasure is given up

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    op.create_table("erased_leads",
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
                    schema=SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure: a lead.routed read after one (from leads.routed, which delivery reads
    # apart from the lifecycle) is queued with whatever contact it carries.
    op.drop_table("erased_leads", schema=SCHEMA)
