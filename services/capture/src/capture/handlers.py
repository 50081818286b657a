"""capture's events: from a stored lead to the events that announce it, and what capture follows of the lifecycle."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from leadpipe_common import topics
from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope, Message, derive_id, encode, follow_up, schema_violations, unvalidated
from leadpipe_common.events import (
    CLOSED_STAGES, TERMINAL_STAGES, LeadCaptured, LeadMerged, LeadStageChanged, LeadTouched, LeadTouchRecorded,
)
from leadpipe_common.outbox import Unbuildable
from leadpipe_common.uow import UnitOfWork

from capture.store import CaptureStore, Unpublished, UnpublishedTouch, claim_publishable

SOURCE = "leadpipe/capture"


def captured_lead_messages(row: Unpublished) -> Sequence[Message]:
    """``lead.captured`` and its first lifecycle step, identical every time they are built from ``row``.

    Like every stage's outputs, their ids derive from their cause: here the
    accepted request, the way enrichment's derive from the ``lead.captured``.
    """
    lead = LeadCaptured.model_validate_json(row.event)
    via = f"form {lead.attribution.form_id}" if lead.attribution.form_id else "api"
    changed = LeadStageChanged(
        lead_id=lead.lead_id, from_stage=None, to_stage="captured", at=lead.captured_at,
        by="capture", reason=f"submitted via {via}", attribution=lead.attribution,
    )
    return (
        encode(topics.CAPTURED, lead, event_id=derive_id(row.request_id, lead.type), source=SOURCE,
               time=row.captured_at, traceparent=row.traceparent),
        encode(topics.LIFECYCLE, changed, event_id=derive_id(row.request_id, changed.type), source=SOURCE,
               time=row.captured_at, traceparent=row.traceparent),
    )


def touch_messages(row: UnpublishedTouch) -> Sequence[Message]:
    """``lead.touched`` for enrichment (to re-score the lead), and ``lead.touch_recorded`` for the lifecycle
    (timelines, attribution): the touch without what the person submitted, which the lifecycle, kept for ever,
    must not hold."""
    touched = LeadTouched.model_validate_json(row.event)
    recorded = LeadTouchRecorded(lead_id=touched.lead_id, touch=touched.touch, attribution=touched.attribution)
    # Each id derived as when both topics had lead.touched: a touch published before the upgrade and re-driven
    # after it is one event to a reader de-duplicating by id (reporting's timeline), not two.
    return tuple(
        encode(topic, event, event_id=derive_id(row.touch_id, f"{touched.type}@{topic}"), source=SOURCE,
               time=row.touched_at, traceparent=row.traceparent)
        for topic, event in ((topics.CAPTURED, touched), (topics.LIFECYCLE, recorded))
    )


async def publishable(conn: asyncpg.Connection, limit: int) -> list[Message | Unbuildable]:
    """The outbox relay's claim: the events of leads not yet published (the leads table is their outbox),
    then of touches (likewise), then what the outbox table holds (``lead.quarantined``). A row whose stored
    event no longer validates (a model made stricter since) is handed out as ``Unbuildable``: raising here
    failed every round, and every lead behind it waited for good."""
    claimed = await claim_publishable(conn, limit)
    return ([m for row in claimed.leads for m in lead_messages(row)]
            + [m for row in claimed.touches for m in touched_messages(row)] + claimed.outbox)


def lead_messages(row: Unpublished) -> Sequence[Message | Unbuildable]:
    """``captured_lead_messages``, or what the relay sets aside in their place if they cannot be built."""
    try:
        return captured_lead_messages(row)
    except ValueError as exc:
        return [_unbuildable(topics.CAPTURED, row.event, LeadCaptured.type, row.lead_id,
                             derive_id(row.request_id, LeadCaptured.type), row.captured_at, row.traceparent, exc)]


def touched_messages(row: UnpublishedTouch) -> Sequence[Message | Unbuildable]:
    """``touch_messages``, or what the relay sets aside in their place (for enrichment, the stage that takes them)."""
    try:
        return touch_messages(row)
    except ValueError as exc:
        return [_unbuildable(topics.CAPTURED, row.event, LeadTouched.type, row.lead_id,
                             derive_id(row.touch_id, f"{LeadTouched.type}@{topics.CAPTURED}"), row.touched_at,
                             row.traceparent, exc)]


def _unbuildable(topic: str, event: bytes, event_type: str, lead_id: uuid.UUID, event_id: uuid.UUID,
                 at: datetime, traceparent: str, exc: ValueError) -> Unbuildable:
    """The stored event as it would have gone (its id and trace), and why it cannot: a redrive sends it once the
    model takes it again; its row stays, marked published."""
    why = (f"stored {event_type} violates its schema: {schema_violations(exc)}" if isinstance(exc, ValidationError)
           else f"stored {event_type} cannot be built: {type(exc).__name__}: {exc}"[:500])
    return Unbuildable(unvalidated(topic, event, event_type=event_type, lead_id=lead_id, event_id=event_id,
                                   source=SOURCE, time=at, traceparent=traceparent), why)


async def handle_lifecycle_events(uow: UnitOfWork[CaptureStore], batch: Sequence[Envelope],
                                  ctx: None = None) -> dict[uuid.UUID, Outcome]:
    """Closing steps and merges, applied in log order. One handler for both: the runner calls a handler once per
    run of its events, and a batch that closed leads in one call and merged others in the next locked their
    people in two statements, out of the one order every capture transaction takes (the store's LOCK ORDER):
    against a write round holding one of them and waiting for another, a deadlock. So the people of every lead
    the batch closes or merges are locked first, in one statement (each store call then finds its own held)."""
    closing = {env.data.lead_id for env in batch
               if isinstance(env.data, LeadStageChanged) and env.data.to_stage in CLOSED_STAGES}
    merged = {env.data.lead_id for env in batch if isinstance(env.data, LeadMerged)}
    await uow.store.lock_people(sorted(closing | merged))
    for merges, run in itertools.groupby(batch, key=lambda env: isinstance(env.data, LeadMerged)):
        await (_apply_merges if merges else _apply_steps)(uow, list(run))
    return {env.id: [] for env in batch}


async def _apply_steps(uow: UnitOfWork[CaptureStore], batch: Sequence[Envelope]) -> None:
    """Note terminal outcomes, so the re-driver knows which accepted leads are done, and closed leads, so
    their people's next submission opens a new lead."""
    steps = [env.data for env in batch if isinstance(env.data, LeadStageChanged)]
    await uow.store.record_outcomes([{"b_lead_id": s.lead_id, "b_stage": s.to_stage, "b_at": s.at}
                                     for s in steps if s.to_stage in TERMINAL_STAGES])
    await uow.store.close_leads(sorted({s.lead_id for s in steps if s.to_stage in CLOSED_STAGES}))


async def _apply_merges(uow: UnitOfWork[CaptureStore], batch: Sequence[Envelope]) -> None:
    """A person whose open lead was merged into another: their next submission is a touch of the survivor; and
    the merge goes down the pipeline (``leads.captured``, after the lead's own events) for scoring to give the
    survivor the duplicate's touches."""
    merges = [env for env in batch if isinstance(env.data, LeadMerged)]
    await uow.store.redirect_people({env.data.lead_id: env.data.survivor_id for env in merges})
    uow.publish([follow_up(env, topics.CAPTURED, env.data, source=SOURCE, time=env.data.at) for env in merges])


handle_lead_stage_changed = handle_lead_merged = handle_lifecycle_events


_FOLLOWED = {stage.encode() for stage in TERMINAL_STAGES | CLOSED_STAGES | {"merged"}}


def is_terminal_step(headers: Sequence[tuple[str, bytes]], ctx: object = None) -> bool:
    """Only terminal and closing steps matter to capture; the rest are skipped unparsed (by their ce_tostage)."""
    return any(k == "ce_tostage" and v in _FOLLOWED for k, v in headers)
