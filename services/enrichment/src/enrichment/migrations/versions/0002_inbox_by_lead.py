"""the lead each inbox row's outputs are about, so an erasure finds them

Revision ID: 0002
Revises: 0001
"""

from leadpipe_common.migrations import add_inbox_lead_id, drop_inbox_lead_id

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "enrichment"


def upgrade() -> None:
    add_inbox_lead_id(SCHEMA)


def downgrade() -> None:
    drop_inbox_lead_id(SCHEMA)
