"""the leads whose person was erased (lead.erased), so that a redriven or late event of one is not enriched again

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

SCHEMA = "enrichment"


def upgrade() -> None:
    op.create_table("erased_leads",
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
                    schema=SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure marks: a lead.captured of an erased lead redriven after it is enriched
    # (and its person stored) again.
    op.drop_table("erased_leads", schema=SCHEMA)
