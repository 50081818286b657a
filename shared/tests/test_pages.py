"""Where a page of a long list ended, as the next request passes it back."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from leadpipe_common.pages import cursor, parse_cursor

KEY = uuid.UUID("00000000-0000-4000-8000-000000000001")


def test_a_cursor_names_exactly_where_its_page_ended():
    at = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
    assert parse_cursor(cursor(at, KEY), "before") == (at, KEY)


def test_a_cursor_written_in_another_time_zone_names_the_same_moment_in_utc():
    at = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
    moment, _ = parse_cursor(cursor(at.astimezone(timezone(timedelta(hours=14))), KEY), "before")
    assert moment == at and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("given", [
    "", "yesterday", "é", "a", "not base64!",
    "MjAyNi0xMS0yM1QwOTozMDoxNSAwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDE",  # a time with no time zone
    "MjAyNi0xMS0yM1QwOTozMDoxNSswMDowMA",  # a time and no id
    "eWVzdGVyZGF5IDAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMQ",  # an id and no time
    # Times whose UTC is outside the calendar: 0001-01-01T00:00:00+14:00 and 9999-12-31T23:59:59-14:00, with an id.
    "MDAwMS0wMS0wMVQwMDowMDowMCsxNDowMCAwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDE",
    "OTk5OS0xMi0zMVQyMzo1OTo1OS0xNDowMCAwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDE",
])
def test_a_cursor_the_list_did_not_give_is_refused_saying_what_to_pass_in_the_parameter_it_came_in(given):
    with pytest.raises(ValueError, match=r"pass the `after` of its Link header's rel=\"next\" as it is"):
        parse_cursor(given, "after")
