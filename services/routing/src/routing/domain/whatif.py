"""What-if: past MQLs routed again under candidate routing data, beside what they did get.

The candidate's routing is the live one (``choose_route``, ``place``): the
rotation starts fresh, and a rep holds each lead from when it was routed
until sales first answered it in reality (accepted, rejected, merged, or
the deadline passed it on); out-of-office periods are not simulated (they
live in the database, not in files). What happened is judged by the same
rules: every real assignment the candidate data would not have made to that
rep at that moment (off shift, on a holiday, at capacity, no longer a rep)
is a violation. A lead recycled after a rejection whose reason the data says
does not recycle is not routed again, nor is it at any later routing (it
never leaves nurture), and those real assignments are not judged (a touch
that did not recycle a lead is no routing in the history: the other way
round is not simulated). A recycled lead passes over the rep who rejected
it, as live, when the history holds the rejection (one before the window
read is not known).

Pure: the history comes in as ``PastLead``s, in any order; it is routed again
in the order live routing applied it (``_live_order``). Whether any of the
history since a moment is gone is ``leadpipe_common.scan.truncated_since``'s
to tell.
"""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from leadpipe_common.events import Assignment, LeadScored

from routing.domain.availability import Placed, Presence, Waiting, place, unavailable
from routing.domain.breaches import escalated_to, may_wait
from routing.domain.reference import RoutingData
from routing.domain.routes import choose_route


@dataclass(frozen=True)
class PastLead:
    """One routing of an MQL (a lead recycled after a rejection is routed, and counted, again)."""

    lead: LeadScored
    #: When routing routed it (else when it was scored).
    at: datetime
    #: The assignment this routing gave (not a later one after a missed deadline or a wait); None: not routed (yet).
    actual: Assignment | None = None
    #: When its holder stopped holding it unanswered; None: still held.
    answered_at: datetime | None = None
    #: Where its score is in ``leads.scored`` (partition, offset): when routing read it; None: unknown.
    position: tuple[int, int] | None = None
    #: Recycled after sales rejected it: the rejection's reason code; None: not recycled, or rejected unseen.
    recycled_after: str | None = None
    #: Recycled: the rep who rejected it, whom live routing passed over; None: not recycled, or rejected unseen.
    rejected_by: str | None = None


@dataclass(frozen=True)
class Violation:
    at: datetime
    lead_id: uuid.UUID
    owner_id: str
    team: str
    why: str


@dataclass
class WhatIf:
    leads: int = 0
    #: (team, owner id) -> leads; a team's queue is owner ``queue:<team>``.
    would: Counter[tuple[str, str]] = field(default_factory=Counter)
    did: Counter[tuple[str, str]] = field(default_factory=Counter)
    overflowed: int = 0
    #: Routings not made again: recycled in reality after a rejection whose reason, as the data has it, does not
    #: recycle, and every later routing of such a lead.
    kept_in_nurture: int = 0
    violations: list[Violation] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, int, int]]:
        """(team, owner, would get, did get), by team then owner."""
        keys = sorted(set(self.would) | set(self.did))
        return [(team, owner, self.would[(team, owner)], self.did[(team, owner)]) for team, owner in keys]

    def team_totals(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for team, _, would, did in self.rows():
            w, d = totals.get(team, (0, 0))
            totals[team] = (w + would, d + did)
        return totals


#: "Still held": later than any real moment.
_NEVER = datetime.max.replace(tzinfo=UTC)


class _Holdings:
    """Leads held unanswered per rep, as of a moment that only moves forward (the history is walked in order)."""

    def __init__(self) -> None:
        self._until: dict[str, list[datetime]] = {}

    def add(self, rep_id: str, until: datetime | None) -> None:
        heapq.heappush(self._until.setdefault(rep_id, []), until or _NEVER)

    def at(self, now: datetime) -> dict[str, int]:
        for heap in self._until.values():
            while heap and heap[0] <= now:
                heapq.heappop(heap)
        return {rep_id: len(heap) for rep_id, heap in self._until.items()}


def _live_order(past: PastLead) -> tuple[datetime, bool, tuple[int, int], uuid.UUID]:
    """Routing stamps every lead of a batch with one time and applies the batch in log order, so leads routed
    at one moment are taken as they were read: by offset within a partition (across partitions the live order
    was the fetch's, unrecorded: by partition here), then those of unknown position, by id."""
    return past.at, past.position is None, past.position or (0, 0), past.lead.lead_id


def what_if(history: Iterable[PastLead], data: RoutingData) -> WhatIf:
    """Route ``history`` again under ``data``; count what each team and rep would get and did get."""
    out = WhatIf()
    states: dict[str, dict[str, int]] = {}
    would_hold, did_hold = _Holdings(), _Holdings()
    # Leads a recycle the data would not make left in nurture: their later routings could not have happened.
    in_nurture: set[uuid.UUID] = set()
    for past in sorted(history, key=_live_order):
        out.leads += 1
        lead, at = past.lead, past.at
        kept = lead.lead_id in in_nurture or (
            past.recycled_after is not None and not data.reasons.recycles(past.recycled_after))
        if kept:
            # Recycled before the reasons file said that rejection ends recycling: live routing now leaves it be,
            # and the rejections and recycles that followed in reality never come.
            in_nurture.add(lead.lead_id)
            out.kept_in_nurture += 1
        else:
            # As live routing: not back to the rep who rejected it, escalated if nobody else may ever take it.
            rejecter = (past.rejected_by,) if past.rejected_by else ()
            placed = place(choose_route(lead, data), data, states, at, Presence(held=would_hold.at(at)),
                           passed_over=rejecter)
            would = placed.assignment
            if isinstance(placed, Placed):
                if placed.rotation is not None:
                    states[placed.team] = placed.rotation
                would_hold.add(placed.rep.id, past.answered_at)
                out.overflowed += would.method == "overflow"
            elif isinstance(placed, Waiting) and rejecter and not may_wait(placed.team, rejecter, data):
                would = escalated_to(placed.team, placed.team, placed.nobody, data)
            out.would[(would.team, would.owner_id)] += 1
        real = past.actual
        if real is None:
            continue
        out.did[(real.team, real.owner_id)] += 1
        if real.method == "queue":
            continue
        # A kept lead is one the candidate data would not route at all: whether it would have let this rep take
        # it is moot. Still, the rep did hold it while their other leads came.
        if not kept:
            rep = data.rep(real.owner_id)
            why = ("not a rep in the candidate reps file" if rep is None
                   else unavailable(rep, data, at, Presence(held=did_hold.at(at))))
            if why is not None:
                out.violations.append(Violation(at, lead.lead_id, real.owner_id, real.team, why))
        did_hold.add(real.owner_id, past.answered_at)
    return out
