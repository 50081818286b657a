"""a finished delivery's body may be purged (DELIVERY_KEEP_BODIES_DAYS); finished ones still holding it, by age

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    op.alter_column("deliveries", "body", nullable=True, schema=SCHEMA)
    # Small once the first purge is done: purged rows leave it, as pending ones are never in it.
    op.create_index("deliveries_unpurged", "deliveries", ["done_at"], schema=SCHEMA,
                    postgresql_where=sa.text("status <> 'pending' AND body IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("deliveries_unpurged", table_name="deliveries", schema=SCHEMA)
    # The older release needs a body on every row: a purged one gets an empty one, what it was is gone.
    op.execute(f"UPDATE {SCHEMA}.deliveries SET body = ''::bytea WHERE body IS NULL")
    op.alter_column("deliveries", "body", nullable=False, schema=SCHEMA)
