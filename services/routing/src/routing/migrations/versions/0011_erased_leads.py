"""the leads whose person was erased (lead.erased), so that a redriven or late score of one is not routed again

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    op.create_table("erased_leads",
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
                    schema=SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure marks: a lead.scored of an erased lead redriven after it is routed (and
    # its person stored and sent) again.
    op.drop_table("erased_leads", schema=SCHEMA)
