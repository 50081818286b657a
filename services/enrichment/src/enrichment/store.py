"""enrichment's tables (its inbox and the enrichment it computed per lead) and its store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common.db import inbox_table, upsert

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


class EnrichmentStore:
    """enrichment's writes, on one unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        """One row per lead (``lead_id``, ``data``, ``enriched_at``); a lead enriched again is replaced."""
        await upsert(self._session, enrichments, rows, key="lead_id")
