"""enrichment's handlers: ``lead.captured`` in, ``lead.enriched`` and a lifecycle step out; ``lead.touched`` in,
``lead.enriched`` (from the touch's latest data) out, with no step: a touch does not move the lead; ``lead.merged`` and
``lead.erased`` passed on to scoring (an erasure once enrichment cleared its copies of the lead)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.erasure import dropped
from leadpipe_common.events import LeadCaptured, LeadEnriched, LeadStageChanged, LeadTouched
from leadpipe_common.logging import each
from leadpipe_common.uow import UnitOfWork

from enrichment.domain import ReferenceData, enrich
from enrichment.store import EnrichmentStore

SOURCE = "leadpipe/enrichment"


@dataclass(frozen=True)
class Enrichment:
    """What enrichment's handler needs besides its store."""

    reference: ReferenceData
    clock: Callable[[], datetime]


async def handle_lead_captured(uow: UnitOfWork[EnrichmentStore], batch: Sequence[Envelope],
                               ctx: Enrichment) -> dict[uuid.UUID, Outcome]:
    """A capture or a touch: enriched from the contact it carries; only a capture moves the lead a stage. One of an
    erased lead (a redrive, a touch read late) carries the person again: nothing of it is stored or sent."""
    now = ctx.clock()
    gone = dropped(batch, await uow.store.erased(env.data.lead_id for env in batch))
    outcomes: dict[uuid.UUID, Outcome] = {env.id: [] for env in gone}
    rows = []
    for env in each([env for env in batch if env.id not in outcomes]):
        lead = env.data
        assert isinstance(lead, LeadCaptured | LeadTouched)
        enrichment = enrich(lead.contact, ctx.reference)
        # Built from validated parts: construct skips re-validating the whole lead.
        enriched = LeadEnriched.model_construct(**dict(lead), enrichment=enrichment, enriched_at=now)
        outcomes[env.id] = [follow_up(env, topics.ENRICHED, enriched, source=SOURCE, time=now)]
        if isinstance(lead, LeadCaptured):
            changed = LeadStageChanged(
                lead_id=lead.lead_id, from_stage="captured", to_stage="enriched", at=now, by="enrichment",
                reason=_summary(enriched), attribution=lead.attribution,
            )
            outcomes[env.id].append(follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now))
        rows.append({"lead_id": lead.lead_id, "data": enrichment, "enriched_at": now})  # the store writes its JSON
    await uow.store.save(rows)
    return outcomes


handle_lead_touched = handle_lead_captured


async def handle_lead_merged(uow: UnitOfWork[EnrichmentStore], batch: Sequence[Envelope],
                             ctx: Enrichment) -> dict[uuid.UUID, Outcome]:
    """Nothing to enrich: passed on to scoring, in the lead's order; a late merge of an erased duplicate (whose
    attribution is the person's) is dropped."""
    gone = {env.id for env in dropped(batch, await uow.store.erased(env.data.lead_id for env in batch))}
    return _passed_on(batch, gone, ctx)


def _passed_on(batch: Sequence[Envelope], gone: set[uuid.UUID], ctx: Enrichment) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    return {env.id: [] if env.id in gone else [follow_up(env, topics.ENRICHED, env.data, source=SOURCE, time=now)]
            for env in batch}


async def handle_lead_erased(uow: UnitOfWork[EnrichmentStore], batch: Sequence[Envelope],
                             ctx: Enrichment) -> dict[uuid.UUID, Outcome]:
    """The person cleared from enrichment's copies of the lead (the facts read from them in its enrichment, the
    contact in the outputs its inbox keeps); passed on to scoring, in the lead's order."""
    erased = {env.data.lead_id: env.data.at for env in batch}
    await uow.store.erase(erased)
    await uow.erase(sorted(erased))
    return _passed_on(batch, set(), ctx)


def _summary(lead: LeadEnriched) -> str:
    e = lead.enrichment
    if e.is_disposable.value:
        return f"disposable address at {e.email_domain}"
    if e.is_free_mail.value:
        return f"free-mail address at {e.email_domain}"
    if e.company_name and e.company_name.source == "companies":
        return f"matched company {e.company_name.value}"
    return f"no company on file for {e.email_domain}"
