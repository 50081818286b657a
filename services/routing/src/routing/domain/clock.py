"""The working-time clock: hand-off deadlines counted only in the holder's working hours and time zone, and
not on their public holidays.

Pure: the start time is always an argument (the holiday calendars are reference data of the ``holidays``
package, read, never fetched).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from routing.domain.availability import public_holiday
from routing.domain.reference import _WEEKDAYS, RoutingData, WorkingHours


def add_working_time(start: datetime, work: timedelta, hours: WorkingHours, tz: ZoneInfo,
                     day_off: Callable[[date], bool] = lambda day: False) -> datetime:
    """The moment ``work`` of working time after ``start`` has passed, in UTC; ``day_off`` (a local date) is
    not worked, whatever the hours say.

    Working intervals are built in local wall time and compared in UTC, so a
    day that changes its clocks (DST) is exactly as long as it is.
    """
    if work <= timedelta(0):
        return start.astimezone(UTC)
    now = start.astimezone(UTC)
    remaining = work
    day: date = now.astimezone(tz).date()
    first, last = hours.minutes(hours.start), hours.minutes(hours.end)
    for _ in range(800 + 8 * (remaining.days + 1)):  # bounded: a working day a week, holidays aside
        if _WEEKDAYS[day.weekday()] in hours.days and not day_off(day):
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
    calendar = rep.holidays
    return add_working_time(start, allowed, hours, ZoneInfo(rep.timezone),
                            day_off=lambda day: calendar is not None and public_holiday(calendar, day) is not None)
