"""The SLA watch: finds hand-offs whose acceptance deadline passed and acts on them.

Guarantees: due hand-offs are claimed with ``FOR UPDATE SKIP LOCKED`` and
changed in the same unit of work that writes their events to the outbox, so
with any number of routing processes each deadline fires once; deadlines
live in Postgres, so a restart loses none (one missed while routing was down
fires at the next check). Each breach emits ``lead.sla_breached`` on the
lifecycle and the lead again on ``leads.routed`` with its new owner (or its
team's queue), both with ids derived from the lead and the breach number,
both continuing the trace the lead was routed in.
"""

from __future__ import annotations

import uuid

import structlog
from prometheus_client import Counter

from leadpipe_common import topics
from leadpipe_common.envelope import Message, child_traceparent, encode
from leadpipe_common.events import LeadSlaBreached
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.service import Runtime
from leadpipe_common.uow import UnitOfWork

from routing.domain import breach
from routing.handlers import Routing
from routing.store import RoutingStore

SOURCE = "leadpipe/routing"
log = structlog.get_logger(__name__)
BREACHES = Counter("routing_sla_breaches_total", "Acceptance deadlines missed", ["action"])


async def act_on_missed_deadlines(uow: UnitOfWork[RoutingStore], ctx: Routing, limit: int) -> int:
    """One round, in ``uow`` (the caller commits): the number of missed deadlines acted on."""
    now = ctx.clock()
    store = uow.store
    due = await store.claim_due(limit, now)
    if not due:
        return 0
    states = await store.lock_rotations(held.handoff.team for held in due)
    turns: dict[str, int] = {}
    messages: list[Message] = []
    for held in due:
        handoff, lead = held.handoff, held.lead
        trace = child_traceparent(held.traceparent)
        b = breach(handoff, ctx.data, states.get(handoff.team, {}), now)
        if b.rotation is not None:
            states[handoff.team] = b.rotation
            turns[handoff.team] = turns.get(handoff.team, 0) + 1
        n = b.handoff.reassignments
        rerouted = lead.model_copy(update={"assignment": b.assignment, "routed_at": now})
        breached = encode(
            topics.LIFECYCLE,
            LeadSlaBreached(
                lead_id=lead.lead_id, owner_id=handoff.owner_id, team=handoff.team, grade=handoff.grade,
                due_at=handoff.due_at or now, breached_at=now, breach=n, action=b.action,
                next_owner_id=b.assignment.owner_id, next_owner_name=b.assignment.owner_name,
                next_due_at=b.handoff.due_at, attribution=lead.attribution,
            ),
            event_id=uuid.uuid5(lead.lead_id, f"lead.sla_breached/{n}"), source=SOURCE, time=now, traceparent=trace,
        )
        messages += [breached, encode(topics.ROUTED, rerouted, event_id=uuid.uuid5(lead.lead_id, f"lead.routed/{n}"),
                                      source=SOURCE, time=now, traceparent=trace)]
        await store.update_handoff(b.handoff, rerouted)
        BREACHES.labels(b.action).inc()
        log.info("acceptance deadline missed", lead_id=str(lead.lead_id), event_id=breached.header("ce_id"),
                 owner=handoff.owner_id, action=b.action, next_owner=b.assignment.owner_id)
    await store.save_rotations({t: states[t] for t in turns}, turns)
    uow.publish(messages)
    return len(due)


class SlaWatch(BackgroundLoop):
    name = "routing-sla-watch"

    def __init__(self, runtime: Runtime[Routing, RoutingStore], every_s: float, batch_max: int = 200) -> None:
        super().__init__(batch_max=batch_max, idle_s=every_s)
        self._runtime = runtime

    async def step(self) -> int:
        async with self._runtime.unit_of_work() as uow:
            acted = await act_on_missed_deadlines(uow, self._runtime.context, self._batch_max)
            await uow.commit()
        return acted
