"""scoring's tables: its inbox and every score it gave (with the decision and rules version).

One row per lead, written with ``db.UpsertStore`` (a redriven event replaces it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.db import inbox_table

SCHEMA = "scoring"
metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("score", sa.SmallInteger, nullable=False),
    sa.Column("grade", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("rules_version", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
)
