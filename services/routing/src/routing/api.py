"""routing's HTTP API for sales tools: dispositions, merges and a lead's hand-off state; reps' availability
(out-of-office periods), the hand-over of a rep's leads, and a reload of the routing files; for sales managers,
what waits in each team's queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from leadpipe_common import pages
from leadpipe_common.auth import Principal, needs
from leadpipe_common.db import UNAVAILABLE, is_unavailable
from leadpipe_common.events import DispositionReport as ReportFields
from leadpipe_common.events import Grade, LeadDispositioned, Moment
from leadpipe_common.http import FieldProblem, Problem, StrictRoute, problem_responses
from leadpipe_common.moments import written
from leadpipe_common.service import Runtime, runtime

from routing.answers import DispositionAnswer, HandoffState, MergeAnswer, RepState, RepsState
from routing.domain import (
    AHEAD_ALLOWED, Away, Handoff, Kind, Presence, Refused, Rep, Repeated, RoutingData, TeamQueue, dated_ahead,
    handover_refused, queue_of_team, queues, unavailable, waited_s,
)
from routing.handlers import Routing, hand_over, merges_followed, record_disposition, record_merge
from routing.sla import reload_reference
from routing.store import RoutingStore

#: What every route of routing's API gets: settings, routing data, clock and units of work.
RoutingRuntime = Annotated[Runtime[Routing, RoutingStore], Depends(runtime)]

log = structlog.get_logger(__name__)

DISPOSITIONS = Counter("routing_dispositions_total", "Disposition calls by result", ["outcome", "result"])

router = APIRouter(prefix="/v1/leads", tags=["sales feedback"], route_class=StrictRoute,
                   responses=problem_responses(401, 403, 413, 422))


def _state(h: Handoff) -> dict[str, Any]:
    return {"lead_id": str(h.lead_id), "status": h.status, "owner_id": h.owner_id, "team": h.team, "grade": h.grade,
            "due_at": written(h.due_at) if h.due_at else None, "reassignments": h.reassignments,
            "dispositions": [d.model_dump(mode="json", exclude={"at"}) for d in h.history],
            "merged_into": str(h.merged_into) if h.merged_into else None,
            # The number of the hand-off to its holder now: a sales tool reconciling from this answer starts from
            # it, and ignores any lead.routed numbered below it that arrives later (README, Webhooks).
            "handoff_seq": h.seq}


class DispositionReport(ReportFields):
    """A sales tool's report, as posted. Unlike the event on ``leads.feedback`` (whose readers pass over fields a
    newer producer adds), a key it does not know is refused: dropped, a misspelt ``ammount`` would record a win
    with no revenue, a ``reason_cod`` a rejection with no reason. The event's own ``lead_id`` may come along (a
    tool that posts what it would produce), if it is the path's."""

    model_config = ConfigDict(extra="forbid")

    lead_id: uuid.UUID | None = Field(None, description="the lead in the path, if given")


def _reported(who: Principal, what: str, lead_id: uuid.UUID, rep_id: str, **facts: str) -> None:
    """The audit line of a report a key made: a ``feedback:write`` key speaks for any rep it names, so the line
    says which key named whom (the event keeps the rep)."""
    log.info(what, lead_id=str(lead_id), rep_id=rep_id, key_id=who.key_id, key_name=who.name, **facts)


@router.post(
    "/{lead_id}/disposition",
    summary="Report what became of a routed lead",
    response_model=DispositionAnswer,
    description=(
        "Outcomes: `accepted`, `rejected` (with a `reason_code` from reasons.yaml; the lead returns to nurture), "
        "`contacted`, `qualified`, `won` (with `amount` and `currency`), `lost` (with a `reason_code` or `reason`). "
        "An illegal move answers 409 with the reason; the same report again answers 200 with `repeated: true`. "
        "The holder of a won lead may correct its amount: `won` again with another `amount` or `currency` answers "
        "200 with `corrected: true` (the lead stays won; `lead.won_amount_corrected` goes on the lifecycle and "
        "revenue reports take the new amount). "
        f"`at` (when it happened; absent: now) may not be more than {AHEAD_ALLOWED.total_seconds() / 60:.0f} "
        "minutes after routing records the report (a 422 naming `at`: a time zone wrong?); one up to that is dated "
        "when routing records it. Nor more than that before the answer could be given (a 422 naming `at`): "
        "`accepted` or `rejected` before the hand-off to the lead's holder now began (its routing, a reassignment, "
        "a hand-over, its arrival in the team's queue), any other outcome before the lead was first routed. One "
        "less early is dated as given. "
        "Sales tools may instead produce a `lead.dispositioned` event to `leads.feedback`."
    ),
    responses=problem_responses(404, 409, 503, _404="no routed lead with this id",
                                _409="illegal for the lead now (closed, a move out of order, a won report again "
                                     "that changes neither amount nor currency), or from a rep who does not hold "
                                     "it"),
)
async def post_disposition(lead_id: uuid.UUID, body: DispositionReport, request: Request, rt: RoutingRuntime,
                           who: Annotated[Principal, needs("feedback:write")]) -> dict[str, Any]:
    if body.lead_id not in (None, lead_id):
        raise Problem(422, "the report is about another lead", [FieldProblem("lead_id", f"is not {lead_id}, the "
                                                                                        "lead in the path")])
    report = LeadDispositioned(**{**dict(body), "lead_id": lead_id})  # the body passed the same checks already
    now = rt.context.clock()
    if (ahead := dated_ahead(report, now)) is not None:
        raise _refused(report, ahead)
    try:
        async with rt.request_unit_of_work() as uow:
            # Its earliest date (``dated_before``) is the stored hand-off's to tell: judged there, once the report is
            # known to change something (a resend of one applied before is a repeat, whatever hand-off began since).
            result = await record_disposition(uow.store, report, rt.context.data, now,
                                              request.headers.get("traceparent"), refuse_early=True)
            uow.publish(result.messages)
            await uow.commit()
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise Problem(503, "dispositions cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    verdict = result.verdict
    if verdict is None:
        DISPOSITIONS.labels(report.outcome, "unknown").inc()
        raise Problem(404, f"no routed lead {lead_id}: only leads routing handed to sales take dispositions")
    if isinstance(verdict, Refused):
        raise _refused(report, verdict)
    corrected = not isinstance(verdict, Repeated) and verdict.correction is not None
    DISPOSITIONS.labels(report.outcome, "repeated" if isinstance(verdict, Repeated) else
                        "corrected" if corrected else "applied").inc()
    if not isinstance(verdict, Repeated):
        _reported(who, "won amount corrected" if corrected else "disposition recorded", lead_id, body.rep_id,
                  outcome=report.outcome)
    return {**_state(verdict.handoff), "repeated": isinstance(verdict, Repeated), "corrected": corrected,
            "events": [m.header("ce_id") for m in result.messages]}


def _refused(report: LeadDispositioned, verdict: Refused) -> Problem:
    DISPOSITIONS.labels(report.outcome, verdict.kind).inc()
    status = 409 if verdict.kind == "conflict" else 422
    return Problem(status, verdict.reason, [FieldProblem(verdict.field, verdict.reason)])


# A sales tool's own key (feedback:write) reads it too: a refused report tells it to look up who holds the lead now,
# or which lead a merge kept, and asking for reports:read would open every report to it.
@router.get("/{lead_id}/handoff", summary="A routed lead's owner, status, SLA deadline and dispositions",
            response_model=HandoffState,
            description="Needs a key with `reports:read` or `feedback:write` (a sales tool's own key).",
            responses=problem_responses(404, _404="no routed lead with this id"),
            dependencies=[needs("reports:read", "feedback:write")])
async def get_handoff(lead_id: uuid.UUID, rt: RoutingRuntime) -> dict[str, Any]:
    async with rt.request_unit_of_work() as uow:
        held = await uow.store.handoff(lead_id, lock=False)
        if held is not None:
            held = (await merges_followed(uow.store, {lead_id: held}))[lead_id]
    if held is None:
        raise Problem(404, f"no routed lead {lead_id}")
    return _state(held.handoff)


class MergeRequest(BaseModel):
    """Sales says the lead in the path is the same person as ``survivor_id``'s lead."""

    model_config = ConfigDict(extra="forbid")  # a misspelt "reson" is said, not dropped

    survivor_id: uuid.UUID
    rep_id: str = Field(min_length=1, max_length=200,
                        description="who says so (kept on the merge event): a rep in the reps file who may report "
                                    "on the lead in the path (its holder, or any active rep of its team while it waits "
                                    "in the team's queue), or, for a lead sales rejected, one who may report on "
                                    "the survivor")
    reason: str | None = Field(None, max_length=2000)


@router.post(
    "/{lead_id}/merge",
    summary="Merge a lead into another: they are one person",
    response_model=MergeAnswer,
    description="The lead in the path closes as `merged`; the survivor keeps the earliest first touch and every "
                "touch of both, and reports count the person once. The same merge again answers 200 with "
                "`repeated: true`. Both must be leads routing handed to sales. Only a rep who may report on the "
                "lead in the path (as for a disposition) may merge it: an unknown `rep_id` answers 422, another "
                "rep's lead 409. A lead sales still works (routed, accepted, contacted, qualified) is merged only "
                "into another such lead (409 otherwise): merged into a closed one, it could never be won.",
    responses=problem_responses(404, 409, 503, _404="either lead is not one routing handed to sales",
                                _409="already merged into another lead, won or lost, still with sales and "
                                     "the survivor closed (rejected: merge it into this one; won or lost: keep "
                                     "both), the survivor was merged, or from a rep who does not hold the lead"),
)
async def post_merge(lead_id: uuid.UUID, body: MergeRequest, request: Request, rt: RoutingRuntime,
                     who: Annotated[Principal, needs("feedback:write")]) -> dict[str, Any]:
    reason = body.reason or f"{body.rep_id} merged it into {body.survivor_id}: the same person"
    try:
        async with rt.request_unit_of_work() as uow:
            result = await record_merge(uow.store, lead_id, body.survivor_id, body.rep_id, reason,
                                        rt.context.data, rt.context.clock(), request.headers.get("traceparent"))
            uow.publish(result.messages)
            await uow.commit()
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise Problem(503, "the merge cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    verdict = result.verdict
    if verdict is None:  # named: the one in the path, or the survivor the body names
        if lead_id in result.missing:
            raise Problem(404, f"no routed lead {lead_id}")
        raise Problem(404, f"no routed lead {body.survivor_id}",
                      [FieldProblem("survivor_id", "is not a lead routing handed to sales")])
    if isinstance(verdict, Refused):
        raise Problem(409 if verdict.kind == "conflict" else 422, verdict.reason,
                      [FieldProblem(verdict.field, verdict.reason)])
    if not isinstance(verdict, Repeated):
        _reported(who, "merge recorded", lead_id, body.rep_id, survivor_id=str(body.survivor_id))
    return {**_state(verdict.handoff), "survivor_id": str(body.survivor_id),
            "repeated": isinstance(verdict, Repeated), "events": [m.header("ce_id") for m in result.messages]}


reps_router = APIRouter(prefix="/v1", tags=["reps and routing data"], route_class=StrictRoute,
                        responses=problem_responses(401, 403, 413, 422))


class AwayPeriod(BaseModel):
    """A rep is out of office from ``starts_at`` (inclusive) until ``ends_at``: no new leads meanwhile."""

    model_config = ConfigDict(extra="forbid")

    starts_at: Moment
    ends_at: Moment
    reason: str | None = Field(None, max_length=200, description="shown to whoever reads the routing reason")

    @field_validator("ends_at")
    @classmethod
    def _ordered(cls, v: datetime, info: ValidationInfo) -> datetime:  # on the field: a refusal names it
        if "starts_at" in info.data and v <= info.data["starts_at"]:
            raise ValueError("ends_at must come after starts_at")
        return v


class Availability(BaseModel):
    model_config = ConfigDict(extra="forbid")

    away: list[AwayPeriod] = Field(max_length=100, description="every out-of-office period of the rep not yet over; "
                                                                "replaces the ones set before")


def _rep_or_404(rt: Runtime[Routing, RoutingStore], rep_id: str) -> Rep:
    rep = rt.context.data.rep(rep_id)
    if rep is None:
        raise Problem(404, f"no rep {rep_id!r} in the reps file")
    return rep


def _rep_state(rep: Rep, data: RoutingData, presence: Presence, now: datetime) -> dict[str, Any]:
    why = unavailable(rep, data, now, presence)
    return {"id": rep.id, "name": rep.name, "team": rep.team, "active": rep.active, "timezone": rep.timezone,
            "working_hours": data.hours_of(rep).model_dump(), "holidays": rep.holidays, "capacity": rep.capacity,
            "held": presence.held.get(rep.id, 0), "available": why is None, "unavailable_because": why,
            "away": [{"starts_at": written(a.starts_at), "ends_at": written(a.ends_at), "reason": a.reason}
                     for a in presence.away.get(rep.id, ())]}


@reps_router.get("/reps", summary="Every rep: who can take a lead now, and why not", response_model=RepsState,
                 dependencies=[needs("reports:read")])
async def get_reps(rt: RoutingRuntime) -> dict[str, Any]:
    ref, now = rt.context.reference, rt.context.clock()
    async with rt.request_unit_of_work() as uow:
        presence = await uow.store.presence((r.id for r in ref.data.reps), now)
    return {"routing_data_version": ref.version, "at": written(now),
            "reps": [_rep_state(r, ref.data, presence, now) for r in ref.data.reps]}


@reps_router.get("/reps/{rep_id}/availability", summary="A rep's availability now and their out-of-office periods",
                 response_model=RepState, responses=problem_responses(404), dependencies=[needs("reports:read")])
async def get_availability(rep_id: str, rt: RoutingRuntime) -> dict[str, Any]:
    rep, now = _rep_or_404(rt, rep_id), rt.context.clock()
    async with rt.request_unit_of_work() as uow:
        presence = await uow.store.presence([rep.id], now)
    return _rep_state(rep, rt.context.data, presence, now)


@reps_router.put(
    "/reps/{rep_id}/availability",
    summary="Set a rep's out-of-office periods",
    response_model=RepState,
    description="Replaces every period of the rep not yet over (send `{\"away\": []}` to clear them). Takes "
                "effect on the next lead routed, in every routing process, without a restart. Working hours, "
                "holidays and capacity live in the reps file.",
    responses=problem_responses(404, 503, _404="no such rep in the reps file"),
)
async def put_availability(rep_id: str, body: Availability, rt: RoutingRuntime,
                           who: Annotated[Principal, needs("feedback:write")]) -> dict[str, Any]:
    rep, now = _rep_or_404(rt, rep_id), rt.context.clock()
    for i, period in enumerate(body.away):
        if period.ends_at <= now:
            raise Problem(422, "an out-of-office period is already over",
                          [FieldProblem(f"away.{i}.ends_at", "is in the past")])
    starts = [p.starts_at for p in body.away]
    if len(set(starts)) != len(starts):
        raise Problem(422, "two periods start at the same time", [FieldProblem("away", "starts_at used twice")])
    try:
        async with rt.request_unit_of_work() as uow:
            await uow.store.set_away(rep.id, [Away(p.starts_at, p.ends_at, p.reason) for p in body.away], who.name,
                                    now)
            await uow.commit()
            presence = await uow.store.presence([rep.id], now)
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise Problem(503, "availability cannot be stored right now; please retry",
                      headers={"Retry-After": "5"}) from None
    return _rep_state(rep, rt.context.data, presence, now)


#: The most leads one hand-over call moves: a rep's whole holding in one transaction and one answer could be
#: thousands of rows locked and re-sent at once.
HANDOVER_PAGE = 500


class HandoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt "too" is said, not taken for null (through routing)

    to: str | None = Field(min_length=1, max_length=200,
                           description="the rep who takes the leads: active, in the reps file (their shift, absence "
                                       "and capacity are not asked); null: each lead is placed again as a missed "
                                       "deadline places it, the rep passed over (an accepted one only with a rep "
                                       "who can take it now, else it is kept)")
    reason: str | None = Field(None, max_length=2000, description="kept on each lead's lead.handed_over")


@reps_router.post(
    "/reps/{rep_id}/handover",
    summary="Hand the open leads a rep holds to another rep, or back through routing",
    description="For a rep who left or is away for long: the open leads they hold (not won, lost, rejected or "
                "merged; accepted, contacted and qualified ones too) go to `to`, or, with `\"to\": null`, each is "
                "placed again as a missed deadline places a lead (its route, rotation and overflow, every earlier "
                "holder passed over): an unaccepted one nobody can take now waits in a team's queue; an accepted "
                "(contacted, qualified) one nobody can take now stays with the rep, listed in `kept` with the "
                "reason, for a named `to` or a later call. A lead keeps its status; an unaccepted one gets a new "
                "acceptance deadline in its new holder's working hours. Each lead moved is re-sent on "
                "`leads.routed` with `lead.handed_over` on the lifecycle. At most `limit` leads a call, the first "
                "by lead id after `after`: `more: true` says the rep holds more, and `next_after` is the `after` "
                "of the next page. The rep need not be in the reps file any more: an id neither in it nor ever "
                "handed a lead answers 404, and a rep holding nothing (a repeat, or one in the file with no lead) "
                "answers 200 with nothing moved. A team's queue as the rep is a 422 naming `rep_id`, and a `to` "
                "not an active rep of the file, or the rep themselves, a 422 naming `to`.",
    responses=problem_responses(404, 503, _404="no such rep in the reps file, and no lead was ever theirs"),
)
async def post_handover(rep_id: str, body: HandoverRequest, request: Request, rt: RoutingRuntime,
                        who: Annotated[Principal, needs("admin")],
                        limit: Annotated[int, Query(ge=1, le=HANDOVER_PAGE)] = HANDOVER_PAGE,
                        after: Annotated[uuid.UUID | None, Query(
                            description="only the rep's leads after this lead id: the `next_after` of the page "
                                        "before")] = None) -> dict[str, Any]:
    ref, now = rt.context.reference, rt.context.clock()
    refused = handover_refused(rep_id, body.to, ref.data)
    if refused is not None:
        raise Problem(422, refused.reason, [FieldProblem(refused.field, refused.reason)])
    to = ref.data.rep(body.to) if body.to is not None else None
    try:
        async with rt.request_unit_of_work() as uow:
            result = await hand_over(uow.store, rep_id, to, who.name, body.reason, ref, now, limit,
                                     request.headers.get("traceparent"), after=after)
            unknown = (not result.moved and not result.kept and ref.data.rep(rep_id) is None
                       and not await uow.store.ever_held(rep_id))
            uow.publish(result.messages)
            await uow.commit()
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise Problem(503, "the hand-over cannot be stored right now; please retry",
                      headers={"Retry-After": "5"}) from None
    if unknown:
        raise Problem(404, f"no rep {rep_id!r} in the reps file, and routing never handed them a lead")
    return {"rep_id": rep_id, "to": body.to, "count": len(result.moved), "more": result.more,
            "next_after": str(result.next_after) if result.next_after else None,
            "moved": [{"lead_id": str(h.lead_id), "owner_id": h.owner_id, "team": h.team, "status": h.status,
                       "due_at": written(h.due_at) if h.due_at else None} for h in result.moved],
            "kept": [{"lead_id": str(k.handoff.lead_id), "status": k.handoff.status, "reason": k.reason}
                     for k in result.kept]}


@reps_router.post(
    "/routing-data/reload",
    summary="Reload the reps, teams, accounts, territories, SLA and reason files now",
    description="What the file watch does within `ROUTING_RELOAD_CHECK_S`, on demand, in this process. Files that "
                "do not parse answer 422 with the reason, and the data in force stays.",
    dependencies=[needs("admin")],
)
async def post_reload(rt: RoutingRuntime) -> dict[str, Any]:
    before = rt.context.reference.version
    try:
        ref = reload_reference(rt.context, trigger="api")
    except ValueError as exc:
        raise Problem(422, f"the routing files are invalid; version {before} stays in force: {exc}",
                      [FieldProblem("files", str(exc))]) from None
    return {"routing_data_version": ref.version, "previous_version": before, "changed": ref.version != before,
            "reps": len(ref.data.reps), "accounts": len(ref.data.accounts)}


queues_router = APIRouter(prefix="/v1/queues", tags=["queues"], route_class=StrictRoute,
                          responses=problem_responses(401, 403, 413, 422))

#: The most leads a page of a team's queue holds.
QUEUE_PAGE_MAX = 1000


class GradeCount(BaseModel):
    grade: Grade | None = Field(description="null: a lead routed before routing kept grades")
    waiting: int
    escalated: int


class QueueState(BaseModel):
    """A team's queue: the leads nobody holds yet (`owner_id` `queue:<team>`)."""

    team: str
    in_files: bool = Field(description="whether the routing files name the team; one renamed or removed keeps a "
                                       "queue while leads are in it, which the queue watch moves to a queue someone "
                                       "may take them from")
    waiting: int = Field(description="leads nobody could take when they came, each handed by the queue watch to the "
                                     "first rep who can take it (of the team, or of a team it overflows to)")
    escalated: int = Field(description="leads escalated here for good after missed deadlines: nobody hands them "
                                       "out; a rep of the team takes one by reporting on it")
    oldest_waiting_since: datetime | None = Field(description="when the longest wait began (null: none waits)")
    oldest_wait_s: float | None = Field(description="how long that is, by routing's clock, in seconds")
    grades: list[GradeCount] = Field(description="the same by grade, grades with none left out")
    may_take: list[str] = Field(description="the team's active reps: any of them may take any lead of the queue, "
                                            "by reporting on it (`GET /v1/reps` says who is at work now)")


class Answered(BaseModel):
    """When routing answered, and by which version of the routing files."""

    routing_data_version: str
    at: datetime = Field(description="routing's clock when it answered")


class Queues(Answered):
    queues: list[QueueState] = Field(description="every team the routing files name, and every other team with "
                                                 "leads in its queue, by name")


class QueuedLead(BaseModel):
    lead_id: uuid.UUID
    grade: Grade | None
    kind: Kind = Field(description="`waiting` for the queue watch to hand out, or `escalated` for good")
    since: datetime = Field(description="waiting: since its wait began (also while in the queue of a team since "
                                        "renamed); escalated: since routing sent it to this queue (its escalation, "
                                        "or its move here from a renamed team's queue; when it was first escalated "
                                        "is not kept)")
    waited_s: float = Field(description="seconds since then, by routing's clock")
    reassignments: int = Field(description="the deadlines missed on it")
    handoff_seq: int = Field(description="the number of its hand-off to the queue, as on "
                                         "`GET /v1/leads/{lead_id}/handoff`")


class QueuePage(QueueState, Answered):
    leads: list[QueuedLead] = Field(description="at most `limit` of the leads in the queue, oldest first (by `since`, "
                                                "then by lead id)")


def _queue_state(q: TeamQueue, now: datetime) -> dict[str, Any]:
    return {"team": q.team, "in_files": q.in_files, "waiting": q.waiting, "escalated": q.escalated,
            "oldest_waiting_since": q.oldest_waiting,
            "oldest_wait_s": None if q.oldest_waiting is None else waited_s(q.oldest_waiting, now),
            "grades": [{"grade": t.grade, "waiting": t.waiting, "escalated": t.escalated} for t in q.grades],
            "may_take": list(q.takers)}


# A sales tool's own key (feedback:write) reads them too, as it reads a hand-off: a rep takes a lead from the queue
# through it.
@queues_router.get("", summary="Every team's queue: how many leads wait there or were escalated there, and since when",
                   description="Needs a key with `reports:read` or `feedback:write` (a sales tool's own key).",
                   response_model=Queues, dependencies=[needs("reports:read", "feedback:write")])
async def get_queues(rt: RoutingRuntime) -> dict[str, Any]:
    ref, now = rt.context.reference, rt.context.clock()
    async with rt.request_unit_of_work() as uow:
        tallies = await uow.store.queue_tallies()
    return {"routing_data_version": ref.version, "at": now,
            "queues": [_queue_state(q, now) for q in queues(tallies, ref.data)]}


@queues_router.get(
    "/{team}",
    summary="The leads in a team's queue, oldest first, a page at a time",
    description="Needs a key with `reports:read` or `feedback:write` (a sales tool's own key). The team's queue as "
                "`GET /v1/queues` counts it, and at most `limit` of its leads, oldest first. When more follow, the "
                "answer's `Link` header names the next page (`rel=\"next\"`: the same query, with `after` where "
                "this page ended); the last page has none. A team the routing files no longer name lists while "
                "leads are in its queue.",
    response_model=QueuePage, dependencies=[needs("reports:read", "feedback:write")],
    responses={200: {"headers": {"Link": {"description": "`</v1/queues/{team}?...>; rel=\"next\"` while more "
                                                         "follow", "schema": {"type": "string"}}}},
               **problem_responses(404, 422, _404="no such team in the routing files, and no lead in its queue",
                                   _422="`limit` or `after` is not one this list takes")},
)
async def get_queue(team: str, request: Request, response: Response, rt: RoutingRuntime,
                    limit: Annotated[int, Query(ge=1, le=QUEUE_PAGE_MAX, description="leads a page holds at most")
                                     ] = 100,
                    after: Annotated[str | None, Query(description="where the page before ended, as the `Link` "
                                                                   "header of its answer gives it (opaque)")] = None
                    ) -> dict[str, Any]:
    try:
        position = None if after is None else pages.parse_cursor(after, "after")
    except ValueError as exc:
        raise Problem(422, "the request is invalid", [FieldProblem("after", str(exc))]) from None
    ref, now = rt.context.reference, rt.context.clock()
    async with rt.request_unit_of_work() as uow:
        found = queue_of_team(team, await uow.store.queue_tallies(team), ref.data)
        # One more than the page: whether a next page exists, without a page that turns out empty.
        leads = await uow.store.queued(team, limit + 1, after=position) if found is not None else []
    if found is None:
        raise Problem(404, f"no team {team!r} in the routing files, and no lead in its queue")
    page = leads[:limit]
    if len(leads) > limit:
        last = page[-1].position
        response.headers["Link"] = pages.next_page(request, "get_queue", {"limit": limit,
                                                                          "after": pages.cursor(*last)}, team=team)
    return {**_queue_state(found, now), "routing_data_version": ref.version, "at": now, "leads": [
        {"lead_id": q.lead_id, "grade": q.grade, "kind": q.kind, "since": q.since, "waited_s": waited_s(q.since, now),
         "reassignments": q.reassignments, "handoff_seq": q.seq} for q in page]}
