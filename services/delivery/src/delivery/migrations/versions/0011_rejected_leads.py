"""when each followed lead was taken, and when each lead was last rejected: a rejection and the lead.routed of the
hand-off it ends, read in either order, leave the lead followed by no subscription

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

SCHEMA = "delivery"


def upgrade() -> None:
    # A lead taken before this release is dated the epoch, earlier than any rejection: the next rejection of it lets
    # it go, as it did.
    op.add_column("followed", sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True), schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.followed SET taken_at = 'epoch'")
    op.alter_column("followed", "taken_at", nullable=False, schema=SCHEMA)
    # Empty: the rejections read before are not known here. A lead.routed of a hand-off rejected before the upgrade,
    # read after it, takes its lead as it did before (docs/upgrading.md).
    op.create_table("rejected_leads",
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
                    schema=SCHEMA)


def downgrade() -> None:
    # 0010 follows a lead from any lead.routed sent, and lets it go at any rejection read.
    op.drop_table("rejected_leads", schema=SCHEMA)
    op.drop_column("followed", "taken_at", schema=SCHEMA)
