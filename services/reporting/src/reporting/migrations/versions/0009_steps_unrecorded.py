"""steps applied before 0005 (no recorded time), by event id: found without reading every step

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    # Empty in every install made since 0005, and never growing: each process asks once whether it holds any,
    # and only then looks up a batch's events in it (reporting.handlers.Reporting).
    op.create_index("steps_unrecorded", "steps", ["event_id"], schema=SCHEMA,
                    postgresql_where=sa.text("recorded_at IS NULL"))


def downgrade() -> None:
    op.drop_index("steps_unrecorded", "steps", schema=SCHEMA)
