"""the quarantine's pages read from indexes in the list's order: one form's, and every form's from a position

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMA = "capture"


def upgrade() -> None:
    # One form's page (GET /v1/quarantine?form_id=) walked the received_at index newest first, passing over every
    # other form's row: after a bot's flood of millions on one form, a page of another went past capture's
    # statement timeout, a 503 every time. By form, then in the list's order, a page is the index's next rows.
    op.create_index("quarantine_by_form", "quarantine", ["form_id", "received_at", "lead_id"], schema=SCHEMA)
    # The list is ordered by received_at, then lead_id: with the id in the index, a page starts at its position
    # (a row comparison) and the rows sharing a moment need no sort.
    op.drop_index("quarantine_received", table_name="quarantine", schema=SCHEMA)
    op.create_index("quarantine_received", "quarantine", ["received_at", "lead_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("quarantine_received", table_name="quarantine", schema=SCHEMA)
    op.create_index("quarantine_received", "quarantine", ["received_at"], schema=SCHEMA)
    op.drop_index("quarantine_by_form", table_name="quarantine", schema=SCHEMA)
