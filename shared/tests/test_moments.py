"""Moments as the commands and the APIs take them, and the 1970 floor of the topics' timestamps."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from leadpipe_common.moments import EPOCH, parse_moment, parse_scan_moment, written


def test_a_time_without_a_zone_is_utc_for_the_api_and_the_commands_alike():
    assert parse_moment("2026-11-23T09:00") == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert parse_moment("2026-11-23T09:00+01:00") == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_a_bare_until_date_includes_the_whole_day():
    assert parse_moment("2026-11-23") == datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_moment("2026-11-23", end=True) == datetime(2026, 11, 24, tzinfo=UTC)


def test_a_compact_iso_until_date_includes_the_whole_day_too():
    assert parse_moment("20261123", end=True) == datetime(2026, 11, 24, tzinfo=UTC)


def test_a_moment_that_is_not_iso_is_refused_with_an_example():
    with pytest.raises(ValueError, match="2026-11-23T09:00Z"):
        parse_moment("yesterday")


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01T00:00+01:00", "9999-12-31T23:30-01:00"])
def test_a_moment_at_the_ends_of_the_calendar_is_refused_not_a_crash(value):
    with pytest.raises(ValueError, match="out of range: years 2 to 9998"):
        parse_moment(value, end=True)


@pytest.mark.parametrize("value", ["1969-06-01", "1969-12-31T23:59Z", "1970-01-01T00:30+01:00"])
def test_a_scan_moment_before_1970_is_refused_saying_where_the_topics_timestamps_begin(value):
    """The broker client refused it deep in a replay or an export with a bare ValueError: a traceback."""
    with pytest.raises(ValueError, match=r"is before 1970-01-01T00:00Z, where the topics' timestamps begin"):
        parse_scan_moment(value)


def test_a_scan_from_1970_reads_the_topics_from_their_start():
    assert parse_scan_moment("1970-01-01") == EPOCH
    assert parse_moment("1969-06-01") == datetime(1969, 6, 1, tzinfo=UTC)  # a report's range has no such floor


@pytest.mark.parametrize("moment", [datetime(2026, 11, 23, 9, 15, tzinfo=UTC),
                                    datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin"))])
def test_a_time_in_an_answer_is_written_in_utc_with_a_z_as_pydantic_writes_the_events(moment):
    """Some answers wrote isoformat's +00:00 beside others' (and the events') Z: one instant, two spellings."""
    from pydantic import AwareDatetime, TypeAdapter

    as_events_write_it = TypeAdapter(AwareDatetime).dump_json(moment.astimezone(UTC)).decode().strip('"')
    assert written(moment) == as_events_write_it and written(moment).endswith("Z")
    assert datetime.fromisoformat(written(moment)) == moment


def test_a_time_without_a_zone_is_not_written_as_this_hosts():
    with pytest.raises(ValueError, match="names no zone"):
        written(datetime(2026, 11, 23, 9, 15))
