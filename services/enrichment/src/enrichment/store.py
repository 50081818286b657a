"""enrichment's tables: its inbox and the enrichment it computed per lead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

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


async def save_enrichments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert(enrichments)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[enrichments.c.lead_id],
            set_={"data": stmt.excluded.data, "enriched_at": stmt.excluded.enriched_at},
        ),
        list(rows),
    )
