"""routing's handlers.

- ``lead.scored`` in; for MQLs, ``lead.routed`` (stamped with the routing
  data's version) and a lifecycle step out, and the lead's hand-off (owner,
  SLA deadline) stored. When nobody who may take it can now, it goes to its
  team's queue with ``lead.queued`` and waits for the queue watch
  (``routing.sla``), its SLA clock not yet running. Nurture and disqualified
  leads end at scoring (their lifecycle step is scoring's); routing applies
  them with no output. A recycled nurture lead is an MQL like any other.
  A new touch of a lead sales already holds that earns intent points of its
  own, or changes the person's contact (a consent withdrawn, a new phone
  number), re-engages its holder: a ``lead.reengaged`` step and a fresh
  ``lead.routed`` record with the same owner, the same deadline and the same
  hand-off number (no second routing, no second SLA clock), kept as the lead a
  reassignment sends on; the new grade is stored, for the next holder's
  deadline and every later step. A holder no longer active (inactive in
  the reps file, or gone from it) is not told: the touch hands the lead on
  through routing first, as a manager's hand-over through routing does
  (``lead.handed_over`` by routing), and the new holder is told; one out
  of office keeps it, the step saying until when. A
  touch that does neither (a newsletter sign-up, the same form sent again
  within scoring's repeat window) tells nobody. A
  lead sales rejected is back in nurture: a touch that lifts it to the bar
  recycles it (``nurture → mql → routed``) to a new holder with a new clock,
  unless the reasons file says its rejection reason does not recycle (spam,
  say): then it stays in nurture, with a log line and no output.
- ``lead.dispositioned`` in (``leads.feedback``): the same
  :func:`disposition` the HTTP API's :func:`record_disposition` applies, so
  both paths behave the same (a batch writes the hand-offs its reports
  changed in one statement); an illegal report is rejected to the dead-letter
  topic with the reason, for good (the inbox keeps the letter: read again, it
  is not applied), unless it names a rep or reason code the routing data
  lacks (redriven once the files are fixed, it is applied).

Events caused by a disposition get ids derived from the lead and the stage
they record (a correction of a won deal's amount: its number among the
lead's corrections), not from the report: the same disposition sent over
HTTP and over the topic yields the same events, and consumers keep one.

Every ``lead.routed`` carries the number of the hand-off it announces
(``Handoff.seq``, one more at every change of holder): what a batch here
causes the consumer runner sends after the commit, what the SLA watch and the
HTTP API cause goes through the outbox, and a record of one path may overtake
an earlier one of the other (a send retried while the broker was away, a
process dying between commit and send). By the number a consumer keeps the
holder now.

Both come to :func:`handle_scored_and_dispositioned`, one call a batch, which
locks every hand-off the batch may change before any other row, in lead id
order, as every path does (``routing.store``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome, Rejected
from leadpipe_common.envelope import Envelope, Message, child_traceparent, encode, follow_up
from leadpipe_common.erasure import dropped, erased_event
from leadpipe_common.events import (
    Assignment, Grade, LeadDispositioned, LeadHandedOver, LeadMerged, LeadQueued, LeadReengaged, LeadRouted,
    LeadScored, LeadStageChanged, LeadWonAmountCorrected,
)
from leadpipe_common.logging import each
from leadpipe_common.uow import UnitOfWork

from routing.domain import (
    Applied, Breach, Gone, Handoff, Kept, Merged, OutOfOffice, Placed, Presence, Refused, Rep, Repeated, Route,
    RoutingData, Step, Waiting, absence, acceptance_due, answerable_since, answered_at, apply_disposition,
    capacity_bound, choose_route, dated_before, escalated_to, hand_to, kept_back_by, may_wait, merge_into,
    news_for_holder, no_longer_active, overflow_chain, place, recycled_by, rejected_as, reroute, told_why,
)
from routing.reference import Reference, RoutingFiles
from routing.store import Held, RoutingStore, Turns

SOURCE = "leadpipe/routing"
#: The name of a recycled lead's ``nurture → mql`` step beside its ``mql → routed``: its id derives from the score's.
RECYCLED = "lead.stage_changed/recycled"
log = structlog.get_logger(__name__)


@dataclass
class Routing:
    """What routing's handlers, routes and watches need besides the store.

    ``reference`` is replaced whole by a reload (``reload``); a reader takes
    it once per batch, so one batch never mixes two versions.
    """

    reference: Reference
    clock: Callable[[], datetime]
    #: Where the routing data came from, to reload it; None: fixed data (tests).
    files: RoutingFiles | None = None

    @property
    def data(self) -> RoutingData:
        return self.reference.data

    def reload(self) -> tuple[Reference, bool]:
        """Read the files again; the data in force and whether it changed. Raises ValueError (the old data stays
        in force) when the files are wrong."""
        if self.files is None:
            return self.reference, False
        fresh = self.files.load()
        changed = fresh.version != self.reference.version
        self.reference = fresh
        return fresh, changed


@dataclass(frozen=True)
class DispositionResult:
    """What became of one report: ``verdict`` is None when routing has no such routed lead."""

    verdict: Applied | Repeated | Refused | None
    messages: list[Message]


def announced(lead: LeadRouted, after: Handoff, assignment: Assignment, now: datetime, version: str) -> LeadRouted:
    """The stored ``lead`` re-sent on ``leads.routed`` for its hand-off ``after`` (to ``assignment``, at ``now``, by
    routing data ``version``). The hand-off's number and grade come from the hand-off, not the stored lead: one
    stored before lead.routed v6, or written back by an older process in a rolling update, lacks the grade, and a
    webhook filtered on grade would judge the lead by its score's, which a re-engagement may have left below it."""
    return lead.model_copy(update={"assignment": assignment, "routed_at": now, "routing_data_version": version,
                                   "handoff_seq": after.seq, "held_grade": after.grade})


def queued_again(before: Handoff, after: Handoff, assignment: Assignment, lead: LeadRouted, now: datetime, *,
                 event_id: uuid.UUID, traceparent: str) -> list[Message]:
    """``lead.queued`` when a lead handed on (a missed deadline, a hand-over through routing) was left waiting in its
    team's queue for the queue watch to hand out: without it such a lead read, on the lifecycle, like one escalated
    for good (both ``escalated``, to the queue, with no deadline), which nobody but a rep taking it moves on."""
    if after.waiting_since is None or before.waiting_since is not None:
        return []
    queued = LeadQueued(lead_id=lead.lead_id, team=assignment.team, at=now, reason=assignment.reason,
                        grade=after.grade, attribution=lead.attribution)
    return [encode(topics.LIFECYCLE, queued, event_id=event_id, source=SOURCE, time=now, traceparent=traceparent)]


def step_event(lead: LeadRouted, h: Handoff, step: Step, at: datetime, by: str) -> LeadStageChanged:
    return LeadStageChanged(
        lead_id=lead.lead_id, from_stage=step.from_stage, to_stage=step.to_stage, at=at,  # type: ignore[arg-type]
        by=by, reason=step.reason, attribution=lead.attribution, owner_id=h.owner_id, team=h.team,
        grade=h.grade, reason_code=step.reason_code, amount=step.amount, currency=step.currency,
        # The hand-off a rejection ends: a consumer orders it against lead.routed by this number, not by the clocks
        # of the routing processes that recorded each (they may be minutes apart).
        handoff_seq=h.seq if step.to_stage == "rejected" else None,
    )


#: The most merges followed from a merged lead to the lead holding its person now. The merge rules end every chain
#: (a lead is merged only into one not merged away, and once), so this only bounds a loop a broken row could make
#: endless.
MERGE_HOPS = 16


async def merges_followed(store: RoutingStore, found: dict[uuid.UUID, Held]) -> dict[uuid.UUID, Held]:
    """``found`` with each merged lead's ``merged_into`` naming the lead that holds its person now: its survivor, or
    the lead that one was merged into since (D into S, then S into T: T), so a refusal sends sales there at once,
    not round the chain. Nothing is written: the row keeps its survivor. Read unlocked, a hop a statement (none for
    a batch with no merged lead): a chain only ever grows at its end, by a merge that locks that end."""
    now_in = {i: h.handoff.merged_into for i, h in found.items() if h.handoff.merged_into is not None}
    for _ in range(MERGE_HOPS):
        further = await store.merged_into(set(now_in.values()))
        if not further:
            break
        now_in = {i: further.get(end, end) for i, end in now_in.items()}
    return {i: dataclasses.replace(h, handoff=dataclasses.replace(h.handoff, merged_into=now_in[i])) if i in now_in
            else h for i, h in found.items()}


def disposition(held: Held, report: LeadDispositioned, data: RoutingData, now: datetime,
                traceparent: str | None = None, *, refuse_early: bool = False) -> DispositionResult:
    """What a sales report does to the lead's hand-off ``held``, and the events it sends; nothing is stored: the
    caller writes an applied verdict's hand-off. A report dated before its answer could have been given is refused
    with ``refuse_early`` (over HTTP, whose caller hears why and may mend it), and else dated then (on the topic,
    where a record cannot be answered)."""
    verdict = apply_disposition(held.handoff, report, data)
    if not isinstance(verdict, Applied):
        return DispositionResult(verdict, [])
    # Judged once the report is known to change something: a resend of a report applied before stays a repeat,
    # though a hand-off begun since would date it too early. The stored lead is re-sent with every change of holder
    # (a reassignment, a hand-over, a move between queues) dated then, and kept through a re-engagement; a rep
    # taking the lead from its team's queue leaves it dated when the lead came there, the earliest they could.
    since = answerable_since(held.handoff, report.outcome, held.lead.routed_at)
    if refuse_early and (early := dated_before(report, since)) is not None:
        return DispositionResult(early, [])
    at = answered_at(report, now, since)
    messages = [
        encode(topics.LIFECYCLE, step_event(held.lead, verdict.handoff, step, at, report.rep_id),
               event_id=verdict.handoff.event_id(f"disposition/{step.to_stage}"), source=SOURCE, time=now,
               traceparent=child_traceparent(traceparent or held.traceparent))
        for step in verdict.steps
    ]
    if (c := verdict.correction) is not None:
        h = verdict.handoff
        corrected = LeadWonAmountCorrected(
            lead_id=h.lead_id, amount=c.amount, currency=c.currency, previous_amount=c.previous_amount,
            previous_currency=c.previous_currency, correction=c.number, at=at, by=report.rep_id, reason=c.reason,
            owner_id=h.owner_id, team=h.team, grade=h.grade, attribution=held.lead.attribution)
        # Numbered as the win's steps are named: the same correction over HTTP and the topic is one event.
        messages.append(encode(topics.LIFECYCLE, corrected,
                               event_id=h.event_id(f"disposition/won/corrected/{c.number}"), source=SOURCE, time=now,
                               traceparent=child_traceparent(traceparent or held.traceparent)))
    return DispositionResult(verdict, messages)


async def record_disposition(store: RoutingStore, report: LeadDispositioned, data: RoutingData, now: datetime,
                             traceparent: str | None = None, *, refuse_early: bool = False) -> DispositionResult:
    """Apply a sales report to the lead's hand-off (locked), in the caller's unit of work: the HTTP API's one
    report (``refuse_early``: see ``disposition``). (A batch from the topic locks its leads at once and writes them
    once: ``handle_lead_dispositioned``.)"""
    held = await store.handoff(report.lead_id)
    if held is None:
        return DispositionResult(None, [])
    held = (await merges_followed(store, {report.lead_id: held}))[report.lead_id]
    result = disposition(held, report, data, now, traceparent, refuse_early=refuse_early)
    if isinstance(result.verdict, Applied):
        await store.update_handoff(result.verdict.handoff)
    return result


@dataclass(frozen=True)
class MergeResult:
    """``verdict`` is None when routing holds no such lead (either of the two: ``missing`` names which)."""

    verdict: Merged | Repeated | Refused | None
    messages: list[Message]
    missing: tuple[uuid.UUID, ...] = ()


async def record_merge(store: RoutingStore, lead_id: uuid.UUID, survivor_id: uuid.UUID, by: str, reason: str,
                       data: RoutingData, now: datetime, traceparent: str | None = None) -> MergeResult:
    """Close ``lead_id`` as merged into ``survivor_id`` by rep ``by``, in the caller's unit of work (both locked in
    lead id order, as every path locks hand-offs, so a merge and a batch about the same two leads cannot
    deadlock)."""
    found = await merges_followed(store, await store.lock_handoffs((lead_id, survivor_id)))
    held, survivor = found.get(lead_id), found.get(survivor_id)
    if held is None or survivor is None:
        return MergeResult(None, [], tuple(i for i, h in ((lead_id, held), (survivor_id, survivor)) if h is None))
    verdict = merge_into(held.handoff, survivor.handoff, by, data)
    if not isinstance(verdict, Merged):
        return MergeResult(verdict, [])
    await store.update_handoff(verdict.handoff)
    # Both holders, for receivers following either: the duplicate's is told its lead is closed, the survivor's
    # (maybe of another team) that its lead took in another.
    merged = LeadMerged(lead_id=lead_id, survivor_id=survivor_id, at=now, by=by, reason=reason,
                        owner_id=held.handoff.owner_id, team=held.handoff.team, grade=held.handoff.grade,
                        survivor_owner_id=survivor.handoff.owner_id, survivor_team=survivor.handoff.team,
                        survivor_grade=survivor.handoff.grade, attribution=held.lead.attribution)
    return MergeResult(verdict, [encode(topics.LIFECYCLE, merged, event_id=uuid.uuid5(lead_id, "merged"),
                                        source=SOURCE, time=now,
                                        traceparent=child_traceparent(traceparent or held.traceparent))])


async def locked_for_placing(store: RoutingStore, held: Sequence[Held], data: RoutingData,
                             now: datetime) -> tuple[dict[uuid.UUID, Route], Turns, Presence]:
    """What placing ``held`` again as new leads of their routes needs (a missed deadline, a hand-over through
    routing): each lead's route now, and the rotations of every team those routes may reach, locked before the
    reps' held leads are counted, as routing a new lead does."""
    routes = {h.handoff.lead_id: choose_route(h.lead, data) for h in held}
    return routes, *await locked_rotations(store, routes.values(), data, now)


async def locked_rotations(store: RoutingStore, routes: Iterable[Route], data: RoutingData, now: datetime, *,
                           present: Iterable[str] = ()) -> tuple[Turns, Presence]:
    """The rotations of every team ``routes`` may reach (its own and those it overflows to), locked before their
    reps' held leads are counted, and those reps' presence, with the out-of-office periods of reps ``present``
    too (holders told of a touch), in the same statements."""
    teams = {t for route in routes for t in overflow_chain(route.team, data)}
    turns = Turns(await store.lock_rotations(teams))
    reps = [r for r in data.reps if r.team in teams]
    return turns, await store.presence([*(r.id for r in reps), *present], now, up_to=capacity_bound(reps))


@dataclass
class Placing:
    """Placing held leads again through routing in one unit of work: each lead's route now, the rotations its route
    may reach (locked), and the reps' presence, as the leads placed so far left them."""

    routes: dict[uuid.UUID, Route]
    turns: Turns
    presence: Presence

    def again(self, handoff: Handoff, data: RoutingData, now: datetime, why: str) -> Breach | Kept:
        """``handoff`` placed again on its route (``reroute``), the turn it took and the unaccepted lead its new
        rep holds counted for the next."""
        placed = reroute(handoff, self.routes[handoff.lead_id], data, self.turns.states, now, self.presence, why)
        if isinstance(placed, Breach):
            self.turns.take(placed.handoff.team, placed.rotation)
            if placed.action == "reassigned" and handoff.status == "routed":  # capacity counts unaccepted leads
                self.presence = self.presence.holding_one_more(placed.assignment.owner_id)
        return placed


def handed_on(held: Held, after: Handoff, assignment: Assignment, by: str, now: datetime, version: str,
              traceparent: str | None) -> tuple[Held, list[Message]]:
    """``held`` handed over to ``assignment``'s owner by ``by`` (a manager, or routing for a holder no longer
    active), as ``after``: the lead as it is now, and the messages saying so. Its stored lead is re-sent on
    ``leads.routed`` with its new owner beside ``lead.handed_over`` (and ``lead.queued`` when it is left waiting in
    its team's queue), with ids of that move's own."""
    handoff, lead = held.handoff, held.lead
    rerouted = announced(lead, after, assignment, now, version)
    handed = LeadHandedOver(
        lead_id=lead.lead_id, from_owner_id=handoff.owner_id, from_team=handoff.team, from_due_at=handoff.due_at,
        owner_id=assignment.owner_id, owner_name=assignment.owner_name, team=assignment.team,
        stage=handoff.status,  # type: ignore[arg-type]
        at=now, by=by, reason=assignment.reason, due_at=after.due_at, grade=handoff.grade,
        attribution=lead.attribution)
    # Unique to this move, as a move out of an orphaned queue is (``sla.requeue_orphans``): the stored lead's
    # routed_at changes with every move, so a lead handed A to B, back, and to B again is sent each time; a
    # hand-over retried after its transaction was lost sends the same events again.
    move = f"{handoff.owner_id}/{assignment.owner_id}/{lead.routed_at.isoformat()}"
    messages = [
        encode(topics.LIFECYCLE, handed, event_id=handoff.event_id(f"lead.handed_over/{move}"), source=SOURCE,
               time=now, traceparent=traceparent),
        encode(topics.ROUTED, rerouted, event_id=handoff.event_id(f"lead.routed/handed_over/{move}"),
               source=SOURCE, time=now, traceparent=traceparent),
        *queued_again(handoff, after, assignment, rerouted, now,
                      event_id=handoff.event_id(f"lead.queued/handed_over/{move}"), traceparent=traceparent),
    ]
    return dataclasses.replace(held, handoff=after, lead=rerouted), messages


@dataclass(frozen=True)
class Handover:
    """What a hand-over moved: each lead's hand-off as it is now; the leads sales accepted that routing could give to
    no rep now, left with the rep; and, when the rep holds open leads beyond the page, the last lead of it (for the
    next page to start after)."""

    moved: list[Handoff]
    kept: list[Kept]
    next_after: uuid.UUID | None
    messages: list[Message]

    @property
    def more(self) -> bool:
        return self.next_after is not None


async def hand_over(store: RoutingStore, rep_id: str, to: Rep | None, by: str, reason: str | None, ref: Reference,
                    now: datetime, limit: int, traceparent: str | None = None, *,
                    after: uuid.UUID | None = None) -> Handover:
    """Hand the first ``limit`` open leads ``rep_id`` holds (by lead id, after ``after``) to ``to``
    (``handover_refused`` passed them), or, with None, place each again through routing (``reroute``: one sales
    accepted that nobody can take now is kept), in the caller's unit of work: each moved re-sent on ``leads.routed``
    with its new owner beside ``lead.handed_over``. The rep holding none (all moved before: a repeat) moves
    nothing."""
    page = await store.lock_held(rep_id, limit + 1, after=after)
    held = page[:limit]
    # Kept leads stay the rep's, first by lead id: a next page that started again from the first would find them
    # again, and a page of them alone would never reach the leads after.
    next_after = held[-1].handoff.lead_id if len(page) > limit else None
    why = f"handed over from {rep_id} by {by}" + (f": {reason}" if reason else "")
    placing = Placing({}, Turns({}), Presence())
    if to is None and held:
        placing = Placing(*await locked_for_placing(store, held, ref.data, now))
    moved: list[Held] = []
    kept: list[Kept] = []
    messages: list[Message] = []
    for h in held:
        if to is not None:
            now_held, assignment = hand_to(h.handoff, h.lead.assignment, to, ref.data, now, why)
        else:
            placed = placing.again(h.handoff, ref.data, now, why)
            if isinstance(placed, Kept):
                kept.append(placed)
                continue
            now_held, assignment = placed.handoff, placed.assignment
        h, sent = handed_on(h, now_held, assignment, by, now, ref.version,
                            child_traceparent(traceparent or h.traceparent))
        messages += sent
        moved.append(h)
    await store.update_handoffs(moved)  # one statement, however many leads a page moves
    await store.save_rotations(placing.turns.changed, placing.turns.taken)
    log.info("leads handed over", rep=rep_id, to=to.id if to else "routing", by=by, moved=len(moved),
             kept=len(kept), more=next_after is not None)
    return Handover([h.handoff for h in moved], kept, next_after, messages)


async def handle_lead_scored(uow: UnitOfWork[RoutingStore], batch: Sequence[Envelope],
                             ctx: Routing) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    ref = ctx.reference  # one version of the routing data for the whole batch, whatever a reload does meanwhile
    store = uow.store
    outcomes: dict[uuid.UUID, Outcome] = {env.id: [] for env in batch}
    # An erased lead's score (a redrive, a late touch) carries the person again: it is neither routed nor told to
    # a holder, and nothing of it is stored.
    gone = {env.id for env in dropped(batch, await store.erased(env.data.lead_id for env in batch))}
    batch = [env for env in batch if env.id not in gone]
    touched = [env for env in batch if isinstance(env.data, LeadScored) and env.data.touch is not None]
    held = await store.already_assigned(env.data.lead_id for env in touched)
    # Locked all at once in lead id order, not one by one in the batch's (see routing.store).
    holdings = await store.lock_handoffs(env.data.lead_id for env in touched if env.data.lead_id in held)
    recycled: dict[uuid.UUID, int] = {}  # rejected by sales (back in nurture), a touch lifts them to the bar: cycle
    # Stored hand-offs this batch changes (a touch told to the holder, a recycle), the last of each lead: written
    # in one statement at the end. One UPDATE a touch made an importer re-sending 500 known people 500 round trips
    # in a row, inside the transaction holding their locks.
    rewritten: dict[uuid.UUID, Held] = {}
    # The hand-offs whose holders a touch of the batch will be news to (whatever the touches before it told them,
    # the first that is news is news to the stored lead), and of those, the leads whose holders are no longer
    # active: the touch hands them on through routing.
    told_of: dict[uuid.UUID, Held] = {}
    for env in each(touched):
        holding = holdings.get(env.data.lead_id)
        if holding is None:
            continue
        if recycled_by(holding.handoff, env.data, ref.data.reasons):
            recycled[env.id] = holding.handoff.cycle + 1
        elif code := kept_back_by(holding.handoff, env.data, ref.data.reasons):
            # Nothing is emitted, as for any touch that leaves a rejected lead in nurture; this one would have
            # routed it but for its rejection reason, which is worth a word to whoever asks why it did not.
            log.info("touch leaves a lead sales rejected in nurture: its rejection reason does not recycle",
                     reason_code=code)
        elif not holding.handoff.closed and news_for_holder(holding.lead.contact, env.data):
            told_of[env.data.lead_id] = holding
    rerouted = {i: choose_route(h.lead, ref.data) for i, h in told_of.items()
                if no_longer_active(h.handoff.owner_id, ref.data) is not None}
    mqls = [env for env in batch if isinstance(env.data, LeadScored) and env.data.score.decision == "mql"
            and (env.id in recycled or not (env.data.touch is not None and env.data.lead_id in held))]
    assigned = await store.already_assigned(env.data.lead_id for env in mqls if env.id not in recycled)
    routes = {}
    for env in each(mqls):
        if env.data.lead_id in assigned:
            # A lead scored again without a touch (a merge gave it a
            # duplicate's touches) or a second, differently-identified event
            # for one lead: the first routing stands. (A touch here is of a
            # lead routed earlier in this batch: its holder hears of it below.)
            if env.data.touch is None:
                log.info("lead already routed; its new score changes nothing here")
            continue
        assigned.add(env.data.lead_id)
        routes[env.id] = choose_route(env.data, ref.data)

    # Every team a lead may go to (its own and those it overflows to), a new one or one handed on, is locked before
    # held leads are counted, all in one statement (see handle_scored_and_dispositioned). The out-of-office periods
    # of the holders told of a touch come with the reps' presence: none are read for a batch that tells nobody.
    placing = Placing(rerouted, *await locked_rotations(
        store, [*routes.values(), *rerouted.values()], ref.data, now,
        present=(h.handoff.owner_id for h in told_of.values())))
    for env in each(touched):
        if env.data.lead_id in held and env.id not in recycled:
            outcomes[env.id], told = _reengage(env, holdings.get(env.data.lead_id), now, ref, placing)
            if told is not None:
                holdings[env.data.lead_id] = rewritten[env.data.lead_id] = told
    rows, handoffs, reassigned = [], [], []
    fresh: dict[uuid.UUID, tuple[int, Held]] = {}  # routed in this batch: where in it, and the hand-off
    position = {env.id: i for i, env in enumerate(batch)}
    for env in mqls:
        route = routes.get(env.id)
        if route is None:
            continue
        lead = env.data
        assert isinstance(lead, LeadScored)
        # A recycled lead goes to a new holder: not back to the rep who rejected it (nor, if the new one misses
        # its deadline, to them by the rotation; the reps who missed the last hand-off's may have it again).
        before = (holdings[lead.lead_id].handoff.owner_id,) if env.id in recycled else ()
        placement = place(route, ref.data, placing.turns.states, now, placing.presence, passed_over=before)
        if isinstance(placement, Placed):
            placing.turns.take(placement.team, placement.rotation)
            placing.presence = placing.presence.holding_one_more(placement.rep.id)
        assignment = placement.assignment
        waiting = isinstance(placement, Waiting)
        if waiting and env.id in recycled and not may_wait(placement.team, before, ref.data):
            # Nobody along its team's overflow but the rep who rejected it may ever take it: as a missed deadline
            # with nobody left (``place_again``), escalated with no waiting mark, which the queue watch would claim
            # every round and never hand out. Its team's reps may take it from there, the rejecter too, who may
            # see the new touch as reason enough: not given back with a clock to one who turned it down.
            assignment = escalated_to(placement.team, holdings[lead.lead_id].handoff.team, placement.nobody,
                                      ref.data)
            waiting = False
        # A recycle hands the lead on, to a new holder: the number after its last hand-off's.
        seq = holdings[lead.lead_id].handoff.seq + 1 if env.id in recycled else 1
        routed = LeadRouted.model_construct(**dict(lead), assignment=assignment, routed_at=now,  # validated parts
                                            routing_data_version=ref.version, handoff_seq=seq,
                                            held_grade=lead.score.grade)
        # A recycle is a new hand-off of a lead sales had before: its first routing stays the lead's first.
        first = holdings[lead.lead_id].handoff.first_routed_at if env.id in recycled else now
        handoff = Handoff(lead_id=lead.lead_id, status="routed", owner_id=assignment.owner_id,
                          team=assignment.team, grade=lead.score.grade, waiting_since=now if waiting else None,
                          due_at=acceptance_due(lead.score.grade, assignment.owner_id, ref.data, now),
                          cycle=recycled.get(env.id, 0), holders=before, seq=seq, first_routed_at=first)
        changed = LeadStageChanged(
            lead_id=lead.lead_id, from_stage="mql", to_stage="routed", at=now, by="routing",
            reason=f"assigned to {assignment.owner_name}: {assignment.reason}", attribution=lead.attribution,
            owner_id=assignment.owner_id, team=assignment.team, grade=lead.score.grade, due_at=handoff.due_at,
        )
        routed_message = follow_up(env, topics.ROUTED, routed, source=SOURCE, time=now)
        outcomes[env.id] = [routed_message, follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now)]
        if waiting:
            queued = LeadQueued(lead_id=lead.lead_id, team=assignment.team, at=now, reason=assignment.reason,
                                grade=lead.score.grade, attribution=lead.attribution)
            outcomes[env.id].append(follow_up(env, topics.LIFECYCLE, queued, source=SOURCE, time=now))
        row = {"lead_id": lead.lead_id, "owner_id": assignment.owner_id, "team": assignment.team,
               "method": assignment.method, "reason": assignment.reason, "routed_at": now}
        held_now = Held(handoff, routed, routed_message.header("traceparent"))
        fresh[lead.lead_id] = (position[env.id], held_now)
        if env.id in recycled:
            # The rejection's code rides along so a reader of the lifecycle (what-if) knows what the lead was
            # recycled after without reading back to the rejection itself.
            back = LeadStageChanged(
                lead_id=lead.lead_id, from_stage="nurture", to_stage="mql", at=now, by="routing",
                reason=f"recycled after sales rejected it: {_touch_summary(lead)}", attribution=lead.attribution,
                reason_code=rejected_as(holdings[lead.lead_id].handoff))
            outcomes[env.id].insert(0, follow_up(env, topics.LIFECYCLE, back, source=SOURCE, time=now,
                                                 name=RECYCLED))
            reassigned.append(row)
            rewritten[lead.lead_id] = held_now
        else:
            rows.append(row)
            handoffs.append(held_now)
    # Touches of a lead this batch routed, after its routing (a person who submitted twice in a moment): its
    # holder hears of them as of any later touch, with the newer score.
    for env in each(touched):
        routed_here = fresh.get(env.data.lead_id)
        if routed_here is not None and position[env.id] > routed_here[0] and not outcomes[env.id]:
            outcomes[env.id], told = _reengage(env, routed_here[1], now, ref, placing)
            if told is None:
                continue
            fresh[env.data.lead_id] = (routed_here[0], told)
            if any(h is routed_here[1] for h in handoffs):  # not stored yet: stored as told
                handoffs[next(i for i, h in enumerate(handoffs) if h is routed_here[1])] = told
            else:  # a recycle's, stored with the others at the end
                rewritten[env.data.lead_id] = told
    await store.save_rotations(placing.turns.changed, placing.turns.taken)
    await store.save_assignments(rows)
    # The recycles' in one statement, as the new leads': their hand-offs are locked since the batch began, so no
    # other unit of work writes these rows meanwhile.
    await store.reassign(reassigned)
    await store.add_handoffs(handoffs)
    await store.update_handoffs(list(rewritten.values()))  # locked since the batch began: no new lock, no wait
    return outcomes


def _reengage(env: Envelope, held: Held | None, now: datetime, ref: Reference,
              placing: Placing) -> tuple[Outcome, Held | None]:
    """Tell the holder of a lead about its new touch: same owner, same deadline, the new score and contact; and
    the hand-off holding the lead as told, with the new grade (None: nothing told), which a reassignment sends on
    and the next touch is compared with. A holder no longer active is not told: the lead is handed on through
    routing (its route in ``placing``), as a manager's hand-over through routing would, and the new holder told."""
    lead = env.data
    assert isinstance(lead, LeadScored) and lead.touch is not None
    if held is None or held.handoff.closed:
        return [], None  # sales closed it (won, lost, merged; rejected and still below the bar): nobody to tell
    h, before = held.handoff, held.lead
    if not news_for_holder(before.contact, lead):
        # A double click's second form, or a newsletter sign-up, would otherwise ping the rep and every sales tool
        # again. The touch stays on the lead's timeline (lead.touched).
        return [], None
    # A grade the touch raised is the lead's from now on: the next holder's deadline and every later step go by it.
    # The holder keeps the deadline she was told (nothing would tell her a shorter one), so due_at stays. Both events
    # say it beside the touch's own grade: a webhook filtered on grade follows the lead by it, as by its later steps,
    # so a touch scored below it (a consent withdrawn, its intent decayed) reaches the receiver that took the lead.
    h = dataclasses.replace(h, grade=_raised(h.grade, lead.score.grade))
    # The same hand-off told again: its number, not a new one (one taken from the queue since has its own).
    routed = LeadRouted.model_construct(**dict(lead), assignment=_holders(before.assignment, h, ref.data),
                                        routed_at=before.routed_at, routing_data_version=before.routing_data_version,
                                        handoff_seq=h.seq, held_grade=h.grade)
    told = dataclasses.replace(held, handoff=h, lead=routed)
    sent = [follow_up(env, topics.ROUTED, routed, source=SOURCE, time=now)]
    absent = absence(h.owner_id, ref.data, placing.presence, now)
    moved: Assignment | Kept | None = None
    if isinstance(absent, Gone):
        placed = placing.again(h, ref.data, now, absent.why)
        if isinstance(placed, Kept):
            moved = placed
        else:
            # By routing, as its other steps are: no manager asked. The hand-over carries the touch on, so the new
            # holder's record is the one telling of it (one record, not the old holder's and then the new one's).
            told, sent = handed_on(told, placed.handoff, placed.assignment, "routing", now, ref.version,
                                   child_traceparent(env.traceparent))
            moved = placed.assignment
            log.info("re-engaged lead handed on: its holder is no longer active", holder=h.owner_id,
                     to=moved.owner_id)
    reengaged = LeadReengaged(
        lead_id=lead.lead_id, touch=lead.touch, owner_id=told.handoff.owner_id, team=told.handoff.team, at=now,
        reason=told_why(_touch_summary(lead), absent, moved), attribution=lead.attribution, score=lead.score.value,
        grade=lead.score.grade, held_grade=h.grade,
        holder_away_until=absent.until if isinstance(absent, OutOfOffice) else None,
    )
    return [*sent, follow_up(env, topics.LIFECYCLE, reengaged, source=SOURCE, time=now)], told


def _raised(held: Grade | None, scored: Grade) -> Grade:
    """A hand-off's grade after a re-engagement: raised by the touch, never lowered. A touch that only changes the
    contact is scored with the intent decayed since the lead was routed: a lower grade would give the next holder a
    slower deadline, and keep the lead's later steps from subscriptions filtered by the grade it was routed with."""
    return scored if held is None else min(held, scored)  # "A" < "B": the better of the two


def _holders(assignment: Assignment, h: Handoff, data: RoutingData) -> Assignment:
    """``assignment`` naming the lead's holder now. A rep who accepts a lead from its team's queue becomes its
    holder, but the stored lead still names the queue: writing it again on every such acceptance would cost more
    than mending it here, for the rarer touch that re-sends it."""
    if assignment.owner_id == h.owner_id:
        return assignment
    rep = data.rep(h.owner_id)
    name = rep.name if rep else h.owner_id  # a rep since gone from the reps file is still the holder
    return assignment.model_copy(update={"owner_id": h.owner_id, "owner_name": name,
                                         "owner_email": rep.email if rep else None,
                                         "reason": f"{assignment.reason}; taken from the queue by {name}"})


def _touch_summary(lead: LeadScored) -> str:
    assert lead.touch is not None
    a = lead.touch.attribution
    what = f"asked for {a.offer}" if a.offer else f"submitted form {a.form_id}" if a.form_id else "came back"
    via = f" via {a.utm_source}" if a.utm_source else ""
    return f"{what}{via}; score now {lead.score.value} (grade {lead.score.grade})"


async def handle_lead_dispositioned(uow: UnitOfWork[RoutingStore], batch: Sequence[Envelope],
                                    ctx: Routing) -> dict[uuid.UUID, Outcome]:
    now = ctx.clock()
    outcomes: dict[uuid.UUID, Outcome] = {}
    # Every lead's hand-off locked first, in lead id order (see routing.store), and read in that one statement:
    # locked report by report, in log order, they could deadlock with a merge or another batch about the same
    # leads. (A hand-off it did not find is none a report may be about: sales hear of a lead after its routing
    # committed.)
    locked = await merges_followed(uow.store, await uow.store.lock_handoffs(env.data.lead_id for env in batch))
    data = ctx.data  # one version for the whole batch, whatever a reload does meanwhile
    # The hand-offs the batch's reports changed, each as its last report left it: written in one statement at the
    # end. One UPDATE a report made a batch of N reports N round trips in a row, inside the transaction holding
    # their locks.
    rewritten: dict[uuid.UUID, Handoff] = {}
    # One at a time, in log order: two reports about one lead in a batch
    # must see each other's effect (``locked`` keeps each lead as the report before left it).
    for env in each(batch):
        report = env.data
        assert isinstance(report, LeadDispositioned)
        held = locked.get(report.lead_id)
        if held is None:
            result = DispositionResult(None, [])
        else:
            result = disposition(held, report, data, now, env.traceparent)
            if isinstance(result.verdict, Applied):
                rewritten[report.lead_id] = result.verdict.handoff
                locked[report.lead_id] = dataclasses.replace(held, handoff=result.verdict.handoff)
        # A report refused for where the lead is now (no such hand-off, an illegal move, not its holder) is
        # refused for good: were it applied when read again after a later report made the move legal (a
        # redelivery), the same input would have two outcomes. One naming a rep or reason code the routing
        # data lacks is not: once the files are fixed, a redriven copy is applied.
        if result.verdict is None:
            outcomes[env.id] = Rejected(f"no routed lead {report.lead_id}", final=True)
        elif isinstance(result.verdict, Refused):
            outcomes[env.id] = Rejected(f"{result.verdict.field}: {result.verdict.reason}",
                                        final=result.verdict.kind == "conflict")
        else:
            outcomes[env.id] = result.messages
    # Only the hand-offs: a report changes no lead, and one written back by a process on an older version (a
    # rolling update) would lose the fields its model does not know.
    await uow.store.update_handoffs_only(list(rewritten.values()))  # locked since the batch began: no new lock
    return outcomes


async def handle_lead_erased(uow: UnitOfWork[RoutingStore], batch: Sequence[Envelope],
                             ctx: Routing) -> dict[uuid.UUID, Outcome]:
    """The person cleared from routing's copies of the lead (the routed lead its hand-off keeps, which an SLA
    reassignment sent again, and the outputs its inbox keeps); the hand-off is closed as ``erased``, its holder,
    team and dispositions (sales' record) kept. Announced on the lifecycle, for delivery and reporting."""
    now = ctx.clock()
    erased = sorted({env.data.lead_id for env in batch})
    held = await uow.store.lock_handoffs(erased)  # first, as every writer of hand-offs locks (see routing.store)
    await uow.store.erase({env.data.lead_id: env.data.at for env in batch})
    # An open one closed as erased: an open hand-off of an empty lead would still be handed from rep to rep by the
    # SLA and queue watches and count against its holder's capacity. One sales closed keeps its status (won, lost,
    # rejected, merged): that is sales' record, and a won deal's amount may still be corrected. Its holder, team
    # and dispositions stay either way.
    await uow.store.update_handoffs([dataclasses.replace(
        h, handoff=h.handoff if h.handoff.closed else dataclasses.replace(
            h.handoff, status="erased", due_at=None, waiting_since=None),
        lead=LeadRouted.model_validate(erased_event(h.lead.model_dump(mode="json")))) for h in held.values()])
    await uow.erase(erased)
    return {env.id: [follow_up(env, topics.LIFECYCLE, env.data, source=SOURCE, time=now)] for env in batch}


async def handle_scored_and_dispositioned(uow: UnitOfWork[RoutingStore], batch: Sequence[Envelope],
                                          ctx: Routing) -> dict[uuid.UUID, Outcome]:
    """Both of routing's inputs (the service declares this one handler for both, so a batch's scores and reports
    come in one call): every report, in log order, then every score, in log order.

    Each handler locks in the store's order (hand-offs, then rotation rows, each sorted), but a unit of work
    calling them once per run would lock a later run's rows after an earlier run's: scores, a report, scores
    again took one run's teams and then the other's, and two processes doing that the other way round deadlock.
    So the hand-offs the batch may change are locked first, and the scores go in one call (one rotation lock).
    The two topics have no order between them; reports go first because they are sales' word on where a lead
    stands, so a touch in the same batch meets the lead where sales left it (a lead just rejected is recycled to
    a new holder, not re-engaged with the rep who turned it down). A report cannot be about a lead a score of
    the same batch first routes: sales learn of a lead from its lead.routed, after routing committed it."""
    # One version of the routing data for the whole batch: a reload meanwhile replaces the original's reference.
    ctx = dataclasses.replace(ctx)
    scores = [env for env in batch if isinstance(env.data, LeadScored)]
    reports = [env for env in batch if not isinstance(env.data, LeadScored)]
    if scores and reports:
        # A touch may change its lead's hand-off; a first score only adds one.
        await uow.store.lock_handoffs([env.data.lead_id for env in reports]
                                      + [env.data.lead_id for env in scores if env.data.touch is not None])
    outcomes: dict[uuid.UUID, Outcome] = {}
    if reports:
        outcomes.update(await handle_lead_dispositioned(uow, reports, ctx))
    if scores:
        outcomes.update(await handle_lead_scored(uow, scores, ctx))
    return outcomes
