"""the number of the hand-off each followed lead was taken at, and of the last hand-off a rejection of each lead
ended: a rejection and a lead.routed are ordered by routing's count, not by two routing processes' clocks; and a
followed lead taken without a time (by a process older than 0011) is dated the epoch

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    # NULL for the rows in place: their number is not known, so they are compared by time, as under 0011.
    op.add_column("followed", sa.Column("taken_seq", sa.Integer), schema=SCHEMA)
    op.add_column("rejected_leads", sa.Column("handoff_seq", sa.Integer), schema=SCHEMA)
    # A delivery process older than 0011, still serving during a rolling upgrade (migrate, then serve), takes a lead
    # without a time: refused (NOT NULL), each such batch failed to the dead letters. Dated the epoch, as 0011 dated
    # the rows in place, before any rejection: the lead's next rejection lets it go, as that process would have.
    op.alter_column("followed", "taken_at", server_default=sa.text("'epoch'"), schema=SCHEMA)


def downgrade() -> None:
    # 0011 orders a rejection and a lead.routed by routing's times alone, and dates every take itself.
    op.alter_column("followed", "taken_at", server_default=None, schema=SCHEMA)
    op.drop_column("rejected_leads", "handoff_seq", schema=SCHEMA)
    op.drop_column("followed", "taken_seq", schema=SCHEMA)
