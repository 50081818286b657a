"""leads: which report a won deal's amount is of, so a correction of it stands for the deal

Routing's lead.won_amount_corrected lets a won deal's holder correct its
amount or currency. ``won_amount`` kept its first value (``COALESCE``), the
won report's, so revenue stayed wrong for good. ``won_correction`` numbers
the report the amount is of (0 the win's, n its n-th correction): the
highest number known stands for the deal, however the events arrive.

No row before this revision holds a correction (the event is new with it):
the column starts empty, which reads as the win's own amount.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.add_column("leads", sa.Column("won_correction", sa.Integer), schema=SCHEMA)


def downgrade() -> None:
    # The older release keeps the first amount it sees: the win's, from a replay; a row corrected since keeps
    # the corrected amount until then.
    op.drop_column("leads", "won_correction", schema=SCHEMA)
