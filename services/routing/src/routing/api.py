"""routing's HTTP API for sales tools: dispositions and a lead's hand-off state."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import Counter
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError

from leadpipe_common.auth import needs
from leadpipe_common.events import DispositionReport, LeadDispositioned
from leadpipe_common.http import FieldProblem, Problem, problem_responses
from leadpipe_common.service import Runtime, runtime

from routing.domain import Handoff, Refused, Repeated
from routing.handlers import Routing, record_disposition, record_merge
from routing.store import RoutingStore

#: What every route of routing's API gets: settings, routing data, clock and units of work.
RoutingRuntime = Annotated[Runtime[Routing, RoutingStore], Depends(runtime)]

DISPOSITIONS = Counter("routing_dispositions_total", "Disposition calls by result", ["outcome", "result"])

router = APIRouter(prefix="/v1/leads", tags=["sales feedback"], responses=problem_responses(401, 403, 413, 422))


def _state(h: Handoff) -> dict[str, Any]:
    return {"lead_id": str(h.lead_id), "status": h.status, "owner_id": h.owner_id, "team": h.team, "grade": h.grade,
            "due_at": h.due_at.isoformat() if h.due_at else None, "reassignments": h.reassignments,
            "dispositions": [d.model_dump(mode="json", exclude={"at"}) for d in h.history],
            "merged_into": str(h.merged_into) if h.merged_into else None}


@router.post(
    "/{lead_id}/disposition",
    summary="Report what became of a routed lead",
    description=(
        "Outcomes: `accepted`, `rejected` (with a `reason_code` from reasons.yaml; the lead returns to nurture), "
        "`contacted`, `qualified`, `won` (with `amount` and `currency`), `lost` (with a `reason_code` or `reason`). "
        "An illegal move answers 409 with the reason; the same report again answers 200 with `repeated: true`. "
        "Sales tools may instead produce a `lead.dispositioned` event to `leads.feedback`."
    ),
    responses=problem_responses(404, 409, 503, _404="no routed lead with this id",
                                _409="illegal for the lead now, or from a rep who does not hold it"),
    dependencies=[needs("feedback:write")],
)
async def post_disposition(lead_id: uuid.UUID, body: DispositionReport, request: Request,
                           rt: RoutingRuntime) -> dict[str, Any]:
    report = LeadDispositioned(lead_id=lead_id, **dict(body))  # the body passed the same checks already
    try:
        async with rt.unit_of_work() as uow:
            result = await record_disposition(uow.store, report, rt.context.data, rt.context.clock(),
                                              request.headers.get("traceparent"))
            uow.publish(result.messages)
            await uow.commit()
    except (OSError, DBAPIError):
        raise Problem(503, "dispositions cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    verdict = result.verdict
    if verdict is None:
        DISPOSITIONS.labels(report.outcome, "unknown").inc()
        raise Problem(404, f"no routed lead {lead_id}: only leads routing handed to sales take dispositions")
    if isinstance(verdict, Refused):
        DISPOSITIONS.labels(report.outcome, verdict.kind).inc()
        status = 409 if verdict.kind == "conflict" else 422
        raise Problem(status, verdict.reason, [FieldProblem(verdict.field or "outcome", verdict.reason)])
    DISPOSITIONS.labels(report.outcome, "repeated" if isinstance(verdict, Repeated) else "applied").inc()
    return {**_state(verdict.handoff), "repeated": isinstance(verdict, Repeated),
            "events": [m.header("ce_id") for m in result.messages]}


@router.get("/{lead_id}/handoff", summary="A routed lead's owner, status, SLA deadline and dispositions",
            responses=problem_responses(404, _404="no routed lead with this id"), dependencies=[needs("reports:read")])
async def get_handoff(lead_id: uuid.UUID, rt: RoutingRuntime) -> dict[str, Any]:
    async with rt.unit_of_work() as uow:
        held = await uow.store.handoff(lead_id, lock=False)
    if held is None:
        raise Problem(404, f"no routed lead {lead_id}")
    return _state(held.handoff)


class MergeRequest(BaseModel):
    """Sales says the lead in the path is the same person as ``survivor_id``'s lead."""

    survivor_id: uuid.UUID
    rep_id: str = Field(min_length=1, max_length=200, description="who says so (kept on the merge event)")
    reason: str | None = Field(None, max_length=2000)


@router.post(
    "/{lead_id}/merge",
    summary="Merge a lead into another: they are one person",
    description="The lead in the path closes as `merged`; the survivor keeps the earliest first touch and every "
                "touch of both, and reports count the person once. The same merge again answers 200 with "
                "`repeated: true`. Both must be leads routing handed to sales.",
    responses=problem_responses(404, 409, 503, _404="either lead is not one routing handed to sales",
                                _409="already merged into another lead, or the survivor was merged"),
    dependencies=[needs("feedback:write")],
)
async def post_merge(lead_id: uuid.UUID, body: MergeRequest, request: Request, rt: RoutingRuntime) -> dict[str, Any]:
    reason = body.reason or f"{body.rep_id} merged it into {body.survivor_id}: the same person"
    try:
        async with rt.unit_of_work() as uow:
            result = await record_merge(uow.store, lead_id, body.survivor_id, body.rep_id, reason,
                                        rt.context.clock(), request.headers.get("traceparent"))
            uow.publish(result.messages)
            await uow.commit()
    except (OSError, DBAPIError):
        raise Problem(503, "the merge cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    verdict = result.verdict
    if verdict is None:
        raise Problem(404, f"{lead_id} and {body.survivor_id} must both be leads routing handed to sales")
    if isinstance(verdict, Refused):
        raise Problem(409 if verdict.kind == "conflict" else 422, verdict.reason,
                      [FieldProblem(verdict.field or "survivor_id", verdict.reason)])
    return {**_state(verdict.handoff), "survivor_id": str(body.survivor_id),
            "repeated": isinstance(verdict, Repeated), "events": [m.header("ce_id") for m in result.messages]}
