"""delivery's HTTP API: what was sent for a lead, and the subscriptions in force."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from leadpipe_common.auth import needs
from leadpipe_common.http import problem_responses
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
