"""Leads left in the queue of a team no active rep may take them from: renamed or emptied in the routing files.

The files are checked for the teams they send leads to (``reference``), not
for the teams stored hand-offs name: a reorganisation (``emea`` renamed
``emea-inbound``) is legitimate, so it is not refused, but a lead waiting in
``queue:emea`` would wait for ever, and one escalated there would have
nobody allowed to take it. Who may take a lead from a queue depends on how
it is there. A waiting lead is handed out by the queue watch as a new lead
is placed, overflow included, so its team is staffed while an active rep of
it or of a team it overflows to is left. An escalated one (no waiting mark)
is taken by a rep of the queue's own team and nobody else
(``dispositions``), so its team is staffed only with an active rep of its
own: a territory team the files give no reps, overflowing to a staffed one,
is accepted by the check, yet an escalated lead in its queue could never be
taken. Such a lead moves, as it was: a waiting lead to the queue of its
route's team (``choose_route`` of the stored lead, as a missed deadline
places it), still waiting since it began, for the queue watch to hand out;
an escalated one to the queue of the first team along that team's overflow
whose own reps may take it (``escalation_team``). A lead a rep holds is
left with them: they still speak for it, and a missed deadline already goes
by its route.
"""

from __future__ import annotations

from collections.abc import Iterable

from leadpipe_common.events import Assignment

from routing.domain.dispositions import Handoff
from routing.domain.reference import RoutingData, overflow_chain
from routing.domain.routes import Route, queue_of


def staffed(team: str, data: RoutingData, *, escalated: bool = False) -> bool:
    """Whether an active rep may take a lead from ``team``'s queue: one of its own, or, for a lead waiting there
    (not ``escalated``), of a team it overflows to, as the queue watch hands those out."""
    takers = {team} if escalated else set(overflow_chain(team, data))
    return any(r.active and r.team in takers for r in data.reps)


def escalation_team(team: str, data: RoutingData) -> str | None:
    """The team whose queue takes an escalated lead of ``team``: the first along its overflow with an active rep
    of its own (None: no such team; files the reference check accepted always have one for a team they route to)."""
    return next((t for t in overflow_chain(team, data) if staffed(t, data, escalated=True)), None)


def teams_named(data: RoutingData) -> set[str]:
    """Every team the files name: a rep's (an inactive rep's too), a territory rule's, the default and those under
    ``teams:`` (each team an ``overflow_to`` names is one of these)."""
    return ({r.team for r in data.reps} | {rule.team for rule in data.territories.teams}
            | {data.territories.default_team} | set(data.teams))


def staffed_teams(data: RoutingData, *, escalated: bool = False) -> set[str]:
    """Every team of the files ``staffed`` (for escalated leads, or waiting ones): any other team a hand-off of
    that kind names is orphaned."""
    return {team for team in teams_named(data) if staffed(team, data, escalated=escalated)}


def orphaned(teams: Iterable[str], data: RoutingData, *, escalated: bool = False) -> set[str]:
    """Those of ``teams`` not ``staffed`` under ``data`` (for escalated leads, or waiting ones)."""
    return {team for team in teams if not staffed(team, data, escalated=escalated)}


def requeue(handoff: Handoff, route: Route, data: RoutingData) -> tuple[Handoff, Assignment]:
    """``handoff``, a lead in an orphaned team's queue, moved with the assignment to tell sales: waiting, to the
    queue of ``route``'s team (which the reference check keeps staffed through its overflow); escalated, to that
    of ``route``'s ``escalation_team``. Its holders stay passed over, its wait (or its escalation) goes on."""
    waiting = handoff.waiting_since is not None
    # The route's team itself when none along its overflow has reps of its own: only files the check refused.
    team = route.team if waiting else escalation_team(route.team, data) or route.team
    why = ("no active rep may take a lead from the {0} queue any more (the team is gone from the routing files, or "
           "has only inactive reps)" if waiting or not staffed(handoff.team, data) else
           "only a rep of {0} may take an escalated lead from its queue, and {0} has no active rep of its own")
    reason = f"{why.format(handoff.team)}; moved to the {team} queue: {route.reason}"
    assignment = Assignment(owner_id=queue_of(team), owner_name=f"{team} queue", team=team, method="queue",
                            reason=reason)
    return handoff.handed_on(owner_id=assignment.owner_id, team=team), assignment
