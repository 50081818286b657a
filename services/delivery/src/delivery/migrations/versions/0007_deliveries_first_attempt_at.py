"""a delivery's retry window counts from its first attempt, not from when it was queued

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("first_attempt_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # One already tried has been judged by a window from created_at: it keeps that window, rather than one from
    # its first logged attempt, which may precede the redrive or enable that restarted it. One never tried
    # (NULL) gets its whole window from its first attempt, however long it waited behind its lead's earlier one.
    op.execute(f"UPDATE {SCHEMA}.deliveries SET first_attempt_at = created_at "
               f"WHERE status = 'pending' AND attempts > 0")


def downgrade() -> None:
    # The older release counts every window from created_at: a delivery queued long before its first attempt
    # may be given up at its next failure.
    op.drop_column("deliveries", "first_attempt_at", schema=SCHEMA)
