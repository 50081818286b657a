"""availability: out-of-office periods, leads waiting in a team's queue, held leads counted per rep

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("waiting_since", sa.DateTime(timezone=True)), schema=SCHEMA)
    # The queue watch reads only waiting leads; capacity counts only unaccepted ones per holder.
    op.create_index("handoffs_waiting", "handoffs", ["team", "waiting_since"], schema=SCHEMA,
                    postgresql_where=sa.text("waiting_since IS NOT NULL AND status = 'routed'"))
    op.create_index("handoffs_held", "handoffs", ["owner_id"], schema=SCHEMA,
                    postgresql_where=sa.text("status = 'routed'"))
    op.create_table(
        "away",
        sa.Column("rep_id", sa.Text, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("set_by", sa.Text, nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("rep_id", "starts_at"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("away", schema=SCHEMA)
    op.drop_index("handoffs_held", "handoffs", schema=SCHEMA)
    op.drop_index("handoffs_waiting", "handoffs", schema=SCHEMA)
    op.drop_column("handoffs", "waiting_since", schema=SCHEMA)
