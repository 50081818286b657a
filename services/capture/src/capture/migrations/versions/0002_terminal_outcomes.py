"""terminal outcomes learnt from leads.lifecycle, for re-driving lost leads

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    op.add_column("leads", sa.Column("terminal_stage", sa.Text), schema=SCHEMA)
    op.add_column("leads", sa.Column("terminal_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("leads", sa.Column("redrives", sa.Integer, nullable=False, server_default="0"), schema=SCHEMA)
    # The re-driver's work list: published leads still waiting for an outcome.
    op.create_index("leads_awaiting_outcome", "leads", ["published_at"], schema=SCHEMA,
                    postgresql_where=sa.text("terminal_stage IS NULL"))


def downgrade() -> None:
    op.drop_index("leads_awaiting_outcome", table_name="leads", schema=SCHEMA)
    for column in ("redrives", "terminal_at", "terminal_stage"):
        op.drop_column("leads", column, schema=SCHEMA)
