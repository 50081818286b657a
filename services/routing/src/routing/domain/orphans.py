"""Leads left in the queue of a team no active rep may take a lead for: renamed or emptied in the routing files.

The files are checked for the teams they send leads to (``reference``), not
for the teams stored hand-offs name: a reorganisation (``emea`` renamed
``emea-inbound``) is legitimate, so it is not refused, but a lead waiting in
``queue:emea`` would wait for ever, and one escalated there would have
nobody allowed to take it. Such a lead moves to the queue of its route's
team (``choose_route`` of the stored lead, as a missed deadline places it),
as it was: a waiting lead still waits, since it began, for the queue watch
to hand out; an escalated one stays for that team's reps to take. A lead a
rep holds is left with them: they still speak for it, and a missed deadline
already goes by its route.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from leadpipe_common.events import Assignment

from routing.domain.dispositions import Handoff
from routing.domain.reference import RoutingData, overflow_chain
from routing.domain.routes import Route, queue_of


def staffed(team: str, data: RoutingData) -> bool:
    """Whether an active rep may take a lead for ``team``: one of its own, or of a team it overflows to."""
    chain = set(overflow_chain(team, data))
    return any(r.active and r.team in chain for r in data.reps)


def staffed_teams(data: RoutingData) -> set[str]:
    """Every team of the files an active rep may take a lead for: any other team a hand-off names is orphaned."""
    named = ({r.team for r in data.reps} | {rule.team for rule in data.territories.teams}
             | {data.territories.default_team} | set(data.teams))
    return {team for team in named if staffed(team, data)}


def orphaned(teams: Iterable[str], data: RoutingData) -> set[str]:
    """Those of ``teams`` no active rep may take a lead for under ``data``."""
    return {team for team in teams if not staffed(team, data)}


def requeue(handoff: Handoff, route: Route) -> tuple[Handoff, Assignment]:
    """``handoff``, a lead in an orphaned team's queue, moved to the queue of ``route``'s team (whose files the
    reference check keeps staffed), with the assignment to tell sales. Its holders stay passed over, its wait
    (or its escalation) goes on."""
    team = route.team
    reason = (f"no active rep may take a lead from the {handoff.team} queue any more (the team is gone from the "
              f"routing files, or has only inactive reps); moved to the {team} queue: {route.reason}")
    assignment = Assignment(owner_id=queue_of(team), owner_name=f"{team} queue", team=team, method="queue",
                            reason=reason)
    return replace(handoff, owner_id=assignment.owner_id, team=team), assignment
