"""What the reports mean: how lifecycle events become facts, and how counts become rates.

Pure: events in, facts out; aggregated counts in, report rows out. No SQL,
no clock. The rules:

- A lead reached a funnel stage (``FUNNEL``) when it reached that stage or
  any later one: a lead won without a recorded "qualified" was qualified.
- Reports are cohorts: a time range selects leads by when they were
  captured, and follows those leads through every later stage.
- Conversion between consecutive stages is reached(next) / reached(stage).
- Close rate is won / captured. Revenue is summed per currency, never mixed,
  each won deal at its amount in force: the won report's, or its latest
  correction's (the highest ``correction`` number, however the events
  arrive: the win is number 0). A correction that arrives before its win
  (routing sends them by two paths) holds its amount and reaches no stage:
  the lead is won, and its amount revenue, from the win's time, once the
  win arrives.
- A lead is out of the funnel when its latest stage is an exit (``EXITS``):
  nurture, disqualified or lost, or nurture after sales rejected it (counted
  as rejected). One recycled into the funnel since, or won, is not; nor is
  one contacted, a step on the way to qualified.
- A hand-off met its SLA when the holder accepted (or rejected) the lead by
  the deadline; it missed when the deadline passed first. A hand-off is
  known by its lead, holder and deadline, and answered by the first acceptance or
  rejection recorded after it began: a lead sales rejected and a touch sent
  back is handed off again, and that hand-off is judged on its own. A
  hand-off is its holder's: two holders with one deadline have one each. A
  manager's hand-over, or routing's when a re-engaged lead's holder is no
  longer active, ends the holder's hand-off unanswered: no answer after
  it is theirs (it answers the new holder's), and one ended before its
  deadline is neither met nor missed, but handed over.
- Velocity (``VELOCITY``) is a lead's first cycle: from the first time it
  reached one stage to the first time it reached the next, so a recycled
  lead's later routings and answers do not count. A stage counts as reached
  no earlier than any funnel stage before it: a sales tool dates its own
  answers, and an acceptance it dates before the routing it answers was
  reached at once (0 s), not in negative time.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from leadpipe_common.events import (
    FUNNEL, Event, LeadAssigned, LeadHandedOver, LeadMerged, LeadQuarantined, LeadQueued, LeadReengaged,
    LeadSlaBreached, LeadStageChanged, LeadTouched, LeadTouchRecorded, LeadWonAmountCorrected,
)
from leadpipe_common.moments import written

#: The stages whose first time is kept per lead: the funnel, then the side exits.
STAGE_COLUMNS: tuple[str, ...] = (*FUNNEL, "contacted", "nurture", "disqualified", "rejected", "lost")
#: ``STAGE_COLUMNS`` in the order a lead can pass through them within one moment: which of two steps recorded
#: together came last. A stage stamps every step of one batch with one time, so a lead's steps can tie:
#: scoring's first score and a touch lifting it to MQL (enriched → nurture → mql), routing's recycle (nurture →
#: mql → routed), a batch of sales reports (accepted → contacted → qualified → won), a rejection and its way
#: back (→ rejected → nurture). Each climbs this order but the way back, so its rejection stays the latest (the
#: funnel counts it as it counts the nurture after it: rejected). One fixed order, not "the step that follows
#: the other": that is no order once a chain comes back round, and the latest would differ as events came.
LIFECYCLE: tuple[str, ...] = ("captured", "enriched", "nurture", "disqualified", "mql", "routed", "accepted",
                              "contacted", "qualified", "won", "rejected", "lost")
RANK: dict[str, int] = {stage: i for i, stage in enumerate(FUNNEL)}
#: Where a lead out of the funnel is, as the funnel report counts it.
EXITS: tuple[str, ...] = ("nurture", "disqualified", "rejected", "lost")
#: How each breakdown is asked for, and the lead attribute it groups by.
DIMENSIONS: dict[str, str] = {
    "source": "utm_source", "medium": "utm_medium", "campaign": "utm_campaign", "content": "utm_content",
    "form": "form_id", "offer": "offer",
}
VELOCITY: tuple[tuple[str, str, str], ...] = (
    ("capture_to_routed", "captured", "routed"),
    ("routed_to_accepted", "routed", "accepted"),
    ("accepted_to_won", "accepted", "won"),
)
#: A missing value's row in the reports: the SQL labels it so (``reports._labelled``), so the rows and tallies
#: shaped here get every value as text.
NONE_LABEL = "(none)"


@dataclass(frozen=True, order=True)
class Step:
    """A lead's step into one of ``STAGE_COLUMNS``, ordered as "which came last": by when leadpipe recorded it,
    then its own time, then the stage's place in ``LIFECYCLE`` (a stage records a lead's steps of one batch at
    one moment), then where it came from, so that any two steps have one latest however they arrive."""

    recorded_at: datetime
    at: datetime
    order: int
    from_stage: str
    to_stage: str = field(compare=False)


@dataclass
class LeadFacts:
    lead_id: uuid.UUID
    attribution: dict[str, str | None] = field(default_factory=dict)
    grade: str | None = None
    furthest: int = -1
    first_at: dict[str, datetime] = field(default_factory=dict)
    won_amount: Decimal | None = None
    won_currency: str | None = None
    #: Which report the won amount is of: 0 the win's, n its n-th correction (the highest known is in force).
    won_correction: int | None = None
    rejected_reason: str | None = None
    lost_reason: str | None = None
    #: Where the lead is: its latest step (what the funnel's exits count).
    latest: Step | None = None

    def merge(self, other: LeadFacts) -> None:
        """The same rule the database applies: the earliest capture's attribution, whole (field by field only
        while no capture is known), earliest times, furthest stage, the won amount of the latest correction
        (``newer_won``), first known values."""
        mine, theirs = self.first_at.get("captured"), other.first_at.get("captured")
        if theirs is not None and (mine is None or theirs < mine):
            self.attribution = dict(other.attribution)
        elif mine is None and theirs is None:
            for key, value in other.attribution.items():
                if self.attribution.get(key) is None:
                    self.attribution[key] = value
        for stage, at in other.first_at.items():
            self.first_at[stage] = min(self.first_at.get(stage, at), at)
        self.furthest = max(self.furthest, other.furthest)
        if other.latest is not None and (self.latest is None or other.latest > self.latest):
            self.latest = other.latest
        if newer_won(other.won_amount, other.won_correction, self.won_amount, self.won_correction):
            self.won_amount, self.won_currency, self.won_correction = (other.won_amount, other.won_currency,
                                                                       other.won_correction)
        for name in ("grade", "rejected_reason", "lost_reason"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))

    def row(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id, **{c: self.attribution.get(c) for c in DIMENSIONS.values()},
            "grade": self.grade, "furthest": self.furthest,
            **{f"{s}_at": self.first_at.get(s) for s in STAGE_COLUMNS},
            "won_amount": self.won_amount, "won_currency": self.won_currency, "won_correction": self.won_correction,
            "rejected_reason": self.rejected_reason, "lost_reason": self.lost_reason,
            **_latest_row(self.latest),
        }


def newer_won(amount: Decimal | None, correction: int | None, known: Decimal | None,
              known_correction: int | None) -> bool:
    """Whether a won ``amount`` of report number ``correction`` (0 or None: the win's) stands for the deal in place
    of the ``known`` one's: it is a later correction. By the number routing gave it, not by arrival or by its time
    (a sales tool dates its reports): an older correction applied after a newer one, a replay, or the win itself
    arriving last leaves the latest in force. The store's upsert applies the same rule (``store._NEWER_WON``)."""
    return amount is not None and (known is None or (correction or 0) > (known_correction or 0))


def _latest_row(step: Step | None) -> dict[str, Any]:
    if step is None:
        return dict.fromkeys(("latest_recorded_at", "latest_at", "latest_from_stage", "latest_to_stage"))
    return {"latest_recorded_at": step.recorded_at, "latest_at": step.at,
            "latest_from_stage": step.from_stage or None, "latest_to_stage": step.to_stage}


@dataclass(frozen=True)
class HandoffFacts:
    """One holder's hand-off of a lead, known by (lead, holder, deadline): every event about it carries all three,
    whereas a count of holders starts again when a recycled lead is routed a second time. The deadline alone is
    not enough: a lead handed over off hours is due at the next working hours' start, as its holder's was (routed
    Friday evening, handed over Saturday, both due Monday 9:15). A lead handed back to a holder with the very
    deadline they had is theirs on the one hand-off, ended by the first hand-over."""

    lead_id: uuid.UUID
    owner_id: str
    team: str
    due_at: datetime
    #: When leadpipe recorded the hand-off (routing's clock, as for the answer that ends it); None when only
    #: its breach was seen.
    started_at: datetime | None = None
    breached_at: datetime | None = None
    #: When a manager handed the lead on, ending the hand-off unanswered (routing's clock, as its start).
    handed_over_at: datetime | None = None

    @property
    def key(self) -> tuple[uuid.UUID, str, datetime]:
        return self.lead_id, self.owner_id, self.due_at

    def row(self) -> dict[str, Any]:
        return {"lead_id": self.lead_id, "owner_id": self.owner_id, "team": self.team, "due_at": self.due_at,
                "started_at": self.started_at, "breached_at": self.breached_at, "handed_over_at": self.handed_over_at}


@dataclass
class Projection:
    """One batch of lifecycle events, folded: what to write."""

    leads: dict[uuid.UUID, LeadFacts] = field(default_factory=dict)
    handoffs: dict[tuple[uuid.UUID, str, datetime], HandoffFacts] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: Submissions taken for bots': where they came from, nothing of what they said.
    spam: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    #: Leads sales said are one person: ``{"lead_id", "survivor_id", "at"}``.
    merges: list[dict[str, Any]] = field(default_factory=list)
    #: Each lead's capture and later touches, by (lead, touch): what multi-touch attribution credits.
    touches: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = field(default_factory=dict)

    def touch(self, lead_id: uuid.UUID, touch_id: uuid.UUID, at: datetime, attribution: Any) -> None:
        self.touches[(lead_id, touch_id)] = {"lead_id": lead_id, "touch_id": touch_id, "at": at,
                                             **dimensions_of(attribution)}

    def lead(self, lead_id: uuid.UUID) -> LeadFacts:
        # Not setdefault: that builds a LeadFacts (dozens of fields) for every event of a lead already here.
        facts = self.leads.get(lead_id)
        if facts is None:
            facts = self.leads[lead_id] = LeadFacts(lead_id)
        return facts

    def handoff(self, h: HandoffFacts) -> None:
        """Keep the earliest start, breach and hand-over of a hand-off seen, and the first team by name, as the
        database does. Every event of a hand-off names its team alike, but for a v1 breach's guess at its next
        holder's (``_sla_breached``): one rule independent of order is what keeps a replay equal to the live
        tables, though it may keep the guess."""
        known = self.handoffs.get(h.key)
        if known is not None:
            h = replace(h, team=min(h.team, known.team), started_at=_earliest(h.started_at, known.started_at),
                        breached_at=_earliest(h.breached_at, known.breached_at),
                        handed_over_at=_earliest(h.handed_over_at, known.handed_over_at))
        self.handoffs[h.key] = h


def dimensions_of(attribution: Any) -> dict[str, Any]:
    """The attribution columns a lead or touch row keeps (``DIMENSIONS``), from an event's attribution."""
    return {c: getattr(attribution, c) for c in DIMENSIONS.values()}


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


def project(events: Iterable[tuple[uuid.UUID, datetime, Event]],
            unrecorded: Collection[uuid.UUID] = frozenset()) -> Projection:
    """Fold ``(event id, recorded at, event)`` into rows; events of other types are ignored.

    ``recorded at`` is the event's time on the stream: when its service recorded it. A sales tool may date its
    answer (``at``) earlier than that, so hand-offs and answers are matched on these times.

    ``unrecorded``: events applied before reporting kept recorded times (0005), whose steps the store holds
    with their own time alone. Each is applied again as it was then (no recorded time: among its lead's steps
    it is ordered by its own, as 0008 filled in the lead's latest step, and it starts no hand-off's clock), so
    that a redelivery, or a replay since a time before 0005, changes nothing it wrote."""
    out = Projection()
    for event_id, stamped, event in events:
        recorded = None if event_id in unrecorded else stamped
        if isinstance(event, LeadStageChanged):
            _stage_changed(out, event_id, recorded, event)
        elif isinstance(event, LeadSlaBreached):
            _sla_breached(out, event_id, recorded, event)
        elif isinstance(event, LeadQueued | LeadAssigned):
            _queue(out, event_id, recorded, event)
        elif isinstance(event, LeadHandedOver):
            _handed_over(out, event_id, recorded, event)
        elif isinstance(event, LeadTouchRecorded | LeadTouched | LeadReengaged):
            _touched(out, event_id, recorded, event)
        elif isinstance(event, LeadMerged):
            _merged(out, event_id, recorded, event)
        elif isinstance(event, LeadWonAmountCorrected):
            _won_corrected(out, event_id, recorded, event)
        elif isinstance(event, LeadQuarantined):
            out.spam[event.lead_id] = {"lead_id": event.lead_id, "received_at": event.received_at,
                                       "form_id": event.form_id, "utm_source": event.utm_source}
    return out


def _stage_changed(out: Projection, event_id: uuid.UUID, recorded: datetime | None,
                   e: LeadStageChanged) -> None:
    kept = e.to_stage in STAGE_COLUMNS
    facts = LeadFacts(e.lead_id, attribution=dimensions_of(e.attribution),
                      grade=e.grade, first_at={e.to_stage: e.at} if kept else {},
                      furthest=RANK.get(e.to_stage, -1),
                      latest=Step(e.at if recorded is None else recorded, e.at, LIFECYCLE.index(e.to_stage),
                                  e.from_stage or "", e.to_stage) if kept else None)
    if e.to_stage == "won":
        facts.won_amount, facts.won_currency, facts.won_correction = e.amount, e.currency, 0
    elif e.to_stage == "rejected":
        facts.rejected_reason = e.reason_code
    elif e.to_stage == "lost":
        facts.lost_reason = e.reason_code or e.reason
    out.lead(e.lead_id).merge(facts)
    if e.to_stage == "captured":
        out.touch(e.lead_id, e.lead_id, e.at, e.attribution)  # the first touch bears the lead's id
    if e.to_stage == "routed" and e.owner_id and e.team and e.due_at:
        out.handoff(HandoffFacts(e.lead_id, e.owner_id, e.team, e.due_at, started_at=recorded))
    out.steps.append({
        "event_id": event_id, "lead_id": e.lead_id, "type": e.type, "at": e.at, "recorded_at": recorded,
        "from_stage": e.from_stage,
        "to_stage": e.to_stage, "by": e.by, "reason": e.reason,
        "detail": {k: v for k, v in e.model_dump(mode="json", include={
            "owner_id", "team", "grade", "due_at", "reason_code", "amount", "currency"}).items() if v is not None},
    })


def _sla_breached(out: Projection, event_id: uuid.UUID, recorded: datetime | None,
                  e: LeadSlaBreached) -> None:
    out.lead(e.lead_id).merge(LeadFacts(e.lead_id, attribution=dimensions_of(e.attribution)))
    out.handoff(HandoffFacts(e.lead_id, e.owner_id, e.team, e.due_at, breached_at=e.breached_at))
    if e.action == "reassigned" and e.next_due_at is not None:
        # The next holder may be of another team (an overflow's): a v1 breach did not say, and its holder's is
        # the best guess (a later event of that hand-off may name its team: ``Projection.handoff``).
        out.handoff(HandoffFacts(e.lead_id, e.next_owner_id, e.next_team or e.team, e.next_due_at,
                                 started_at=recorded))
    out.steps.append({
        "event_id": event_id, "lead_id": e.lead_id, "type": e.type, "at": e.breached_at, "recorded_at": recorded,
        "from_stage": "routed",
        "to_stage": "sla_breached", "by": "routing",
        "reason": f"{e.owner_id} missed the acceptance deadline; {e.action} to {e.next_owner_name}",
        "detail": e.model_dump(mode="json", include={"owner_id", "team", "grade", "due_at", "breach", "action",
                                                      "next_owner_id", "next_team", "next_due_at"}),
    })


def _queue(out: Projection, event_id: uuid.UUID, recorded: datetime | None,
           e: LeadQueued | LeadAssigned) -> None:
    """A wait in a team's queue and its end: on the timeline; the rep it ends with holds the lead to the SLA."""
    out.lead(e.lead_id).merge(LeadFacts(e.lead_id, attribution=dimensions_of(e.attribution)))
    if isinstance(e, LeadQueued):
        step = {"to_stage": "queued", "reason": e.reason, "detail": {"team": e.team}}
    else:
        if e.due_at is not None:
            out.handoff(HandoffFacts(e.lead_id, e.owner_id, e.team, e.due_at, started_at=recorded))
        step = {"to_stage": "assigned", "reason": f"assigned to {e.owner_name} after the wait: {e.reason}",
                "detail": e.model_dump(mode="json", include={"owner_id", "team", "queued_at", "due_at"})}
    out.steps.append({"event_id": event_id, "lead_id": e.lead_id, "type": e.type, "at": e.at,
                      "recorded_at": recorded, "from_stage": None, "by": "routing", **step})


def _handed_over(out: Projection, event_id: uuid.UUID, recorded: datetime | None, e: LeadHandedOver) -> None:
    """A manager's hand-over, or routing's when a re-engaged lead's holder is no longer active: on the timeline; an
    unaccepted lead's holder's hand-off ends there, and its new holder holds it to a new deadline. The funnel does not
    move (the lead keeps its stage)."""
    out.lead(e.lead_id).merge(LeadFacts(e.lead_id, attribution=dimensions_of(e.attribution)))
    if e.from_due_at is not None:
        out.handoff(HandoffFacts(e.lead_id, e.from_owner_id, e.from_team, e.from_due_at,
                                 handed_over_at=e.at if recorded is None else recorded))
    if e.due_at is not None:
        out.handoff(HandoffFacts(e.lead_id, e.owner_id, e.team, e.due_at, started_at=recorded))
    out.steps.append({
        "event_id": event_id, "lead_id": e.lead_id, "type": e.type, "at": e.at, "recorded_at": recorded,
        "from_stage": None, "to_stage": "handed_over", "by": e.by,
        "reason": f"handed to {e.owner_name}: {e.reason}",  # routing's reason says from whom, by whom, why
        "detail": e.model_dump(mode="json", include={"from_owner_id", "owner_id", "team", "stage", "due_at"}),
    })


def _touched(out: Projection, event_id: uuid.UUID, recorded: datetime | None,
             e: LeadTouchRecorded | LeadTouched | LeadReengaged) -> None:
    """A later touch, and its holder being told of it: on the lead's timeline; the funnel does not move. A touch is
    read from what both its lifecycle events carry (``lead.touched`` is an earlier version's, with the contact)."""
    a = e.touch.attribution
    if isinstance(e, LeadTouchRecorded | LeadTouched):
        out.touch(e.lead_id, e.touch.touch_id, e.touch.at, a)
        what = f"asked for {a.offer}" if a.offer else f"submitted form {a.form_id}" if a.form_id else "came back"
        step = {"at": e.touch.at, "to_stage": "touched", "by": "capture",
                "reason": f"{what}{f' via {a.utm_source}' if a.utm_source else ''}"}
    else:
        step = {"at": e.at, "to_stage": "reengaged", "by": "routing", "reason": f"{e.owner_id} told: {e.reason}"}
    out.steps.append({"event_id": event_id, "lead_id": e.lead_id, "type": e.type, "recorded_at": recorded,
                      "from_stage": None, **step,
                      "detail": {"touch_id": str(e.touch.touch_id),
                                 **{k: v for k, v in a.model_dump(include={"form_id", "offer", "utm_source",
                                                                           "utm_medium", "utm_campaign"}).items()
                                    if v is not None}}})


def _merged(out: Projection, event_id: uuid.UUID, recorded: datetime | None, e: LeadMerged) -> None:
    out.merges.append({"lead_id": e.lead_id, "survivor_id": e.survivor_id, "at": e.at})
    for lead_id, reason in ((e.lead_id, f"merged into {e.survivor_id}: {e.reason}"),
                            (e.survivor_id, f"{e.lead_id} merged into this lead: {e.reason}")):
        out.steps.append({"event_id": uuid.uuid5(event_id, str(lead_id)), "lead_id": lead_id, "type": e.type,
                          "at": e.at, "recorded_at": recorded, "from_stage": None, "to_stage": "merged",
                          "by": e.by, "reason": reason,
                          "detail": {"merged": str(e.lead_id), "survivor": str(e.survivor_id)}})


def _won_corrected(out: Projection, event_id: uuid.UUID, recorded: datetime | None,
                   e: LeadWonAmountCorrected) -> None:
    """A won deal's amount corrected: the lead's revenue from now on (the latest correction's), on its timeline.
    The lead stays where it is: no stage is reached again."""
    out.lead(e.lead_id).merge(LeadFacts(e.lead_id, attribution=dimensions_of(e.attribution), won_amount=e.amount,
                                        won_currency=e.currency, won_correction=e.correction))
    out.steps.append({
        "event_id": event_id, "lead_id": e.lead_id, "type": e.type, "at": e.at, "recorded_at": recorded,
        "from_stage": None, "to_stage": "won_amount_corrected", "by": e.by, "reason": e.reason,
        "detail": e.model_dump(mode="json", include={"amount", "currency", "previous_amount", "previous_currency",
                                                     "correction", "owner_id", "team"}),
    })


# -- reports over aggregated counts ----------------------------------------------------


def rate(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def funnel_stages(reached: Mapping[str, int]) -> list[dict[str, Any]]:
    """Each funnel stage's count and its conversion from the stage before."""
    rows, previous = [], None
    for stage in FUNNEL:
        count = reached.get(stage, 0)
        rows.append({"stage": stage, "count": count,
                     "conversion": None if previous is None else rate(count, previous)})
        previous = count
    return rows


def breakdown_row(value: str, reached: Mapping[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {"value": value}
    row.update({stage: reached.get(stage, 0) for stage in FUNNEL})
    for a, b in zip(FUNNEL, FUNNEL[1:], strict=False):
        row[f"{a}_to_{b}"] = rate(reached.get(b, 0), reached.get(a, 0))
    row["close_rate"] = rate(reached.get("won", 0), reached.get("captured", 0))
    return row


def attribution_rows(counts: Sequence[Mapping[str, Any]], revenue: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per value of ``counts``: captured, won, close rate, and won revenue per currency (``{"EUR": "1200.00"}``);
    and the revenue won over every value of ``revenue``, those past the rows kept too."""
    rows: dict[str, dict[str, Any]] = {
        c["value"]: {"value": c["value"], "captured": c["captured"], "won": c["won"],
                     "close_rate": rate(c["won"], c["captured"]), "won_revenue": {}}
        for c in counts
    }
    total: dict[str, Decimal] = {}
    for r in sorted(revenue, key=lambda r: r["currency"] or ""):  # currencies in a stable order
        if r["currency"] is None:
            continue
        amount = Decimal(r["revenue"]).quantize(Decimal("0.01"))
        total[r["currency"]] = total.get(r["currency"], Decimal(0)) + amount
        if r["value"] in rows:
            rows[r["value"]]["won_revenue"][r["currency"]] = str(amount)
    return {"rows": sorted(rows.values(), key=lambda r: (-r["won"], -r["captured"], r["value"])),
            "won_revenue": {c: str(a) for c, a in total.items()}}


def won_revenue(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The revenue every row is credited with, per currency: what was won, however a model shared it."""
    total: dict[str, Decimal] = {}
    for row in rows:
        for currency, amount in row["won_revenue"].items():
            total[currency] = total.get(currency, Decimal(0)) + Decimal(amount)
    return {c: str(total[c]) for c in sorted(total)}


def spam_rows(counts: Sequence[Mapping[str, Any]], totals: tuple[int, int] | None = None) -> dict[str, Any]:
    """Per form and source: submissions quarantined, how many an admin released (false positives), and the
    spam kept out (the rest); largest first. The totals are ``totals`` (quarantined, released) when the rows are
    only the first of them, else the rows'."""
    rows = [{"form_id": c["form_id"], "source": c["utm_source"],
             "quarantined": c["quarantined"], "released": c["released"], "spam": c["quarantined"] - c["released"]}
            for c in counts]
    rows.sort(key=lambda r: (-r["spam"], r["form_id"], r["source"]))
    quarantined, released = totals if totals is not None else (sum(r["quarantined"] for r in rows),
                                                               sum(r["released"] for r in rows))
    return {"quarantined": quarantined, "released": released, "spam": quarantined - released,
            "false_positive_rate": rate(released, quarantined), "rows": rows}


MODELS = ("first", "last", "linear")


@dataclass(frozen=True)
class LeadCredit:
    """A lead as attribution sees it: its touches' (time, value) and whether, and for how much, it was won."""

    touches: Sequence[tuple[datetime | None, str]]
    won_at: datetime | None = None
    amount: Decimal | None = None
    currency: str | None = None


def _credited(lead: LeadCredit, model: str) -> list[str]:
    """The values of the touches that share the lead's credit, one entry per touch, in time order: the first
    or the last touch, or each. A won lead credits only the touches up to its win."""
    # A lead with no touch on record and no capture known (its capture dead-lettered, say) is its own touch,
    # at no known time: first, and before any win.
    touches = sorted(lead.touches, key=lambda t: (t[0] is not None, t[0] or datetime.min))
    before = [value for at, value in touches if lead.won_at is None or at is None or at <= lead.won_at] or [
        touches[0][1]]
    return before[:1] if model == "first" else before[-1:] if model == "last" else before


def credit(lead: LeadCredit, model: str) -> dict[str, float]:
    """How one lead's credit (1 in all) is shared among the values of its touches: all of it to the first or
    the last touch, or an equal part to each."""
    values = _credited(lead, model)
    shares: dict[str, float] = {}
    for value in values:
        shares[value] = shares.get(value, 0.0) + 1 / len(values)
    return shares


_CENT = Decimal("0.01")


def revenue_credit(lead: LeadCredit, model: str, amount: Decimal) -> dict[str, Decimal]:
    """``amount`` (the lead's won deal) shared as ``credit`` shares the lead, in whole cents that add up to it:
    each value its part rounded down to the cent, then a cent more to the largest remainders (on a tie, the
    value touched first), so that 100.00 over three touches is 33.34 + 33.33 + 33.33, not 99.99 in all."""
    values = _credited(lead, model)
    cents = int((amount / _CENT).to_integral_value())
    touches: dict[str, int] = {}
    for value in values:
        touches[value] = touches.get(value, 0) + 1
    parts = {value: divmod(cents * n, len(values)) for value, n in touches.items()}
    left = cents - sum(whole for whole, _ in parts.values())
    order = list(touches)  # first touched first
    extra = set(sorted(order, key=lambda v: (-parts[v][1], order.index(v)))[:left])
    return {value: (whole + (value in extra)) * _CENT for value, (whole, _) in parts.items()}


class AttributionTally:
    """Attribution under ``model``, folded one lead at a time: it keeps a row per value credited, never the
    leads, so a cohort of any size is tallied in the memory of its distinct values. Figures are the same
    whether leads come one by one or as a list, provided they come in the same order (floats are summed in
    that order)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._rows: dict[str, dict[str, Any]] = {}

    def add(self, lead: LeadCredit) -> None:
        for value, share in credit(lead, self.model).items():
            row = self._rows.setdefault(value, {"captured": 0.0, "won": 0.0, "revenue": {}})
            row["captured"] += share
            if lead.won_at is not None:
                row["won"] += share
        if lead.won_at is not None and lead.amount is not None and lead.currency:
            for value, part in revenue_credit(lead, self.model, lead.amount).items():
                revenue = self._rows[value]["revenue"]
                revenue[lead.currency] = revenue.get(lead.currency, Decimal(0)) + part

    def rows(self) -> list[dict[str, Any]]:
        """Per value: the leads it is credited with, the wins, the close rate and won revenue per currency.
        Fractions (linear) are kept to four decimals; revenue is shared in whole cents (``revenue_credit``), so
        the rows add up to the revenue won."""
        out = [{"value": value, "captured": _num(r["captured"]),
                "won": _num(r["won"]), "close_rate": rate(r["won"], r["captured"]),
                "won_revenue": {c: str(a.quantize(Decimal("0.01"))) for c, a in sorted(r["revenue"].items())}}
               for value, r in self._rows.items()]
        return sorted(out, key=lambda r: (-r["won"], -r["captured"], r["value"]))


def _num(x: float) -> float | int:
    rounded = round(x, 4)
    return int(rounded) if rounded == int(rounded) else rounded


def sla_row(key: Mapping[str, str], met: int, missed: int, open_: int, handed_over: int) -> dict[str, Any]:
    """A hand-off handed over before its deadline was not the holder's to meet any more: in no compliance."""
    return {**key, "handoffs": met + missed + open_ + handed_over, "met": met, "missed": missed, "open": open_,
            "handed_over": handed_over, "compliance": rate(met, met + missed)}


def timeline_answer(lead_id: uuid.UUID, attribution: Mapping[str, Any],
                    steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A lead's timeline: its first touch (``DIMENSIONS``' names; none when no row of the lead is kept) and its
    ``steps`` as given (``in_order_moved``), each with the detail of its event."""
    return {
        "lead_id": str(lead_id), "attribution": dict(attribution),
        "steps": [{"event_id": str(s["event_id"]), "type": s["type"], "at": written(s["at"]),
                   "from_stage": s["from_stage"], "to_stage": s["to_stage"], "by": s["by"], "reason": s["reason"],
                   **s["detail"]} for s in steps],
    }


def in_order_moved(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A lead's timeline steps (``at``, ``from_stage``, ``to_stage``), given oldest first and, within one moment, in
    ``LIFECYCLE``'s order, as the lead moved through them: each step of a moment (a stage records one batch's at
    one) after the step that brought the lead to the stage it leaves. ``LIFECYCLE`` alone lists a rejection's way
    back to nurture before the rejection, and a recycle's way back into the funnel before both."""
    out: list[Mapping[str, Any]] = []
    start = 0
    while start < len(steps):
        end = start
        while end < len(steps) and steps[end]["at"] == steps[start]["at"]:
            end += 1
        moment = list(steps[start:end])
        while moment:
            entered = {s["to_stage"] for s in moment}
            # The first step none of the others leads to (in the given order); in a cycle, the first.
            first = next((i for i, s in enumerate(moment) if s["from_stage"] is None
                          or s["from_stage"] not in entered or s["from_stage"] == s["to_stage"]), 0)
            out.append(moment.pop(first))
        start = end
    return out

