"""scoring's handler: ``lead.enriched`` in, ``lead.scored`` and (when the lead moves) a lifecycle step out.

A lead's first enrichment scores it: ``enriched → mql | nurture | disqualified``. A later touch re-scores it
over all its touches (intent decays with each touch's age, as of when the event scored happened: ``_as_of``):
a nurture lead that reaches the MQL bar is recycled (``nurture → mql``, and routing routes it); a lead already
an MQL gets its new score on ``leads.scored`` (routing re-engages its holder); a disqualified lead is closed, and a late touch of it
changes nothing. A merge moves the duplicate's touches to the survivor, closes the duplicate and scores the
survivor again over all of them: the merge and the survivor's next touch travel on different partitions (each
keyed by its own lead), so whichever scoring sees first, the survivor's last score counts every touch (the
leads' score rows are locked first, so two processes take turns). A survivor merged on (D into S, then S into
T) passes them on: T, where the chain ends, takes D's touches and is scored, in whichever order the two merges
come. That re-score carries no touch: routing holds the survivor already and routes nothing; a survivor sales
rejected is recycled by its next touch, not by the merge. An erasure clears scoring's copies of the lead, closes
it and goes on to routing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.erasure import dropped
from leadpipe_common.events import LeadEnriched, LeadMerged, LeadScored, LeadStageChanged
from leadpipe_common.logging import each
from leadpipe_common.uow import UnitOfWork

from scoring.domain import RuleSet, TouchFacts, explain, rules_digest, score, stage_after, touch_of
from scoring.store import ScoringStore

SOURCE = "leadpipe/scoring"

log = structlog.get_logger(__name__)
TOUCHES_OF_CLOSED = Counter(
    "scoring_touches_of_closed_leads_total",
    "Touches of a lead scoring had closed (disqualified, merged away) when capture filed them on it, not yet told "
    "of the close: kept, nothing sent (the person's next submission opens a new lead, or goes to the survivor)",
    ["decision"])


@dataclass(frozen=True)
class Scoring:
    """What scoring's handler needs besides its store."""

    rules: RuleSet
    clock: Callable[[], datetime]
    #: ``rules_digest(rules)``, stored beside the version of each score.
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", rules_digest(self.rules))


#: Decisions after which a lead never moves again: disqualified, merged into another lead, or erased.
CLOSED = frozenset({"disqualified", "merged", "erased"})


async def handle_lead_erased(uow: UnitOfWork[ScoringStore], batch: Sequence[Envelope],
                             ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    """The person cleared from scoring's copies of the lead (the lead as last scored, the outputs its inbox keeps),
    the lead closed; passed on to routing, in the lead's order."""
    now = ctx.clock()
    erased = {env.data.lead_id: env.data.at for env in batch}
    await uow.store.erase(erased)
    await uow.erase(sorted(erased))
    return {env.id: [follow_up(env, topics.SCORED, env.data, source=SOURCE, time=now)] for env in batch}


async def handle_lead_merged(uow: UnitOfWork[ScoringStore], batch: Sequence[Envelope],
                             ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    """The survivor takes the duplicate's touches and is scored again over all of them; the duplicate is closed."""
    now = ctx.clock()
    merges = [env for env in batch if isinstance(env.data, LeadMerged)]
    survivors = {env.data.lead_id: env.data.survivor_id for env in merges}
    stored = await uow.store.standing(survivors.keys() | survivors.values())  # locked, in id order
    # A late merge of an erased duplicate: its mark stays (``erased``, not ``merged``), its touches where they are.
    for env in dropped(merges, {i for i, (decision, _) in stored.items() if decision == "erased"}):
        survivors.pop(env.data.lead_id, None)
        merges.remove(env)
    holders = await uow.store.merge(survivors)
    stored |= await uow.store.standing(set(holders.values()) - stored.keys())  # where survivors merged on went
    touches = await uow.store.touches(holders.values())
    outcomes: dict[uuid.UUID, Outcome] = {env.id: [] for env in batch}
    rows = []
    for env in each(merges):
        survivor_id = holders[env.data.lead_id]
        decision, kept = stored.get(survivor_id, (None, None))
        if kept is None or decision in CLOSED:
            continue  # scoring never kept this lead (scored before leads were kept), or it is closed
        lead = LeadEnriched.model_validate(kept)
        outcomes[env.id], row = _scored(env, lead, decision, touches[survivor_id], ctx, now,
                                        _as_of(env.data.at, now, touches[survivor_id]), "recycled by a merge")
        stored[survivor_id] = (row["decision"], kept)
        rows.append(row)
    await uow.store.save(rows)
    return outcomes


async def handle_lead_enriched(uow: UnitOfWork[ScoringStore], batch: Sequence[Envelope],
                               ctx: Scoring) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    standing = await uow.store.standing(env.data.lead_id for env in batch)  # locked, in id order
    # An erased lead's event (a redrive, a late touch) carries the person again: nothing of it is kept or sent.
    gone = dropped(batch, {i for i, (decision, _) in standing.items() if decision == "erased"})
    batch = [env for env in batch if env.data.lead_id not in {g.data.lead_id for g in gone}]
    leads = [env.data for env in batch]
    decisions = {lead_id: decision for lead_id, (decision, _) in standing.items()}
    # The message each lead's contact held as last scored: a touch's own is only one that differs from it.
    messages = {lead_id: ((kept or {}).get("contact") or {}).get("message")
                for lead_id, (_, kept) in standing.items()}
    touches = await uow.store.touches(lead.lead_id for lead in leads)
    outcomes: dict[uuid.UUID, Outcome] = {env.id: [] for env in gone}
    touch_rows, score_rows = [], []
    for env in each(batch):
        lead = env.data
        assert isinstance(lead, LeadEnriched)
        touch = touch_of(lead, messages.get(lead.lead_id))
        messages[lead.lead_id] = lead.contact.message
        known = touches[lead.lead_id]
        if all(t.touch_id != touch.touch_id for t in known):
            known.append(touch)
        touch_rows.append({"lead_id": lead.lead_id, "touch_id": touch.touch_id, "at": touch.at,
                           "facts": dict(touch.facts)})
        before = decisions.get(lead.lead_id)
        if before in CLOSED:
            outcomes[env.id] = []  # closed: the touch is kept, the lead does not move
            # Capture files a person's submission on their open lead; one that came before capture heard of the
            # close (the step is on its way) is kept here and goes no further: said, not silently dropped.
            TOUCHES_OF_CLOSED.labels(before).inc()
            log.warning("a touch of a lead scoring has closed: kept, nothing sent", decision=before,
                        hint="capture filed it before it heard of the close; the person's next submission "
                             + ("goes to the lead this one was merged into" if before == "merged" else
                                "opens a new lead"))
            continue
        outcomes[env.id], row = _scored(env, lead, before, known, ctx, now, _as_of(touch.at, now, known),
                                        "recycled by a new touch")
        decisions[lead.lead_id] = row["decision"]
        score_rows.append(row)
    await uow.store.save_touches(touch_rows)
    await uow.store.save(score_rows)
    return outcomes


def _as_of(event_at: datetime, now: datetime, touches: Sequence[TouchFacts]) -> datetime:
    """The moment an event's score decays intent to: when it happened (a touch, a capture, a merge), so the same
    event scores the same however late it is handled (a backlog); never before the newest touch the score counts,
    which would count at full points (an old touch redriven after newer ones were scored would score them all
    undecayed, a moment the lead never had); never after ``now``, so a sender's clock ahead of ours adds no
    intent."""
    return min(max(event_at, *(t.at for t in touches)), now)


def _scored(env: Envelope, lead: LeadEnriched, before: str | None, touches: list[TouchFacts], ctx: Scoring,
            now: datetime, as_of: datetime, recycled_by: str) -> tuple[Outcome, dict[str, Any]]:
    """``lead`` scored over ``touches``, intent decayed to ``as_of``: its ``lead.scored`` (and lifecycle step, when
    it moves) and its score row, stamped ``now``."""
    result = score(lead, ctx.rules, touches, as_of)
    stage = stage_after(before, result.decision)
    scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)  # validated parts
    outcome: Outcome = [follow_up(env, topics.SCORED, scored, source=SOURCE, time=now)]
    if stage != before:
        why = explain(result, ctx.rules)
        changed = LeadStageChanged(
            lead_id=lead.lead_id, from_stage=before or "enriched", to_stage=stage, at=now, by="scoring",
            reason=f"{recycled_by}: {why}" if before else why, attribution=lead.attribution,
        )
        outcome.append(follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now))
    row = {
        "lead_id": lead.lead_id, "score": result.value, "grade": result.grade, "decision": stage,
        # Models: the store writes them as JSON in one pass. The lead is kept without the touch it came with
        # ("touch": null, which reads back as no touch): a re-score of it (a merge) carries no touch.
        "rules_version": result.rules_version, "rules_digest": ctx.digest, "reasons": result.reasons, "scored_at": now,
        "lead": lead.model_copy(update={"touch": None}),
    }
    return outcome, row
