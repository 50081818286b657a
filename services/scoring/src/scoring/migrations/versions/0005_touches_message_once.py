"""a touch stored before a message counted only for the touch that wrote it has one only where it wrote it

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "scoring"


def upgrade() -> None:
    # Before 24c1c41 a touch had a message whenever its contact did, and capture keeps a person's message on their
    # contact: from the touch that wrote one, every later touch of the lead was stored with one too, and each
    # scored it again, for ever where the rule has no half-life. The text is not kept, so a touch that carried the
    # message cannot be told from one that wrote a different message straight after it: a touch (but a capture,
    # whose message is always its own) keeps its message only when the touch before it, in time, had none. That
    # is exactly what the new rule stores for a lead's touches stored the old way (a run with a message from its
    # first one on); a touch stored since, the new way, keeps its message unless the one before it had one too.
    op.execute(f"""
        UPDATE {SCHEMA}.touches AS t
        SET facts = jsonb_set(t.facts, '{{has_message}}', 'false')
        FROM (SELECT lead_id, touch_id,
                     lag(facts -> 'has_message') OVER (PARTITION BY lead_id ORDER BY at, touch_id) AS had_before
              FROM {SCHEMA}.touches) AS o
        WHERE o.lead_id = t.lead_id AND o.touch_id = t.touch_id
          AND t.facts -> 'has_message' = 'true' AND o.had_before = 'true'
          AND t.touch_id <> t.lead_id
          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.scores AS s WHERE s.lead_id = t.touch_id)
    """)


def downgrade() -> None:
    # Which touches carried a message they had not written is not kept: they stay without one (the earlier
    # release reads them as they are).
    pass
