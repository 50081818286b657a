"""a quarantined submission's address stem, which an erasure by address finds it by

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SCHEMA = "capture"
#: The stem of a kept address no erasure reads as anyone's (no valid address, or none kept): no prefix of a
#: person key's local part holds an @.
NOBODY = "@"
#: Rows read and written at a time: a bot's flood may be millions.
BATCH = 10_000


def upgrade() -> None:
    # An erasure by address picked the quarantined submissions to read by the lowered first letter of the address
    # as sent, which the person's key does not always begin with (a decomposed é begins with an e, ß is folded to
    # ss, the C locale lowers no É): those were kept, contact and all, and the erasure answered 404. It reads those
    # whose stem the key begins with now (capture.domain.address_stem), found by an index.
    op.add_column("quarantine", sa.Column("address_stem", sa.Text), schema=SCHEMA)
    op.create_index("quarantine_by_address_stem", "quarantine", ["address_stem"], schema=SCHEMA)
    # The rows kept so far get theirs here, from the address as kept, read as an erasure reads it (Postgres cannot
    # casefold): left without one, every erasure would read each of them in Python, a bot's flood included.
    conn = op.get_bind()
    after = None
    while True:
        rows = conn.execute(sa.text(
            f"SELECT lead_id, fields->>'email' AS email FROM {SCHEMA}.quarantine "
            "WHERE address_stem IS NULL AND (CAST(:after AS uuid) IS NULL OR lead_id > :after) "
            "ORDER BY lead_id LIMIT :batch"), {"after": after, "batch": BATCH}).all()
        if not rows:
            return
        conn.execute(sa.text(
            f"UPDATE {SCHEMA}.quarantine q SET address_stem = s.stem "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:stems AS text[])) AS s (lead_id, stem) "
            "WHERE q.lead_id = s.lead_id"),
            {"ids": [row.lead_id for row in rows], "stems": [_stem(row.email) for row in rows]})
        after = rows[-1].lead_id


def _stem(sent: str | None) -> str:
    """capture.domain.address_stem of ``sent`` read as an erasure reads a kept address, as of this revision
    (frozen: a later change is a migration)."""
    try:
        normalized = validate_email((sent or "").strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return NOBODY
    local = normalized.rpartition("@")[0].casefold()
    end = next((i for i, c in enumerate(local) if c == "." or (c == "+" and i > 0)), len(local))
    return local[:end]


def downgrade() -> None:
    op.drop_index("quarantine_by_address_stem", table_name="quarantine", schema=SCHEMA)
    op.drop_column("quarantine", "address_stem", schema=SCHEMA)
