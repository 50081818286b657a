"""unpublished touches by lead: the relay holds a touch back while an older one of its lead is unpublished

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # Small: published touches leave it, as they leave touches_unpublished.
    op.create_index("touches_unpublished_by_lead", "touches", ["lead_id", "seq"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_index("touches_unpublished_by_lead", table_name="touches", schema=SCHEMA)
