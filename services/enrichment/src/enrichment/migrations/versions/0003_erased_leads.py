"""the leads whose person was erased (lead.erased), so that a redriven or late event of one is not enriched again

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from leadpipe_common.migrations import create_erased_leads

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "enrichment"


def upgrade() -> None:
    create_erased_leads(SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure marks: a lead.captured of an erased lead redriven after it is enriched
    # (and its person stored) again.
    op.drop_table("erased_leads", schema=SCHEMA)
