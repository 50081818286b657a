"""touches by touch id: a released submission is a touch of its person's open lead, found by its id

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.create_index("touches_touch_id", "touches", ["touch_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("touches_touch_id", "touches", schema=SCHEMA)
