"""what a person last said of marketing consent, whichever of their leads they said it on, and when they sent it

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # People kept before it stay NULL (nothing said): their words are on their leads, which name them only inside
    # each lead's event, and a merged lead holds two people's. Reading them back would parse every lead and touch
    # while holding every person's row, which capture's running processes wait on. See docs/upgrading.md.
    op.add_column("people", sa.Column("consent", sa.Boolean), schema=SCHEMA)
    op.add_column("people", sa.Column("consent_said_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # Every row holds NULL and NULL: NOT VALID skips a scan of the table under its lock, and rows written from now
    # on are checked all the same.
    op.create_check_constraint("people_consent_said_when", "people", "(consent IS NULL) = (consent_said_at IS NULL)",
                               schema=SCHEMA, postgresql_not_valid=True)


def downgrade() -> None:
    op.drop_constraint("people_consent_said_when", "people", schema=SCHEMA, type_="check")
    for column in ("consent_said_at", "consent"):
        op.drop_column("people", column, schema=SCHEMA)
