"""erasures keep no digest of the person key

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # An unsalted SHA-256 of a normalised address is reversed by trying addresses (millions a second), and the API
    # answered every erased lead of the address it was given: a link from the person to their erased leads, which
    # an erasure must not keep. 0012 ran on developers' databases only, so it is undone here, not edited.
    op.drop_index("erasures_by_person", table_name="erasures", schema=SCHEMA)
    op.drop_column("erasures", "person_digest", schema=SCHEMA)


def downgrade() -> None:
    # The digests are gone: erasures made meanwhile are not found by their address again.
    op.add_column("erasures", sa.Column("person_digest", sa.Text), schema=SCHEMA)
    op.create_index("erasures_by_person", "erasures", ["person_digest"], schema=SCHEMA)
