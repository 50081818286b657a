"""What waits in a team's queue, as a sales manager sees it.

A lead is in ``team``'s queue while routing holds it unaccepted under the
queue's name (``queue_of``): nobody is its holder. It *waits* when it has a
waiting mark: nobody who may take it could when it was routed (or when a
deadline was missed, or at a hand-over), and the queue watch hands it to the
first who can (a rep of the team or of its overflow). Without the mark it was
*escalated* there for good after missed deadlines: only a rep of the team
takes it, by reporting on it (``dispositions``). Either way any rep of the
team may take it by reporting on it.

Since when: a waiting lead since its wait began (kept when it moved out of a
renamed team's queue, ``orphans``); an escalated one since it was sent to
this queue. The hand-off keeps no time of its escalation; the lead as routing
last sent it does (the ``routed_at`` of its stored ``lead.routed``: the
escalation, or the move here from the queue of a team the files no longer
staff; a re-engagement keeps it). So an escalated lead moved between queues
reads as in this one since the move, not since it was first escalated.

A team the files no longer name (renamed, removed) still has a queue while
leads are in it: none of its reps may take them (``takers`` is empty), and
the queue watch moves them to a queue someone may take them from
(``orphans``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from leadpipe_common.events import Grade

from routing.domain.orphans import teams_named
from routing.domain.reference import RoutingData

Kind = Literal["waiting", "escalated"]
KINDS: tuple[Kind, ...] = ("waiting", "escalated")


@dataclass(frozen=True)
class Queued:
    """A lead in a team's queue: what a manager is shown of it (no more of the person than its hand-off shows)."""

    lead_id: uuid.UUID
    grade: Grade | None
    kind: Kind
    #: Since when it waits, or since it was sent to this queue escalated (see the module).
    since: datetime
    reassignments: int
    #: The number of its hand-off to the queue: a lead.routed numbered below it is older news.
    seq: int

    @property
    def position(self) -> tuple[datetime, uuid.UUID]:
        """Where it stands in its queue's list: oldest first, then by lead id (a batch queues many at a moment)."""
        return self.since, self.lead_id


@dataclass(frozen=True)
class Tally:
    """The leads of one grade in one team's queue, as the store counts them."""

    team: str
    grade: Grade | None
    waiting: int
    escalated: int
    #: When the wait of the longest waiting of them began (None: none waits).
    oldest_waiting: datetime | None


@dataclass(frozen=True)
class TeamQueue:
    """A team's queue: how many leads wait there and how many were escalated there, in all and by grade (grades
    with none left out), the longest wait's start, whether the routing files name the team, and its active reps,
    who may take any lead of it."""

    team: str
    waiting: int
    escalated: int
    oldest_waiting: datetime | None
    grades: tuple[Tally, ...]
    in_files: bool
    takers: tuple[str, ...]

    def count(self, kind: Kind) -> int:
        return self.waiting if kind == "waiting" else self.escalated


def takers(team: str, data: RoutingData) -> tuple[str, ...]:
    """The reps who may take a lead from ``team``'s queue by reporting on it: its active reps, in the files' order.
    (The queue watch may also hand a waiting one to a rep of a team it overflows to.)"""
    return tuple(r.id for r in data.reps if r.team == team and r.active)


def queues(tallies: Iterable[Tally], data: RoutingData) -> list[TeamQueue]:
    """Every team's queue, by team name: each team the files name (empty ones too, so that a dashboard shows every
    team) and each team with leads in its queue, named or not (renamed, removed)."""
    named = teams_named(data)
    by_team: dict[str, list[Tally]] = {team: [] for team in named}
    for tally in tallies:
        by_team.setdefault(tally.team, []).append(tally)
    return [_queue(team, found, team in named, data) for team, found in sorted(by_team.items())]


def queue_of_team(team: str, tallies: Iterable[Tally], data: RoutingData) -> TeamQueue | None:
    """``team``'s queue, from the store's tallies of it; None when the files do not name the team and no lead is
    in its queue: no such team, as far as routing can tell."""
    found = [t for t in tallies if t.team == team]
    named = team in teams_named(data)
    return _queue(team, found, named, data) if named or found else None


def _queue(team: str, tallies: list[Tally], named: bool, data: RoutingData) -> TeamQueue:
    grades = tuple(sorted((t for t in tallies if t.waiting or t.escalated), key=lambda t: (t.grade is None, t.grade)))
    oldest = min((t.oldest_waiting for t in grades if t.oldest_waiting is not None), default=None)
    return TeamQueue(team=team, waiting=sum(t.waiting for t in grades), escalated=sum(t.escalated for t in grades),
                     oldest_waiting=oldest, grades=grades, in_files=named, takers=takers(team, data))


def waited_s(since: datetime, now: datetime) -> float:
    """Seconds from ``since`` to routing's ``now``; none for a time after it (stored by a process whose clock runs
    ahead of this one's)."""
    return max(0.0, (now - since).total_seconds())


def teams_waiting(tallies: Iterable[Tally]) -> set[str]:
    """The teams with leads waiting in their queue (for the queue watch to hand out), of ``tallies``."""
    return {t.team for t in tallies if t.waiting}
