"""each score keeps a digest of the rules it was given under, beside their version

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "scoring"


def upgrade() -> None:
    # Scores given before it stay NULL: rules changed under an unchanged version are told only from the next score.
    op.add_column("scores", sa.Column("rules_digest", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("scores", "rules_digest", schema=SCHEMA)
