"""A manager hands over the open leads a rep holds (they left, or are away for long): to a rep they name, or back
through routing, each placed as a missed deadline places a lead (``breaches.place_again``).

Otherwise a lead stays with the rep who holds it: an unaccepted one moves on at its deadline, but one sales
accepted (contacted, qualified) has none, and would stay with a rep who left for good. Open: not won, lost,
rejected or merged (``CLOSED``); a lead in a team's queue is no rep's. A lead keeps its status and its reports:
one sales accepted is the new holder's to carry on (they report it contacted next, not accepted again). An
unaccepted one gets a new acceptance deadline from now in the new holder's working hours, as a reassignment after
a missed deadline does; no deadline was missed, so the SLA's count of reassignments stays. The rep who held it
joins its holders, passed over whenever routing places it again.

Through routing, an unaccepted lead nobody who may take it can take now waits in its team's queue, as after a
missed deadline. One sales accepted goes to a rep who can take it now, or nowhere: a queue is for leads waiting
to be accepted (the queue watch hands out only those, starting their deadline, a team's reps may only accept or
reject one from it, and a queue the files stop staffing gives up only those), so in a queue it would stay for
ever. It stays with its holder (``Kept``), for the manager to name a rep or ask routing again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from leadpipe_common.events import Assignment

from routing.domain.availability import Placed, Presence, place
from routing.domain.breaches import Breach, held_by, place_again
from routing.domain.clock import acceptance_due
from routing.domain.dispositions import Handoff, Refused
from routing.domain.reference import Rep, RoutingData
from routing.domain.routes import Route, queue_of


def handover_refused(rep_id: str, to: str | None, data: RoutingData) -> Refused | None:
    """Why the leads ``rep_id`` holds may not go to ``to`` (None: through routing), or None. ``rep_id`` need not
    be in the files (a rep who left is the common case); ``to`` must be an active rep of them, who may take leads
    (whether they are on shift, away or at capacity is the manager's call: those only keep routing from them)."""
    if rep_id.startswith(queue_of("")):
        return Refused("invalid", "rep_id", f"{rep_id} is a team's queue, not a rep: the queue watch hands its "
                                            "leads out, and any rep of the team may take one")
    if to is None:
        return None
    rep = data.rep(to)
    if rep is None:
        return Refused("invalid", "to", f"no rep {to!r} in the reps file")
    if to == rep_id:
        return Refused("invalid", "to", f"{to} is the rep whose leads are handed over")
    if not rep.active:
        return Refused("invalid", "to", f"{to} is inactive in the reps file")
    return None


def hand_to(handoff: Handoff, before: Assignment, rep: Rep, data: RoutingData, now: datetime,
            why: str) -> tuple[Handoff, Assignment]:
    """``handoff``, open and held by a rep, given to ``rep`` (``handover_refused`` passed them), with the assignment
    to tell sales: the method the lead came by (``before``'s), the reason ``why``."""
    # A lead a rep took from its team's queue is still sent as the queue's (``handlers._holders``): it came to
    # the team by its territory.
    method = "territory" if before.method == "queue" else before.method
    assignment = Assignment(owner_id=rep.id, owner_name=rep.name, owner_email=rep.email, team=rep.team,
                            method=method, reason=why)
    after = handoff.handed_on(owner_id=rep.id, team=rep.team, holders=held_by(handoff), waiting_since=None,
                              due_at=acceptance_due(handoff.grade, rep.id, data, now) if handoff.status == "routed"
                              else None)
    return after, assignment


@dataclass(frozen=True)
class Kept:
    """A lead sales accepted that a hand-over through routing could give to no rep now: it stays with its holder,
    and ``reason`` says why."""

    handoff: Handoff
    reason: str


def reroute(handoff: Handoff, route: Route, data: RoutingData, states: Mapping[str, Mapping[str, int]],
            now: datetime, presence: Presence, why: str) -> Breach | Kept:
    """``handoff``, open and held by a rep, placed again on ``route`` (the lead's route now, as ``choose_route``
    gives it), ``why`` leading the reason: an unaccepted lead as a missed deadline places it (``place_again``); one
    sales accepted with a rep who can take it now, or else ``Kept``. ``rotation`` is the new state of the turned
    team's rotation, when one turned."""
    if handoff.status == "routed":
        return place_again(handoff, route, data, states, now, presence, why=why)
    held = held_by(handoff)
    placement = place(route, data, states, now, presence, passed_over=held)
    if not isinstance(placement, Placed):
        return Kept(handoff, f"{placement.nobody}; a lead sales accepted does not wait in a queue: it stays with "
                             f"{handoff.owner_id}")
    a = placement.assignment
    assignment = a.model_copy(update={"reason": f"{why}; {a.reason}"})
    # Its acceptance deadline was met already: none again, as when it is handed to a named rep.
    after = handoff.handed_on(owner_id=a.owner_id, team=a.team, holders=held, due_at=None, waiting_since=None)
    return Breach(after, "reassigned", assignment, placement.rotation)
