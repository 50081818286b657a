"""no subscription follows an erased lead: the rows in followed of leads erased before 0010's processes deleted them
(an erasure applied by a process older than 0010 during that rolling upgrade, or by hand) go

A batch locks the rows in followed of the leads it lets go, takes or erases before it writes any (LOCK ORDER), and
deletes no other lead's; an erased lead's rows left in place would never go, and a batch that deleted them with its
erasure check, unlocked, could deadlock against a subscription's deletion.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SCHEMA = "delivery"


def upgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.followed f USING {SCHEMA}.erased_leads e WHERE f.lead_id = e.lead_id")


def downgrade() -> None:
    # Nothing to restore: no subscription hears of an erased lead after its erasure, whether or not its row is kept.
    pass
