"""The working-time clock: hand-off deadlines counted only in the holder's working hours and time zone, and
not on their public holidays.

Pure: the start time is always an argument (the holiday calendars are reference data of the ``holidays``
package, read, never fetched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from routing.domain.availability import first_moment, public_holiday, shift_of
from routing.domain.reference import _WEEKDAYS, RoutingData, WorkingHours


def add_working_time(start: datetime, work: timedelta, hours: WorkingHours, tz: ZoneInfo,
                     day_off: Callable[[date], bool] = lambda day: False) -> datetime:
    """The moment ``work`` of working time after ``start`` has passed, in UTC; ``day_off`` (a local date) is
    not worked, whatever the hours say.

    Working intervals are built in local wall time and compared in UTC, so a
    day that changes its clocks (DST) is exactly as long as it is. A night
    shift is its start day's: ``day_off`` of that day takes all of it off.
    """
    if work <= timedelta(0):
        return start.astimezone(UTC)
    now = start.astimezone(UTC)
    remaining = work
    # How many working days the deadline may take (one more for a day a clock change shortens): in calendar
    # days, ``work.days`` assumed 24-hour working days, and a rep on two hours a day ran out of days to look at.
    needed = math.ceil(work / hours.length) + 1
    for day in _working_days(_first_shift_day(now, tz), hours, day_off, within=needed):
        opens, closes = shift_of(day, hours, tz)
        if now < closes:
            now = max(now, opens)
            if now + remaining <= closes:
                return now + remaining
            remaining -= closes - now
    raise AssertionError("unreachable: _working_days raises when it runs out")


def add_working_days(start: datetime, days: int, hours: WorkingHours, tz: ZoneInfo,
                     day_off: Callable[[date], bool] = lambda day: False) -> datetime:
    """The moment ``days`` working days after ``start``, in UTC: the same time of day on the ``days``-th
    working day on, each day as long as it really is (an around-the-clock day that changes its clocks has 23
    or 25 hours, not 24). A ``start`` outside working hours counts from the next opening, a whole day that is
    over at its close (as ``add_working_time`` counts a day's hours from there)."""
    now = start.astimezone(UTC)
    if days <= 0:
        return now
    ahead = _working_days(_first_shift_day(now, tz), hours, day_off, within=days)
    day = next(ahead)
    opens, closes = shift_of(day, hours, tz)
    while now >= closes:  # to the first working day still open at ``start``
        day = next(ahead)
        opens, closes = shift_of(day, hours, tz)
    if now <= opens:
        for _ in range(days - 1):
            day = next(ahead)
        return shift_of(day, hours, tz)[1]
    # From the shift's start day: 03:00 in Friday's night shift is 27 hours into Friday, and 03:00 in the next's.
    time_of_day = now.astimezone(tz).replace(tzinfo=None) - datetime(day.year, day.month, day.day)
    for _ in range(days):
        day = next(ahead)
    return first_moment(datetime(day.year, day.month, day.day) + time_of_day, tz)


def _first_shift_day(now: datetime, tz: ZoneInfo) -> date:
    """The first day whose shift may still be open at ``now``: yesterday's, as a night shift runs into today."""
    return now.astimezone(tz).date() - timedelta(days=1)


def _working_days(day: date, hours: WorkingHours, day_off: Callable[[date], bool], within: int) -> Iterator[date]:
    """``day`` and the days after it that are worked, as far as ``within`` days of deadline may reach."""
    for _ in range(800 + 8 * (within + 1)):  # bounded: a working day a week, holidays aside
        if _WEEKDAYS[day.weekday()] in hours.days and not day_off(day):
            yield day
        day += timedelta(days=1)
    raise ValueError("working hours never add up to the deadline")  # unreachable with days non-empty


def acceptance_due(grade: str | None, holder_id: str, data: RoutingData, start: datetime) -> datetime | None:
    """When ``holder_id`` must have accepted a lead of ``grade`` handed over at ``start`` (None: no SLA)."""
    rep = data.rep(holder_id)
    if rep is None:  # a queue: nobody to hold to a deadline
        return None
    allowed = data.sla.acceptance_time(grade)
    if allowed is None:
        return None
    calendar = rep.holidays
    hours, tz = data.hours_of(rep), ZoneInfo(rep.timezone)

    def day_off(day: date) -> bool:
        return calendar is not None and public_holiday(calendar, day) is not None

    if isinstance(allowed, int):
        return add_working_days(start, allowed, hours, tz, day_off)
    return add_working_time(start, allowed, hours, tz, day_off)
