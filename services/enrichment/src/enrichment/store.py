"""enrichment's tables: its inbox and the enrichment it computed per lead.

One row per lead, written with ``db.UpsertStore`` (a redriven event replaces it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.db import inbox_table

SCHEMA = "enrichment"
metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
enrichments = sa.Table(
    "enrichments",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("data", JSONB, nullable=False),
    sa.Column("enriched_at", sa.DateTime(timezone=True), nullable=False),
)
