"""routing's handlers: ``lead.scored`` in; for MQLs, ``lead.routed`` and a lifecycle step out.

Nurture and disqualified leads end at scoring (their lifecycle step is
scoring's); routing applies them with no output.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common import topics
from leadpipe_common.consumer import BatchHandler, Outcome
from leadpipe_common.envelope import Envelope, follow_up
from leadpipe_common.events import LeadRouted, LeadScored, LeadStageChanged

from routing.domain import RoutingData, assign, choose_route
from routing.store import already_assigned, lock_rotations, save_assignments, save_rotations

SOURCE = "leadpipe/routing"
log = structlog.get_logger(__name__)


def build_handlers(data: RoutingData, clock: Callable[[], datetime]) -> Mapping[str, BatchHandler]:
    async def handle_lead_scored(session: AsyncSession, batch: Sequence[Envelope]) -> dict[uuid.UUID, Outcome]:
        now = clock()
        outcomes: dict[uuid.UUID, Outcome] = {env.id: [] for env in batch}
        mqls = [env for env in batch if isinstance(env.data, LeadScored) and env.data.score.decision == "mql"]
        assigned = await already_assigned(session, (env.data.lead_id for env in mqls))
        routes = {}
        for env in mqls:
            if env.data.lead_id in assigned:
                # Only a second, differently-identified event for one lead can
                # get here; the first one's outputs stand.
                log.warning("lead already routed; ignoring a second scored event",
                            lead_id=str(env.data.lead_id), event_id=str(env.id))
                continue
            assigned.add(env.data.lead_id)
            routes[env.id] = choose_route(env.data, data)

        states = await lock_rotations(session, (r.team for r in routes.values() if r.kind == "team"))
        turns: dict[str, int] = {}
        rows = []
        for env in mqls:
            route = routes.get(env.id)
            if route is None:
                continue
            lead = env.data
            assert isinstance(lead, LeadScored)
            assignment, new_state = assign(route, data, states.get(route.team, {}))
            if new_state is not None:
                states[route.team] = new_state
                turns[route.team] = turns.get(route.team, 0) + 1
            routed = LeadRouted.model_construct(**dict(lead), assignment=assignment, routed_at=now)  # validated parts
            changed = LeadStageChanged(
                lead_id=lead.lead_id, from_stage="mql", to_stage="routed", at=now, by="routing",
                reason=f"assigned to {assignment.owner_name}: {assignment.reason}", attribution=lead.attribution,
            )
            outcomes[env.id] = [
                follow_up(env, topics.ROUTED, routed, source=SOURCE, time=now),
                follow_up(env, topics.LIFECYCLE, changed, source=SOURCE, time=now),
            ]
            rows.append({"lead_id": lead.lead_id, "owner_id": assignment.owner_id, "team": assignment.team,
                         "method": assignment.method, "reason": assignment.reason, "routed_at": now})
        await save_rotations(session, states, turns)
        await save_assignments(session, rows)
        return outcomes

    return {"lead.scored": handle_lead_scored}
