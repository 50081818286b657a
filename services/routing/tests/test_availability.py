"""Who can take a lead now: working hours across time zones, holidays, out of office, capacity, overflow."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from leadpipe_common.events import (
    Assignment, Attribution, Contact, Enrichment, LeadDispositioned, LeadScored, Score, Sourced,
)
from routing.domain import (
    Applied, Away, Handoff, InvalidRoutingData, Placed, Presence, Route, Waiting, breach, capacity_bound, choose_route,
    apply_disposition, orphaned, overflow_chain, parse_routing_data, place, requeue, staffed_teams, unavailable,
)
from routing.domain import PastLead, what_if

OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
ALWAYS = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}


def data(reps, teams=None, accounts=()):
    # Every team leads may go to must reach an active rep: one given none here overflows to the first team given.
    given = [r["team"] for r in reps]
    unstaffed = {team: {"when_nobody_available": "overflow", "overflow_to": given[0]}
                 for team in ("emea", "apac", "desk") if team not in given}
    return parse_routing_data({
        "reps": list(reps), "accounts": list(accounts), "working_hours": OFFICE,
        "teams": {**unstaffed, **(teams or {})},
        "territories": {"regions": {"emea": ["DE"], "apac": ["JP"]}, "segments": [{"name": "all", "min_employees": 0}],
                        "unknown_size_segment": "all",
                        "teams": [{"team": "emea", "region": "emea"}, {"team": "apac", "region": "apac"}],
                        "default_team": "desk"},
        "sla": {"acceptance": {"A": "15m"}},
    })


BERLIN = {"id": "ana", "name": "Ana", "team": "emea", "timezone": "Europe/Berlin", "holidays": "DE-BE"}
TOKYO = {"id": "kai", "name": "Kai", "team": "apac", "timezone": "Asia/Tokyo"}
NEW_YORK = {"id": "ned", "name": "Ned", "team": "emea", "timezone": "America/New_York"}
DESK = {"id": "dot", "name": "Dot", "team": "desk", "timezone": "UTC", "working_hours": ALWAYS}
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday in Berlin's winter time (UTC+1)


def rep_of(d, rep_id):
    rep = d.rep(rep_id)
    assert rep is not None
    return rep


def why(rep, at, presence=None, teams=None):
    d = data([rep], teams)
    return unavailable(rep_of(d, rep["id"]), d, at, presence or Presence())


def mql(country, domain="example.com") -> LeadScored:
    return LeadScored(
        lead_id=uuid.uuid4(), captured_at=MONDAY, enriched_at=MONDAY, scored_at=MONDAY,
        contact=Contact(email=f"jo@{domain}"), attribution=Attribution(),
        enrichment=Enrichment(email_domain=domain, company_domain=Sourced(value=domain, source="email"),
                              is_free_mail=Sourced(value=False, source="t"),
                              is_disposable=Sourced(value=False, source="t"),
                              country=Sourced(value=country, source="form")),
        score=Score(value=80, grade="A", fit=40, intent=40, decision="mql", reasons=[], rules_version="t"),
    )


def test_a_rep_takes_leads_only_inside_their_working_hours_in_their_own_time_zone():
    assert why(BERLIN, MONDAY.replace(hour=7, minute=59)) == "off shift"  # 08:59 in Berlin
    assert why(BERLIN, MONDAY.replace(hour=8)) is None  # 09:00 in Berlin
    assert why(BERLIN, MONDAY.replace(hour=16)) == "off shift"  # 17:00 in Berlin: the shift has ended
    assert why(TOKYO, MONDAY.replace(hour=0)) is None  # 09:00 Monday in Tokyo
    assert why(TOKYO, MONDAY.replace(hour=8)) == "off shift"  # 17:00 in Tokyo


def test_summer_time_moves_the_shift_in_utc():
    summer, winter = datetime(2026, 7, 6, 13, 30, tzinfo=UTC), datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    assert why(NEW_YORK, summer) is None  # 09:30 EDT
    assert why(NEW_YORK, winter) == "off shift"  # 08:30 EST


def test_weekends_are_off_unless_the_rep_works_them():
    saturday = datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert why(BERLIN, saturday) == "off shift"
    assert why(DESK, saturday) is None


def test_a_rep_is_off_on_the_public_holidays_of_their_country_and_region_by_their_local_date():
    assert why(BERLIN, datetime(2026, 12, 25, 10, tzinfo=UTC)) == "public holiday (Christmas Day)"  # a Friday
    reformation = datetime(2028, 10, 31, 10, tzinfo=UTC)  # a Tuesday: a holiday in Brandenburg, not in Berlin
    assert why(BERLIN, reformation) is None
    assert why({**BERLIN, "holidays": "DE-BB"}, reformation) == "public holiday (Reformation Day)"
    assert why({**TOKYO, "holidays": "JP"}, MONDAY) == "public holiday (Labor Thanksgiving Day)"
    night_owl = {**TOKYO, "holidays": "JP", "working_hours": ALWAYS}
    assert why(night_owl, datetime(2026, 12, 31, 14, 59, tzinfo=UTC)) is None  # 23:59 on 31 December in Tokyo
    assert why(night_owl, datetime(2026, 12, 31, 15, tzinfo=UTC)) == "public holiday (New Year's Day)"


#: Weeknights 22:00-06:00 in Berlin: each shift is the day's it starts on.
NIGHTS = {**BERLIN, "id": "nia", "name": "Nia",
          "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}}
EVERY_NIGHT = {**NIGHTS, "holidays": None, "working_hours": {**NIGHTS["working_hours"], "days": ALWAYS["days"]}}


def test_a_night_shift_runs_past_midnight_until_its_end_the_next_morning():
    assert why(NIGHTS, MONDAY.replace(hour=20, minute=59)) == "off shift"  # 21:59 on Monday in Berlin
    assert why(NIGHTS, MONDAY.replace(hour=21)) is None  # 22:00
    assert why(NIGHTS, MONDAY.replace(day=24, hour=4, minute=59)) is None  # 05:59 on Tuesday: Monday's shift
    assert why(NIGHTS, MONDAY.replace(day=24, hour=5)) == "off shift"  # 06:00: it has ended
    assert why(NIGHTS, MONDAY.replace(day=24, hour=11)) == "off shift"  # noon


def test_a_night_shift_belongs_to_the_day_it_starts_on():
    saturday, sunday, monday = (datetime(2026, 11, d, 2, tzinfo=UTC) for d in (28, 29, 30))  # 03:00 in Berlin
    assert why(NIGHTS, saturday) is None  # Friday's shift
    assert why(NIGHTS, saturday.replace(hour=21)) == "off shift"  # Saturday 22:00: no shift starts on a Saturday
    assert why(NIGHTS, sunday) == "off shift"
    assert why(NIGHTS, monday) == "off shift"  # Sunday night: none started on Sunday
    assert why(NIGHTS, monday.replace(hour=21)) is None  # Monday's


def test_a_public_holiday_takes_off_the_night_shift_that_starts_on_it_and_no_other():
    """Christmas Day 2026 is a Friday: Thursday's shift is worked to its end on Christmas morning, and Friday's
    is off whole, Boxing Day's early hours too (a shift is never cut in two at midnight)."""
    assert why(NIGHTS, datetime(2026, 12, 24, 23, tzinfo=UTC)) is None  # 00:00 on the 25th, Thursday's shift
    assert why(NIGHTS, datetime(2026, 12, 25, 4, tzinfo=UTC)) is None  # 05:00 on the 25th
    christmas = "public holiday (Christmas Day)"
    assert why(NIGHTS, datetime(2026, 12, 25, 21, tzinfo=UTC)) == christmas  # 22:00 on the 25th, Friday's shift
    assert why(NIGHTS, datetime(2026, 12, 26, 2, tzinfo=UTC)) == christmas  # 03:00 on the 26th, still Friday's


def test_a_night_shift_the_clocks_go_back_in_ends_at_its_local_time_an_hour_later():
    # Berlin goes from summer time (UTC+2) to winter time (UTC+1) at 03:00 on Sunday 2027-10-31.
    assert why(EVERY_NIGHT, datetime(2027, 10, 30, 20, tzinfo=UTC)) is None  # Saturday 22:00 CEST
    assert why(EVERY_NIGHT, datetime(2027, 10, 31, 4, 59, tzinfo=UTC)) is None  # 05:59 CET: nine hours on
    assert why(EVERY_NIGHT, datetime(2027, 10, 31, 5, tzinfo=UTC)) == "off shift"  # 06:00 CET


def test_a_night_shift_the_clocks_go_forward_in_ends_at_its_local_time_an_hour_sooner():
    # Berlin goes from UTC+1 to UTC+2 at 02:00 on Sunday 2027-03-28 (02:00 becomes 03:00).
    assert why(EVERY_NIGHT, datetime(2027, 3, 27, 21, tzinfo=UTC)) is None  # Saturday 22:00 CET
    assert why(EVERY_NIGHT, datetime(2027, 3, 28, 3, 59, tzinfo=UTC)) is None  # 05:59 CEST: seven hours on
    assert why(EVERY_NIGHT, datetime(2027, 3, 28, 4, tzinfo=UTC)) == "off shift"  # 06:00 CEST


def test_a_shift_that_starts_or_ends_at_a_time_the_clocks_skip_does_so_when_they_jump_past_it():
    """02:30 never comes in Berlin on 2027-03-28: a shift ending then ends at the jump (03:00 summer time), not
    at 03:30 as Python reads the skipped time; one starting then starts at the jump."""
    evening = {**EVERY_NIGHT, "working_hours": {"days": ALWAYS["days"], "start": "20:00", "end": "02:30"}}
    assert why(evening, datetime(2027, 3, 28, 0, 59, tzinfo=UTC)) is None  # 01:59 CET
    assert why(evening, datetime(2027, 3, 28, 1, tzinfo=UTC)) == "off shift"  # 03:00 CEST
    early = {**EVERY_NIGHT, "working_hours": {"days": ALWAYS["days"], "start": "02:30", "end": "10:00"}}
    assert why(early, datetime(2027, 3, 28, 0, 59, tzinfo=UTC)) == "off shift"
    assert why(early, datetime(2027, 3, 28, 1, tzinfo=UTC)) is None


def test_a_shift_ending_in_the_hour_the_clocks_go_back_over_ends_at_its_first_showing():
    """02:00-03:00 comes twice in Berlin on 2027-10-31: a shift ending at 02:30 ends the first time the clock
    shows it, and is not on again when the clock shows 02:00 a second time."""
    evening = {**EVERY_NIGHT, "working_hours": {"days": ALWAYS["days"], "start": "20:00", "end": "02:30"}}
    assert why(evening, datetime(2027, 10, 31, 0, 29, tzinfo=UTC)) is None  # 02:29 summer time
    assert why(evening, datetime(2027, 10, 31, 0, 30, tzinfo=UTC)) == "off shift"  # 02:30 summer time
    assert why(evening, datetime(2027, 10, 31, 1, 5, tzinfo=UTC)) == "off shift"  # 02:05 winter time, again


@pytest.mark.parametrize(("start", "end", "message"), [
    ("09:00", "09:00", r"start and end at the same time \(09:00\), so they are empty \(00:00-24:00 is around"),
    ("00:00", "00:00", r"start and end at the same time \(00:00\)"),
    ("24:00", "06:00", r"start 24:00 is the end of a day: a shift from midnight starts at 00:00"),
])
def test_working_hours_of_no_time_are_refused_naming_the_reps_entry(start, end, message):
    with pytest.raises(InvalidRoutingData, match=rf'^reps: rep "nia" \(the 1st\): working_hours: working hours '
                                                 rf"{message}"):
        data([{**NIGHTS, "working_hours": {"start": start, "end": end}}])


def test_an_out_of_office_period_keeps_new_leads_away_until_it_ends():
    at = MONDAY.replace(hour=10)
    away = Presence(away={"ana": [Away(at - timedelta(hours=1), at + timedelta(hours=2), "dentist")]})
    assert why(BERLIN, at, away).startswith("out of office (dentist) until")
    assert why(BERLIN, at + timedelta(hours=2), away) is None


def test_a_rep_at_capacity_gets_no_new_leads_and_the_rotation_passes_to_the_next():
    d = data([{**BERLIN, "capacity": 2}, {**BERLIN, "id": "ben", "name": "Ben", "holidays": None}])
    at = MONDAY.replace(hour=10)
    full = Presence(held={"ana": 2})
    assert unavailable(rep_of(d, "ana"), d, at, full) == "at capacity (2 unaccepted)"
    picks = set()
    presence, states = full, {}
    for _ in range(3):
        placed = place(choose_route(mql("DE"), d), d, states, at, presence)
        assert isinstance(placed, Placed)
        picks.add(placed.rep.id)
        states, presence = {"emea": placed.rotation or {}}, presence.holding_one_more(placed.rep.id)
    assert picks == {"ben"} and presence.held == {"ana": 2, "ben": 3}


def test_when_nobody_can_take_a_lead_the_team_waits_by_default():
    d = data([BERLIN, DESK])
    night = MONDAY.replace(hour=22)
    placed = place(choose_route(mql("DE"), d), d, {}, night, Presence())
    assert isinstance(placed, Waiting) and placed.team == "emea"
    assert placed.assignment.owner_id == "queue:emea" and "ana off shift" in placed.reason


def test_a_team_that_overflows_hands_the_lead_to_its_fallback_team_on_shift():
    d = data([BERLIN, DESK], teams={"emea": {"when_nobody_available": "overflow", "overflow_to": "desk"}})
    night = MONDAY.replace(hour=22)
    placed = place(choose_route(mql("DE"), d), d, {}, night, Presence())
    assert isinstance(placed, Placed) and placed.rep.id == "dot" and placed.team == "desk"
    assert placed.assignment.method == "overflow" and "nobody in emea can take it now (ana off shift)" in \
        placed.assignment.reason
    by_day = place(choose_route(mql("DE"), d), d, {}, MONDAY.replace(hour=10), Presence())
    assert isinstance(by_day, Placed) and by_day.rep.id == "ana" and by_day.assignment.method == "territory"


def test_an_overflow_cycle_with_nobody_on_shift_waits_in_the_first_teams_queue():
    teams = {"emea": {"when_nobody_available": "overflow", "overflow_to": "apac"},
             "apac": {"when_nobody_available": "overflow", "overflow_to": "emea"}}
    d = data([BERLIN, TOKYO], teams)
    assert overflow_chain("emea", d) == ["emea", "apac"]
    at = MONDAY.replace(hour=20)  # 21:00 in Berlin, 05:00 in Tokyo
    placed = place(choose_route(mql("DE"), d), d, {}, at, Presence())
    assert isinstance(placed, Waiting) and placed.team == "emea" and "kai off shift" in placed.reason
    early = MONDAY.replace(hour=7, minute=30)  # 08:30 in Berlin, 16:30 in Tokyo: only Kai is on
    placed = place(choose_route(mql("DE"), d), d, {}, early, Presence())
    assert isinstance(placed, Placed) and placed.rep.id == "kai"


def test_an_account_owner_who_cannot_take_a_lead_passes_it_to_their_teams_rotation():
    d = data([{**BERLIN, "capacity": 1}, {**BERLIN, "id": "ben", "name": "Ben"}],
             accounts=[{"domain": "bigco.com", "name": "BigCo", "owner": "ana"}])
    at = MONDAY.replace(hour=10)
    route = choose_route(mql("DE", "bigco.com"), d)
    assert place(route, d, {}, at, Presence()).assignment.method == "account"
    placed = place(route, d, {}, at, Presence(held={"ana": 1}))
    assert isinstance(placed, Placed) and placed.rep.id == "ben"
    assert "owner of account BigCo (bigco.com), who is at capacity" in placed.assignment.reason


def test_a_missed_deadline_passes_over_reps_who_cannot_take_the_lead():
    d = data([BERLIN, {**BERLIN, "id": "ben", "name": "Ben"}, {**BERLIN, "id": "cy", "name": "Cy"}])
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="ana", team="emea", grade="A", due_at=at)
    away = Presence(away={"ben": [Away(at, at + timedelta(days=1))]})
    route = Route("team", "emea", "territory emea / all")
    b = breach(held, route, d, {}, at, away)
    assert b.action == "reassigned" and b.assignment.owner_id == "cy"
    everyone_away = Presence(away={r: [Away(at, at + timedelta(days=1))] for r in ("ben", "cy")})
    assert breach(held, route, d, {}, at, everyone_away).action == "escalated"


#: Emea overflows to the desk, whose one active rep is on around the clock.
OVERFLOWING = data([BERLIN, {**BERLIN, "id": "ben", "name": "Ben"}, DESK,
                    {**DESK, "id": "dan", "name": "Dan", "active": False}],
                   teams={"emea": {"when_nobody_available": "overflow", "overflow_to": "desk"}})


def test_a_missed_deadline_overflows_the_lead_when_nobody_else_in_its_team_can_take_it_now():
    at = MONDAY.replace(hour=10)
    route = choose_route(mql("DE"), OVERFLOWING)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="ana", team="emea", grade="A", due_at=at)
    b = breach(held, route, OVERFLOWING, {}, at, Presence(away={"ben": [Away(at, at + timedelta(days=1))]}))
    assert (b.action, b.assignment.owner_id, b.assignment.method) == ("reassigned", "dot", "overflow")
    assert (b.handoff.team, b.handoff.due_at, b.rotation) == ("desk", at + timedelta(minutes=15), {"dot": 0})
    assert "ana missed the acceptance deadline;" in b.assignment.reason and "ben out of office" in b.assignment.reason


def test_a_second_missed_deadline_is_told_as_the_leads_and_the_reps_passed_over_as_having_held_it():
    """Ben missed once: the lead twice, once with Ana. Nor has emea "no reps": both held it before."""
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="ben", team="emea", grade="A", due_at=at,
                   holders=("ana",), reassignments=1)
    b = breach(held, choose_route(mql("DE"), OVERFLOWING), OVERFLOWING, {}, at, Presence())
    assert b.assignment.reason.startswith("ben missed the acceptance deadline, the lead's 2nd missed deadline;")
    assert "nobody in emea can take it now (ana has held it, ben has held it)" in b.assignment.reason


def test_a_lead_an_overflow_rep_let_pass_at_night_waits_in_its_own_teams_queue_for_the_morning():
    """A German lead at 02:00 goes to the desk; its one active rep misses the deadline. It used to land in the
    desk's queue with no waiting mark, where only that rep could take it, and stay there: now it waits in emea's
    queue, which its reps may take from and the queue watch hands out when their shift starts."""
    night = MONDAY + timedelta(days=1, hours=1)  # 02:00 on Tuesday in Berlin
    route = choose_route(mql("DE"), OVERFLOWING)
    first = place(route, OVERFLOWING, {}, night, Presence())
    assert isinstance(first, Placed) and (first.rep.id, first.team) == ("dot", "desk")
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="dot", team="desk", grade="A",
                   due_at=night + timedelta(minutes=15))
    missed = night + timedelta(minutes=16)
    b = breach(held, route, OVERFLOWING, {}, missed, Presence())
    assert (b.action, b.assignment.owner_id, b.handoff.team) == ("escalated", "queue:emea", "emea")
    assert (b.handoff.waiting_since, b.handoff.due_at, b.handoff.holders) == (missed, None, ("dot",))
    assert "nobody in emea can take it now (ana off shift, ben off shift)" in b.assignment.reason
    morning = place(Route("team", b.handoff.team, "waited"), OVERFLOWING, {}, night + timedelta(hours=7),
                    Presence(), passed_over=b.handoff.holders)
    assert isinstance(morning, Placed) and morning.rep.id in {"ana", "ben"}


def test_a_lead_every_active_rep_of_its_team_and_its_overflow_held_escalates_to_its_teams_queue_with_no_mark():
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="dot", team="desk", grade="A", due_at=at,
                   holders=("ana", "ben"))
    b = breach(held, choose_route(mql("DE"), OVERFLOWING), OVERFLOWING, {}, at, Presence())
    assert (b.action, b.assignment.owner_id, b.handoff.waiting_since) == ("escalated", "queue:emea", None)


def test_a_lead_the_overflow_desk_lets_pass_at_the_last_allowed_reassignment_escalates_to_its_own_teams_queue():
    """Only the desk's one active rep, who missed it, may take from the desk's queue: its own team's reps may."""
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="dot", team="desk", grade="A", due_at=at,
                   reassignments=OVERFLOWING.sla.max_reassignments, holders=("ana",))
    b = breach(held, choose_route(mql("DE"), OVERFLOWING), OVERFLOWING, {}, at, Presence())
    assert (b.action, b.assignment.owner_id, b.handoff.team) == ("escalated", "queue:emea", "emea")
    assert (b.handoff.waiting_since, b.handoff.due_at) == (None, None)


def test_a_team_gone_from_the_files_or_left_with_inactive_reps_only_is_orphaned_but_one_overflowing_to_a_rep_is_not():
    d = data([BERLIN, DESK, {**TOKYO, "team": "retired", "active": False}])  # apac has no reps; it overflows
    assert orphaned({"emea", "apac", "desk", "retired", "emea-old"}, d) == {"retired", "emea-old"}
    assert staffed_teams(d) == {"emea", "apac", "desk"}


def test_a_team_only_its_overflow_staffs_is_orphaned_for_escalated_leads_which_only_its_own_reps_may_take():
    d = data([BERLIN, DESK])  # apac has no reps; it overflows to emea
    assert orphaned({"emea", "apac", "desk"}, d, escalated=True) == {"apac"}
    assert staffed_teams(d, escalated=True) == {"emea", "desk"}


def test_a_lead_in_an_orphaned_teams_queue_moves_to_its_routes_queue_as_it_was_waiting_or_not():
    at = MONDAY.replace(hour=10)
    waiting = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="queue:emea-old", team="emea-old", grade="A",
                      due_at=None, waiting_since=at, holders=("old.rep",), reassignments=1)
    moved, told = requeue(waiting, choose_route(mql("DE"), OVERFLOWING), OVERFLOWING)
    assert moved == replace(waiting, owner_id="queue:emea", team="emea", seq=waiting.seq + 1)  # a hand-off of its own
    assert (told.owner_id, told.team, told.method) == ("queue:emea", "emea", "queue")
    assert "emea-old queue" in told.reason and "territory" in told.reason
    escalated = replace(waiting, waiting_since=None, reassignments=3)
    assert requeue(escalated, choose_route(mql("DE"), OVERFLOWING), OVERFLOWING)[0] == replace(
        escalated, owner_id="queue:emea", team="emea", seq=escalated.seq + 1)


#: Apac has no reps of its own: it overflows to emea, which has none either, and on to the desk.
UNSTAFFED_APAC = data([DESK, {**DESK, "id": "dan", "name": "Dan"}],
                      teams={"apac": {"when_nobody_available": "overflow", "overflow_to": "emea"}})


def takers(handoff, d):
    """The reps of ``d`` who may accept ``handoff``."""
    return {r.id for r in d.reps if isinstance(apply_disposition(
        handoff, LeadDispositioned(lead_id=handoff.lead_id, outcome="accepted", rep_id=r.id, at=MONDAY), d), Applied)}


def test_a_lead_escalated_to_the_queue_of_a_team_with_no_reps_of_its_own_moves_along_its_overflow_to_one_that_has():
    escalated = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="queue:apac", team="apac", grade="A",
                        due_at=None, reassignments=3)
    moved, told = requeue(escalated, choose_route(mql("JP"), UNSTAFFED_APAC), UNSTAFFED_APAC)
    assert (moved.owner_id, moved.waiting_since) == ("queue:desk", None) and takers(moved, UNSTAFFED_APAC) == {
        "dot", "dan"}
    assert "only a rep of apac may take an escalated lead from its queue" in told.reason


def test_a_lead_the_overflow_lets_pass_at_the_last_reassignment_escalates_to_the_first_team_along_it_with_reps_of_its_own():
    """Apac and emea are accepted with no reps, as they overflow to the desk; but only a team's own reps may take a
    lead from its queue, so escalated to queue:apac, as it was, nobody ever could."""
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="dot", team="desk", grade="A", due_at=at,
                   reassignments=UNSTAFFED_APAC.sla.max_reassignments, holders=("dan",))
    b = breach(held, choose_route(mql("JP"), UNSTAFFED_APAC), UNSTAFFED_APAC, {}, at, Presence())
    assert (b.action, b.assignment.owner_id, b.handoff.team, b.handoff.waiting_since) == (
        "escalated", "queue:desk", "desk", None)
    assert takers(b.handoff, UNSTAFFED_APAC) == {"dot", "dan"}


def test_a_lead_every_rep_of_its_overflow_held_escalates_to_the_first_team_along_it_with_reps_of_its_own():
    at = MONDAY.replace(hour=10)
    held = Handoff(lead_id=uuid.uuid4(), status="routed", owner_id="dot", team="desk", grade="A", due_at=at,
                   holders=("dan",))
    b = breach(held, choose_route(mql("JP"), UNSTAFFED_APAC), UNSTAFFED_APAC, {}, at, Presence())
    assert (b.action, b.assignment.owner_id, b.handoff.waiting_since) == ("escalated", "queue:desk", None)


@pytest.mark.parametrize(("change", "message"), [
    ({"reps": [{**BERLIN, "holidays": "XX"}]}, "no holiday calendar for 'XX'"),
    ({"reps": [{**BERLIN, "holidays": "DE-ZZ"}]}, "DE has no subdivision 'ZZ'"),
    ({"teams": {"emea": {"when_nobody_available": "overflow"}}}, "needs overflow_to"),
    ({"teams": {"emea": {"when_nobody_available": "overflow", "overflow_to": "nowhere"}}}, "'nowhere', which is no team"),
    ({"reps": [{**BERLIN, "capacity": 0}]}, "capacity"),
])
def test_wrong_availability_settings_are_refused_with_the_entry_named(change, message):
    raw = data([BERLIN, DESK]).model_dump()
    with pytest.raises(InvalidRoutingData, match=message):
        parse_routing_data({**raw, **change})


def test_a_team_with_no_reps_that_leads_would_go_to_is_refused_unless_it_overflows_to_one_with_reps():
    """A typo in a territory rule would keep its region's leads in a queue with no deadline and nobody to take
    them."""
    raw = data([BERLIN, TOKYO, DESK]).model_dump()
    typo = {**raw["territories"], "teams": [{"team": "emea-typo", "region": "emea"},
                                            {"team": "apac", "region": "apac"}]}
    with pytest.raises(InvalidRoutingData, match=r'^territories: team rule "emea-typo" \(the 1st\): team emea-typo has '
                                                 "no reps"):
        parse_routing_data({**raw, "territories": typo})
    with pytest.raises(InvalidRoutingData, match="^territories: default_team: team nobody has no reps"):
        parse_routing_data({**raw, "territories": {**raw["territories"], "default_team": "nobody"}})
    # It waits: an overflow_to beside that is refused as the slip it is, not left unused.
    with pytest.raises(InvalidRoutingData, match="overflow_to: emea is used only with when_nobody_available: overflow"):
        parse_routing_data({**raw, "territories": typo, "teams": {"emea-typo": {"overflow_to": "emea"}}})
    hiring = {"emea-typo": {"when_nobody_available": "overflow", "overflow_to": "emea"}}
    assert parse_routing_data({**raw, "territories": typo, "teams": hiring}).policy_of("emea-typo").overflow_to


def test_a_team_whose_reps_are_all_inactive_is_refused_naming_it_as_a_team_with_no_reps_is():
    """An inactive rep is never handed a lead: their team's leads would wait in a queue nobody takes from."""
    raw = data([BERLIN, TOKYO, DESK]).model_dump()
    gone = [{**rep, "active": rep["team"] != "apac"} for rep in raw["reps"]]
    with pytest.raises(InvalidRoutingData, match="team apac has no active reps .* the reps of apac are all inactive"):
        parse_routing_data({**raw, "reps": gone})
    with pytest.raises(InvalidRoutingData, match="default_team: team desk has no active reps .* of desk are all "
                                                 "inactive"):
        parse_routing_data({**raw, "reps": [{**rep, "active": rep["team"] != "desk"} for rep in raw["reps"]]})
    covered = {"apac": {"when_nobody_available": "overflow", "overflow_to": "desk"}}
    assert parse_routing_data({**raw, "reps": gone, "teams": covered}).policy_of("apac").overflow_to == "desk"


def test_what_if_routes_a_known_history_again_and_names_every_violation():
    # Ana works 09-17 in Berlin with room for one unanswered lead; the desk is always on; emea overflows to it.
    candidate = data([{**BERLIN, "capacity": 1}, DESK],
                     teams={"emea": {"when_nobody_available": "overflow", "overflow_to": "desk"}})
    ten, eleven, night = MONDAY.replace(hour=9), MONDAY.replace(hour=10), MONDAY.replace(hour=21)
    ana = Assignment(owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r")
    history = [
        PastLead(mql("DE"), ten, ana, answered_at=ten + timedelta(minutes=30)),  # answered: Ana is free again
        PastLead(mql("DE"), eleven, ana),  # never answered: Ana is full from now on
        PastLead(mql("DE"), eleven + timedelta(minutes=5), ana),  # over Ana's capacity
        PastLead(mql("DE"), night, ana),  # off shift (and still full)
        PastLead(mql("DE"), night + timedelta(minutes=1), None),  # not routed yet
    ]
    result = what_if(reversed(history), candidate)
    assert result.leads == 5
    assert result.rows() == [("desk", "dot", 3, 0), ("emea", "ana", 2, 4)]
    assert result.team_totals() == {"desk": (3, 0), "emea": (2, 4)}
    assert result.overflowed == 3
    assert [(v.at, v.why) for v in result.violations] == [
        (eleven + timedelta(minutes=5), "at capacity (1 unaccepted)"), (night, "off shift")]


def test_what_if_takes_leads_routed_at_one_moment_in_the_order_routing_read_them_whatever_the_input_order():
    # Routing stamps a whole batch with one time and applies it in log order: of two leads Ana got at once with
    # room for one, the one read second is over her capacity, whichever order the history comes in.
    candidate = data([{**BERLIN, "capacity": 1}, DESK])
    ten = MONDAY.replace(hour=9)
    ana = Assignment(owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r")
    first, second = PastLead(mql("DE"), ten, ana, position=(1, 7)), PastLead(mql("DE"), ten, ana, position=(1, 12))
    for history in ([first, second], [second, first]):
        assert [v.lead_id for v in what_if(history, candidate).violations] == [second.lead.lead_id]
    # Where the log position is unknown, the lead ids decide, so the same history gives the same answer.
    unknown = [replace(p, position=None) for p in (first, second)]
    assert what_if(unknown, candidate).violations == what_if(unknown[::-1], candidate).violations


def test_what_if_leaves_in_nurture_a_lead_recycled_after_a_rejection_whose_reason_does_not_recycle_now():
    """Recycled before the reasons file kept leads rejected as spam in nurture: live routing would not route it
    again, so no rep would get it; the rep who did still did."""
    candidate = parse_routing_data({**data([BERLIN, DESK]).model_dump(), "reasons": {"rejected": {
        "not-a-fit": "Not our ICP", "spam": {"text": "Spam or a test submission", "recycle": False}}}})
    ten = MONDAY.replace(hour=9)
    ana = Assignment(owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r")
    history = [PastLead(mql("DE"), ten, ana, recycled_after="spam"),
               PastLead(mql("DE"), ten, ana, recycled_after="not-a-fit")]
    result = what_if(history, candidate)
    assert (result.leads, result.kept_in_nurture) == (2, 1)
    assert result.rows() == [("emea", "ana", 1, 2)]


def test_what_if_keeps_a_lead_in_nurture_from_a_recycle_it_would_not_make_on_and_judges_none_of_its_later_routings():
    """Rejected as spam, recycled to Ben, rejected as not a fit, recycled to Ana: under reasons that keep spam in
    nurture the lead never reaches Ben, so it is never rejected again nor recycled after that either; Ben, gone
    from the candidate reps, and Ana, off shift at night, broke nothing the candidate data would have done."""
    candidate = parse_routing_data({**data([BERLIN, DESK]).model_dump(), "reasons": {"rejected": {
        "not-a-fit": "Not our ICP", "spam": {"text": "Spam or a test submission", "recycle": False}}}})
    ten, night = MONDAY.replace(hour=9), MONDAY.replace(hour=21)
    ana = Assignment(owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r")
    ben = Assignment(owner_id="ben", owner_name="Ben", team="emea", method="territory", reason="r")
    lead = mql("DE")
    history = [PastLead(lead, ten, ana, answered_at=ten + timedelta(minutes=5)),
               PastLead(lead, ten + timedelta(hours=1), ben, answered_at=ten + timedelta(hours=2),
                        recycled_after="spam"),
               PastLead(lead, night, ana, recycled_after="not-a-fit")]
    result = what_if(reversed(history), candidate)
    assert (result.leads, result.kept_in_nurture) == (3, 2)
    assert result.rows() == [("emea", "ana", 1, 2), ("emea", "ben", 0, 1)]
    assert result.violations == []


def test_capacity_checks_count_held_leads_up_to_the_largest_cap_of_the_reps_checked():
    d = data([{**BERLIN, "capacity": 2}, {**BERLIN, "id": "ben", "name": "Ben", "capacity": 7},
              {**BERLIN, "id": "cleo", "name": "Cleo"}])
    assert capacity_bound(d.reps) == 7
    assert capacity_bound([r for r in d.reps if r.id == "cleo"]) == 0  # nobody capped: nothing to count


def test_every_calendar_loaded_alone_knows_the_subdivisions_the_holidays_package_lists():
    """Routing reads one country's calendar without importing every country's (8 MB): by the package's own
    registry, so each code it supports, aliases included, is found, with the same subdivisions."""
    import holidays

    from routing.domain.holiday_calendars import subdivisions

    supported = holidays.list_supported_countries()
    assert {code: list(subdivisions(code) or ()) for code in supported} == supported
    assert subdivisions("XX") is None


def test_a_reps_public_holiday_is_found_in_their_countrys_calendar_and_region():
    from datetime import date

    from routing.domain.availability import public_holiday

    assert public_holiday("DE-BE", date(2026, 3, 8)) == "Women's Day"  # Berlin's own
    assert public_holiday("DE-BY", date(2026, 3, 8)) is None
    assert public_holiday("UK", date(2026, 12, 25)) == "Christmas Day"  # an alias of GB


def test_the_shipped_reps_calendars_load_without_every_countrys():
    """Every country's calendar module is 8 MB of each routing process: checked in a fresh interpreter, since
    this one may have imported them (the test above does)."""
    import subprocess
    import sys

    script = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path; import routing.service\n"
        "from routing.reference import RoutingFiles; from routing.domain.availability import Presence, unavailable\n"
        "d = Path(routing.service.__file__).parent / 'data'\n"
        "data = RoutingFiles(*(d / n for n in ('reps.yaml', 'accounts.csv', 'territories.yaml', 'sla.yaml',\n"
        "                                        'reasons.yaml'))).load().data\n"
        "assert any(r.holidays for r in data.reps)\n"
        "[unavailable(r, data, datetime(2026, 12, 25, 12, tzinfo=UTC), Presence()) for r in data.reps]\n"
        "print('holidays.countries' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_what_if_passes_over_the_rep_who_rejected_a_recycled_lead_as_live_routing_does():
    """Ana is first in a fresh rotation, but she rejected the lead. An apac lead only the desk's one active rep
    may take, who rejected it, is escalated to the desk's queue, not left waiting in apac's for good."""
    ten = MONDAY.replace(hour=9)
    ana = Assignment(owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r")
    recycled = PastLead(mql("DE"), ten, ana, recycled_after="not-a-fit", rejected_by="ana")
    assert what_if([recycled], data([BERLIN, {**BERLIN, "id": "ben", "name": "Ben"}])).rows() == [
        ("emea", "ana", 0, 1), ("emea", "ben", 1, 0)]
    desk_alone = data([DESK, {**DESK, "id": "dan", "name": "Dan", "active": False}])  # apac overflows to it
    rejected_by_dot = PastLead(mql("JP"), ten, None, recycled_after="not-a-fit", rejected_by="dot")
    assert what_if([rejected_by_dot], desk_alone).would == {("desk", "queue:desk"): 1}


@pytest.mark.parametrize("periods", [
    [Away(MONDAY - timedelta(days=1), MONDAY + timedelta(days=6), "holiday"),
     Away(MONDAY + timedelta(days=6), MONDAY + timedelta(days=13), "training")],
    [Away(MONDAY.replace(hour=9), MONDAY.replace(hour=12), "dentist"),
     Away(MONDAY - timedelta(days=1), MONDAY + timedelta(days=13), "holiday")],
], ids=["a training course right after the holiday", "the dentist within the holiday"])
def test_a_rep_out_of_office_is_back_when_every_period_met_or_overlapped_ends_not_the_first_found(periods):
    """The first stored period covering the moment was told: 'back on Monday' of someone away two weeks, as a
    manager deciding whether to hand their leads over reads it (a re-engagement of their lead said the truth)."""
    at = MONDAY.replace(hour=10)
    told = why(BERLIN, at, Presence(away={"ana": periods}))
    assert told == f"out of office (holiday) until {(MONDAY + timedelta(days=13)).isoformat()}"
