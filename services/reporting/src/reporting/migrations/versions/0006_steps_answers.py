"""the answers that end hand-offs (accepted, rejected steps), indexed apart for the SLA report

Revision ID: 0006
Revises: 0005
"""

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.create_index("steps_answers", "steps", ["lead_id"], schema=SCHEMA,
                    postgresql_where=text("to_stage IN ('accepted', 'rejected')"))


def downgrade() -> None:
    op.drop_index("steps_answers", "steps", schema=SCHEMA)
