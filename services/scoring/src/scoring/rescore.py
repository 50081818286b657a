"""``leadpipe-scoring rescore``: every open lead scored again under the rules file as it is now.

Guarantees: pages of open leads (nurture, MQL) are read in id order, each
page locked and re-scored in one transaction, so a touch of the same lead
handled meanwhile waits; a dry run rolls every page back and writes nothing.
A real run stores the new scores and, for a nurture lead the new rules move,
writes ``lead.scored`` and its step to the outbox in that same transaction:
``nurture → mql`` for one they lift to the MQL bar (the running scoring
service's relay publishes them and routing routes the lead), ``nurture →
disqualified`` for one a disqualify rule now holds for or that scores under
the nurture bar now (closed: capture opens a new lead for the person's next
submission). Their ids derive from the lead and the rules version, so running
the same re-score again publishes nothing new that consumers would keep. An
MQL the new rules put below the bar, under the nurture bar or knock out is
counted, not moved: sales may hold it, and only sales sends a lead back or
closes it.

Scoring follows ``leads.enriched`` alone, so a lead sales has won or lost
since (or merged away, its merge not yet come down to scoring) is still one
of its MQLs or nurture leads: ``closed_leads`` reads which leads the
lifecycle closed, and a re-score leaves those out, counted apart.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from leadpipe_common import topics
from leadpipe_common.db import make_engine, make_sessionmaker
from leadpipe_common.envelope import DecodeError, Message, decode, derive_id, encode
from leadpipe_common.events import CLOSED_STAGES, LeadEnriched, LeadScored, LeadStageChanged, Score
from leadpipe_common.scan import TopicScan, cut_from_start
from leadpipe_common.settings import KafkaSettings, ServiceSettings
from leadpipe_common.uow import SqlUnitOfWork

from scoring.domain import (
    APPLIED, UNREADABLE_NAMED, RescoreSummary, RuleSet, TouchFacts, explain, knockouts_of, rescore_move, rules_digest,
    score,
)
from scoring.handlers import SOURCE
from scoring.store import ScoringStore, outbox

PAGE = 500
#: What a lifecycle record's ``ce_tostage`` says when it closes its lead for good (capture follows the same).
_CLOSING = {stage.encode() for stage in CLOSED_STAGES | {"merged"}}


def closed_in(records: Iterable[Any]) -> set[uuid.UUID]:
    """The leads these ``leads.lifecycle`` records close for good: won or lost by sales, disqualified, merged
    into another lead. Picked by their headers; only those are parsed (one that does not decode is passed over,
    as the live consumers dead-letter it)."""
    closed: set[uuid.UUID] = set()
    for r in records:
        if any(k == "ce_tostage" and v in _CLOSING for k, v in r.headers):
            try:
                closed.add(decode(r.headers, r.key, r.value).data.lead_id)
            except DecodeError:
                continue
    return closed


class LifecycleCut(Exception):
    """The lifecycle no longer holds its first events: a lead closed before them would be taken for open."""


def refuse_cut(starts: Mapping[Any, int]) -> None:
    """Refuse to tell closed leads from partitions (``TopicPartition``: their first offset held) of which any
    starts above offset 0: a lead won, lost or disqualified by the events before it would be taken for open,
    re-scored, and recycled to sales if it now reaches the bar."""
    held = cut_from_start(starts)
    if held is not None:
        raise LifecycleCut(
            f"{topics.LIFECYCLE} no longer starts at its first event: it holds {held} (a TOPIC_RETENTION that is "
            "not forever, or a truncated log), so a lead closed before it would be taken for open, re-scored and "
            "perhaps recycled to sales; re-score anyway with --force")


async def closed_leads(settings: KafkaSettings, progress: Callable[[int, int], None] = lambda done, total: None,
                       *, force: bool = False) -> set[uuid.UUID]:
    """Every lead ``leads.lifecycle`` has closed, read once from its start (kept forever), outside any group;
    ``progress`` is told the records read and how many there are. A lifecycle that no longer starts at its first
    event is refused (``LifecycleCut``) unless ``force``."""
    closed: set[uuid.UUID] = set()
    seen = 0
    async with TopicScan(settings, topics.LIFECYCLE) as scan:
        if not force:
            refuse_cut(scan.starts)
        async for records in scan.batches():
            closed |= closed_in(records)
            seen += len(records)
            progress(seen, scan.total)
    return closed


class Interrupted(Exception):
    """A re-score that stopped part way (its cause chained: the database gone, a deadlock, Ctrl-C): ``summary``
    counts the pages it committed, whose moves are made and their events on their way; a run again does the
    rest."""

    def __init__(self, summary: RescoreSummary) -> None:
        super().__init__("the re-score stopped part way")
        self.summary = summary


def _units_of_work(engine: Any) -> Callable[[], SqlUnitOfWork[ScoringStore]]:
    """A unit of work a page: scoring's store, and its outbox for what a moved lead publishes."""
    return functools.partial(SqlUnitOfWork, make_sessionmaker(engine), ScoringStore, None, outbox)


async def rescore(settings: ServiceSettings, rules: RuleSet, now: datetime, *, closed: Collection[uuid.UUID],
                  dry_run: bool, progress: Callable[[int], None] = lambda done: None) -> RescoreSummary:
    """Every open lead scored again, but those in ``closed`` (``closed_leads``), which are left as they are. A run
    that stops part way raises ``Interrupted`` with what its committed pages did (a dry run's: what its pages
    would do)."""
    engine = make_engine(settings)
    unit_of_work = _units_of_work(engine)
    summary = RescoreSummary(rules.version)
    after = None
    try:
        while True:
            # A page's counts join the summary once it is committed: one rolled back made no move.
            counted = RescoreSummary(rules.version)
            async with unit_of_work() as uow:
                page = await uow.store.open_leads(after, PAGE)
                if not page:
                    break
                after = page[-1].lead_id
                touches = await uow.store.touches(r.lead_id for r in page
                                                  if r.lead is not None and r.lead_id not in closed)
                rows, messages = rescore_page(page, touches, closed, rules, now, counted)
                if not dry_run:
                    await uow.store.save(rows)
                    uow.publish(messages)
                    await uow.commit()
                summary.merge(counted)  # committed: whatever comes after, its moves are made
            progress(summary.looked_at)
    except (Exception, asyncio.CancelledError) as exc:
        if not summary.looked_at:
            raise  # nothing done: the error alone says it
        raise Interrupted(summary) from exc
    finally:
        await engine.dispose()
    return summary


async def newest_rules(settings: ServiceSettings) -> tuple[str, str | None] | None:
    """The rules version and digest of the newest score (``ScoringStore.newest_rules``)."""
    engine = make_engine(settings)
    try:
        async with SqlUnitOfWork(make_sessionmaker(engine), ScoringStore) as uow:
            return await uow.store.newest_rules()
    finally:
        await engine.dispose()


def rescore_page(page: Sequence[Any], touches: Mapping[uuid.UUID, list[TouchFacts]], closed: Collection[uuid.UUID],
                 rules: RuleSet, now: datetime, summary: RescoreSummary) -> tuple[list[dict[str, Any]], list[Message]]:
    """One page of open leads (``ScoringStore.open_leads``) scored again, counted into ``summary``: the rows to
    store and what a moved lead (recycled, disqualified) publishes. A closed lead is counted apart and neither scored nor written: it
    will never be recycled or routed again, and a count of it among the moves would mislead."""
    rows: list[dict[str, Any]] = []
    messages: list[Message] = []
    digest = rules_digest(rules)
    for row in page:
        if row.lead_id in closed:
            summary.closed += 1
            continue
        if row.lead is None:
            summary.skipped += 1
            continue
        if row.scored_at > now:
            summary.newer += 1
            continue
        try:
            lead = LeadEnriched.model_validate(row.lead)
        except ValidationError:
            # One lead a model no longer reads must not stop the run half done: left as it is, counted and named.
            summary.unreadable += 1
            if len(summary.unreadable_leads) < UNREADABLE_NAMED:
                summary.unreadable_leads.append(row.lead_id)
            continue
        result = score(lead, rules, touches[row.lead_id], now)
        knocked_out_before = [r["rule"] for r in row.reasons or () if r.get("category") == "disqualify"]
        move = rescore_move(row.decision, result, knocked_out_before=knocked_out_before)
        stage = APPLIED[move] if move in APPLIED else row.decision
        # What the stored score decided: its stage's, unless it named a knockout (a later touch brought it, and the
        # lead stayed in its stage: a touch never disqualifies). Against the stage alone, such a lead counted as a
        # changed decision on every run, under the same rules.
        decided = "disqualified" if knocked_out_before else row.decision
        summary.add(move, result.grade, lead.attribution.utm_source,
                    result.value != row.score or stage != row.decision or result.decision != decided,
                    knockouts_of(result))
        rows.append({"lead_id": row.lead_id, "score": result.value, "grade": result.grade,
                     "decision": stage, "rules_version": result.rules_version,
                     "rules_digest": digest, "reasons": result.reasons, "scored_at": now,
                     "lead": row.lead})
        if stage != row.decision:
            messages += _moved(lead, row.decision, stage, result, rules, now)
    return rows, messages


def _moved(lead: LeadEnriched, before: str, stage: str, result: Score, rules: RuleSet,
           now: datetime) -> list[Message]:
    """A lead's new score and its step, ids derived from the lead and the rules version: one version moves a lead
    once (recycled, it is an MQL the re-score never moves again; disqualified, it is closed)."""
    scored = LeadScored.model_construct(**dict(lead), score=result, scored_at=now)
    why = "recycled" if stage == "mql" else "disqualified"
    changed = LeadStageChanged(lead_id=lead.lead_id, from_stage=before, to_stage=stage, at=now, by="scoring",
                               reason=f"{why} by a re-score under rules {rules.version}: {explain(result, rules)}",
                               attribution=lead.attribution)
    cause = derive_id(lead.lead_id, f"rescore/{rules.version}")
    return [encode(topics.SCORED, scored, event_id=derive_id(cause, scored.type), source=SOURCE, time=now),
            encode(topics.LIFECYCLE, changed, event_id=derive_id(cause, changed.type), source=SOURCE, time=now)]
