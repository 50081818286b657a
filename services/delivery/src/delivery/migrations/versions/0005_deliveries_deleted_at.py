"""when the API subscription a delivery was queued for was deleted: never redriven to another under its id

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("deleted_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # A deletion before now is known by the deliveries it turned dead ("subscription deleted", done when it was
    # deleted): the dead ones of that id done by its latest such deletion were its receiver's too. (One that
    # dropped nothing left no trace: its dead deliveries are still told apart only by an API subscription's
    # creation time.)
    op.execute(f"""
        UPDATE {SCHEMA}.deliveries d SET deleted_at = deletion.at
        FROM (SELECT subscription_id, max(done_at) AS at FROM {SCHEMA}.deliveries
              WHERE last_error = 'subscription deleted' GROUP BY subscription_id) deletion
        WHERE d.subscription_id = deletion.subscription_id AND d.status = 'dead' AND d.done_at <= deletion.at
    """)


def downgrade() -> None:
    op.drop_column("deliveries", "deleted_at", schema=SCHEMA)
