"""scoring's handler: ``lead.enriched`` in, ``lead.scored`` and a lifecycle step out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome
from leadpipe_common.db import UpsertStore
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.events import LeadEnriched, LeadScored, LeadStageChanged
from leadpipe_common.logging import each
from leadpipe_common.uow import UnitOfWork

from scoring.domain import RuleSet, explain, score

SOURCE = "leadpipe/scoring"


@dataclass(frozen=True)
class Scoring:
    """What scoring's handler needs besides its store."""

    rules: RuleSet
    clock: Callable[[], datetime]


async def handle_lead_enriched(uow: UnitOfWork[UpsertStore], batch: Sequence[Envelope],
                               ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    outcomes: dict[uuid.UUID, Outcome] = {}
    rows = []
    for env in each(batch):
        lead = env.data
        assert isinstance(lead, LeadEnriched)
        result = score(lead, ctx.rules)
        scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)  # validated parts
        changed = LeadStageChanged(
            lead_id=lead.lead_id, from_stage="enriched", to_stage=result.decision, at=now, by="scoring",
            reason=explain(result, ctx.rules), attribution=lead.attribution,
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
    await uow.store.save(rows)
    return outcomes
