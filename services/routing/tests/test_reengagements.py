"""Whether the holder of a re-engaged lead can act on it (``routing.domain.reengagements``)."""

import uuid
from datetime import UTC, datetime, timedelta

from leadpipe_common.events import Assignment
from routing.domain import (
    Away, Gone, Handoff, Kept, OutOfOffice, Presence, absence, away_until, parse_routing_data, told_why, unavailable,
)

OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
DATA = parse_routing_data({
    "reps": [{"id": "ana", "name": "Ana", "team": "emea", "holidays": "DE"},
             {"id": "old", "name": "Old", "team": "emea", "active": False}],
    "accounts": [], "working_hours": OFFICE,
    "territories": {"regions": {"emea": ["DE"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all", "teams": [{"team": "emea", "region": "emea"}],
                    "default_team": "emea"},
    "sla": {"acceptance": {"A": "15m"}},
})
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BACK = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
TOUCH = "asked for demo via ads; score now 80 (grade A)"


def away(starts_at, ends_at):
    return Presence(away={"ana": [Away(starts_at, ends_at, "holiday")]})


def test_a_rep_set_inactive_in_the_reps_file_can_no_longer_act_on_a_touch_and_is_named():
    gone = absence("old", DATA, Presence(), MONDAY)
    assert gone == Gone("Old") and gone.why == "Old is no longer active"


def test_a_rep_gone_from_the_reps_file_can_no_longer_act_on_a_touch_and_is_named_by_their_id():
    assert absence("lena.fischer", DATA, Presence(), MONDAY) == Gone("lena.fischer")


def test_a_teams_queue_holding_a_lead_is_no_absent_rep():
    """Any rep of the team takes a lead from its queue: the queue watch hands it out, nobody hands it on."""
    assert absence("queue:emea", DATA, Presence(), MONDAY) is None


def test_an_active_rep_out_of_office_now_is_away_until_the_period_ends():
    absent = absence("ana", DATA, away(MONDAY - timedelta(days=1), BACK), MONDAY)
    assert absent == OutOfOffice("Ana", BACK)
    assert absent.why == "Ana is out of office until 2026-12-07T00:00:00+00:00"  # not why: "holiday" stays private


def test_an_active_rep_off_shift_on_a_public_holiday_or_away_later_is_not_absent():
    """Each ends within a day, or has not begun: the rep acts on the touch soon enough."""
    rep = DATA.rep("ana")
    assert rep is not None
    christmas, night = datetime(2026, 12, 25, 10, 0, tzinfo=UTC), MONDAY.replace(hour=22)
    assert [unavailable(rep, DATA, t, Presence()) for t in (christmas, night)] == [
        "public holiday (Christmas Day)", "off shift"]
    assert absence("ana", DATA, Presence(), christmas) is None and absence("ana", DATA, Presence(), night) is None
    assert absence("ana", DATA, away(MONDAY + timedelta(hours=1), BACK), MONDAY) is None


def test_an_inactive_rep_out_of_office_too_is_gone():
    assert absence("old", DATA, Presence(away={"old": [Away(MONDAY, BACK)]}), MONDAY) == Gone("Old")


def test_periods_meeting_or_overlapping_the_one_now_carry_the_return_on_but_not_one_after_a_gap():
    course = Away(BACK, BACK + timedelta(days=3))  # booked right after the holiday
    overlapping = Away(BACK + timedelta(days=1), BACK + timedelta(days=5))
    later = Away(BACK + timedelta(days=6), BACK + timedelta(days=9))
    holiday = Away(MONDAY - timedelta(days=1), BACK)
    assert away_until([later, overlapping, course, holiday], MONDAY) == BACK + timedelta(days=5)
    assert away_until([holiday, later], MONDAY) == BACK


def test_no_period_covering_the_moment_says_no_return():
    assert away_until([Away(MONDAY - timedelta(days=2), MONDAY)], MONDAY) is None  # its end is excluded
    assert away_until([], MONDAY) is None


def test_a_re_engagement_says_why_its_lead_went_to_another_holder_or_stayed():
    gone = Gone("Ana")
    ben = Assignment(owner_id="ben", owner_name="Ben", team="emea", method="territory", reason="territory emea")
    kept = Kept(Handoff(lead_id=uuid.UUID(int=7), status="accepted", owner_id="ana", team="emea", grade="A",
                        due_at=None), "nobody in emea can take it now (ben off shift); ... it stays with ana")
    assert told_why(TOUCH, None) == TOUCH
    assert told_why(TOUCH, gone, ben) == f"{TOUCH}; Ana is no longer active: handed on to Ben"
    assert told_why(TOUCH, gone, kept) == f"{TOUCH}; Ana is no longer active; {kept.reason}"
    assert told_why(TOUCH, OutOfOffice("Ana", BACK)) == f"{TOUCH}; Ana is out of office until {BACK.isoformat()}"
