"""scoring's handler: ``lead.enriched`` in, ``lead.scored`` and (when the lead moves) a lifecycle step out.

A lead's first enrichment scores it: ``enriched → mql | nurture | disqualified``. A later touch re-scores it
over all its touches (intent decays with each touch's age): a nurture lead that reaches the MQL bar is
recycled (``nurture → mql``, and routing routes it); a lead already an MQL gets its new score on
``leads.scored`` (routing re-engages its holder); a disqualified lead is closed, and a late touch of it
changes nothing. A merge moves the duplicate's touches to the survivor and closes the duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.events import LeadEnriched, LeadMerged, LeadScored, LeadStageChanged
from leadpipe_common.logging import each
from leadpipe_common.uow import UnitOfWork

from scoring.domain import RuleSet, explain, score, stage_after, touch_of
from scoring.store import ScoringStore

SOURCE = "leadpipe/scoring"


@dataclass(frozen=True)
class Scoring:
    """What scoring's handler needs besides its store."""

    rules: RuleSet
    clock: Callable[[], datetime]


#: Decisions after which a lead never moves again: disqualified, or merged into another lead.
CLOSED = frozenset({"disqualified", "merged"})


async def handle_lead_merged(uow: UnitOfWork[ScoringStore], batch: Sequence[Envelope],
                             ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    """The survivor takes the duplicate's touches (its next score sums them all); the duplicate is closed."""
    await uow.store.merge({env.data.lead_id: env.data.survivor_id for env in batch
                           if isinstance(env.data, LeadMerged)})
    return {env.id: [] for env in batch}


async def handle_lead_enriched(uow: UnitOfWork[ScoringStore], batch: Sequence[Envelope],
                               ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    leads = [env.data for env in batch]
    decisions = await uow.store.decisions(lead.lead_id for lead in leads)
    touches = await uow.store.touches(lead.lead_id for lead in leads)
    outcomes: dict[uuid.UUID, Outcome] = {}
    touch_rows, score_rows = [], []
    for env in each(batch):
        lead = env.data
        assert isinstance(lead, LeadEnriched)
        touch = touch_of(lead)
        known = touches[lead.lead_id]
        if all(t.touch_id != touch.touch_id for t in known):
            known.append(touch)
        touch_rows.append({"lead_id": lead.lead_id, "touch_id": touch.touch_id, "at": touch.at,
                           "facts": dict(touch.facts)})
        before = decisions.get(lead.lead_id)
        if before in CLOSED:
            outcomes[env.id] = []  # closed: the touch is kept, the lead does not move
            continue
        result = score(lead, ctx.rules, known, now)
        stage = stage_after(before, result.decision)
        decisions[lead.lead_id] = stage
        scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)  # validated parts
        outcomes[env.id] = [follow_up(env, topics.SCORED, scored, source=SOURCE, time=now)]
        if stage != before:
            why = explain(result, ctx.rules)
            changed = LeadStageChanged(
                lead_id=lead.lead_id, from_stage=before or "enriched", to_stage=stage, at=now, by="scoring",
                reason=f"recycled by a new touch: {why}" if before else why, attribution=lead.attribution,
            )
            outcomes[env.id].append(follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now))
        score_rows.append({
            "lead_id": lead.lead_id, "score": result.value, "grade": result.grade, "decision": stage,
            "rules_version": result.rules_version, "reasons": [r.model_dump(mode="json") for r in result.reasons],
            "scored_at": now, "lead": lead.model_dump(mode="json", exclude={"touch"}),
        })
    await uow.store.save_touches(touch_rows)
    await uow.store.save(score_rows)
    return outcomes

