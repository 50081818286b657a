"""delivery's HTTP API: what was sent for a lead, and the subscriptions in force."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from leadpipe_common.auth import needs
from leadpipe_common.http import Problem, problem_responses
from leadpipe_common.service import Runtime, runtime

from delivery.handlers import Delivery
from delivery.store import DeliveryStore

DeliveryRuntime = Annotated[Runtime[Delivery, DeliveryStore], Depends(runtime)]
router = APIRouter(tags=["deliveries"], responses=problem_responses(401, 403, 422))


class Attempt(BaseModel):
    attempt: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


class DeliveryState(BaseModel):
    subscription_id: str
    event_id: uuid.UUID
    event_type: str
    #: pending (waiting for its next attempt), delivered, or dead (given up after the retry window)
    status: str
    created_at: datetime
    next_at: datetime | None
    last_status: int | None
    last_error: str | None
    attempts: list[Attempt]


@router.get("/v1/deliveries", summary="Every delivery of a lead's events, with every attempt",
            response_model=list[DeliveryState], dependencies=[needs("reports:read")])
async def list_deliveries(lead_id: Annotated[uuid.UUID, Query(description="the lead")],
                          rt: DeliveryRuntime) -> list[dict[str, Any]]:
    async with rt.unit_of_work() as uow:
        return await uow.store.of_lead(lead_id)


class SubscriptionState(BaseModel):
    id: str
    url: str
    events: list[str]
    filter: dict[str, list[str]]
    #: A receiver answered 410 Gone: nothing is sent until it is redriven.
    disabled: bool


@router.get("/v1/subscriptions", summary="The subscriptions in force (never their secrets)",
            response_model=list[SubscriptionState], dependencies=[needs("admin")])
async def list_subscriptions(rt: DeliveryRuntime) -> list[dict[str, Any]]:
    async with rt.unit_of_work() as uow:
        off = await uow.store.disabled_ids()
    return [{"id": s.id, "url": s.url, "events": sorted(s.events),
             "filter": {k: sorted(v) for k, v in s.filter.items()}, "disabled": s.id in off}
            for s in rt.context.subscriptions.values()]


class RedriveRequest(BaseModel):
    """Which dead deliveries to send again: all of them, one subscription's, or one lead's."""

    subscription_id: str | None = Field(None, max_length=100)
    lead_id: uuid.UUID | None = None


class Redriven(BaseModel):
    redriven: int


@router.post("/v1/deliveries/redrive", summary="Send dead deliveries again (their retry window restarts)",
             response_model=Redriven, dependencies=[needs("admin")])
async def redrive(body: RedriveRequest, rt: DeliveryRuntime) -> dict[str, int]:
    async with rt.unit_of_work() as uow:
        n = await uow.store.redrive(rt.context.clock(), body.subscription_id, body.lead_id)
        await uow.commit()
    return {"redriven": n}


class Enabled(BaseModel):
    id: str
    #: It had been switched off by a 410.
    was_disabled: bool


@router.post("/v1/subscriptions/{subscription_id}/enable",
             summary="Switch a subscription back on after its receiver answered 410 Gone", response_model=Enabled,
             dependencies=[needs("admin")], responses=problem_responses(404, _404="no such subscription"))
async def enable(subscription_id: str, rt: DeliveryRuntime) -> dict[str, Any]:
    if subscription_id not in rt.context.subscriptions:
        raise Problem(404, f"no subscription {subscription_id!r} in the subscriptions file")
    async with rt.unit_of_work() as uow:
        was = await uow.store.enable(subscription_id)
        await uow.commit()
    return {"id": subscription_id, "was_disabled": was}
