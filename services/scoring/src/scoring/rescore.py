"""``leadpipe-scoring rescore``: every open lead scored again under the rules file as it is now.

Guarantees: pages of open leads (nurture, MQL) are read in id order, each
page locked and re-scored in one transaction, so a touch of the same lead
handled meanwhile waits; a dry run rolls every page back and writes nothing.
A real run stores the new scores and, for a nurture lead the new rules lift
to the MQL bar, writes ``lead.scored`` and the ``nurture → mql`` step to the
outbox in that same transaction: the running scoring service's relay
publishes them and routing routes the lead. Their ids derive from the lead
and the rules version, so running the same re-score again publishes nothing
new that consumers would keep. An MQL the new rules put below the bar is
counted, not moved: only sales sends a lead back to nurture.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from leadpipe_common import topics
from leadpipe_common.db import make_engine, make_sessionmaker
from leadpipe_common.envelope import Message, derive_id, encode
from leadpipe_common.events import LeadEnriched, LeadScored, LeadStageChanged, Score
from leadpipe_common.settings import ServiceSettings
from leadpipe_common.uow import SqlUnitOfWork

from scoring.domain import RescoreSummary, RuleSet, explain, rescore_move, score
from scoring.handlers import SOURCE
from scoring.store import ScoringStore, outbox

PAGE = 500


async def rescore(settings: ServiceSettings, rules: RuleSet, now: datetime, *, dry_run: bool,
                  progress: Callable[[int], None] = lambda done: None) -> RescoreSummary:
    engine = make_engine(settings)
    unit_of_work = functools.partial(SqlUnitOfWork, make_sessionmaker(engine), ScoringStore, None, outbox)
    summary = RescoreSummary(rules.version)
    after = None
    try:
        while True:
            async with unit_of_work() as uow:
                page = await uow.store.open_leads(after, PAGE)
                if not page:
                    break
                after = page[-1].lead_id
                touches = await uow.store.touches(r.lead_id for r in page if r.lead is not None)
                rows, messages = [], []
                for row in page:
                    if row.lead is None:
                        summary.skipped += 1
                        continue
                    lead = LeadEnriched.model_validate(row.lead)
                    result = score(lead, rules, touches[row.lead_id], now)
                    move = rescore_move(row.decision, result.decision)
                    summary.add(move, result.grade, lead.attribution.utm_source, result.value != row.score)
                    stage = "mql" if move == "to_mql" else row.decision
                    rows.append({"lead_id": row.lead_id, "score": result.value, "grade": result.grade,
                                 "decision": stage, "rules_version": result.rules_version,
                                 "reasons": result.reasons, "scored_at": now,
                                 "lead": row.lead})
                    if move == "to_mql":
                        messages += _recycled(lead, result, rules, now)
                if not dry_run:
                    await uow.store.save(rows)
                    uow.publish(messages)
                    await uow.commit()
            progress(summary.leads + summary.skipped)
    finally:
        await engine.dispose()
    return summary


def _recycled(lead: LeadEnriched, result: Score, rules: RuleSet, now: datetime) -> list[Message]:
    scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)
    changed = LeadStageChanged(lead_id=lead.lead_id, from_stage="nurture", to_stage="mql", at=now, by="scoring",
                               reason=f"recycled by a re-score under rules {rules.version}: {explain(result, rules)}",
                               attribution=lead.attribution)
    cause = derive_id(lead.lead_id, f"rescore/{rules.version}")
    return [encode(topics.SCORED, scored, event_id=derive_id(cause, scored.type), source=SOURCE, time=now),
            encode(topics.LIFECYCLE, changed, event_id=derive_id(cause, changed.type), source=SOURCE, time=now)]
