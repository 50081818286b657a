"""enrichment's tables: its inbox, the enrichment it computed per lead and the leads erased.

One row per lead, written with ``db.UpsertStore`` (a redriven event replaces it); an erased lead's row keeps its
company facts and loses those read from the person (``erasure.PERSONAL_ENRICHMENT``), and the lead is noted in
``erased_leads`` whether enrichment held it or not, so that no later event of it (a redrive, a late touch) is
enriched again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from leadpipe_common.db import UpsertStore, among, erased_leads_table, inbox_table
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
erased_leads = erased_leads_table(metadata)


#: The personal facts of the given leads' enrichments set to null, as a lead enriched without them holds them.
_ERASE = (enrichments.update().where(among(enrichments.c.lead_id, "leads"))
          .values(data=enrichments.c.data.op("||")(sa.cast(dict.fromkeys(PERSONAL_ENRICHMENT), JSONB))))

#: A batch's erasures noted, in one statement; a lead erased already keeps its first time.
_NOTE_ERASED = sa.text(f"""
INSERT INTO {SCHEMA}.erased_leads (lead_id, erased_at)
SELECT * FROM unnest(CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]))
ON CONFLICT (lead_id) DO NOTHING
""")
_ERASED = sa.select(erased_leads.c.lead_id).where(among(erased_leads.c.lead_id, "leads"))


class EnrichmentStore(UpsertStore):
    async def erase(self, erased: Mapping[uuid.UUID, datetime]) -> None:
        """The leads' enrichments without what was read from their person (their phone, the country they gave),
        and the leads noted as erased, held or not."""
        ids = sorted(erased)
        await self._session.execute(_ERASE, {"leads": ids})
        await self._session.execute(_NOTE_ERASED, {"leads": ids, "at": [erased[i] for i in ids]})

    async def erased(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of the leads were erased, in one statement."""
        ids = sorted(set(lead_ids))
        if not ids:
            return set()
        return set((await self._session.execute(_ERASED, {"leads": ids})).scalars())
