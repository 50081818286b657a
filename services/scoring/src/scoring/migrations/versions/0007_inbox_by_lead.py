"""the lead each inbox row's outputs are about, so an erasure finds them

Revision ID: 0007
Revises: 0006
"""

from leadpipe_common.migrations import add_inbox_lead_id, drop_inbox_lead_id

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "scoring"


def upgrade() -> None:
    add_inbox_lead_id(SCHEMA)


def downgrade() -> None:
    drop_inbox_lead_id(SCHEMA)
