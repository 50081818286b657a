"""Moments as the commands and the APIs take them: an ISO date or date-time, UTC unless it names a zone; and as
every answer writes one (``written``).

Pure: no clock, no IO. A bare date is that day's midnight, or as the end of a
range (``end``) the next midnight, so that ``until=2026-11-23`` includes the
whole day. The topics' record timestamps count from ``EPOCH``: a moment that
selects records from them (a scan's start) cannot be earlier.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from pydantic import Field

#: Where Kafka's record timestamps begin; the broker client refuses an earlier one with a bare ValueError.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: A time an answer writes with ``written``, kept as the text written and described as a date-time: an answer
#: model's field of it checks nothing the route did not write.
Written = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def written(moment: datetime) -> str:
    """``moment`` as the API answers' time fields and the events write a time: RFC 3339 in UTC with a ``Z``, as
    pydantic writes an aware datetime (``2026-11-23T09:15:00Z``; ``envelope`` stamps a record's time the same way).
    ``isoformat`` writes ``+00:00``: one answer spelt a time both ways, which a strict client parses apart. Texts for
    people (a reason's "out of office until ...") and ``leadpipe-reporting export``'s ``time`` keep isoformat's, as
    docs/upgrading.md says. A time without a zone is refused: ``astimezone`` would read it as this host's."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} names no zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_moment(value: str | None, *, end: bool = False) -> datetime | None:
    """``value`` as a UTC-aware moment; None or "" is None. Raises ValueError saying what is wrong."""
    if value is None or value == "":
        return None
    try:
        day: date | None = date.fromisoformat(value)  # any ISO date (20261123 too), not only ten characters
    except ValueError:
        day = None
    try:
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
        else:
            moment = datetime.fromisoformat(value)
    except OverflowError:  # the day after 9999-12-31
        raise ValueError(f"{value!r} is out of range: years 2 to 9998") from None
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date (2026-11-23) or date-time (2026-11-23T09:00Z)") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not 1 < moment.year < 9999:  # its UTC time must exist too (0001-01-01T00:00+01:00 has none)
        raise ValueError(f"{value!r} is out of range: years 2 to 9998")
    return moment


def parse_scan_moment(value: str | None, *, end: bool = False) -> datetime | None:
    """A moment that selects records of the topics by their timestamps (``--since``, ``--until``): as
    ``parse_moment``, and 1970 or later."""
    moment = parse_moment(value, end=end)
    if moment is not None and moment < EPOCH:
        raise ValueError(f"{value!r} is before 1970-01-01T00:00Z, where the topics' timestamps begin"
                         + ("" if end else " (1970-01-01 reads them all)"))
    return moment
