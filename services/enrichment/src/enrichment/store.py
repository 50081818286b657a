"""enrichment's tables: its inbox and the enrichment it computed per lead.

One row per lead, written with ``db.UpsertStore`` (a redriven event replaces it); an erased lead's row keeps its
company facts and loses those read from the person (``erasure.PERSONAL_ENRICHMENT``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.db import UpsertStore, among, inbox_table
from leadpipe_common.erasure import PERSONAL_ENRICHMENT

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


#: The personal facts of the given leads' enrichments set to null, as a lead enriched without them holds them.
_ERASE = (enrichments.update().where(among(enrichments.c.lead_id, "leads"))
          .values(data=enrichments.c.data.op("||")(sa.cast(dict.fromkeys(PERSONAL_ENRICHMENT), JSONB))))


class EnrichmentStore(UpsertStore):
    async def erase(self, lead_ids: Sequence[uuid.UUID]) -> None:
        """The leads' enrichments without what was read from their person (their phone, the country they gave)."""
        await self._session.execute(_ERASE, {"leads": list(lead_ids)})
