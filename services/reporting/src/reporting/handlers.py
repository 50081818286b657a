"""reporting's handlers: every lifecycle event type it knows is folded into its tables.

Idempotent by construction (see ``reporting.store``), so the runner needs no
inbox and a replay can apply the log again over live tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpipe_common.consumer import BatchHandler, Outcome
from leadpipe_common.envelope import Envelope
from leadpipe_common.events import Event

from reporting.domain import project
from reporting.store import save_handoffs, save_leads, save_steps


async def apply_events(conn: AsyncConnection | AsyncSession, events: Iterable[tuple[uuid.UUID, Event]]) -> None:
    """Fold ``(event id, event)`` pairs into the tables in the caller's transaction."""
    p = project(events)
    # Rows in key order: two processes upserting overlapping leads lock them
    # in the same order and cannot deadlock.
    await save_leads(conn, [p.leads[k] for k in sorted(p.leads)])
    await save_handoffs(conn, [p.handoffs[k] for k in sorted(p.handoffs)])
    await save_steps(conn, sorted(p.steps, key=lambda s: s["event_id"]))


async def _fold(session: AsyncSession, batch: Sequence[Envelope]) -> Mapping[uuid.UUID, Outcome]:
    await apply_events(session, ((env.id, env.data) for env in batch))
    return {}


# Both kinds of lifecycle event are folded the same way (``project`` tells them apart).
handle_lead_stage_changed = handle_lead_sla_breached = _fold


HANDLERS: Mapping[str, BatchHandler] = {
    "lead.stage_changed": handle_lead_stage_changed,
    "lead.sla_breached": handle_lead_sla_breached,
}
