"""Missed hand-off deadlines: the lead is placed again as a new lead would be, its holders passed over.

A reassignment is a normal rotation turn: the breaching rep's turn is spent
and never given back. The lead goes where its route sends a new lead (its
account owner, else its team's rotation, else its team's overflow), reps who
held it passed over: a lead an overflow team held goes back to its own team
first. When nobody who has not held it can take it now (off shift, away, at
capacity), it waits in its team's queue, marked as waiting, for the first who
can (or the overflow), as a newly routed lead would. With none left (each held
it, or is inactive), or after ``max_reassignments``, it is escalated: to the
queue of the first team along its team's overflow with active reps of its
own, for them to take. Only a queue's own team may take a lead from it
(``dispositions``), and a territory team may have no reps of its own when it
overflows to a team that has. A manager's hand-over of a rep's leads through
routing places each the same way (``place_again``; ``handovers``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from leadpipe_common.events import Assignment

from routing.domain.availability import Placed, Presence, place
from routing.domain.clock import acceptance_due
from routing.domain.dispositions import Handoff
from routing.domain.orphans import escalation_team
from routing.domain.reference import RoutingData, ordinal, overflow_chain
from routing.domain.routes import Route, queue_of


@dataclass(frozen=True)
class Breach:
    """What a missed deadline does (or a hand-over through routing: ``place_again``): the hand-off after it, and
    the new owner's assignment. ``rotation`` is the new state of the rotation of the hand-off's (new) team, when
    it turned."""

    handoff: Handoff
    action: Literal["reassigned", "escalated"]
    assignment: Assignment
    rotation: dict[str, int] | None


def breach(handoff: Handoff, route: Route, data: RoutingData, states: Mapping[str, Mapping[str, int]],
           now: datetime, presence: Presence | None = None) -> Breach:
    """Hand on a lead whose holder missed the deadline: placed on ``route`` (the lead's route now, as
    ``choose_route`` gives it) as a new lead would be, with every rep who held it passed over (``place_again``);
    or, after ``max_reassignments``, escalated, with no waiting mark, to the queue of the first team along its
    route's team's overflow with active reps of its own (``escalation_team``), not to the holder's."""
    # The count is the lead's, not its holder's: earlier holders, passed over since, missed the others.
    missed = f"{handoff.owner_id} missed the acceptance deadline" + (
        f", the lead's {ordinal(handoff.reassignments + 1)} missed deadline" if handoff.reassignments else "")
    if handoff.reassignments < data.sla.max_reassignments:
        b = place_again(handoff, route, data, states, now, presence or Presence(), why=missed)
    else:
        # Its route's team's, not the holder's: an overflow team's queue may have nobody but the holder to take
        # it, and a team since renamed or emptied in the files, nobody at all.
        b = _escalated(handoff, route.team, held_by(handoff), missed, data)
    return replace(b, handoff=replace(b.handoff, reassignments=handoff.reassignments + 1))


def place_again(handoff: Handoff, route: Route, data: RoutingData, states: Mapping[str, Mapping[str, int]],
                now: datetime, presence: Presence, *, why: str) -> Breach:
    """``handoff`` placed on ``route`` as a new lead would be, every rep who held it (its holder too) passed over
    and ``why`` leading the reason: what a missed deadline does, and a manager's hand-over through routing of an
    unaccepted lead.

    ``states`` is each team's rotation state. With nobody who may take it able to now, it waits in its route's
    team's queue; with none left who may ever take it (each held it, or is inactive), it is escalated, with no
    waiting mark, to the queue of the first team along its route's team's overflow with active reps of its own
    (``escalation_team``). The count of reassignments is the caller's."""
    held = held_by(handoff)
    placement = place(replace(route, reason=f"{why}; {route.reason}"), data, states, now, presence,
                      passed_over=held)
    if isinstance(placement, Placed):
        a = placement.assignment
        after = handoff.handed_on(owner_id=a.owner_id, team=a.team, holders=held,
                                  due_at=acceptance_due(handoff.grade, a.owner_id, data, now))
        return Breach(after, "reassigned", a, placement.rotation)
    if may_wait(placement.team, held, data):
        a = placement.assignment
        after = handoff.handed_on(owner_id=a.owner_id, team=a.team, due_at=None, holders=held, waiting_since=now)
        return Breach(after, "escalated", a, None)
    # A waiting mark on a lead the watch may never hand to anyone would have it claimed every round.
    return _escalated(handoff, placement.team, held, why, data)


def may_wait(team: str, passed_over: Collection[str], data: RoutingData) -> bool:
    """Whether the queue watch may ever hand out a lead waiting in ``team``'s queue with reps ``passed_over``: an
    active rep along its overflow is not one of them. A lead it may not is escalated instead (``escalated_to``)."""
    reachable = set(overflow_chain(team, data))
    return any(r.active and r.team in reachable and r.id not in passed_over for r in data.reps)


def escalated_to(of: str, holder_team: str, why: str, data: RoutingData) -> Assignment:
    """A lead escalated to the queue of the first team along ``of``'s overflow with active reps of its own, for
    them to take (``escalation_team``); ``holder_team``'s, its last holder's team, with none."""
    # The holder's team when no team along ``of``'s overflow has reps of its own (files the reference check
    # refuses, as it keeps one on the way of every team it routes to): the holder was a rep of it, so its queue
    # is the one place a rep was once allowed to take the lead from.
    team = escalation_team(of, data) or holder_team
    return Assignment(owner_id=queue_of(team), owner_name=f"{team} queue", team=team, method="queue",
                      reason=f"{why}; escalated to the {team} queue")


def held_by(handoff: Handoff) -> tuple[str, ...]:
    """Every rep who held the lead, its holder now last."""
    return (*handoff.holders, handoff.owner_id) if handoff.owner_id not in handoff.holders else handoff.holders


def _escalated(handoff: Handoff, of: str, held: tuple[str, ...], why: str, data: RoutingData) -> Breach:
    assignment = escalated_to(of, handoff.team, why, data)
    after = handoff.handed_on(owner_id=assignment.owner_id, team=assignment.team, due_at=None, holders=held,
                              waiting_since=None)
    return Breach(after, "escalated", assignment, None)
