"""Reads the history a what-if needs from the topics: past MQLs, where each went, and when sales answered it.

Guarantees: the topics are scanned (``leadpipe_common.scan``) outside any
consumer group and nothing is written anywhere; records that do not decode
are counted and passed over, as the live consumers dead-letter them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from leadpipe_common import topics
from leadpipe_common.envelope import DecodeError, decode
from leadpipe_common.events import (
    Assignment, LeadMerged, LeadRouted, LeadScored, LeadSlaBreached, LeadStageChanged,
)
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import KafkaSettings

from routing.domain import PastLead

#: Sales answered a routed lead (it stops counting against its holder's capacity).
ANSWERS = frozenset({"accepted", "rejected"})


@dataclass
class History:
    leads: list[PastLead]
    skipped: int


async def read_history(settings: KafkaSettings, since: datetime,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> History:
    scored: dict[UUID, tuple[LeadScored, tuple[int, int]]] = {}
    routed: dict[UUID, tuple[datetime, Assignment]] = {}
    answered: dict[UUID, datetime] = {}
    skipped = seen = 0
    async with TopicScan(settings, [topics.SCORED, topics.ROUTED, topics.LIFECYCLE], since=since) as scan:
        async for records in scan.batches():
            for r in records:
                try:
                    event = decode(r.headers, r.key, r.value).data
                except DecodeError:
                    skipped += 1
                    continue
                lead_id = getattr(event, "lead_id", None)
                if isinstance(event, LeadScored):
                    if event.touch is None and event.score.decision == "mql":
                        scored.setdefault(event.lead_id, (event, (r.partition, r.offset)))
                elif isinstance(event, LeadRouted):
                    if event.touch is None and event.lead_id not in routed:
                        routed[event.lead_id] = (event.routed_at, event.assignment)
                elif lead_id is not None:
                    at = _answer_time(event)
                    if at is not None and (lead_id not in answered or at < answered[lead_id]):
                        answered[lead_id] = at
            seen += len(records)
            progress(seen, scan.total)
    leads = []
    for lead_id, (lead, position) in scored.items():
        at, actual = routed.get(lead_id, (lead.scored_at, None))
        leads.append(PastLead(lead, at, actual, answered.get(lead_id), position))
    return History(leads, skipped)


def _answer_time(event: object) -> datetime | None:
    if isinstance(event, LeadStageChanged) and event.to_stage in ANSWERS:
        return event.at
    if isinstance(event, LeadSlaBreached):
        return event.breached_at
    if isinstance(event, LeadMerged):
        return event.at
    return None
