"""The disposition state machine: what sales may say about a routed lead, and who may say it.

accepted -> contacted -> qualified -> won | lost, or rejected (back to
nurture). Only the holder speaks for a lead (any rep of its team for a lead in
the team's queue); a closed lead stays closed; the same report twice is a
harmless repeat. A won deal's amount may be corrected: its holder reports
``won`` again with another amount or currency, and the lead stays won. A
lead sales merged into another is closed too: a report on it is refused
naming the lead that holds its person now (the survivor, or the lead the
survivor was merged into since), to report on instead.

A report's answer is dated as its sales tool says, but never after routing
records it, nor (by more than a few minutes of clocks apart) before it could
have been given: an acceptance or rejection before the hand-off it answers,
anything else before the lead was first routed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pycountry

from leadpipe_common.events import Contact, DispositionReport, Grade, LeadDispositioned, LeadScored

from routing.domain.reference import Reasons, Rep, RoutingData
from routing.domain.routes import queue_of


def remembered(d: LeadDispositioned) -> DispositionReport:
    """A report as kept in a lead's history: without its time, so a resend of it is recognised."""
    return DispositionReport.model_validate(d.model_dump(exclude={"lead_id", "at"}))


HandoffStatus = Literal["routed", "accepted", "contacted", "qualified", "won", "lost", "rejected", "merged",
                        "erased"]


@dataclass(frozen=True)
class Handoff:
    """A routed lead as routing tracks it after the hand-off."""

    lead_id: uuid.UUID
    status: HandoffStatus
    owner_id: str
    team: str
    grade: Grade | None
    due_at: datetime | None
    reassignments: int = 0
    holders: tuple[str, ...] = ()
    history: tuple[DispositionReport, ...] = ()
    #: Set when sales merged this lead into another: stored, the survivor; as routing reads it for sales, the lead
    #: that holds the person now (the survivor, or the lead the survivor was merged into since: D into S, S into T,
    #: reads T).
    merged_into: uuid.UUID | None = None
    #: Set while the lead waits in its team's queue for a rep who can take it (not after an escalation).
    waiting_since: datetime | None = None
    #: How often sales rejected it and a touch sent it back (each time a new hand-off, with its own events).
    cycle: int = 0
    #: The number of its hand-off to its holder now, among the lead's: 1 when first routed, one more at every
    #: change of holder (``handed_on``). Each lead.routed carries the number of the hand-off it announces: routing
    #: sends them by two paths (its consumer's sends, its outbox) that may overtake each other, and a consumer
    #: tells a stale one by it. A re-engagement tells the same holder again: the same number.
    seq: int = 1
    #: When the lead was first routed to sales (its first hand-off, whatever recycles came since): nothing about a
    #: lead happens in sales before it, so no report is dated earlier. None: not known (a hand-off stored before
    #: routing kept it, and not told by its assignment: a recycle wrote that over).
    first_routed_at: datetime | None = None

    def handed_on(self, **changes: Any) -> Handoff:
        """This hand-off given to another holder (a rep, a team's queue) with ``changes``: the next number, whether
        a lead.routed announces it now (a reassignment, a hand-over, a move) or later (a rep taking it from the
        queue: its next re-engagement)."""
        return replace(self, **changes, seq=self.seq + 1)

    @property
    def closed(self) -> bool:
        return self.status in CLOSED

    def event_id(self, name: str) -> uuid.UUID:
        """The id of this hand-off's event ``name`` (``disposition/accepted``, ``lead.sla_breached/1``): the same
        whichever process or path makes it, and a new one once the lead is recycled (its first hand-off's
        ``accepted`` and its second's are two events)."""
        return uuid.uuid5(self.lead_id, name if not self.cycle else f"{name}/cycle/{self.cycle}")


#: ``erased``: the person asked to be erased (``lead.erased``); nobody works the empty lead left, and no watch hands
#: it on or counts it against a rep's capacity (those read ``routed`` hand-offs alone).
CLOSED: frozenset[str] = frozenset({"won", "lost", "rejected", "merged", "erased"})
#: What a report or a merge naming an erased lead is refused with.
ERASED = "the lead was erased"


def recycled_by(handoff: Handoff, lead: LeadScored, reasons: Reasons) -> bool:
    """Whether ``lead``'s touch routes a lead sales rejected again: the touch earned intent points of its own and
    the score is at the MQL bar. Scoring never learns of the rejection, so a lead it made an MQL stays one:
    a touch that adds nothing (a newsletter sign-up, say) leaves the lead in nurture, and so does any touch of
    a lead rejected for a reason that does not recycle (``kept_back_by``)."""
    return _lifted_back(handoff, lead) and kept_back_by(handoff, lead, reasons) is None


def kept_back_by(handoff: Handoff, lead: LeadScored, reasons: Reasons) -> str | None:
    """The reason code that keeps ``lead``'s touch from routing the lead again when it otherwise would: sales
    rejected it as spam, say, which the reasons file says does not recycle. None when the touch recycles it or
    would not anyway."""
    if not _lifted_back(handoff, lead):
        return None
    code = rejected_as(handoff)
    return code if code is not None and not reasons.recycles(code) else None


def rejected_as(handoff: Handoff) -> str | None:
    """The reason code of the rejection that sent the lead back to nurture; None if sales did not reject it."""
    # The history holds the current hand-off's reports only (a recycle starts a new one): the rejection in it is
    # the one that sent the lead back to nurture.
    return next((d.reason_code for d in reversed(handoff.history) if d.outcome == "rejected"), None)


def earns_intent(lead: LeadScored) -> bool:
    """Whether ``lead``'s touch earned intent points of its own: not a touch no intent rule rewards (a newsletter
    sign-up, say), nor one scoring held to a touch it counted moments before (the same form sent twice)."""
    touch = lead.touch
    return touch is not None and any(r.category == "intent" and r.points > 0 and r.touch_id == touch.touch_id
                                     for r in lead.score.reasons)


def news_for_holder(told: Contact, lead: LeadScored) -> bool:
    """Whether ``lead``'s touch of a lead sales holds is worth telling its holder, who was last told of the person
    as ``told``: the touch earned intent points of its own, or it changed what sales knows of the person. A
    consent withdrawn must reach every sales tool, and a new phone number is worth a call; a double click's
    second form, or a newsletter sign-up that changes nothing, is no news."""
    # The time a consent was given moves with every form that ticks the box again: no news by itself.
    return earns_intent(lead) or (lead.contact.model_dump(exclude={"marketing_consent_at"})
                                  != told.model_dump(exclude={"marketing_consent_at"}))


def _lifted_back(handoff: Handoff, lead: LeadScored) -> bool:
    return handoff.status == "rejected" and lead.score.decision == "mql" and earns_intent(lead)


#: Closed for good by sales (capture's closed stages): such a lead is never merged away, only merged into (by a
#: lead no longer with sales). A rejected lead is back in nurture, its person's open lead, and may be.
SALES_CLOSED: frozenset[str] = frozenset({"won", "lost"})
#: Which status each disposition may follow. Anything else is refused.
ALLOWED_AFTER: dict[str, frozenset[str]] = {
    "accepted": frozenset({"routed"}),
    "rejected": frozenset({"routed", "accepted"}),
    "contacted": frozenset({"accepted"}),
    "qualified": frozenset({"accepted", "contacted"}),
    "won": frozenset({"accepted", "contacted", "qualified"}),
    "lost": frozenset({"accepted", "contacted", "qualified"}),
}


@dataclass(frozen=True)
class Step:
    """A lifecycle step a disposition causes."""

    from_stage: str
    to_stage: str
    reason: str
    reason_code: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Correction:
    """A won deal's amount corrected: the ``number``-th correction of the lead's (1 for the first), from the amount
    in force before (``previous_*``) to ``amount`` in ``currency``."""

    amount: Decimal
    currency: str
    previous_amount: Decimal
    previous_currency: str
    number: int
    reason: str


@dataclass(frozen=True)
class Applied:
    """The report applied: the hand-off after it, and the lifecycle steps it causes, or for a correction of a won
    deal's amount none and the ``correction`` (the lead stays won: no second win)."""

    handoff: Handoff
    steps: tuple[Step, ...]
    correction: Correction | None = None


@dataclass(frozen=True)
class Repeated:
    """The same disposition again: nothing changes, nothing is emitted."""

    handoff: Handoff


@dataclass(frozen=True)
class Refused:
    """``invalid``: the report names something that does not exist; ``conflict``: the move is illegal now. ``field``:
    the field of the request at fault, which the API's answer names."""

    kind: Literal["invalid", "conflict"]
    field: str
    reason: str


#: How far after routing's clock a report over HTTP may date its answer and be taken (dated then when routing
#: records it): a sales tool's clock may run a little ahead, but a time zone wrong is an hour or more.
AHEAD_ALLOWED = timedelta(minutes=5)
#: The currencies a won deal may be in: ISO 4217's, but for its codes of no money (XXX: none; XTS: for tests).
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies) - {"XXX", "XTS"}


#: The outcomes that answer the hand-off to the lead's holder now: taking it, or turning it down.
ANSWERING: frozenset[str] = frozenset({"accepted", "rejected"})


@dataclass(frozen=True)
class Since:
    """The earliest a report's answer could have been given (``at``), and what began then (``what``), for a refusal
    to name."""

    at: datetime
    what: str


def answerable_since(handoff: Handoff, outcome: str, handed_at: datetime) -> Since | None:
    """The earliest a report of ``outcome`` on ``handoff`` could have been given, its holder now handed the lead at
    ``handed_at`` (routed, reassigned, handed over, put in a team's queue, from which any rep of the team may take
    it). An acceptance or a rejection answers that hand-off: not before it. Any other outcome may predate it (rep A
    won the deal, then a manager handed the lead to B, who reports the win with the CRM's date), but nothing about
    a lead happens in sales before sales had it: not before its first routing. None: that is not known."""
    if outcome in ANSWERING:
        holder = f"the {handoff.team} queue" if handoff.owner_id == queue_of(handoff.team) else handoff.owner_id
        return Since(handed_at, f"the hand-off to {holder} it answers")
    if handoff.first_routed_at is None:
        return None
    return Since(handoff.first_routed_at, "the lead's first routing to sales")


def answered_at(d: LeadDispositioned, now: datetime, since: Since | None = None) -> datetime:
    """When ``d``'s answer was given, routing recording it at ``now``: its ``at`` (absent: ``now``), but never
    after ``now``: an answer cannot come after routing heard it. A CRM writing its local wall-clock time with a Z
    would otherwise have an acceptance recorded at 09:05 read 10:05, a miss in the SLA report. Nor, by more than
    ``AHEAD_ALLOWED`` (clocks a little apart), before ``since`` (``answerable_since``): then ``since``. A CRM in
    New York doing the same dates every answer five hours early: read as given, the SLA report held every hand-off
    as met, and velocity every acceptance as 0 s."""
    if d.at is None:
        return now
    return min(since.at if since is not None and _early(d.at, since) else d.at, now)


def dated_ahead(d: LeadDispositioned, now: datetime) -> Refused | None:
    """Why a report over HTTP is refused for its ``at``, routing recording it at ``now``: one more than
    ``AHEAD_ALLOWED`` after it, a time zone wrong most likely, which its sender can mend. (One on the topic is
    dated ``answered_at``: a record cannot be answered.)"""
    if d.at is None or d.at <= now + AHEAD_ALLOWED:
        return None
    return Refused("invalid", "at", f"{d.at.isoformat()} is after now ({now.isoformat(timespec='seconds')}): an "
                                    "answer cannot be dated after routing records it; is the time zone right?")


def dated_before(d: LeadDispositioned, since: Since | None) -> Refused | None:
    """Why a report over HTTP is refused for its ``at``: one more than ``AHEAD_ALLOWED`` before ``since``
    (``answerable_since``), the earliest its answer could have been given, a time zone wrong most likely, which its
    sender can mend. (One on the topic is dated ``answered_at``: ``since``.)"""
    if d.at is None or since is None or not _early(d.at, since):
        return None
    return Refused("invalid", "at", f"{d.at.isoformat()} is before {since.what} "
                                    f"({since.at.isoformat(timespec='seconds')}): an answer cannot be dated before it "
                                    "could be given; is the time zone right?")


def _early(at: datetime, since: Since) -> bool:
    return at < since.at - AHEAD_ALLOWED


def apply_disposition(handoff: Handoff, d: LeadDispositioned, data: RoutingData) -> Applied | Repeated | Refused:
    rep = data.rep(d.rep_id)
    if rep is None:
        return Refused("invalid", "rep_id", f"no rep {d.rep_id!r} in the reps file")
    codes = {"rejected": data.reasons.rejected, "lost": data.reasons.lost}.get(d.outcome)
    if codes is not None and d.reason_code is not None and d.reason_code not in codes:
        return Refused("invalid", "reason_code",
                       f"{d.reason_code!r} is not a {d.outcome} reason code; use one of {sorted(codes)}")
    said = remembered(d)
    same_outcome = [h for h in handoff.history if h.outcome == d.outcome]
    # Any report sent before, not only the latest: the HTTP and topic copies of one win, a redelivered letter or a
    # client's retry after a timeout may come after a correction, and taken as a new one they would put the
    # corrected amount back. (Going back to an amount on purpose says why: another reason is another report.)
    if said in same_outcome:
        return Repeated(handoff)
    if d.currency is not None and d.currency not in CURRENCIES:
        # Three capitals alone: a typo (EUE) became a currency of its own, and every revenue report a bucket of it.
        return Refused("invalid", "currency", f"{d.currency!r} is no ISO 4217 currency code (EUR, USD, GBP...)")
    if handoff.status == "erased":
        return Refused("conflict", "outcome", ERASED)
    if handoff.merged_into is not None:
        # Before the holder's rule and a won deal's correction: a merged lead is nobody's to report on, and whoever
        # reports on it (a CRM still keeping both records) needs where the person's work goes on, not who held it
        # last. (Rows merged before won leads stopped being merged away hold a win: no correction lands there.)
        return Refused("conflict", "outcome",
                       f"the lead is closed as merged into {handoff.merged_into}; report on {handoff.merged_into} "
                       "instead")
    # The latest: a won deal's reports after the first are corrections, the last of them in force.
    earlier = same_outcome[-1] if same_outcome else None
    if earlier is not None and d.outcome == "won" and handoff.status == "won":
        if (earlier.amount, earlier.currency) != (d.amount, d.currency):
            return _corrected(handoff, earlier, d, rep)
        return Refused("conflict", "outcome",
                       f"the lead was already won ({_describe(earlier)}); a won report again corrects the amount or "
                       "currency, and this one changes neither")
    if earlier is not None:
        return Refused("conflict", "outcome",
                       f"the lead was already {d.outcome} ({_describe(earlier)}); a different {d.outcome} report "
                       "cannot replace it")
    not_holder = _not_the_holder(handoff, rep)
    if not_holder:
        return Refused("conflict", "rep_id", not_holder)
    if handoff.closed:
        return Refused("conflict", "outcome", f"the lead is closed as {handoff.status}; a closed lead stays closed")
    if handoff.status not in ALLOWED_AFTER[d.outcome]:
        needed = " or ".join(sorted(ALLOWED_AFTER[d.outcome]))
        return Refused("conflict", "outcome",
                       f"a lead cannot be {d.outcome} while it is {handoff.status}; it must be {needed} first")

    label = f"{d.outcome} by {rep.name}"
    if d.outcome == "rejected":
        assert d.reason_code is not None
        rejection = data.reasons.rejected[d.reason_code]
        why = f"{label}: {d.reason_code} ({rejection.text})" + (f": {d.reason}" if d.reason else "")
        # The lead's timeline shows no event for a touch that leaves it in nurture: this step says why none will
        # route it (as the reasons file stands now; a touch goes by the file in force when it comes).
        back = f"returned to marketing: {d.reason_code}" + (
            "" if rejection.recycle else "; its touches do not send it back to sales")
        steps = (Step(handoff.status, "rejected", why, reason_code=d.reason_code),
                 Step("rejected", "nurture", back, reason_code=d.reason_code))
    elif d.outcome == "won":
        # The rep's note with it, as a rejection's: it reached no webhook, timeline or export.
        steps = (Step(handoff.status, "won", f"{label}: {d.amount} {d.currency}" + (f": {d.reason}" if d.reason else ""),
                      amount=d.amount, currency=d.currency),)
    elif d.outcome == "lost":
        text = data.reasons.lost.get(d.reason_code or "", "")
        head = " ".join(part for part in (d.reason_code, text) if part)
        why = f"{label}: " + ": ".join(part for part in (head, d.reason) if part)
        steps = (Step(handoff.status, "lost", why, reason_code=d.reason_code),)
    else:
        steps = (Step(handoff.status, d.outcome, label + (f": {d.reason}" if d.reason else "")),)
    # A rep who rejects a lead from the team's queue took it to turn it down: as its holder, a recycle passes
    # them over rather than the queue.
    owner = rep.id if d.outcome in ("accepted", "rejected") else handoff.owner_id
    after = replace(handoff, status=d.outcome, history=(*handoff.history, said),
                    due_at=None if d.outcome in ("accepted", "rejected") else handoff.due_at, waiting_since=None)
    # Taken from the queue, it is the rep's now: a hand-off of its own, which a re-engagement's lead.routed names.
    return Applied(after.handed_on(owner_id=owner) if owner != handoff.owner_id else after, steps)


def _corrected(handoff: Handoff, won: DispositionReport, d: LeadDispositioned, rep: Rep) -> Applied | Refused:
    """``d``, a won report with another amount or currency than ``won``'s (in force), as a correction by ``rep``: said
    by whoever may report on the lead, as any disposition. A correction, not a second win: the lead stays won, and
    revenue reports take the new amount in place of the old."""
    not_holder = _not_the_holder(handoff, rep)
    if not_holder:
        return Refused("conflict", "rep_id", not_holder)
    assert won.amount is not None and won.currency is not None and d.amount is not None and d.currency is not None
    number = sum(h.outcome == "won" for h in handoff.history)  # the first won report is the win itself
    why = f"won amount corrected by {rep.name}: {won.amount} {won.currency} -> {d.amount} {d.currency}" + (
        f": {d.reason}" if d.reason else "")
    return Applied(replace(handoff, history=(*handoff.history, remembered(d))), (),
                   Correction(d.amount, d.currency, won.amount, won.currency, number, why))


def _not_the_holder(handoff: Handoff, rep: Rep) -> str | None:
    """Why ``rep`` may not report on the lead, or None. Only its holder speaks for a lead; a lead in a
    team's queue has no holder yet, and any rep of that team may take it."""
    if handoff.owner_id == rep.id:
        return None
    if handoff.owner_id == queue_of(handoff.team):
        if rep.team == handoff.team and rep.active:
            return None
        if rep.team == handoff.team:
            # Inactive is "they left": the queue's takers and its staffing leave them out, and so does this.
            return (f"the lead waits in the {handoff.team} queue, and {rep.id} is inactive in the reps file: only "
                    f"an active rep of {handoff.team} may take it")
        return f"the lead waits in the {handoff.team} queue; only a rep of {handoff.team} may take it, not {rep.id}"
    return f"the lead is held by {handoff.owner_id}; {rep.id} does not hold it and cannot report on it"


def _describe(d: DispositionReport) -> str:
    parts = [f"by {d.rep_id}"]
    if d.reason_code:
        parts.append(f"reason {d.reason_code}")
    if d.amount is not None:
        parts.append(f"{d.amount} {d.currency}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Merged:
    """The lead closed as merged into the survivor: no deadline, no more dispositions."""

    handoff: Handoff


def merge_into(lead: Handoff, survivor: Handoff, rep_id: str, data: RoutingData) -> Merged | Repeated | Refused:
    """Rep ``rep_id`` says ``lead`` is the same person as ``survivor``'s lead. A merge closes ``lead``, so it is said
    by whoever may report on it (``apply_disposition``'s rule); the survivor is left as it is, whoever holds it.

    Sales' reports on the person go to the survivor from then on, so a lead sales still works (routed, accepted,
    contacted, qualified) survives: merged into a closed lead, it could never be qualified or won, and the person's
    revenue would never reach the reports. A won or lost lead is never merged away; a lead back in nurture
    (rejected) may be, into any lead. So an open lead and a rejected one merge the rejected one away, and an open
    lead and a won or lost one do not merge at all: capture opens a new lead for a person whose lead was won or
    lost, so the pipeline counts a customer who came back as a new deal, and merged away that deal would be lost.
    (A lead that only repeats a closed deal is rejected, while it may be, then merged.)"""
    if lead.lead_id == survivor.lead_id:
        return Refused("invalid", "survivor_id", "a lead cannot be merged into itself")
    rep = data.rep(rep_id)
    if rep is None:
        return Refused("invalid", "rep_id", f"no rep {rep_id!r} in the reps file")
    # Each read as merged into the lead holding its person now: the merge asked for is done when both lead there,
    # as a retry of D into S is once S was merged on into T.
    if lead.merged_into is not None and lead.merged_into in (survivor.lead_id, survivor.merged_into):
        return Repeated(lead)
    if "erased" in (lead.status, survivor.status):
        return Refused("conflict", "lead_id" if lead.status == "erased" else "survivor_id", ERASED)
    if lead.merged_into is not None:
        return Refused("conflict", "survivor_id",
                       f"the lead was already merged away: {lead.merged_into} holds the person now")
    not_holder = _may_not_merge(lead, survivor, rep)
    if not_holder:
        return Refused("conflict", "rep_id", not_holder)
    # Before the closed checks: the advice they give names the survivor, which must be the end of its chain.
    if survivor.merged_into == lead.lead_id:
        # Its advice would be to merge the lead into itself.
        return Refused("conflict", "survivor_id", f"the survivor was merged into this lead already: the two are one "
                                                  f"person, held by {lead.lead_id}")
    if survivor.merged_into is not None:
        return Refused("conflict", "survivor_id",
                       f"the survivor was itself merged away: {survivor.merged_into} holds the person now; merge "
                       "into that lead")
    if lead.status in SALES_CLOSED:
        # Merged away, its win or loss would pass to the survivor's row in the reports, beside the survivor's
        # own outcome (two wins keep one amount; a win and a loss contradict): the closed lead must survive.
        return Refused("conflict", "lead_id", f"the lead is closed as {lead.status}, and a closed lead stays "
                                              f"closed; {_instead(lead, survivor, rep)}")
    if not lead.closed and survivor.closed:
        return Refused("conflict", "survivor_id",
                       f"the survivor is closed as {survivor.status}, and this lead is still with sales: merged into "
                       f"it, this lead could never be qualified or won; {_instead(lead, survivor, rep)}")
    return Merged(replace(lead, status="merged", due_at=None, merged_into=survivor.lead_id, waiting_since=None))


def _instead(lead: Handoff, survivor: Handoff, rep: Rep) -> str:
    """What sales may do instead of ``rep`` merging ``lead`` into ``survivor``, refused as one of them is won or
    lost, or ``lead`` is open and ``survivor`` closed (neither merged)."""
    if survivor.status == "rejected":
        return (f"merge {survivor.lead_id} into {lead.lead_id} instead{_said_by(survivor, rep, lead)}: the lead "
                "back in nurture is the one merged away (the reports give the survivor the earlier first touch of "
                "the two)")
    if lead.status in SALES_CLOSED and survivor.status in SALES_CLOSED:
        return f"{survivor.lead_id} is closed as {survivor.status} too: two closed deals stay two leads"
    deal, open_ = (lead, survivor) if lead.status in SALES_CLOSED else (survivor, lead)
    apart = f"a person back after a closed deal is a new deal: keep {open_.lead_id} apart from {deal.lead_id}"
    if open_.status not in ALLOWED_AFTER["rejected"]:
        return apart  # contacted or qualified: sales works it as a deal of its own
    return f"{apart} (if it only repeats that deal, reject it, then merge it into {deal.lead_id}{_said_by(open_, rep)})"


def _may_not_merge(lead: Handoff, survivor: Handoff, rep: Rep) -> str | None:
    """Why ``rep`` may not merge ``lead`` away into ``survivor``, or None. Its holder may (``apply_disposition``'s
    rule); a lead back in nurture (rejected), no longer sales' to work, may also be merged away by whoever may
    report on the survivor, who works the person now: the rep who rejected it may have left since."""
    not_holder = _not_the_holder(lead, rep)
    if not_holder is None or (lead.status == "rejected" and _not_the_holder(survivor, rep) is None):
        return None
    return not_holder


def _said_by(lead: Handoff, rep: Rep, survivor: Handoff | None = None) -> str:
    """Who may merge ``lead`` away (into ``survivor``, when known), when ``rep`` may not: advice the caller cannot
    follow alone says so."""
    if (_not_the_holder(lead, rep) if survivor is None else _may_not_merge(lead, survivor, rep)) is None:
        return ""
    if lead.owner_id == queue_of(lead.team):
        return f", said by a rep of {lead.team}, in whose queue it waits"
    return f", said by {lead.owner_id}, who holds it"
