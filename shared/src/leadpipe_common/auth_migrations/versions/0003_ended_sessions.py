"""dashboard sessions signed out before their cookies expire, by the SHA-256 of the cookie's nonce

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "auth"


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("nonce_sha256", BYTEA, primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ended_sessions_expires_at", "ended_sessions", ["expires_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("ended_sessions", schema=SCHEMA)
