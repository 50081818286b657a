"""hand-offs ended by a manager's hand-over: when, so that no later answer is the holder's

routing's lead.handed_over moves a lead a rep holds to another holder. The
holder's hand-off was left as it was: the SLA report answered it with the
first acceptance or rejection after it began, the new holder's, so a lead
handed over before its deadline counted missed against the rep who left
(the new holder answering after the first deadline) or met twice. The
hand-over is now kept on the hand-off it ended (``handed_over_at``): only
answers recorded before it are the holder's, and one ended before its
deadline is neither met nor missed.

No row before this revision was handed over (the event is new with it):
the column starts empty and nothing is filled in.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("handed_over_at", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("handoffs", "handed_over_at", schema=SCHEMA)
