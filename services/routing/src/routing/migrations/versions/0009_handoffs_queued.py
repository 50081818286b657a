"""the leads in teams' queues, waiting or escalated, indexed apart: counted every round of the queue watch and listed
for managers (GET /v1/queues)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = "routing"


def upgrade() -> None:
    # Escalated leads are in no index of their own (the waiting ones' leaves them out, the held ones' holds every
    # unaccepted lead), and a team renamed in the files is known only by the leads left in its queue: counting each
    # team's queue read every unaccepted hand-off. With this index it reads the queued leads alone.
    op.create_index("handoffs_queued", "handoffs", ["team", "waiting_since", "grade"], schema=SCHEMA,
                    postgresql_where=sa.text("status = 'routed' AND owner_id = 'queue:' || team"))


def downgrade() -> None:
    op.drop_index("handoffs_queued", "handoffs", schema=SCHEMA)
