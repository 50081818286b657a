"""the leads merged into a lead, found by an index

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # An erasure lists the leads merged into each lead it erases, and into those in turn: without it, a scan of every
    # lead a step, inside the request's deadline. Merges are few, so the index is small, and the writer's inserts
    # (merged_into NULL) never touch it.
    op.create_index("leads_merged_into", "leads", ["merged_into"], schema=SCHEMA,
                    postgresql_where=sa.text("merged_into IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("leads_merged_into", table_name="leads", schema=SCHEMA)
