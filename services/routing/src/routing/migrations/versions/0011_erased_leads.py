"""the leads whose person was erased (lead.erased), so that a redriven or late score of one is not routed again

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from leadpipe_common.migrations import create_erased_leads

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    create_erased_leads(SCHEMA)


def downgrade() -> None:
    # The older release knows no erasure marks: a lead.scored of an erased lead redriven after it is routed (and
    # its person stored and sent) again.
    op.drop_table("erased_leads", schema=SCHEMA)
