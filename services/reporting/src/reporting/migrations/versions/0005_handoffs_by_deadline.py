"""hand-offs keyed by their deadline, answered by what was recorded after they began

A hand-off was keyed by its holder's number (0 = routing's pick, n = after the
n-th breach): a lead sales rejected and a touch sent back counted from 0 again,
so its second hand-off landed on the first one's row (which one won depended on
how events were batched: live and replay differed), and either was judged
against the lead's first answer. Now each is keyed by (lead, deadline) and
judged by the first acceptance or rejection recorded after it began
(``steps.recorded_at``).

Rows from before keep their data (no start: judged as before). A replay
(``leadpipe-reporting replay``) rebuilds them under the new rule.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.add_column("steps", sa.Column("recorded_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("handoffs", sa.Column("started_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    # Two holders of one lead with one deadline to the instant: keep the first, with the earliest breach.
    op.execute(f"""
        UPDATE {SCHEMA}.handoffs a SET breached_at = LEAST(a.breached_at, b.breached_at)
        FROM {SCHEMA}.handoffs b WHERE a.lead_id = b.lead_id AND a.due_at = b.due_at AND a.holder < b.holder""")
    op.execute(f"""
        DELETE FROM {SCHEMA}.handoffs a USING {SCHEMA}.handoffs b
        WHERE a.lead_id = b.lead_id AND a.due_at = b.due_at AND a.holder > b.holder""")
    op.drop_constraint("handoffs_pkey", "handoffs", schema=SCHEMA)
    op.drop_column("handoffs", "holder", schema=SCHEMA)
    op.create_primary_key("handoffs_pkey", "handoffs", ["lead_id", "due_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_constraint("handoffs_pkey", "handoffs", schema=SCHEMA)
    op.add_column("handoffs", sa.Column("holder", sa.SmallInteger), schema=SCHEMA)
    op.execute(f"""
        UPDATE {SCHEMA}.handoffs h SET holder = n.holder
        FROM (SELECT lead_id, due_at, row_number() OVER (PARTITION BY lead_id ORDER BY due_at) - 1 AS holder
              FROM {SCHEMA}.handoffs) n
        WHERE h.lead_id = n.lead_id AND h.due_at = n.due_at""")
    op.alter_column("handoffs", "holder", nullable=False, schema=SCHEMA)
    op.create_primary_key("handoffs_pkey", "handoffs", ["lead_id", "holder"], schema=SCHEMA)
    op.drop_column("handoffs", "started_at", schema=SCHEMA)
    op.drop_column("steps", "recorded_at", schema=SCHEMA)
