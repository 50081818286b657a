"""the leads whose person was erased (lead.erased), so that what is queued for one after its erasure is given up

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from leadpipe_common.migrations import create_erased_leads

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    create_erased_leads(SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure: a lead.routed read after one (from leads.routed, which delivery reads
    # apart from the lifecycle) is queued with whatever contact it carries.
    op.drop_table("erased_leads", schema=SCHEMA)
