"""reporting's handlers: every lifecycle event type it knows, and quarantined submissions, are folded into its
tables.

Idempotent by construction (see ``reporting.store``), so the service needs no
inbox and a replay can apply the log again over live tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope
from leadpipe_common.uow import UnitOfWork

from reporting.domain import project
from reporting.store import ReportingStore


@dataclass
class Reporting:
    """What reporting's handler keeps between batches."""

    #: Whether the tables may still hold steps applied before 0005 (no recorded time), which an event delivered
    #: again must be applied as (``project``'s ``unrecorded``); None until the first batch asks. Once there are
    #: none there never are again (every step written since has its recorded time, and one written again is
    #: ignored), so a process that found none asks no more: a lookup a batch for tables that never held any
    #: would cost every lead a round trip.
    unrecorded_steps: bool | None = None


async def handle_lifecycle_events(uow: UnitOfWork[ReportingStore], batch: Sequence[Envelope],
                                  ctx: Reporting) -> Mapping[uuid.UUID, Outcome]:
    """Every event reporting consumes folds the same way (``project`` tells them apart)."""
    if ctx.unrecorded_steps is None:
        ctx.unrecorded_steps = await uow.store.any_unrecorded()
    unrecorded = await uow.store.unrecorded([env.id for env in batch]) if ctx.unrecorded_steps else frozenset()
    await uow.store.save(project([(env.id, env.time, env.data) for env in batch], unrecorded))
    return {}


handle_lead_stage_changed = handle_lead_sla_breached = handle_lead_quarantined = handle_lifecycle_events
handle_lead_touch_recorded = handle_lead_touched = handle_lead_reengaged = handle_lead_merged = handle_lifecycle_events
handle_lead_queued = handle_lead_assigned = handle_lead_handed_over = handle_lifecycle_events
handle_lead_won_amount_corrected = handle_lifecycle_events
