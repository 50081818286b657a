"""Who can take a new lead now: working hours, public holidays, out-of-office periods and a cap on held leads.

A rep takes new leads only while all of these hold: active in reps.yaml; on
shift (their working hours, in their time zone); not on a public holiday of
their ``holidays`` country (the ``holidays`` package's calendars); not inside
an out-of-office period; holding fewer unaccepted leads than their
``capacity``. Account owners too: an owner who cannot take a lead now passes
it to their team's rotation.

A shift belongs to the day it starts, as workforce tools have it: a night
shift (22:00-06:00) on ``fri`` covers Saturday until 06:00, and is off whole
when Friday is a public holiday (never cut in two at midnight). A shift
starts and ends the first moment the rep's clock shows its time: the first
of the two when clocks go back, and when clocks go forward past it, the
moment they jump.

When nobody in a team can, the team's policy decides: ``wait`` in the team's
queue (the lead is handed out when the first rep can take it, and its SLA
clock starts then) or ``overflow`` to a named team, whose own policy applies
in turn (a cycle ends in the first team's queue).

Pure: out-of-office periods and held counts come in as ``Presence``, the
time as an argument; the holiday calendars are computed, not fetched.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


from leadpipe_common.events import Assignment

from routing.domain.holiday_calendars import holidays_of
from routing.domain.reference import _WEEKDAYS, Rep, RoutingData, WorkingHours, overflow_chain
from routing.domain.routes import Route, next_turn, queue_of


@dataclass(frozen=True)
class Away:
    """An out-of-office period of a rep, ``starts_at`` inclusive, ``ends_at`` exclusive."""

    starts_at: datetime
    ends_at: datetime
    reason: str | None = None

    def covers(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


def away_until(periods: Iterable[Away], now: datetime) -> datetime | None:
    """When the rep whose out-of-office ``periods`` these are is back, if one covers ``now``: its end, or the end of
    the periods that meet or overlap it after it (a holiday and the training course booked right after it)."""
    until = None
    for period in sorted(periods, key=lambda a: a.starts_at):
        if period.covers(now) or (until is not None and period.starts_at <= until):
            until = period.ends_at if until is None else max(until, period.ends_at)
    return until


@dataclass(frozen=True)
class Presence:
    """What routing knows of its reps beyond the files: out-of-office periods and unaccepted leads held."""

    away: Mapping[str, Sequence[Away]] = field(default_factory=dict)
    held: Mapping[str, int] = field(default_factory=dict)

    def holding_one_more(self, rep_id: str) -> Presence:
        return Presence(self.away, {**self.held, rep_id: self.held.get(rep_id, 0) + 1})


@lru_cache(maxsize=256)
def _calendar(code: str, year: int) -> Mapping[date, str]:
    country, _, subdivision = code.partition("-")
    return holidays_of(country, subdivision or None, year)


def public_holiday(code: str, day: date) -> str | None:
    """The name of the public holiday ``day`` is in ``code`` (``DE``, ``US-CA``), or None."""
    return _calendar(code, day.year).get(day)


def shift_of(day: date, hours: WorkingHours, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """When the shift that starts on ``day`` (a local date, worked or not) opens and closes, in UTC; a night
    shift closes on the day after. Built in local wall time, so a day that changes its clocks is as long as it
    is."""
    midnight = datetime(day.year, day.month, day.day)
    opens = midnight + timedelta(minutes=hours.minutes(hours.start))
    closes = midnight + timedelta(minutes=hours.minutes(hours.end) + (24 * 60 if hours.overnight else 0))
    return first_moment(opens, tz), first_moment(closes, tz)


def first_moment(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first moment, in UTC, that a clock in ``tz`` shows the naive ``wall`` time: the first of the two a
    clock going back shows twice, and the moment a clock going forward skips past it when it never shows it.
    (Python's own reading of a skipped time, ``fold=0``, is as far after the jump as the time is into the gap:
    a night shift ending at a skipped 02:30 would run until 03:30.)"""
    moment = wall.replace(tzinfo=tz).astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) == wall:
        return moment
    # Skipped: the jump lies between the time read at the offset after it (fold=1) and at the one before it.
    # Clocks change on a whole second, so halving the seconds between finds the second it happens.
    before, after = math.floor(wall.replace(tzinfo=tz, fold=1).timestamp()), math.ceil(moment.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) < wall:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)


def shift_day(hours: WorkingHours, tz: ZoneInfo, now: datetime) -> date | None:
    """The local date the shift ``now`` falls in started on (whose weekday and holidays apply to it), or None
    when ``now`` is off shift."""
    local = now.astimezone(tz)
    if local.fold:  # the second showing of an hour clocks go back over: a shift may have ended at the first
        return _shift_day_exactly(hours, tz, now, local.date())
    # The rep's wall clock decides everywhere else (the exact path is ~6x dearer, and routing asks it of every
    # rep of a team for every lead): a clock going forward past a shift's start or end jumps past it too.
    minute, today = local.hour * 60 + local.minute, local.date()
    start, end = hours.minutes(hours.start), hours.minutes(hours.end)
    if start <= minute < end or (hours.overnight and minute >= start):
        return today if _WEEKDAYS[today.weekday()] in hours.days else None
    if hours.overnight and minute < end:  # yesterday's night shift runs into today; no other shift does
        yesterday = today - timedelta(days=1)
        return yesterday if _WEEKDAYS[yesterday.weekday()] in hours.days else None
    return None


def _shift_day_exactly(hours: WorkingHours, tz: ZoneInfo, now: datetime, today: date) -> date | None:
    for day in ((today - timedelta(days=1), today) if hours.overnight else (today,)):
        if _WEEKDAYS[day.weekday()] in hours.days:
            opens, closes = shift_of(day, hours, tz)
            if opens <= now < closes:
                return day
    return None


def on_shift(hours: WorkingHours, tz: ZoneInfo, now: datetime) -> bool:
    return shift_day(hours, tz, now) is not None


def unavailable(rep: Rep, data: RoutingData, now: datetime, presence: Presence) -> str | None:
    """Why ``rep`` cannot take a new lead at ``now``, or None when they can."""
    if not rep.active:
        return "inactive"
    day = shift_day(data.hours_of(rep), ZoneInfo(rep.timezone), now)
    if day is None:
        return "off shift"
    if rep.holidays:
        holiday = public_holiday(rep.holidays, day)
        if holiday:
            return f"public holiday ({holiday})"
    periods = presence.away.get(rep.id, ())
    until = away_until(periods, now)
    if until is not None:
        # Named by the covering period that lasts longest (the holiday, not the dentist's hour inside it), back
        # when every period met or overlapped after it ends, as a re-engagement tells the same absence.
        reason = max((a for a in periods if a.covers(now)), key=lambda a: a.ends_at).reason
        return f"out of office{f' ({reason})' if reason else ''} until {until.isoformat()}"
    if rep.capacity is not None and presence.held.get(rep.id, 0) >= rep.capacity:
        return f"at capacity ({rep.capacity} unaccepted)"
    return None


def capacity_bound(reps: Iterable[Rep]) -> int:
    """How far a capacity check of ``reps`` needs their held leads counted: their largest capacity (0 when none
    has one). A count that stops there tells every one of them whether they are at their cap."""
    return max((rep.capacity for rep in reps if rep.capacity is not None), default=0)


@dataclass(frozen=True)
class Placed:
    """A rep can take the lead now: their assignment, and the team whose rotation turned (if one did)."""

    assignment: Assignment
    rep: Rep
    team: str
    rotation: dict[str, int] | None


@dataclass(frozen=True)
class Waiting:
    """Nobody who may take the lead can now: it waits in ``team``'s queue. ``nobody`` says why (its route, and why
    each team along its overflow has nobody); ``reason`` says where it waits too."""

    team: str
    nobody: str

    @property
    def reason(self) -> str:
        return f"{self.nobody}; waits in the {self.team} queue"

    @property
    def assignment(self) -> Assignment:
        return Assignment(owner_id=queue_of(self.team), owner_name=f"{self.team} queue", team=self.team,
                          method="queue", reason=self.reason)


def place(route: Route, data: RoutingData, states: Mapping[str, Mapping[str, int]], now: datetime,
          presence: Presence, passed_over: Collection[str] = ()) -> Placed | Waiting:
    """Who takes a lead on ``route`` at ``now``: its account owner, a rep of its team's rotation, or by overflow
    a rep of another team; or nobody yet. ``states`` is each team's rotation state; reps ``passed_over`` (who
    held the lead before: missed its deadline, or rejected it) are not asked again."""
    if route.kind == "account" and route.owner is not None:
        o = route.owner
        why = "the lead's holder before" if o.id in passed_over else unavailable(o, data, now, presence)
        if why is None:
            return Placed(Assignment(owner_id=o.id, owner_name=o.name, owner_email=o.email, team=o.team,
                                     method="account", reason=route.reason), o, o.team, None)
        route = Route("team", o.team, f"{route.reason}, who is {why}")
    skipped: list[str] = []
    for i, team in enumerate(overflow_chain(route.team, data)):
        members = [r for r in data.reps if r.team == team]
        # A team whose reps were all passed over has reps: the reason says they have held the lead, not "no reps".
        reasons = {r.id: "has held it" if r.id in passed_over else unavailable(r, data, now, presence)
                   for r in members}
        free = [r for r in members if reasons[r.id] is None]
        if free:
            state = states.get(team, {})
            rep, turned = next_turn(free, state)
            how = f"weighted rotation in {team}"
            if i:
                how = f"{'; '.join(skipped)}; overflowed to {team}, {how}"
            return Placed(Assignment(owner_id=rep.id, owner_name=rep.name, owner_email=rep.email, team=team,
                                     method="overflow" if i else "territory", reason=f"{route.reason}; {how}"),
                          rep, team, {**state, **turned})
        skipped.append(f"nobody in {team} can take it now ({_summary(reasons) or 'no reps'})")
    return Waiting(route.team, f"{route.reason}; {'; '.join(skipped)}")


def _summary(reasons: Mapping[str, str | None]) -> str:
    return ", ".join(f"{rep} {why}" for rep, why in reasons.items() if why)
