"""delivery, declared: the events it sends to webhooks, and the dispatcher beside it."""

from datetime import timedelta

from fastapi import APIRouter

from leadpipe_common.events import (
    LeadAssigned, LeadErased, LeadHandedOver, LeadMerged, LeadQueued, LeadReengaged, LeadRouted, LeadSlaBreached,
    LeadStageChanged,
)
from leadpipe_common.service import Runtime, Service

from delivery.api import router
from delivery.dispatcher import Dispatcher
from delivery.domain import SALES_STAGES
from delivery.handlers import (
    Delivery, handle_lead_assigned, handle_lead_erased, handle_lead_handed_over, handle_lead_merged,
    handle_lead_queued, handle_lead_reengaged, handle_lead_routed, handle_lead_sla_breached, handle_lead_stage_changed,
)
from delivery.network import PublicOnlyTransport
from delivery.retention import Purge
from delivery.store import DeliveryStore
from delivery.subscriptions import DELIVERABLE_TYPES, BookRefresh

def wanted_record(headers: object, ctx: Delivery) -> bool:
    """Only the types some subscription in force asks for are decoded (until the API's subscriptions were
    read, and while some cannot be opened, every type one may ask for: the handler must see them to hold them
    back); the rest is passed over, as it would be queued for nobody. So are the
    pipeline's own steps on the lifecycle (``ce_tostage`` captured, enriched, ...: four a lead, decoded only to
    be dropped when a subscription takes ``lead.stage_changed``), which is delivered for sales' dispositions
    only. An erasure is always decoded, asked for or not: what is kept of its lead is to be cleared; so is a
    rejection, whether a subscription filtered on grade is in force or not: it lets its lead go (``domain.lets_go``),
    and one passed over while none was (its filter PATCHed away for a while) would leave the lead followed when one
    is again. Rejections are few: a lead has one per hand-off at most."""
    book = ctx.subscriptions
    wanted = book.wanted_types if book.loaded and not book.unopened else DELIVERABLE_TYPES
    event_type = to_stage = None
    for k, v in headers:  # type: ignore[attr-defined]
        if k == "ce_type":
            event_type = v
        elif k == "ce_tostage":
            to_stage = v
    if event_type == _ERASED or (event_type == _STAGE_CHANGED and to_stage == _REJECTED):
        return True
    if event_type not in wanted:
        return False
    return event_type != _STAGE_CHANGED or to_stage is None or to_stage in _SALES_STAGES


_ERASED = LeadErased.type.encode()
_STAGE_CHANGED = LeadStageChanged.type.encode()
_SALES_STAGES = frozenset(stage.encode() for stage in SALES_STAGES)
_REJECTED = b"rejected"


def _webhooks() -> APIRouter:
    """What delivery sends a receiver, for its OpenAPI document: imported when the document is first asked for,
    not by every delivery process at start (its models are ~1 MB of a process that never serves the document)."""
    from delivery.webhooks import router

    return router()


def dispatcher(rt: Runtime[Delivery, DeliveryStore]) -> Dispatcher:
    settings = rt.settings
    return Dispatcher(
        unit_of_work=rt.unit_of_work, client=rt.context.http, subscriptions=rt.context.subscriptions,
        from_file=rt.context.subscriptions.from_file,
        retry_window=timedelta(hours=settings.retry_hours),  # type: ignore[attr-defined]
        retry_base_s=settings.retry_base_s,  # type: ignore[attr-defined]
        refused_attempts=settings.refused_attempts,  # type: ignore[attr-defined]
        connect_timeout_s=settings.connect_timeout_s, timeout_s=settings.timeout_s,  # type: ignore[attr-defined]
        max_in_flight=settings.max_in_flight, per_subscription=settings.per_subscription,  # type: ignore[attr-defined]
        idle_s=settings.dispatch_idle_s,  # type: ignore[attr-defined]
    )


SERVICE: Service[Delivery, DeliveryStore] = Service(
    name="delivery",
    summary="Sends lead events to sales tools' webhooks: signed (Standard Webhooks), ordered per lead, durable, "
            "retried for days.",
    consumes={LeadRouted: handle_lead_routed, LeadSlaBreached: handle_lead_sla_breached,
              LeadQueued: handle_lead_queued, LeadAssigned: handle_lead_assigned,
              LeadHandedOver: handle_lead_handed_over,
              LeadStageChanged: handle_lead_stage_changed, LeadReengaged: handle_lead_reengaged,
              LeadMerged: handle_lead_merged, LeadErased: handle_lead_erased},
    select=wanted_record,
    http_transport=lambda settings: PublicOnlyTransport(
        allow_private=settings.allow_private_targets),  # type: ignore[attr-defined]
    store=DeliveryStore,
    routes=[router],
    webhooks=[_webhooks],
    background=lambda rt: [
        dispatcher(rt),
        BookRefresh(rt.context.subscriptions, rt.unit_of_work, rt.context.clock,
                    every_s=rt.settings.subscriptions_refresh_s),  # type: ignore[attr-defined]
        Purge(rt.unit_of_work, keep_days=rt.settings.keep_bodies_days,  # type: ignore[attr-defined]
              from_file=rt.context.subscriptions.from_file),
    ],
)
