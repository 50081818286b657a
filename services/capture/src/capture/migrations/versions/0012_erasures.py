"""each lead's person by id, and the erasures of people's leads (GDPR art. 17)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # Leads kept before it stay NULL: their person is named only inside each lead's event, and reading them back
    # would parse every lead while holding its row, which the relay and the lifecycle follower wait on. An erasure
    # by address finds such a lead only as its person's open lead; docs/upgrading.md gives the backfill to run at a
    # quiet time.
    op.add_column("leads", sa.Column("person_id", UUID(as_uuid=True)), schema=SCHEMA)
    op.create_index("leads_by_person", "leads", ["person_id"], schema=SCHEMA,
                    postgresql_where=sa.text("person_id IS NOT NULL"))
    op.create_table(
        "erasures",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("person_digest", sa.Text),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.Text, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("erasures_by_person", "erasures", ["person_digest"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("erasures", schema=SCHEMA)
    op.drop_index("leads_by_person", table_name="leads", schema=SCHEMA)
    op.drop_column("leads", "person_id", schema=SCHEMA)
