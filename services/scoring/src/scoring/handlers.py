"""scoring's handlers: ``lead.enriched`` in, ``lead.scored`` and a lifecycle step out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common import topics
from leadpipe_common.consumer import BatchHandler, Outcome
from leadpipe_common.db import upsert
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.events import LeadEnriched, LeadScored, LeadStageChanged
from leadpipe_common.logging import each

from scoring.domain import RuleSet, explain, score
from scoring.store import scores

SOURCE = "leadpipe/scoring"


def build_handlers(rules: RuleSet, clock: Callable[[], datetime]) -> Mapping[str, BatchHandler]:
    async def handle_lead_enriched(session: AsyncSession, batch: Sequence[Envelope]) -> dict[uuid.UUID, Outcome]:
        now = clock()
        outcomes: dict[uuid.UUID, Outcome] = {}
        rows = []
        for env in each(batch):
            lead = env.data
            assert isinstance(lead, LeadEnriched)
            result = score(lead, rules)
            scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)  # validated parts
            changed = LeadStageChanged(
                lead_id=lead.lead_id, from_stage="enriched", to_stage=result.decision, at=now, by="scoring",
                reason=explain(result, rules), attribution=lead.attribution,
            )
            outcomes[env.id] = [
                follow_up(env, topics.SCORED, scored, source=SOURCE, time=now),
                follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now),
            ]
            rows.append({
                "lead_id": lead.lead_id, "score": result.value, "grade": result.grade,
                "decision": result.decision, "rules_version": result.rules_version,
                "reasons": [r.model_dump() for r in result.reasons], "scored_at": now,
            })
        await upsert(session, scores, rows, key="lead_id")
        return outcomes

    return {"lead.enriched": handle_lead_enriched}
