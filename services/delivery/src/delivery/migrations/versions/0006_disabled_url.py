"""a switch-off by a 410 keeps the url that answered it: a file's subscription the file sends elsewhere is on

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # NULL for every switch-off so far: which url answered is not known, so it holds whatever the url, as before.
    op.add_column("disabled", sa.Column("url", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    # The older release holds a switch-off whatever the url: a file's subscription switched off by a url its file
    # has left is off again until it is enabled.
    op.drop_column("disabled", "url", schema=SCHEMA)
