"""routing's watches: missed acceptance deadlines, leads waiting in a team's queue, and the routing files.

Guarantees: due hand-offs are claimed with ``FOR UPDATE SKIP LOCKED`` and
changed in the same unit of work that writes their events to the outbox, so
with any number of routing processes each deadline fires once; deadlines
live in Postgres, so a restart loses none (one missed while routing was down
fires at the next check). Each breach emits ``lead.sla_breached`` on the
lifecycle and the lead again on ``leads.routed`` with its new owner (or its
team's queue), and ``lead.queued`` when the lead is left waiting there for
this watch (not when escalated for good), each with an id derived from the
lead and the breach number, each continuing the trace the lead was routed in. The next holder is found
as for a new lead (its route, overflow included, every earlier holder passed
over) and must be able to take a lead now (``availability``); with nobody,
the lead waits in its team's queue for this watch to hand out.

Waiting leads are claimed the same way (``SKIP LOCKED``, teams with a rep
free now only), each handed to whoever can take it now by the same rules
that routed it (its account owner first, if of the queue's team; overflow
included): ``lead.assigned`` on the lifecycle and
the lead again on ``leads.routed``, ids derived from the lead; its SLA clock
starts then. A lead nobody can take yet stays, untouched, and the round
claims the next page past it while a queue is open, so the longest waiting
leads, if nobody free may take them, do not keep later ones waiting.

The reference watch reloads the routing files when they change (stat every
few seconds); files that do not parse leave the data in force and are
logged, counted and retried on their next change.

The files are checked for the teams they send leads to, not for those the
stored hand-offs name. So at its first round, and at the first after each new
version of the files (a reload by the file watch or the API), the SLA watch
checks the open hand-offs once: each team that holds some but that no active
rep of the files may take a lead for (renamed, removed, or left with
inactive reps), and each holding escalated leads in its queue with no active
rep of its own (only a team's own reps may take from its queue, though its
overflow's take its waiting leads), is logged as a warning and counted
(``routing_orphaned_leads``). Those leads in its queue would wait there for
ever: every round moves them (``orphans``: a waiting one to its route's
team's queue, an escalated one to the first along that team's overflow with
reps of its own), re-sent on ``leads.routed`` with an id of that move's own,
and hands out the waiting ones from there as any waiting lead. (Leads its
reps hold stay with them: they still speak for them, and a missed deadline
goes by the lead's route.) A lead routed or moved less than a while ago
(``settle_s``: a minute, or the reload interval if longer) is left for a
later round: while processes run on two versions of the files (a rolling
update, a reload not yet seen) each finds the other's queue orphaned, and
they would move it back and forth every round.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import replace
from datetime import timedelta

import structlog
from prometheus_client import Counter, Gauge, Histogram, Info

from leadpipe_common import topics
from leadpipe_common.envelope import Message, child_traceparent, encode
from leadpipe_common.events import LeadAssigned, LeadSlaBreached
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.service import Runtime
from leadpipe_common.uow import UnitOfWork

from routing.domain import (
    KINDS, Handoff, Placed, Presence, TeamQueue, acceptance_due, breach, capacity_bound, choose_route, from_queue,
    orphaned, overflow_chain, place, queues, requeue, staffed, staffed_teams, teams_waiting, unavailable,
)
from routing.handlers import Routing, announced, locked_for_placing, queued_again
from routing.reference import Reference
from routing.store import Held, RoutingStore, Turns

SOURCE = "leadpipe/routing"
log = structlog.get_logger(__name__)
BREACHES = Counter("routing_sla_breaches_total", "Acceptance deadlines missed", ["action"])
QUEUE_WAITS = Histogram("routing_queue_wait_seconds", "How long leads waited in a team's queue for a rep",
                        buckets=(60, 300, 900, 3600, 4 * 3600, 16 * 3600, 24 * 3600, 72 * 3600))
RELOADS = Counter("routing_data_reloads_total", "Reloads of the routing files", ["trigger", "outcome"])
DATA_VERSION = Info("routing_data", "The version of the routing files in force")
ORPHANED = Gauge("routing_orphaned_leads", "Open leads of a team no active rep of the routing files may take a lead "
                 "for (or, of a team only its overflow staffs, escalated leads in its queue), at the check of the "
                 "files in force", ["team"])
REQUEUED = Counter("routing_orphans_requeued_total",
                   "Leads moved out of the queue of a team no active rep may take them from, to their route's team's "
                   "(escalated ones: to the first along its overflow with reps of its own)")
QUEUE_LEADS = Gauge("routing_queue_leads", "Leads in each team's queue: waiting for a rep who can take them, or "
                    "escalated there for one of the team's reps to take; as the queue watch last counted them",
                    ["team", "kind"])


async def act_on_missed_deadlines(uow: UnitOfWork[RoutingStore], ctx: Routing, limit: int) -> int:
    """One round, in ``uow`` (the caller commits): the number of missed deadlines acted on."""
    now = ctx.clock()
    store = uow.store
    due = await store.claim_due(limit, now)
    if not due:
        return 0
    ref = ctx.reference
    routes, turns, presence = await locked_for_placing(store, due, ref.data, now)  # placed again as new leads
    messages: list[Message] = []
    handed_on: list[Held] = []
    for held in due:
        handoff, lead = held.handoff, held.lead
        trace = child_traceparent(held.traceparent)
        b = breach(handoff, routes[handoff.lead_id], ref.data, turns.states, now, presence)
        turns.take(b.handoff.team, b.rotation)
        if b.action == "reassigned":  # an account owner's too, though no rotation turned for them
            presence = presence.holding_one_more(b.assignment.owner_id)
        n = b.handoff.reassignments
        rerouted = announced(lead, b.handoff, b.assignment, now, ref.version)
        breached = encode(
            topics.LIFECYCLE,
            LeadSlaBreached(
                lead_id=lead.lead_id, owner_id=handoff.owner_id, team=handoff.team, grade=handoff.grade,
                due_at=handoff.due_at or now, breached_at=now, breach=n, action=b.action,
                next_owner_id=b.assignment.owner_id, next_owner_name=b.assignment.owner_name,
                next_due_at=b.handoff.due_at, next_team=b.handoff.team, attribution=lead.attribution,
            ),
            event_id=handoff.event_id(f"lead.sla_breached/{n}"), source=SOURCE, time=now, traceparent=trace,
        )
        messages += [breached, encode(topics.ROUTED, rerouted, event_id=handoff.event_id(f"lead.routed/{n}"),
                                      source=SOURCE, time=now, traceparent=trace),
                     *queued_again(handoff, b.handoff, b.assignment, rerouted, now,
                                   event_id=handoff.event_id(f"lead.queued/{n}"), traceparent=trace)]
        handed_on.append(replace(held, handoff=b.handoff, lead=rerouted))
        BREACHES.labels(b.action).inc()
        log.info("acceptance deadline missed", lead_id=str(lead.lead_id), event_id=breached.header("ce_id"),
                 owner=handoff.owner_id, action=b.action, next_owner=b.assignment.owner_id)
    # One statement for the round, not one UPDATE a lead: each row is claimed (locked) above, in this unit of work,
    # so nothing else may change it before the commit and the write never misses one.
    await store.update_handoffs(handed_on)
    await store.save_rotations(turns.changed, turns.taken)
    uow.publish(messages)
    return len(due)


async def hand_out_waiting_leads(uow: UnitOfWork[RoutingStore], ctx: Routing, waiting_in: Collection[str],
                                 limit: int) -> int:
    """One round, in ``uow`` (the caller commits): the number of waiting leads handed to a rep. ``waiting_in``: the
    teams with leads waiting, as the round read them (``queue_tallies``). A team in it with none waiting any more
    (handed out by another process, moved) costs at most its rotation locks; a lead queued meanwhile in a team
    missing from it is claimed by the next round."""
    now = ctx.clock()
    store = uow.store
    ref = ctx.reference
    if not waiting_in:
        return 0
    reachable = {team: overflow_chain(team, ref.data) for team in waiting_in}

    def open_queues(presence: Presence) -> list[str]:
        free = {r.team for r in ref.data.reps if r.team in teams and unavailable(r, ref.data, now, presence) is None}
        return [team for team, chain in reachable.items() if free.intersection(chain)]

    teams = {t for chain in reachable.values() for t in chain}
    reps = [r for r in ref.data.reps if r.team in teams]
    rep_ids, up_to = [r.id for r in reps], capacity_bound(reps)
    # Nobody free (a night, a weekend): no locks taken. Else lock every team that may take the leads and
    # look again, so capacity is counted under the same locks the routing of new leads takes.
    if not open_queues(await store.presence(rep_ids, now, up_to=up_to)):
        return 0
    turns = Turns(await store.lock_rotations(teams))
    presence = await store.presence(rep_ids, now, up_to=up_to)
    messages: list[Message] = []
    handed_out: list[Held] = []
    handed = 0

    async def claimed() -> AsyncIterator[Held]:
        # Page after page while a queue is open (``presence`` as the hand-outs so far left it): the longest
        # waiting leads may be ones nobody free now may take (each held them before), and claimed alone round
        # after round they kept every later lead waiting.
        after = None
        while handed < limit and (queues := open_queues(presence)):
            page = await store.claim_waiting(queues, limit, after=after)
            for held in page:
                if handed == limit:
                    return
                yield held
            if len(page) < limit:
                return
            after = (page[-1].handoff.waiting_since, page[-1].handoff.lead_id)

    # Claimed after the rotation rows, unlike every other path (hand-offs, then rotation): SKIP LOCKED never
    # waits for a hand-off another unit holds, so it cannot close a cycle of waits.
    async for held in claimed():
        handoff, lead = held.handoff, held.lead
        queued_at = handoff.waiting_since or now
        waited = f"waited in the {handoff.team} queue since {queued_at.isoformat(timespec='seconds')}"
        placement = place(from_queue(choose_route(lead, ref.data), handoff.team, waited), ref.data, turns.states,
                          now, presence, passed_over=handoff.holders)
        if not isinstance(placement, Placed):
            continue  # its reps' turns went to leads that waited longer, or each of them held it before
        turns.take(placement.team, placement.rotation)
        presence = presence.holding_one_more(placement.rep.id)
        a = placement.assignment
        after = handoff.handed_on(owner_id=a.owner_id, team=a.team, waiting_since=None,
                                  due_at=acceptance_due(handoff.grade, a.owner_id, ref.data, now))
        rerouted = announced(lead, after, a, now, ref.version)
        trace = child_traceparent(held.traceparent)
        wait = queued_at.isoformat()  # a recycled lead may wait again: each wait's end is its own event
        assigned = LeadAssigned(lead_id=lead.lead_id, owner_id=a.owner_id, owner_name=a.owner_name, team=a.team,
                                at=now, queued_at=queued_at, due_at=after.due_at, reason=a.reason,
                                grade=handoff.grade, attribution=lead.attribution)
        messages += [
            encode(topics.LIFECYCLE, assigned, event_id=uuid.uuid5(lead.lead_id, f"lead.assigned/{wait}"),
                   source=SOURCE, time=now, traceparent=trace),
            encode(topics.ROUTED, rerouted, event_id=uuid.uuid5(lead.lead_id, f"lead.routed/assigned/{wait}"),
                   source=SOURCE, time=now, traceparent=trace),
        ]
        handed_out.append(replace(held, handoff=after, lead=rerouted))
        QUEUE_WAITS.observe((now - queued_at).total_seconds())
        handed += 1
        log.info("waiting lead handed out", lead_id=str(lead.lead_id), owner=a.owner_id, team=a.team)
    await store.update_handoffs(handed_out)  # one statement for the round; each row claimed (locked) above
    await store.save_rotations(turns.changed, turns.taken)
    uow.publish(messages)
    return handed


async def orphaned_teams(uow: UnitOfWork[RoutingStore], ref: Reference) -> set[str]:
    """The routing data ``ref`` checked against the open hand-offs (a read; nothing to commit): each team holding
    some that no active rep of ``ref`` may take a lead for, or escalated ones in its queue that no active rep of its
    own may take, is logged as a warning and counted. Those with such leads in their queue, for
    ``requeue_orphans``."""
    data = ref.data
    found = await uow.store.open_outside(staffed_teams(data, escalated=True))
    ORPHANED.clear()  # a team staffed again, or holding no lead now, is no longer one
    stuck: set[str] = set()
    for team, (held, queued, escalated) in sorted(found.items()):
        if staffed(team, data):
            # Its overflow's reps take its waiting leads; only those escalated there, which they may not, are stuck.
            if escalated:
                ORPHANED.labels(team).set(escalated)
                log.warning("escalated leads wait in the queue of a team with no active rep of its own, and only its "
                            "own reps may take them: they move to the queue of a team along its overflow that has",
                            team=team, escalated=escalated, version=ref.version)
                stuck.add(team)
            continue
        ORPHANED.labels(team).set(held)
        log.warning("a team holds open leads, but no active rep in the routing files may take a lead for it: the "
                    "leads in its queue move to their route's team's queue, those its reps hold stay with them",
                    team=team, open_leads=held, queued=queued, version=ref.version)
        if queued:
            stuck.add(team)
    return stuck


async def requeue_orphans(uow: UnitOfWork[RoutingStore], ctx: Routing, teams: Collection[str],
                          waiting_in: Collection[str], limit: int, settle: timedelta = timedelta(0)) -> list[Handoff]:
    """One round, in ``uow`` (the caller commits): leads in the queues of ``teams`` (the last check's), or of
    ``waiting_in`` (the teams with leads waiting, read in ``uow``), that no active rep may take from there, moved
    (``requeue``); the hand-offs moved, as they are now. Those of a team its overflow staffs move only when
    escalated. A lead routed (or moved) less than ``settle`` ago stays for a later round. (A team staffed again by
    a later version of the files keeps its leads.)"""
    store = uow.store
    ref = ctx.reference
    gone = orphaned(set(teams) | set(waiting_in), ref.data)
    escalated_in = orphaned(teams, ref.data, escalated=True) - gone
    if not gone and not escalated_in:
        return []
    now = ctx.clock()
    messages: list[Message] = []
    moved: list[Held] = []
    for held in await store.claim_queued(gone, limit, escalated_in=escalated_in):
        handoff, lead = held.handoff, held.lead
        if now - lead.routed_at < settle:
            # In a rolling update, processes on two versions of the files each find the other's queue orphaned and
            # would move a lead back and forth every round, re-sending it each time. Left for a while (the page it
            # fills is claimed again meanwhile, for that while at most), it moves once per ``settle`` at worst.
            continue
        after, assignment = requeue(handoff, choose_route(lead, ref.data), ref.data)
        rerouted = announced(lead, after, assignment, now, ref.version)
        # Unique to this move: the stored lead's routed_at changes with every move (and every breach or hand-out),
        # so a lead moved A to B, back, and A to B again is sent each time (delivery keeps one row per event id, and
        # would drop a repeat, leaving the sales tool with the queue before); a round retried, on the same stored
        # lead, sends the same event again.
        since = lead.routed_at.isoformat()
        messages.append(encode(topics.ROUTED, rerouted, source=SOURCE, time=now,
                               event_id=handoff.event_id(f"lead.routed/requeued/{handoff.team}/{after.team}/{since}"),
                               traceparent=child_traceparent(held.traceparent)))
        moved.append(replace(held, handoff=after, lead=rerouted))
        REQUEUED.inc()
        log.info("lead moved out of the queue of a team nobody may take it for", lead_id=str(lead.lead_id),
                 team=handoff.team, to=after.team, waiting=after.waiting_since is not None)
    await store.update_handoffs(moved)  # one statement for the round's moves
    uow.publish(messages)
    return [h.handoff for h in moved]


def count_queues(found: Collection[TeamQueue], counted: Collection[str] = ()) -> set[str]:
    """Set ``routing_queue_leads`` to ``found``, every team's queue, and drop the teams ``counted`` before that it
    no longer has (a renamed team's queue, emptied); the teams it counts now, for the next call."""
    for queue in found:
        for kind in KINDS:
            QUEUE_LEADS.labels(queue.team, kind).set(queue.count(kind))
    now = {queue.team for queue in found}
    for team in set(counted) - now:
        for kind in KINDS:
            QUEUE_LEADS.remove(team, kind)
    return now


class SlaWatch(BackgroundLoop):
    """Missed deadlines first, then leads left in the queue of a team nobody may take them for, then waiting leads,
    every ``every_s`` (at once again while any had a full batch), each in a unit of work of its own. Its first
    round, and the first after each new version of the routing files, first checks the open hand-offs against them
    (``orphaned_teams``). A lead routed or moved less than ``settle_s`` ago is not moved out of a queue
    (``requeue_orphans``). What is in each team's queue is read once a round, for the moves, the hand-out and the
    queue gauge (``count_queues``: as it was before the round's moves and hand-outs)."""

    name = "routing-sla-watch"

    def __init__(self, runtime: Runtime[Routing, RoutingStore], every_s: float, batch_max: int = 200,
                 settle_s: float = 60.0) -> None:
        super().__init__(batch_max=batch_max, idle_s=every_s)
        self._runtime = runtime
        self._settle = timedelta(seconds=settle_s)
        self._checked: str | None = None  # the version of the files checked against the open hand-offs
        self._orphaned: set[str] = set()
        self._counted: set[str] = set()  # the teams whose queues the gauge shows

    async def step(self) -> int:
        ctx = self._runtime.context
        ref = ctx.reference
        if ref.version != self._checked:
            async with self._runtime.unit_of_work() as uow:
                self._orphaned = await orphaned_teams(uow, ref)
            self._checked = ref.version
        async with self._runtime.unit_of_work() as uow:
            acted = await act_on_missed_deadlines(uow, ctx, self._batch_max)
            await uow.commit()
        async with self._runtime.unit_of_work() as uow:
            # After the missed deadlines committed: a lead one of them escalated to a queue is there now.
            tallies = await uow.store.queue_tallies()
            waiting = teams_waiting(tallies)
            moved = await requeue_orphans(uow, ctx, self._orphaned, waiting, self._batch_max, self._settle)
            await uow.commit()
        self._counted = count_queues(queues(tallies, ref.data), self._counted)
        # The hand-out reads no waiting teams of its own (one read for two, every few seconds), so a lead moved to
        # wait in another team's queue is named here, to go out this round, as before.
        waiting |= {h.team for h in moved if h.waiting_since is not None}
        async with self._runtime.unit_of_work() as uow:
            handed = await hand_out_waiting_leads(uow, ctx, waiting, self._batch_max)
            await uow.commit()
        return max(acted, len(moved), handed)


class ReferenceWatch(BackgroundLoop):
    """Reloads the routing files when one changes."""

    name = "routing-reference-watch"

    def __init__(self, routing: Routing, every_s: float) -> None:
        super().__init__(batch_max=1, idle_s=every_s)
        self._routing = routing
        self._seen = routing.files.stamp() if routing.files else ()

    async def step(self) -> int:
        if self._routing.files is None:
            return 0
        stamp = self._routing.files.stamp()
        if stamp == self._seen:
            return 0
        self._seen = stamp
        try:
            reload_reference(self._routing, trigger="file")
        except ValueError:
            pass  # logged and counted there; the data in force stays until the files change again
        return 0


def reload_reference(routing: Routing, trigger: str) -> Reference:
    """Reload the files; raises ValueError (logged, counted; the old data stays in force) when they are wrong."""
    before = routing.reference.version
    try:
        ref, changed = routing.reload()
    except ValueError as exc:
        RELOADS.labels(trigger, "invalid").inc()
        log.error("routing data not reloaded: the files are invalid; the data in force stays", trigger=trigger,
                  error=str(exc), version=before)
        raise
    RELOADS.labels(trigger, "changed" if changed else "unchanged").inc()
    if changed:
        DATA_VERSION.info({"version": ref.version})
        log.info("routing data reloaded", trigger=trigger, version=ref.version, previous=before,
                 reps=len(ref.data.reps), accounts=len(ref.data.accounts))
    return ref
