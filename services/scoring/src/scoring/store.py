"""scoring's tables (its inbox and every score it gave, with the decision and rules version) and its store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common.db import inbox_table, upsert

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


class ScoringStore:
    """scoring's writes, on one unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        """One score per lead; a lead scored again (a redriven event) is replaced."""
        await upsert(self._session, scores, rows, key="lead_id")
