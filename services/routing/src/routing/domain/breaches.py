"""Missed hand-off deadlines: the lead passes to the team's next rep, or after too many, to the team's queue.

A reassignment is a normal rotation turn: the breaching rep's turn is spent
and never given back. When every rep of the team who has not held the lead
is unable to take one now (off shift, away, at capacity), the lead waits in
the team's queue for the first of them who can, as a newly routed lead
would; with none left (each held it, or is inactive), or after
``max_reassignments``, the queue keeps it for the team to take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from leadpipe_common.events import Assignment

from routing.domain.availability import Presence, unavailable
from routing.domain.clock import acceptance_due
from routing.domain.dispositions import Handoff
from routing.domain.reference import RoutingData
from routing.domain.routes import next_turn, queue_of


@dataclass(frozen=True)
class Breach:
    """What a missed deadline does: the hand-off after it, and the new owner's assignment."""

    handoff: Handoff
    action: Literal["reassigned", "escalated"]
    assignment: Assignment
    rotation: dict[str, int] | None


def breach(handoff: Handoff, data: RoutingData, state: Mapping[str, int], now: datetime,
           presence: Presence | None = None) -> Breach:
    """Pass a lead whose holder missed the deadline to the team's next rep, or escalate it to the queue.

    Reps who already held the lead, and reps who cannot take a lead now
    (``availability``), are passed over; with nobody left, or after
    ``max_reassignments``, the lead goes to the team's queue: to wait there
    for a rep who has not held it, when one is only unable to take it now.
    """
    presence = presence or Presence()
    held = (*handoff.holders, handoff.owner_id) if handoff.owner_id not in handoff.holders else handoff.holders
    unheld = [r for r in data.reps if r.team == handoff.team and r.id not in held and r.active]
    candidates = [r for r in unheld if unavailable(r, data, now, presence) is None]
    if handoff.reassignments >= data.sla.max_reassignments or not candidates:
        waits = handoff.reassignments < data.sla.max_reassignments and bool(unheld)
        missed = "missed the acceptance deadline " + (f"{handoff.reassignments + 1} times"
                                                      if handoff.reassignments else "once")
        why = (f"{missed}; nobody else in {handoff.team} can take it now: waits in the {handoff.team} queue for "
               "the first who can" if waits else f"{missed}; escalated to the {handoff.team} queue")
        assignment = Assignment(owner_id=queue_of(handoff.team), owner_name=f"{handoff.team} queue",
                                team=handoff.team, method="queue", reason=why)
        after = replace(handoff, owner_id=assignment.owner_id, due_at=None, holders=held,
                        reassignments=handoff.reassignments + 1, waiting_since=now if waits else None)
        return Breach(after, "escalated", assignment, None)
    # The rotation's state keeps every rep's credit; only those still eligible compete for this turn.
    rep, new_state = next_turn(candidates, state)
    rotation = {**state, **new_state}
    assignment = Assignment(owner_id=rep.id, owner_name=rep.name, owner_email=rep.email, team=handoff.team,
                            method="territory", reason=f"{handoff.owner_id} missed the acceptance deadline; "
                            f"next in the {handoff.team} rotation")
    after = replace(handoff, owner_id=rep.id, holders=held, reassignments=handoff.reassignments + 1,
                    due_at=acceptance_due(handoff.grade, rep.id, data, now))
    return Breach(after, "reassigned", assignment, rotation)
