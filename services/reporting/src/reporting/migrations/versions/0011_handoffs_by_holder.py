"""hand-offs keyed by their holder too: two holders of a lead may have one deadline

A hand-off was keyed by (lead, deadline). A lead routed to ana on Friday at
18:30 is due at 9:15 on Monday; handed over to ben on Saturday, it is due at
9:15 on Monday again: one row. Live, ben's hand-off was lost (the row kept
ana's, and ben's answer judged her hand-off); a replay folds a batch in memory
first and kept ben's instead. Now each is keyed by (lead, holder, deadline):
every event about a hand-off names its holder (the routing, the breach, the
end of a wait, the hand-over).

Rows from before are unique by (lead, deadline), so by the new key too: they
stay as they are. A lead whose two holders were folded into one row before
(only one handed over off hours, by this release's own lead.handed_over) is
mended by a replay (``leadpipe-reporting replay``).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SCHEMA = "reporting"


def upgrade() -> None:
    op.drop_constraint("handoffs_pkey", "handoffs", schema=SCHEMA)
    op.create_primary_key("handoffs_pkey", "handoffs", ["lead_id", "owner_id", "due_at"], schema=SCHEMA)


def downgrade() -> None:
    # One row a lead and deadline again: the first holder's (the earliest start), as the release before kept the
    # first it wrote.
    op.execute(f"""
        DELETE FROM {SCHEMA}.handoffs a USING {SCHEMA}.handoffs b
        WHERE a.lead_id = b.lead_id AND a.due_at = b.due_at AND a.owner_id <> b.owner_id
          AND (COALESCE(a.started_at, 'infinity'), a.owner_id) > (COALESCE(b.started_at, 'infinity'), b.owner_id)""")
    op.drop_constraint("handoffs_pkey", "handoffs", schema=SCHEMA)
    op.create_primary_key("handoffs_pkey", "handoffs", ["lead_id", "due_at"], schema=SCHEMA)
