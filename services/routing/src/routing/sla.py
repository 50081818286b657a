"""The SLA watch: finds hand-offs whose acceptance deadline passed and acts on them.

Guarantees: due hand-offs are claimed with ``FOR UPDATE SKIP LOCKED`` and
changed in the same transaction that writes their events to the outbox, so
with any number of routing processes each deadline fires once; deadlines
live in Postgres, so a restart loses none (one missed while routing was down
fires at the next check). Each breach emits ``lead.sla_breached`` on the
lifecycle and, for a reassignment, the lead again on ``leads.routed`` with
its new owner, both with ids derived from the lead and the breach number.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadpipe_common import outbox, topics
from leadpipe_common.envelope import Message, child_traceparent, encode
from leadpipe_common.events import LeadSlaBreached
from leadpipe_common.outbox import BackgroundLoop

from routing.domain import RoutingData, breach
from routing.store import claim_due, lock_rotations, save_rotations, update_handoff
from routing.store import outbox as outbox_table

SOURCE = "leadpipe/routing"
log = structlog.get_logger(__name__)
BREACHES = Counter("routing_sla_breaches_total", "Acceptance deadlines missed", ["action"])


class SlaWatch(BackgroundLoop):
    name = "routing-sla-watch"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], data: RoutingData,
                 clock: Callable[[], datetime], every_s: float, on_events: Callable[[], None],
                 batch_max: int = 200) -> None:
        super().__init__(batch_max=batch_max, idle_s=every_s)
        self._sessionmaker = sessionmaker
        self._data = data
        self._clock = clock
        self._on_events = on_events

    async def step(self) -> int:
        async with self._sessionmaker() as session, session.begin():
            due = await claim_due(session, self._batch_max)
            if not due:
                return 0
            now = self._clock()
            states = await lock_rotations(session, {held.handoff.team for held in due})
            turns: dict[str, int] = {}
            messages: list[Message] = []
            for held in due:
                handoff, lead = held.handoff, held.lead
                trace = child_traceparent(held.traceparent)
                b = breach(handoff, self._data, states.get(handoff.team, {}), now)
                if b.rotation is not None:
                    states[handoff.team] = b.rotation
                    turns[handoff.team] = turns.get(handoff.team, 0) + 1
                n = b.handoff.reassignments
                rerouted = lead.model_copy(update={"assignment": b.assignment, "routed_at": now})
                messages.append(encode(
                    topics.LIFECYCLE,
                    LeadSlaBreached(
                        lead_id=lead.lead_id, owner_id=handoff.owner_id, team=handoff.team, grade=handoff.grade,
                        due_at=handoff.due_at or now, breached_at=now, breach=n, action=b.action,
                        next_owner_id=b.assignment.owner_id, next_owner_name=b.assignment.owner_name,
                        next_due_at=b.handoff.due_at, attribution=lead.attribution,
                    ),
                    event_id=uuid.uuid5(lead.lead_id, f"lead.sla_breached/{n}"), source=SOURCE, time=now,
                    traceparent=trace,
                ))
                messages.append(encode(topics.ROUTED, rerouted, event_id=uuid.uuid5(lead.lead_id, f"lead.routed/{n}"),
                                       source=SOURCE, time=now, traceparent=trace))
                await update_handoff(session, b.handoff, rerouted)
                BREACHES.labels(b.action).inc()
                log.info("acceptance deadline missed", lead_id=str(lead.lead_id), event_id=messages[-2].header("ce_id"),
                         owner=handoff.owner_id, action=b.action, next_owner=b.assignment.owner_id)
            await save_rotations(session, {t: states[t] for t in turns}, turns)
            await outbox.add(session, outbox_table, messages)
        self._on_events()
        return len(due)
