"""each score keeps the lead it scored (to re-score it under new rules), and an outbox for what a re-score
publishes outside a consumed event

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from leadpipe_common.migrations import create_outbox

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "scoring"


def upgrade() -> None:
    op.add_column("scores", sa.Column("lead", JSONB), schema=SCHEMA)
    create_outbox(SCHEMA)


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_column("scores", "lead", schema=SCHEMA)
