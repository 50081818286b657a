"""the leads each subscription filtered on grade took: it keeps hearing of them whatever grade they are raised to

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # Empty: which leads a subscription took before is not known here (whether its file's filter named a grade then,
    # and whether sales rejected the lead since), so those are judged by the grade routing holds them at, as before
    # (docs/upgrading.md).
    op.create_table("followed",
                    sa.Column("subscription_id", sa.Text, primary_key=True),
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    schema=SCHEMA)
    op.create_index("followed_lead", "followed", ["lead_id"], schema=SCHEMA)


def downgrade() -> None:
    # The older release has no memory: a subscription filtered on grade hears of a lead it took by the grade routing
    # holds it at, and no longer of one a touch raised above its grades.
    op.drop_table("followed", schema=SCHEMA)
