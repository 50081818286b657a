"""the lead each inbox row's outputs are about, so an erasure finds them

Revision ID: 0010
Revises: 0009
"""

from leadpipe_common.migrations import add_inbox_lead_id, drop_inbox_lead_id

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    add_inbox_lead_id(SCHEMA)


def downgrade() -> None:
    drop_inbox_lead_id(SCHEMA)
