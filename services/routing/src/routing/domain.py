"""Routing rules: who gets an MQL, by when they must accept it, and what sales may say back.

Order: the owner of an existing account with the lead's company domain
(account-based routing); otherwise territory (country -> region) and segment
(employee band) pick a team, and a smooth weighted round-robin picks one of
the team's active reps; a team with nobody active holds the lead in its queue.

The hand-off SLA gives the holder a deadline per grade, counted in their own
working hours and time zone. A missed deadline passes the lead to the team's
next rep in the rotation (a normal turn: the breaching rep's turn is spent and
never given back), and after ``max_reassignments`` to the team's queue.

Dispositions move a routed lead through accepted -> contacted -> qualified ->
won | lost, or rejected (back to nurture). A closed lead stays closed; the
same report twice is a harmless repeat.

Pure: reps, accounts, territories, the SLA policy and the reason codes come
in as ``RoutingData``; rotation state and a lead's hand-off come in and their
next versions go out, so the caller persists them in one transaction; the
time is always an argument.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadpipe_common.events import Assignment, DispositionReport, Grade, LeadDispositioned, LeadScored


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class WorkingHours(_Strict):
    """The hours an SLA clock runs: ``start``-``end`` (``24:00`` allowed) on ``days``, in the rep's zone."""

    days: list[Weekday] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1)
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, v: str) -> str:
        if not _CLOCK.match(v):
            raise ValueError(f"{v!r} is not a time of day like 09:00")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.minutes(self.start) >= self.minutes(self.end):
            raise ValueError(f"working hours end ({self.end}) must come after their start ({self.start})")
        return self

    @staticmethod
    def minutes(clock: str) -> int:
        hours, mins = clock.split(":")
        return int(hours) * 60 + int(mins)

    @property
    def day_length(self) -> timedelta:
        return timedelta(minutes=self.minutes(self.end) - self.minutes(self.start))


class Rep(_Strict):
    id: str
    name: str
    email: str | None = None
    team: str
    weight: int = Field(1, ge=1, le=100)
    active: bool = True
    timezone: str = "UTC"
    working_hours: WorkingHours | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)") from None
        return v


class Account(_Strict):
    domain: str
    name: str
    owner: str


class Segment(_Strict):
    name: str
    min_employees: int = Field(ge=0)


class TeamRule(_Strict):
    team: str
    region: str | None = None
    segment: str | None = None


class Territories(_Strict):
    regions: dict[str, list[str]]
    segments: list[Segment]
    unknown_size_segment: str
    teams: list[TeamRule]
    default_team: str


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}


class SlaPolicy(_Strict):
    """Acceptance deadlines per grade, like ``15m``, ``1h`` or ``1d`` (one working day); a grade left out has none."""

    acceptance: dict[Grade, str] = Field(default_factory=dict)
    max_reassignments: int = Field(2, ge=0)

    @field_validator("acceptance")
    @classmethod
    def _durations(cls, v: dict[str, str]) -> dict[str, str]:
        for grade, text in v.items():
            if not _DURATION.match(text) or int(_DURATION.match(text).group(1)) == 0:  # type: ignore[union-attr]
                raise ValueError(f"grade {grade}: {text!r} is not a duration like 30s, 15m, 1h or 1d")
        return v

    def acceptance_time(self, grade: str | None, hours: WorkingHours) -> timedelta | None:
        """Working time allowed to accept a lead of ``grade`` (``d`` = the rep's working day)."""
        text = self.acceptance.get(grade) if grade else None  # type: ignore[call-overload]
        if text is None:
            return None
        match = _DURATION.match(text)
        assert match is not None
        n, unit = int(match.group(1)), match.group(2)
        if unit == "d":
            return hours.day_length * n
        return timedelta(**{_UNITS[unit]: n})


class Reasons(_Strict):
    """The codes sales may give for a rejection or a loss: marketing reads these by source."""

    rejected: dict[str, str] = Field(default_factory=dict)
    lost: dict[str, str] = Field(default_factory=dict)


class RoutingData(_Strict):
    reps: list[Rep]
    accounts: list[Account]
    territories: Territories
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    reasons: Reasons = Field(default_factory=Reasons)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingData:
        ids = [r.id for r in self.reps]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"rep ids used twice: {sorted(dupes)}")
        unknown_owners = sorted({a.owner for a in self.accounts} - set(ids))
        if unknown_owners:
            raise ValueError(f"accounts name owners who are not reps: {unknown_owners}")
        t = self.territories
        segments = {s.name for s in t.segments} | {t.unknown_size_segment}
        for rule in t.teams:
            if rule.region is not None and rule.region not in t.regions:
                raise ValueError(f"team {rule.team}: unknown region {rule.region!r}")
            if rule.segment is not None and rule.segment not in segments:
                raise ValueError(f"team {rule.team}: unknown segment {rule.segment!r}")
        return self

    def rep(self, rep_id: str) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def hours_of(self, rep: Rep) -> WorkingHours:
        return rep.working_hours or self.working_hours

    def account(self, domain: str | None) -> Account | None:
        return next((a for a in self.accounts if a.domain == domain), None) if domain else None

    def region_of(self, country: str | None) -> str | None:
        return next((region for region, cs in self.territories.regions.items() if country in cs), None)


class InvalidRoutingData(ValueError):
    pass


def parse_routing_data(raw: Mapping[str, Any]) -> RoutingData:
    try:
        return RoutingData.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRoutingData(f"routing reference data is invalid: {problems}") from None


@dataclass(frozen=True)
class Route:
    """Where a lead goes before the rotation: straight to an owner, or to a team."""

    kind: Literal["account", "team"]
    team: str
    reason: str
    owner: Rep | None = None


def segment_of(employees: int | None, territories: Territories) -> str:
    if employees is None:
        return territories.unknown_size_segment
    for seg in sorted(territories.segments, key=lambda s: -s.min_employees):
        if employees >= seg.min_employees:
            return seg.name
    return territories.unknown_size_segment


def choose_route(lead: LeadScored, data: RoutingData) -> Route:
    e = lead.enrichment
    domain = e.company_domain.value if e.company_domain else None
    account = data.account(domain)
    if account:
        owner = data.rep(account.owner)
        if owner and owner.active:
            return Route("account", owner.team, f"owner of account {account.name} ({account.domain})", owner)
    country = (e.country or e.company_country).value if (e.country or e.company_country) else None
    region = data.region_of(country)
    segment = segment_of(e.employee_count.value if e.employee_count else None, data.territories)
    for rule in data.territories.teams:
        if (rule.region is None or rule.region == region) and (rule.segment is None or rule.segment == segment):
            return Route("team", rule.team, f"territory {region or 'unknown'} / {segment}")
    return Route("team", data.territories.default_team, f"no territory for {country or 'unknown country'}; default team")


def next_turn(reps: Sequence[Rep], state: Mapping[str, int]) -> tuple[Rep, dict[str, int]]:
    """Smooth weighted round-robin (as nginx does it).

    Every turn each rep gains its weight; the one with the most is chosen and
    pays back the total. Over any window a rep's share equals its weight's
    share and turns are spread out rather than bunched. Ties go to the earlier
    rep in the file.
    """
    if not reps:
        raise ValueError("no reps to rotate among")
    current = {r.id: state.get(r.id, 0) + r.weight for r in reps}
    chosen = max(reps, key=lambda r: current[r.id])  # max keeps the first of equals
    current[chosen.id] -= sum(r.weight for r in reps)
    return chosen, current


def assign(route: Route, data: RoutingData, state: Mapping[str, int]) -> tuple[Assignment, dict[str, int] | None]:
    """The assignment for ``route``, and the team's next rotation state (None if the rotation did not turn)."""
    if route.kind == "account" and route.owner is not None:
        o = route.owner
        return Assignment(owner_id=o.id, owner_name=o.name, owner_email=o.email, team=o.team,
                          method="account", reason=route.reason), None
    active = [r for r in data.reps if r.team == route.team and r.active]
    if not active:
        return Assignment(owner_id=queue_of(route.team), owner_name=f"{route.team} queue", team=route.team,
                          method="queue", reason=f"{route.reason}; nobody active in {route.team}"), None
    rep, new_state = next_turn(active, state)
    return Assignment(owner_id=rep.id, owner_name=rep.name, owner_email=rep.email, team=route.team,
                      method="territory", reason=f"{route.reason}; weighted rotation in {route.team}"), new_state


# -- the hand-off SLA -------------------------------------------------------------


def add_working_time(start: datetime, work: timedelta, hours: WorkingHours, tz: ZoneInfo) -> datetime:
    """The moment ``work`` of working time after ``start`` has passed, in UTC.

    Working intervals are built in local wall time and compared in UTC, so a
    day that changes its clocks (DST) is exactly as long as it is.
    """
    if work <= timedelta(0):
        return start.astimezone(UTC)
    now = start.astimezone(UTC)
    remaining = work
    day: date = now.astimezone(tz).date()
    first, last = hours.minutes(hours.start), hours.minutes(hours.end)
    for _ in range(400 + 8 * (remaining.days + 1)):  # bounded: at least one working day a week
        if _WEEKDAYS[day.weekday()] in hours.days:
            midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
            opens = (midnight + timedelta(minutes=first)).astimezone(UTC)
            closes = (midnight + timedelta(minutes=last)).astimezone(UTC)
            if now < closes:
                now = max(now, opens)
                if now + remaining <= closes:
                    return now + remaining
                remaining -= closes - now
        day += timedelta(days=1)
    raise ValueError("working hours never add up to the deadline")  # unreachable with days non-empty


def acceptance_due(grade: str | None, holder_id: str, data: RoutingData, start: datetime) -> datetime | None:
    """When ``holder_id`` must have accepted a lead of ``grade`` handed over at ``start`` (None: no SLA)."""
    rep = data.rep(holder_id)
    if rep is None:  # a queue: nobody to hold to a deadline
        return None
    hours = data.hours_of(rep)
    allowed = data.sla.acceptance_time(grade, hours)
    if allowed is None:
        return None
    return add_working_time(start, allowed, hours, ZoneInfo(rep.timezone))


def remembered(d: LeadDispositioned) -> DispositionReport:
    """A report as kept in a lead's history: without its time, so a resend of it is recognised."""
    return DispositionReport.model_validate(d.model_dump(exclude={"lead_id", "at"}))


HandoffStatus = Literal["routed", "accepted", "contacted", "qualified", "won", "lost", "rejected"]


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

    @property
    def closed(self) -> bool:
        return self.status in CLOSED


CLOSED: frozenset[str] = frozenset({"won", "lost", "rejected"})
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
class Applied:
    handoff: Handoff
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Repeated:
    """The same disposition again: nothing changes, nothing is emitted."""

    handoff: Handoff


@dataclass(frozen=True)
class Refused:
    """``invalid``: the report names something that does not exist; ``conflict``: the move is illegal now."""

    kind: Literal["invalid", "conflict"]
    field: str | None
    reason: str


def apply_disposition(handoff: Handoff, d: LeadDispositioned, data: RoutingData) -> Applied | Repeated | Refused:
    rep = data.rep(d.rep_id)
    if rep is None:
        return Refused("invalid", "rep_id", f"no rep {d.rep_id!r} in the reps file")
    codes = {"rejected": data.reasons.rejected, "lost": data.reasons.lost}.get(d.outcome)
    if codes is not None and d.reason_code is not None and d.reason_code not in codes:
        return Refused("invalid", "reason_code",
                       f"{d.reason_code!r} is not a {d.outcome} reason code; use one of {sorted(codes)}")
    said = remembered(d)
    earlier = next((h for h in handoff.history if h.outcome == d.outcome), None)
    if earlier == said:
        return Repeated(handoff)
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
        why = f"{label}: {d.reason_code} ({data.reasons.rejected[d.reason_code]})" + (f": {d.reason}" if d.reason else "")
        steps = (Step(handoff.status, "rejected", why, reason_code=d.reason_code),
                 Step("rejected", "nurture", f"returned to marketing: {d.reason_code}", reason_code=d.reason_code))
    elif d.outcome == "won":
        steps = (Step(handoff.status, "won", f"{label}: {d.amount} {d.currency}", amount=d.amount, currency=d.currency),)
    elif d.outcome == "lost":
        text = data.reasons.lost.get(d.reason_code or "", "") or (d.reason or "")
        steps = (Step(handoff.status, "lost", f"{label}: {d.reason_code or ''} {text}".rstrip(),
                      reason_code=d.reason_code),)
    else:
        steps = (Step(handoff.status, d.outcome, label + (f": {d.reason}" if d.reason else "")),)
    owner = rep.id if d.outcome == "accepted" else handoff.owner_id
    after = replace(handoff, status=d.outcome, owner_id=owner, history=(*handoff.history, said),
                    due_at=None if d.outcome in ("accepted", "rejected") else handoff.due_at)
    return Applied(after, steps)


def queue_of(team: str) -> str:
    """The owner id of a team's queue: a lead nobody holds yet, waiting for a rep of ``team``."""
    return f"queue:{team}"


def _not_the_holder(handoff: Handoff, rep: Rep) -> str | None:
    """Why ``rep`` may not report on the lead, or None. Only its holder speaks for a lead; a lead in a
    team's queue has no holder yet, and any rep of that team may take it."""
    if handoff.owner_id == rep.id:
        return None
    if handoff.owner_id == queue_of(handoff.team):
        if rep.team == handoff.team:
            return None
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
class Breach:
    """What a missed deadline does: the hand-off after it, and the new owner's assignment."""

    handoff: Handoff
    action: Literal["reassigned", "escalated"]
    assignment: Assignment
    rotation: dict[str, int] | None


def breach(handoff: Handoff, data: RoutingData, state: Mapping[str, int], now: datetime) -> Breach:
    """Pass a lead whose holder missed the deadline to the team's next rep, or escalate it to the queue.

    Reps who already held the lead are passed over; with nobody left, or
    after ``max_reassignments``, the lead goes to the team's queue.
    """
    held = (*handoff.holders, handoff.owner_id) if handoff.owner_id not in handoff.holders else handoff.holders
    candidates = [r for r in data.reps if r.team == handoff.team and r.active and r.id not in held]
    if handoff.reassignments >= data.sla.max_reassignments or not candidates:
        why = ("missed the acceptance deadline " + (f"{handoff.reassignments + 1} times"
               if handoff.reassignments else "once") + f"; escalated to the {handoff.team} queue")
        assignment = Assignment(owner_id=queue_of(handoff.team), owner_name=f"{handoff.team} queue",
                                team=handoff.team, method="queue", reason=why)
        after = replace(handoff, owner_id=assignment.owner_id, due_at=None, holders=held,
                        reassignments=handoff.reassignments + 1)
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
