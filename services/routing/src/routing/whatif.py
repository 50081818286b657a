"""Reads the history a what-if needs from the topics: every routing of an MQL, where it went, and when sales
answered it.

Guarantees: the topics are scanned (``leadpipe_common.scan``) outside any
consumer group and nothing is written anywhere; records that do not decode
are counted and passed over, as the live consumers dead-letter them. Where a
partition no longer starts at its first record, when its first record held
was recorded (or that it holds none) is kept (``History.first_held``) for the
report to say whether the history since the moment asked is whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from leadpipe_common import topics
from leadpipe_common.envelope import DecodeError, decode, derive_id
from leadpipe_common.events import (
    Assignment, LeadMerged, LeadReengaged, LeadRouted, LeadScored, LeadSlaBreached, LeadStageChanged,
)
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import KafkaSettings

from routing.domain import PastLead
from routing.handlers import RECYCLED

#: Sales answered a routed lead (it stops counting against its holder's capacity).
ANSWERS = frozenset({"accepted", "rejected"})


@dataclass
class History:
    leads: list[PastLead]
    skipped: int
    #: (topic, when its first record held was recorded) of each partition that lost its first records; None for
    #: one that lost them all.
    first_held: list[tuple[str, datetime | None]] = field(default_factory=list)


async def read_history(settings: KafkaSettings, since: datetime,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> History:
    scores: dict[UUID, tuple[LeadScored, tuple[int, int]]] = {}  # MQL scores by event id, in log order
    routed: dict[UUID, tuple[datetime, Assignment]] = {}  # by event id
    reengaged: set[UUID] = set()  # event ids
    answers: dict[UUID, list[datetime]] = {}
    rejected_as: dict[UUID, str | None] = {}  # the reason code of each lead's latest rejection read
    recycled: dict[UUID, str | None] = {}  # recycled steps by event id: the rejection's reason code
    rejecters: dict[UUID, str | None] = {}  # the rep of each lead's latest rejection read
    recycled_by: dict[UUID, str | None] = {}  # recycled steps by event id: the rep who rejected the lead
    survivors: set[UUID] = set()  # leads sales merged another into: routed, whenever that was
    skipped = seen = 0
    async with TopicScan(settings, [topics.SCORED, topics.ROUTED, topics.LIFECYCLE], since=since) as scan:
        async for records in scan.batches():
            for r in records:
                try:
                    envelope = decode(r.headers, r.key, r.value)
                except DecodeError:
                    skipped += 1
                    continue
                event = envelope.data
                lead_id = getattr(event, "lead_id", None)
                if isinstance(event, LeadScored):
                    if event.score.decision == "mql":
                        scores[envelope.id] = (event, (r.partition, r.offset))
                elif isinstance(event, LeadRouted):
                    routed[envelope.id] = (event.routed_at, event.assignment)
                elif isinstance(event, LeadReengaged):
                    reengaged.add(envelope.id)
                elif lead_id is not None:
                    if isinstance(event, LeadStageChanged) and event.to_stage == "rejected":
                        rejected_as[lead_id] = event.reason_code
                        rejecters[lead_id] = event.owner_id  # the rejecter's hand-off, one taken from a queue too
                    elif isinstance(event, LeadStageChanged) and (event.from_stage, event.by) == ("nurture", "routing"):
                        # The step names its rejection, however long ago it came; one recorded before it did so
                        # has only the window's: the lifecycle is in order per lead, so the rejection read last.
                        recycled[envelope.id] = event.reason_code or rejected_as.get(lead_id)
                        recycled_by[envelope.id] = rejecters.get(lead_id)
                    if isinstance(event, LeadMerged):
                        survivors.add(event.survivor_id)
                    at = _answer_time(event)
                    if at is not None:
                        answers.setdefault(lead_id, []).append(at)
            seen += len(records)
            progress(seen, scan.total)
        first_held = [(tp.topic, at) for tp, at in scan.first_held.items()]
    return History(_past_leads(scores, routed, reengaged, answers, recycled, recycled_by, survivors), skipped,
                   first_held)


def _past_leads(scores: dict[UUID, tuple[LeadScored, tuple[int, int]]],
                routed: dict[UUID, tuple[datetime, Assignment]], reengaged: set[UUID],
                answers: dict[UUID, list[datetime]], recycled: dict[UUID, str | None],
                recycled_by: dict[UUID, str | None], survivors: set[UUID] = frozenset()) -> list[PastLead]:
    """One ``PastLead`` per routing of an MQL score, and one per lead whose first score is not routed yet.

    Routing's outputs of a score take ids derived from the score's (``follow_up``): the score routed a lead
    when a ``lead.routed`` derives from it and no ``lead.reengaged`` does. So a lead a touch lifted from nurture
    to MQL, or recycled after sales rejected it, counts as routed (once per routing), while a touch of a lead
    sales already held, told to its holder on ``leads.routed`` too, is no second routing. The later records of
    a deadline's breach or a queue's hand-out derive from no score: the first assignment is the one counted."""
    leads: list[PastLead] = []
    routed_leads: set[UUID] = set()
    for score_id, (lead, position) in scores.items():
        out = routed.get(derive_id(score_id, LeadRouted.type))
        if out is None or derive_id(score_id, LeadReengaged.type) in reengaged:
            continue
        at, assignment = out
        first = lead.lead_id not in routed_leads
        routed_leads.add(lead.lead_id)
        step = derive_id(score_id, RECYCLED)
        leads.append(PastLead(lead, at, assignment, _answered(answers.get(lead.lead_id, ()), at, first), position,
                              recycled_after=recycled.get(step), rejected_by=recycled_by.get(step)))
    # Not routed (yet): a lead's first score only. A later score without a touch changes nothing routed (a merge
    # gave it a duplicate's touches), and a touch routing did not route was of a lead sales held or closed. A
    # merge's survivor is a lead sales held: its score after the merge, touch-less, is no first score, though its
    # routing came before the window.
    waiting: dict[UUID, tuple[LeadScored, tuple[int, int]]] = {}
    for lead, position in scores.values():
        if lead.touch is None and lead.lead_id not in routed_leads and lead.lead_id not in survivors:
            waiting.setdefault(lead.lead_id, (lead, position))
    for lead_id, (lead, position) in waiting.items():
        leads.append(PastLead(lead, lead.scored_at, None, _answered(answers.get(lead_id, ()), lead.scored_at, True),
                              position))
    return leads


def _answered(times: Iterable[datetime], routed_at: datetime, first: bool) -> datetime | None:
    """When sales first answered a routing: a recycled one, only by an answer after it (the rejection that
    recycled it answered the routing before); a lead's first, by its earliest answer (a report's time is sales',
    which may run behind routing's clock)."""
    return min((at for at in times if first or at >= routed_at), default=None)


def _answer_time(event: object) -> datetime | None:
    if isinstance(event, LeadStageChanged) and event.to_stage in ANSWERS:
        return event.at
    if isinstance(event, LeadSlaBreached):
        return event.breached_at
    if isinstance(event, LeadMerged):
        return event.at
    return None
