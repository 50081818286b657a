"""touches: the capture of each lead captured before 0003 and touched since, as reporting writes it at capture

0003 made ``touches`` empty, and the store writes a lead's capture there (its
first touch, under the lead's own id) only when it applies the capture. A lead
captured before it has its later touches alone, and last-touch and linear
attribution read a lead's own first touch only when it has no touch at all:
touched once after the upgrade, its capture got no credit (linear gave the
one later touch all of it). Each such capture is written now as the store
writes it: under the lead's id, at its capture time, with the attribution its
row keeps (the capture's).

A lead merged into another has its touches copied to the survivor, and its
capture is copied here too, along the merges on (D into S into T: to S and
T), as the store's merge copies a capture it holds. A survivor's row keeps the
earlier first touch of the two: it is the survivor's own capture only when its
own captured step is at that time; else the survivor's own attribution was
not kept, and only a replay (``leadpipe-reporting replay``) brings it back.

Only a lead that holds touches gets one: a lead with none is its own first
touch in the reports as before, and every untouched lead from before 0003
would be a row written for nothing.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SCHEMA = "reporting"
#: The attribution a touch keeps, as of this revision (frozen: a later change is a migration).
DIMENSIONS = ("form_id", "offer", "utm_source", "utm_medium", "utm_campaign", "utm_content")


def upgrade() -> None:
    dimensions = ", ".join(DIMENSIONS)
    op.execute(f"""
        WITH RECURSIVE captures AS (
            SELECT l.lead_id, l.captured_at, {", ".join(f"l.{c}" for c in DIMENSIONS)}
            FROM {SCHEMA}.leads l
            WHERE l.captured_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.touches t WHERE t.lead_id = l.lead_id AND t.touch_id = l.lead_id)
              AND (l.merged_into IS NOT NULL OR EXISTS (SELECT 1 FROM {SCHEMA}.touches t WHERE t.lead_id = l.lead_id))
              AND (NOT EXISTS (SELECT 1 FROM {SCHEMA}.merges m WHERE m.survivor_id = l.lead_id)
                   OR EXISTS (SELECT 1 FROM {SCHEMA}.steps s WHERE s.lead_id = l.lead_id AND s.to_stage = 'captured'
                              AND s.at = l.captured_at))
        ),
        holders (lead_id, touch_id) AS (
            SELECT lead_id, lead_id FROM captures
            UNION
            SELECT m.survivor_id, h.touch_id FROM holders h JOIN {SCHEMA}.merges m ON m.lead_id = h.lead_id
        )
        INSERT INTO {SCHEMA}.touches (lead_id, touch_id, at, {dimensions})
        SELECT h.lead_id, h.touch_id, c.captured_at, {", ".join(f"c.{c}" for c in DIMENSIONS)}
        FROM holders h JOIN captures c ON c.lead_id = h.touch_id
        WHERE EXISTS (SELECT 1 FROM {SCHEMA}.touches t WHERE t.lead_id = h.lead_id)
        ON CONFLICT DO NOTHING""")


def downgrade() -> None:
    # The rows are those the store writes at capture: the release before reads them as its own.
    pass
