"""Whether the holder of a lead a new touch re-engages can act on it: told to one who cannot, the touch is lost.

A rep inactive in the reps file, or gone from it (they left), never will: the lead is handed on through routing as
a manager's hand-over through routing hands it (``handovers.reroute``), the holder's absence leading the reason. One
sales accepted has no deadline to move it on, and would sit with them for good. A rep out of office now (an
out-of-office period covers the moment) keeps the lead: a holiday is no reason to lose one's accounts, and an
unaccepted lead moves on at its deadline anyway. The re-engagement says until when they are away, for a manager or a
sales tool to act on; an A-grade touch is no exception (a manager hands the lead over, ``POST
/v1/reps/{id}/handover``, when the absence is long). Off shift, on a public holiday or at capacity is no absence
here: the first two end within a day, and the last keeps only new leads away.

Pure: the reps come in as ``RoutingData``, out-of-office periods as ``Presence``, the time as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadpipe_common.events import Assignment

from routing.domain.availability import Presence, away_until
from routing.domain.handovers import Kept
from routing.domain.reference import RoutingData
from routing.domain.routes import queue_of


@dataclass(frozen=True)
class Gone:
    """The holder is inactive in the reps file, or no longer in it: the lead is handed on."""

    name: str

    @property
    def why(self) -> str:
        return f"{self.name} is no longer active"


@dataclass(frozen=True)
class OutOfOffice:
    """The holder is out of office until ``until``: the lead stays with them."""

    name: str
    until: datetime

    @property
    def why(self) -> str:
        # Not the period's own reason ("sick leave"): the lifecycle is kept for ever and goes to every sales tool.
        return f"{self.name} is out of office until {self.until.isoformat()}"


def no_longer_active(holder: str, data: RoutingData) -> Gone | None:
    """``Gone`` when the holder ``holder`` of a lead is a rep inactive in the reps file or gone from it, else None. A
    team's queue is no rep: any rep of its team takes a lead from it."""
    if holder.startswith(queue_of("")):
        return None
    rep = data.rep(holder)
    return Gone(rep.name if rep is not None else holder) if rep is None or not rep.active else None


def absence(holder: str, data: RoutingData, presence: Presence, now: datetime) -> Gone | OutOfOffice | None:
    """Why the holder ``holder`` of a lead cannot act on a touch of it now, or None when they can."""
    if (gone := no_longer_active(holder, data)) is not None:
        return gone
    rep = data.rep(holder)
    until = away_until(presence.away.get(holder, ()), now)
    return OutOfOffice(rep.name, until) if rep is not None and until is not None else None


def told_why(touch: str, absent: Gone | OutOfOffice | None, moved: Assignment | Kept | None = None) -> str:
    """The reason of a re-engagement telling of ``touch`` (what the touch was, what the lead scores now): when its
    holder cannot act on it (``absent``), why, and where the lead went: to ``moved``'s owner, or nowhere
    (``Kept``: why nobody could take it)."""
    if absent is None:
        return touch
    if isinstance(moved, Kept):
        return f"{touch}; {absent.why}; {moved.reason}"
    if moved is not None:
        return f"{touch}; {absent.why}: handed on to {moved.owner_name}"
    return f"{touch}; {absent.why}"
