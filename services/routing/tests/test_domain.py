import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from leadpipe_common.events import Attribution, Contact, Enrichment, LeadDispositioned, LeadScored, Score, Sourced
from routing.domain import (
    Applied, Handoff, InvalidRoutingData, Refused, Repeated, WorkingHours, acceptance_due, add_working_days,
    add_working_time, Placed, Presence, Waiting, answerable_since, answered_at, apply_disposition, breach,
    choose_route, dated_before, kept_back_by, next_turn, parse_routing_data, place, recycled_by,
)
from routing.domain.dispositions import remembered
from routing.domain.routes import Route
from routing.reference import RoutingFiles

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

DATA = parse_routing_data({
    "reps": [
        {"id": "ana", "name": "Ana", "team": "emea", "weight": 2},
        {"id": "ben", "name": "Ben", "team": "emea", "weight": 1},
        {"id": "cy", "name": "Cy", "team": "emea-ent", "weight": 1},
        {"id": "dee", "name": "Dee", "team": "rest", "active": False},
        {"id": "fay", "name": "Fay", "team": "rest", "working_hours": {"days": ["sat", "sun"]}},
        {"id": "eve", "name": "Eve", "team": "emea-ent", "weight": 1, "active": False},
    ],
    "accounts": [
        {"domain": "bigco.com", "name": "BigCo", "owner": "cy"},
        {"domain": "gone.com", "name": "Gone", "owner": "eve"},
    ],
    "territories": {
        "regions": {"emea": ["DE", "FR"]},
        "segments": [{"name": "enterprise", "min_employees": 1000}, {"name": "smb", "min_employees": 0}],
        "unknown_size_segment": "smb",
        "teams": [{"team": "emea-ent", "region": "emea", "segment": "enterprise"}, {"team": "emea", "region": "emea"}],
        "default_team": "rest",
    },
})


def mql(domain="example.com", country=None, employees=None) -> LeadScored:
    return LeadScored(
        lead_id=uuid.uuid4(), captured_at=NOW, enriched_at=NOW, scored_at=NOW,
        contact=Contact(email=f"jo@{domain}"), attribution=Attribution(),
        enrichment=Enrichment(
            email_domain=domain, company_domain=Sourced(value=domain, source="email"),
            is_free_mail=Sourced(value=False, source="t"), is_disposable=Sourced(value=False, source="t"),
            country=Sourced(value=country, source="form") if country else None,
            employee_count=Sourced(value=employees, source="companies") if employees else None,
        ),
        score=Score(value=80, grade="A", fit=40, intent=40, decision="mql", reasons=[], rules_version="t"),
    )


def test_an_existing_account_goes_to_its_owner():
    route = choose_route(mql("bigco.com", country="DE", employees=10), DATA)
    placed = place(route, DATA, {}, NOW, Presence())
    assert isinstance(placed, Placed)
    assert (placed.assignment.owner_id, placed.assignment.method) == ("cy", "account")
    assert placed.rotation is None  # the rotation did not turn


@pytest.mark.parametrize(("listed", "lead_domain"), [("müller.de", "xn--mller-kva.de"),
                                                     ("xn--mller-kva.de", "müller.de"), ("MÜLLER.de", "müller.de")])
def test_an_account_with_a_non_ascii_domain_goes_to_its_owner_whichever_spelling_either_side_uses(listed,
                                                                                                 lead_domain):
    """Capture keeps an address's domain in Unicode; companies.csv and accounts.csv may spell it in ASCII
    (xn--): compared as written, the account's lead went to the territory's rotation instead of its owner."""
    data = parse_routing_data({**DATA.model_dump(), "accounts": [{"domain": listed, "name": "Müller", "owner": "cy"}]})
    assert choose_route(mql(lead_domain, country="DE"), data).kind == "account"


def test_an_account_whose_owner_left_falls_back_to_territory():
    route = choose_route(mql("gone.com", country="FR", employees=50), DATA)
    assert (route.kind, route.team) == ("team", "emea")


def test_territory_and_segment_choose_the_team():
    assert choose_route(mql(country="DE", employees=5000), DATA).team == "emea-ent"
    assert choose_route(mql(country="DE", employees=10), DATA).team == "emea"
    assert choose_route(mql(country="DE"), DATA).team == "emea"  # unknown size counts as smb


def test_a_country_outside_every_territory_goes_to_the_default_team():
    assert choose_route(mql(country="BR"), DATA).team == "rest"


@pytest.mark.parametrize("country", ["BR", "RU", None])
def test_the_default_teams_reason_names_no_country_nor_whether_the_lead_has_one(country):
    """The reason goes on lead.queued, sent whole to receivers a subscription withholds the phone and country
    from: "no territory for RU" told them the country the phone number gave."""
    reason = choose_route(mql(country=country), DATA).reason
    assert reason == "no territory for the lead's country, if any; default team"


def test_a_territory_rule_for_any_region_names_no_region_of_the_lead():
    data = parse_routing_data({**DATA.model_dump(), "teams": {"emea-ent": {}}, "territories": {
        **DATA.territories.model_dump(), "teams": [{"team": "emea", "segment": "smb"}]}})
    assert choose_route(mql(country="DE"), data).reason == "territory any / smb"
    assert choose_route(mql(country="FR", employees=5000), DATA).reason == "territory emea / enterprise"


def test_a_team_with_nobody_who_can_take_the_lead_now_holds_it_in_its_queue():
    waiting = place(choose_route(mql(country="BR"), DATA), DATA, {}, NOW, Presence())  # a Monday
    assert isinstance(waiting, Waiting) and "dee inactive" in waiting.reason and "fay off shift" in waiting.reason
    assert (waiting.assignment.owner_id, waiting.assignment.method) == ("queue:rest", "queue")


def test_the_rotation_gives_each_rep_their_weighted_share_spread_out():
    reps = [r for r in DATA.reps if r.team == "emea"]
    state, picks = {}, []
    for _ in range(9):
        rep, state = next_turn(reps, state)
        picks.append(rep.id)
    assert Counter(picks) == {"ana": 6, "ben": 3}
    assert "ana,ana,ana" not in ",".join(picks)


def test_the_rotation_continues_from_a_stored_state():
    reps = [r for r in DATA.reps if r.team == "emea"]
    first, state = next_turn(reps, {})
    second, _ = next_turn(reps, state)
    resumed, _ = next_turn(reps, dict(state))
    assert second == resumed


def test_an_account_owned_by_someone_not_in_the_reps_file_is_refused_naming_the_account_and_the_owner():
    with pytest.raises(InvalidRoutingData, match=r'^accounts: account "x\.com" \(the 1st\): owner: \'zed\' is no '
                                                 r"rep's id$"):
        parse_routing_data({**DATA.model_dump(), "accounts": [{"domain": "x.com", "name": "X", "owner": "zed"}]})


def with_regions(**regions: list) -> dict:
    raw = DATA.model_dump()
    raw["territories"]["regions"] = regions
    return raw


@pytest.mark.parametrize(("codes", "message"), [
    ([False], r"^territories: regions: emea: false is no country code: quote it \(YAML reads NO"),
    (["DE", "UK"], r"^territories: regions: emea: 'UK' is not an ISO 3166-1 alpha-2 country code \(like DE, GB, US\)"),
    (["Germany"], r"emea: 'Germany' is not an ISO 3166-1 alpha-2 country code"),
])
def test_a_region_listing_what_is_no_country_code_is_refused_naming_the_region(codes, message):
    """Enrichment gives ISO codes: a region listing FALSE (NO unquoted) or UK matches no lead, and its leads went to
    the default team without a word."""
    with pytest.raises(InvalidRoutingData, match=message):
        parse_routing_data(with_regions(emea=codes))


def test_a_country_code_in_lower_case_routes_as_the_code_it_is():
    data = parse_routing_data(with_regions(emea=["de", "fr"]))
    assert choose_route(mql(country="DE"), data).team == "emea"


@pytest.mark.parametrize("minute", [{"days": ["mon"], "start": "09:00", "end": "09:01"},
                                    {"days": ["mon"], "start": "23:59", "end": "00:00"}])  # a night shift too
def test_an_sla_of_years_of_a_reps_few_working_minutes_is_refused_naming_the_rep_and_grade(minute):
    """8760 working hours of a rep on a minute a week is 10,000 years of Mondays: searched for at every lead routed
    to them, past the calendar's end."""
    raw = DATA.model_dump()
    raw["reps"][0]["working_hours"] = minute
    with pytest.raises(InvalidRoutingData,
                       match=r"^sla: acceptance\.C: 8760h of ana's working hours .*more than ten years"):
        parse_routing_data({**raw, "sla": {"acceptance": {"A": "15m", "C": "8760h"}}})
    assert parse_routing_data({**raw, "sla": {"acceptance": {"A": "15m", "C": "1h"}}})  # an hour of Mondays is fine


def test_the_shipped_reference_files_are_consistent():
    data_dir = Path(__file__).parents[1] / "src" / "routing" / "data"
    data = RoutingFiles(data_dir / "reps.yaml", data_dir / "accounts.csv", data_dir / "territories.yaml",
                        data_dir / "sla.yaml", data_dir / "reasons.yaml").load().data
    assert data.reps and data.accounts
    assert data.sla.acceptance["A"] == "15m" and "not-a-fit" in data.reasons.rejected


SHIPPED = RoutingFiles(*(Path(__file__).parents[1] / "src" / "routing" / "data" / name for name in (
    "reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml", "reasons.yaml"))).load().data


@pytest.mark.parametrize("team", sorted(team for team, policy in SHIPPED.teams.items() if policy.overflow_to))
def test_a_lead_escalated_in_the_shipped_files_lands_where_a_rep_may_take_it_though_its_team_has_no_reps_left(team):
    """The shipped files less a regional team's reps (and their accounts) are accepted, as the team overflows to
    global-inbound: a lead of its the desk lets pass at the last reassignment used to go to the team's queue, which
    only a rep of the team may take from."""
    raw = SHIPPED.model_dump()
    gone = {r["id"] for r in raw["reps"] if r["team"] == team}
    data = parse_routing_data({**raw, "reps": [r for r in raw["reps"] if r["id"] not in gone],
                               "accounts": [a for a in raw["accounts"] if a["owner"] not in gone]})
    desk = [r.id for r in data.reps if r.team == "global-inbound" and r.active]
    held = Handoff(lead_id=uuid.UUID(int=7), status="routed", owner_id=desk[0], team="global-inbound", grade="A",
                   due_at=NOW, reassignments=data.sla.max_reassignments, holders=tuple(desk[1:]))
    b = breach(held, Route("team", team, "territory"), data, {}, NOW)
    takers = [r.id for r in data.reps
              if isinstance(apply_disposition(b.handoff, report("accepted", r.id), data), Applied)]
    assert b.action == "escalated" and takers


# -- the hand-off SLA and dispositions --------------------------------------------

OFFICE = WorkingHours()  # mon-fri 09:00-17:00
BERLIN = ZoneInfo("Europe/Berlin")
SALES = parse_routing_data({
    **DATA.model_dump(),
    "sla": {"acceptance": {"A": "15m", "B": "1h", "C": "1d"}, "max_reassignments": 1},
    "reasons": {"rejected": {"not-a-fit": "Not our ICP"}, "lost": {"price": "Lost on price"}},
})


def handoff(status="routed", owner="ana", **kw) -> Handoff:
    return Handoff(lead_id=uuid.UUID(int=7), status=status, owner_id=owner, team="emea", grade="A",
                   **{"due_at": NOW, **kw})


def report(outcome, rep="ana", **kw) -> LeadDispositioned:
    return LeadDispositioned(lead_id=uuid.UUID(int=7), outcome=outcome, rep_id=rep, **kw)


def test_a_deadline_inside_working_hours_is_plain_clock_time():
    start = datetime(2026, 11, 23, 10, 0, tzinfo=BERLIN)  # a Monday
    assert add_working_time(start, timedelta(minutes=15), OFFICE, BERLIN) == start + timedelta(minutes=15)


def test_a_deadline_pauses_overnight_and_over_the_weekend():
    friday_late = datetime(2026, 11, 27, 16, 50, tzinfo=BERLIN)
    due = add_working_time(friday_late, timedelta(minutes=15), OFFICE, BERLIN)
    assert due == datetime(2026, 11, 30, 9, 5, tzinfo=BERLIN)  # Monday


def test_a_lead_arriving_at_night_starts_its_clock_at_opening_time_in_the_reps_zone():
    # 02:00 UTC is 03:00 in Berlin but 21:00 the day before in New York.
    start = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert add_working_time(start, timedelta(hours=1), OFFICE, BERLIN) == datetime(2026, 11, 24, 10, 0, tzinfo=BERLIN)
    new_york = ZoneInfo("America/New_York")
    assert add_working_time(start, timedelta(hours=1), OFFICE, new_york) == datetime(2026, 11, 24, 10, 0, tzinfo=new_york)


def test_a_business_day_is_the_reps_working_day_and_counts_across_a_clock_change():
    # Europe changes clocks on Sunday 2027-03-28; Friday 15:00 + one 8-hour day = Monday 15:00 local.
    start = datetime(2027, 3, 26, 15, 0, tzinfo=BERLIN)
    data = SALES.model_copy(update={"reps": [r.model_copy(update={"timezone": "Europe/Berlin"}) for r in SALES.reps]})
    assert acceptance_due("C", "ana", data, start) == datetime(2027, 3, 29, 15, 0, tzinfo=BERLIN)


def test_the_longest_deadline_in_hours_reaches_a_rep_who_works_one_day_a_week():
    """8760 working hours of a rep on Mondays 09:00-17:00 is 21 years of Mondays: the search for the deadline
    counted calendar days as if every working day had 24 hours and gave up (a batch failing for ever)."""
    mondays = WorkingHours(days=["mon"], start="09:00", end="17:00")
    start = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)  # a Monday, at opening
    # 1,095 Mondays of 8 hours: the first is the start's, the last 1,094 weeks on.
    assert add_working_time(start, timedelta(hours=8760), mondays, BERLIN) == datetime(2047, 11, 11, 17, 0, tzinfo=BERLIN)


def test_a_working_day_of_a_rep_on_around_the_clock_is_the_calendar_day_however_long_a_clock_change_makes_it():
    # Berlin's 2027-03-28 has 23 hours and 2027-10-31 has 25: "1d" ends at the same time of day next day.
    always = WorkingHours(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="24:00")
    data = SALES.model_copy(update={"reps": [r.model_copy(update={"timezone": "Europe/Berlin", "working_hours": always})
                                             for r in SALES.reps]})
    for day, after in ((datetime(2027, 3, 28), datetime(2027, 3, 29)), (datetime(2027, 10, 31), datetime(2027, 11, 1)),
                       (datetime(2027, 3, 27, 12), datetime(2027, 3, 28, 12))):
        due = acceptance_due("C", "ana", data, day.replace(tzinfo=BERLIN))
        assert due == after.replace(tzinfo=BERLIN), f"1d from {day} ended at {due.astimezone(BERLIN)}"


def test_a_deadline_pauses_on_the_holders_public_holidays():
    # Ascension Day, Thursday 2027-05-06, is a public holiday in Germany: Wednesday 15:00 + one 8-hour day.
    start = datetime(2027, 5, 5, 15, 0, tzinfo=BERLIN)
    berlin = [r.model_copy(update={"timezone": "Europe/Berlin"}) for r in SALES.reps]
    plain = SALES.model_copy(update={"reps": berlin})
    off = SALES.model_copy(update={"reps": [r.model_copy(update={"holidays": "DE"}) for r in berlin]})
    assert acceptance_due("C", "ana", plain, start) == datetime(2027, 5, 6, 15, 0, tzinfo=BERLIN)
    assert acceptance_due("C", "ana", off, start) == datetime(2027, 5, 7, 15, 0, tzinfo=BERLIN)


#: Weeknights 22:00-06:00: each shift is the day's it starts on.
NIGHTS = WorkingHours(start="22:00", end="06:00")


def test_a_deadline_in_a_night_shift_runs_on_past_midnight():
    monday_late = datetime(2026, 11, 23, 23, 50, tzinfo=BERLIN)
    assert add_working_time(monday_late, timedelta(minutes=15), NIGHTS, BERLIN) == datetime(2026, 11, 24, 0, 5,
                                                                                             tzinfo=BERLIN)


def test_a_lead_arriving_in_the_small_hours_counts_in_the_night_shift_that_began_the_evening_before():
    tuesday_early = datetime(2026, 11, 24, 5, 50, tzinfo=BERLIN)  # Monday's shift, 10 minutes before its end
    assert add_working_time(tuesday_early, timedelta(minutes=15), NIGHTS, BERLIN) == datetime(2026, 11, 24, 22, 5,
                                                                                              tzinfo=BERLIN)
    saturday_early = datetime(2026, 11, 28, 5, 50, tzinfo=BERLIN)  # Friday's shift: the next is Monday's
    assert add_working_time(saturday_early, timedelta(minutes=15), NIGHTS, BERLIN) == datetime(2026, 11, 30, 22, 5,
                                                                                               tzinfo=BERLIN)


def test_a_working_day_of_a_night_shift_ends_at_the_same_time_in_the_next_shift():
    saturday_early = datetime(2026, 11, 28, 3, 0, tzinfo=BERLIN)  # in Friday's shift
    assert add_working_days(saturday_early, 1, NIGHTS, BERLIN) == datetime(2026, 12, 1, 3, 0, tzinfo=BERLIN)
    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=BERLIN)  # off shift: Monday's whole shift is the day
    assert add_working_days(monday_noon, 1, NIGHTS, BERLIN) == datetime(2026, 12, 1, 6, 0, tzinfo=BERLIN)


def test_a_holiday_stops_the_clock_for_the_night_shift_that_starts_on_it_only():
    """Christmas Day 2026 is a Friday in Germany (Boxing Day the Saturday): Thursday's shift runs on into Christmas
    morning; Friday's shift is not worked."""
    def christmas(day):
        return day in (date(2026, 12, 25), date(2026, 12, 26))

    in_thursdays = datetime(2026, 12, 25, 3, 0, tzinfo=BERLIN)
    assert add_working_time(in_thursdays, timedelta(hours=1), NIGHTS, BERLIN, christmas) == in_thursdays + timedelta(
        hours=1)
    in_fridays = datetime(2026, 12, 25, 23, 0, tzinfo=BERLIN)
    assert add_working_time(in_fridays, timedelta(hours=1), NIGHTS, BERLIN, christmas) == datetime(2026, 12, 28, 23, 0,
                                                                                                   tzinfo=BERLIN)


def test_a_night_shift_the_clocks_go_forward_in_is_an_hour_shorter_and_its_working_day_is_still_one_shift():
    # Berlin's Saturday 2027-03-27 22:00 to Sunday 06:00 is seven hours: 02:00 becomes 03:00.
    every_night = WorkingHours(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="22:00", end="06:00")
    saturday = datetime(2027, 3, 27, 22, 0, tzinfo=BERLIN)
    assert add_working_time(saturday, timedelta(hours=8), every_night, BERLIN) == datetime(2027, 3, 28, 23, 0,
                                                                                          tzinfo=BERLIN)
    assert add_working_days(saturday + timedelta(hours=1), 1, every_night, BERLIN) == datetime(2027, 3, 28, 23, 0,
                                                                                              tzinfo=BERLIN)


def test_queues_and_grades_without_a_deadline_have_no_sla():
    assert acceptance_due("D", "ana", SALES, NOW) is None
    assert acceptance_due("A", "queue:emea", SALES, NOW) is None


def test_an_accepted_lead_stops_its_sla_clock():
    verdict = apply_disposition(handoff(), report("accepted", rep="ana"), SALES)
    assert isinstance(verdict, Applied)
    assert (verdict.handoff.status, verdict.handoff.owner_id, verdict.handoff.due_at) == ("accepted", "ana", None)
    assert [(s.from_stage, s.to_stage) for s in verdict.steps] == [("routed", "accepted")]


@pytest.mark.parametrize("outcome", ["accepted", "rejected", "won"])
def test_a_rep_who_does_not_hold_the_lead_cannot_report_on_it(outcome):
    details = {"rejected": {"reason_code": "not-a-fit"}, "won": {"amount": Decimal("999999999"), "currency": "EUR"}}
    status = "accepted" if outcome == "won" else "routed"
    verdict = apply_disposition(handoff(status, owner="ana"), report(outcome, rep="ben", **details.get(outcome, {})),
                                SALES)
    assert isinstance(verdict, Refused) and (verdict.kind, verdict.field) == ("conflict", "rep_id")
    assert "held by ana" in verdict.reason


def test_a_lead_in_the_team_queue_becomes_the_lead_of_the_team_rep_who_accepts_it():
    verdict = apply_disposition(handoff(owner="queue:emea", due_at=None), report("accepted", rep="ben"), SALES)
    assert isinstance(verdict, Applied)
    assert (verdict.handoff.status, verdict.handoff.owner_id) == ("accepted", "ben")


def test_a_lead_taken_from_the_queue_is_a_new_hand_off_but_its_holders_reports_are_not():
    """A rep taking a lead from its team's queue becomes its holder: the next lead.routed (a re-engagement's) names
    them, and must not be told from the queue's by a number equal to it."""
    queued = handoff(owner="queue:emea", due_at=None, seq=2)
    taken = apply_disposition(queued, report("accepted", rep="ben"), SALES)
    assert isinstance(taken, Applied) and (taken.handoff.owner_id, taken.handoff.seq) == ("ben", 3)
    contacted = apply_disposition(taken.handoff, report("contacted", rep="ben"), SALES)
    assert isinstance(contacted, Applied) and contacted.handoff.seq == 3
    held = apply_disposition(handoff(seq=2), report("accepted", rep="ana"), SALES)
    assert isinstance(held, Applied) and held.handoff.seq == 2


def test_a_rep_of_another_team_cannot_take_a_lead_from_a_queue():
    verdict = apply_disposition(handoff(owner="queue:emea", due_at=None), report("accepted", rep="cy"), SALES)
    assert isinstance(verdict, Refused) and verdict.kind == "conflict" and "emea queue" in verdict.reason


def test_an_inactive_rep_cannot_take_a_lead_from_their_teams_queue():
    """Inactive is "they left": the queue's takers and staffing leave them out, yet their CRM account took leads
    out of the queue, which then sat with no deadline."""
    queued = replace(handoff(owner="queue:rest", due_at=None), team="rest")
    verdict = apply_disposition(queued, report("accepted", rep="dee"), SALES)
    assert isinstance(verdict, Refused) and (verdict.kind, verdict.field) == ("conflict", "rep_id")
    assert "dee is inactive in the reps file" in verdict.reason
    held = replace(handoff(owner="dee"), team="rest")
    assert isinstance(apply_disposition(held, report("accepted", rep="dee"), SALES), Applied)  # as before


@pytest.mark.parametrize("currency", ["XYZ", "EUE", "XXX"])
def test_a_won_deal_in_no_iso_4217_currency_is_refused_naming_the_currency(currency):
    """Three capitals alone passed: a typo (EUE) became a currency of its own, a bucket in every revenue report."""
    verdict = apply_disposition(handoff("accepted"), report("won", amount="100", currency=currency), SALES)
    assert isinstance(verdict, Refused) and (verdict.kind, verdict.field) == ("invalid", "currency")
    assert isinstance(apply_disposition(handoff("accepted"), report("won", amount="100", currency="CHF"), SALES),
                      Applied)


def test_a_won_or_lost_step_carries_the_reps_note():
    """As a rejection's does: it reached no webhook, timeline or export."""
    won = apply_disposition(handoff("accepted"), report("won", amount="12000", currency="EUR",
                                                        reason="3-year contract"), SALES)
    lost = apply_disposition(handoff("accepted"), report("lost", reason_code="price", reason="half our price"), SALES)
    assert isinstance(won, Applied) and won.steps[0].reason.endswith("12000.00 EUR: 3-year contract")
    assert isinstance(lost, Applied) and lost.steps[0].reason.endswith("price Lost on price: half our price")


def test_rejected_lead_returns_to_nurture_with_its_reason():
    verdict = apply_disposition(handoff(), report("rejected", reason_code="not-a-fit"), SALES)
    assert isinstance(verdict, Applied)
    assert [(s.from_stage, s.to_stage, s.reason_code) for s in verdict.steps] == [
        ("routed", "rejected", "not-a-fit"), ("rejected", "nurture", "not-a-fit")]
    assert verdict.handoff.closed


#: A New York CRM writing its local wall-clock time with a Z: every answer dated five hours early.
NEW_YORK_AS_UTC = timedelta(hours=5)


@pytest.mark.parametrize(("outcome", "owner", "names"), [("accepted", "ana", "the hand-off to ana it answers"),
                                                         ("rejected", "queue:emea", "the hand-off to the emea queue")])
def test_an_answer_dated_hours_before_the_hand_off_it_answers_is_refused_over_http_and_dated_at_it_on_the_topic(
        outcome, owner, names):
    """Read as given, the SLA report held every such hand-off as met, and velocity each acceptance as 0 s."""
    handed = NOW - timedelta(minutes=10)
    d = report(outcome, rep="ana", reason_code="not-a-fit" if outcome == "rejected" else None,
               at=handed - NEW_YORK_AS_UTC)
    since = answerable_since(handoff(owner=owner), outcome, handed)
    refused = dated_before(d, since)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("invalid", "at")
    assert names in refused.reason and refused.reason.endswith("is the time zone right?")
    assert answered_at(d, NOW, since) == handed


def test_an_acceptance_dated_minutes_before_its_hand_off_by_a_clock_a_little_behind_is_kept_as_given():
    handed = NOW - timedelta(minutes=10)
    d = report("accepted", at=handed - timedelta(minutes=2))
    since = answerable_since(handoff(), "accepted", handed)
    assert dated_before(d, since) is None and answered_at(d, NOW, since) == d.at


def test_a_win_dated_before_the_hand_over_that_gave_the_lead_its_holder_but_after_its_first_routing_is_kept():
    """Rep A won the deal in the CRM, then a manager handed the lead to B, who reports the win with the CRM's date."""
    first, handed_over = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    d = report("won", amount=Decimal("1200"), currency="EUR", at=first + timedelta(days=1))
    since = answerable_since(handoff("qualified", owner="ben", first_routed_at=first), "won", handed_over)
    assert dated_before(d, since) is None and answered_at(d, NOW, since) == d.at


@pytest.mark.parametrize("outcome", ["contacted", "qualified", "won", "lost"])
def test_a_report_dated_hours_before_the_lead_was_first_routed_is_refused_over_http_and_dated_then_on_the_topic(
        outcome):
    first = NOW - timedelta(days=3)
    details = {"won": {"amount": Decimal("1200"), "currency": "EUR"}, "lost": {"reason_code": "price"}}
    d = report(outcome, at=first - NEW_YORK_AS_UTC, **details.get(outcome, {}))
    since = answerable_since(handoff("accepted", first_routed_at=first), outcome, NOW - timedelta(hours=1))
    refused = dated_before(d, since)
    assert isinstance(refused, Refused) and refused.field == "at" and "first routing" in refused.reason
    assert answered_at(d, NOW, since) == first


def test_a_win_on_a_lead_whose_first_routing_is_not_known_is_dated_as_given():
    d = report("won", amount=Decimal("1200"), currency="EUR", at=NOW - timedelta(days=300))
    since = answerable_since(handoff("qualified"), "won", NOW - timedelta(hours=1))
    assert since is None and dated_before(d, since) is None and answered_at(d, NOW, since) == d.at


#: Sales' word on noise: a lead rejected as spam is not theirs again, whatever it downloads.
NOISE = parse_routing_data({**SALES.model_dump(), "reasons": {"rejected": {
    "not-a-fit": "Not our ICP", "spam": {"text": "Spam or a test", "recycle": False}}}})


def rejected(code: str) -> Handoff:
    verdict = apply_disposition(handoff(), report("rejected", reason_code=code), NOISE)
    assert isinstance(verdict, Applied)
    return verdict.handoff


def touched(lead: LeadScored, points: int = 40) -> LeadScored:
    """``lead`` touched again (a white paper), an MQL with ``points`` of intent earned by that touch."""
    from leadpipe_common.events import ScoreReason, Touch

    touch = Touch(touch_id=uuid.uuid4(), at=NOW, attribution=Attribution(offer="white-paper"))
    reason = ScoreReason(rule="White paper", category="intent", points=points, touch_id=touch.touch_id, touch_at=NOW)
    return lead.model_copy(update={"touch": touch, "score": lead.score.model_copy(update={"reasons": [reason]})})


def test_a_touch_lifting_a_lead_rejected_for_a_reason_that_recycles_routes_it_again():
    assert recycled_by(rejected("not-a-fit"), touched(mql()), NOISE.reasons)
    assert kept_back_by(rejected("not-a-fit"), touched(mql()), NOISE.reasons) is None


def test_a_touch_of_a_lead_rejected_for_a_reason_that_does_not_recycle_leaves_it_in_nurture_and_names_the_reason():
    assert not recycled_by(rejected("spam"), touched(mql()), NOISE.reasons)
    assert kept_back_by(rejected("spam"), touched(mql()), NOISE.reasons) == "spam"


def test_a_touch_that_would_not_recycle_the_lead_anyway_is_not_said_to_be_kept_back_by_its_rejection():
    assert kept_back_by(rejected("spam"), touched(mql(), points=0), NOISE.reasons) is None


def test_a_lead_rejected_with_a_code_since_gone_from_the_reasons_file_recycles_as_before_the_option():
    renamed = parse_routing_data({**NOISE.model_dump(), "reasons": {"rejected": {"junk": "Spam or a test"}}})
    assert recycled_by(rejected("spam"), touched(mql()), renamed.reasons)


def test_a_lead_rejected_for_a_reason_that_does_not_recycle_returns_to_nurture_saying_so():
    spam = apply_disposition(handoff(), report("rejected", reason_code="spam"), NOISE)
    fit = apply_disposition(handoff(), report("rejected", reason_code="not-a-fit"), NOISE)
    assert isinstance(spam, Applied) and isinstance(fit, Applied)
    assert spam.steps[1].reason == "returned to marketing: spam; its touches do not send it back to sales"
    assert fit.steps[1].reason == "returned to marketing: not-a-fit"


def test_a_lead_cannot_be_won_before_it_was_accepted():
    verdict = apply_disposition(handoff(), report("won", amount=Decimal("1000"), currency="EUR"), SALES)
    assert isinstance(verdict, Refused) and verdict.kind == "conflict"
    assert "accepted" in verdict.reason


def test_a_closed_lead_stays_closed():
    won = apply_disposition(handoff("qualified"), report("won", amount=Decimal("5000"), currency="EUR"), SALES)
    assert isinstance(won, Applied)
    verdict = apply_disposition(won.handoff, report("lost", reason_code="price"), SALES)
    assert isinstance(verdict, Refused) and verdict.kind == "conflict" and "closed" in verdict.reason


def test_the_same_disposition_twice_is_a_harmless_repeat_but_a_different_one_is_refused():
    accepted = apply_disposition(handoff(), report("accepted"), SALES)
    assert isinstance(accepted, Applied)
    again = apply_disposition(accepted.handoff, report("accepted"), SALES)
    assert isinstance(again, Repeated)
    other = apply_disposition(accepted.handoff, report("accepted", reason="called back"), SALES)
    assert isinstance(other, Refused) and (other.kind, other.field) == ("conflict", "outcome")
    lost = apply_disposition(handoff("qualified"), report("lost", reason_code="price"), SALES)
    other = apply_disposition(lost.handoff, report("lost", reason="no budget after all"), SALES)
    assert isinstance(other, Refused) and "cannot replace it" in other.reason


def test_a_won_report_again_with_another_amount_corrects_the_deal_and_the_lead_stays_won():
    """50,000 EUR was a typo for 5,000: the holder reports won again. A correction, not a second win: no step, the
    lead stays won, and each later correction is numbered after the one before, from the amount then in force."""
    won = apply_disposition(handoff("qualified"), report("won", amount=Decimal("50000"), currency="EUR"), SALES)
    first = apply_disposition(won.handoff, report("won", amount=Decimal("5000"), currency="EUR", reason="typo"),
                              SALES)
    assert isinstance(first, Applied) and first.steps == () and first.handoff.status == "won"
    c = first.correction
    assert (c.amount, c.currency, c.previous_amount, c.previous_currency, c.number) == (
        Decimal("5000.00"), "EUR", Decimal("50000.00"), "EUR", 1)
    assert c.reason == "won amount corrected by Ana: 50000.00 EUR -> 5000.00 EUR: typo"
    second = apply_disposition(first.handoff, report("won", amount=Decimal("5000"), currency="USD"), SALES)
    assert isinstance(second, Applied) and second.handoff.status == "won"
    assert (second.correction.previous_amount, second.correction.previous_currency, second.correction.number) == (
        Decimal("5000.00"), "EUR", 2)
    # The first amount again, if it was right after all, says why: the win's own report sent again is a copy.
    back = apply_disposition(second.handoff, report("won", amount=Decimal("50000"), currency="EUR",
                                                    reason="it was right"), SALES)
    assert isinstance(back, Applied) and back.correction.number == 3


def test_a_copy_of_the_win_that_comes_after_its_correction_repeats_and_leaves_the_correction_in_force():
    """The CRM posted the win, then its correction, over HTTP; the win's copy on leads.feedback (or a retry after a
    timeout, a redriven letter) comes last. Taken as a new correction, it put the typo back into revenue."""
    win = report("won", amount=Decimal("30005"), currency="USD")
    won = apply_disposition(handoff("qualified"), win, SALES)
    corrected = apply_disposition(won.handoff, report("won", amount=Decimal("3000.50"), currency="USD"), SALES)
    late_copy = apply_disposition(corrected.handoff, win, SALES)
    assert isinstance(late_copy, Repeated) and late_copy.handoff == corrected.handoff


def test_a_won_report_on_a_lead_merged_away_is_refused_naming_the_survivor_not_taken_as_a_correction():
    """Won leads were merged away before that was refused: such a row holds its win, and a won report on it again
    would correct a lead no report counts, the survivor's revenue left as it was."""
    merged = replace(handoff("qualified"), status="merged", merged_into=uuid.UUID(int=99),
                     history=(remembered(report("won", amount=Decimal("100"), currency="EUR")),))
    verdict = apply_disposition(merged, report("won", amount=Decimal("200"), currency="EUR"), SALES)
    assert isinstance(verdict, Refused) and "merged into 00000000-0000-0000-0000-000000000063" in verdict.reason


def test_a_won_report_as_the_amount_in_force_repeats_and_one_changing_neither_amount_nor_currency_is_refused():
    won = apply_disposition(handoff("qualified"), report("won", amount=Decimal("50000"), currency="EUR"), SALES)
    corrected = apply_disposition(won.handoff, report("won", amount=Decimal("5000"), currency="EUR"), SALES)
    again = apply_disposition(corrected.handoff, report("won", amount=Decimal("5000.00"), currency="EUR"), SALES)
    assert isinstance(again, Repeated)
    reasoned = apply_disposition(corrected.handoff, report("won", amount=Decimal("5000"), currency="EUR",
                                                           reason="signed"), SALES)
    assert isinstance(reasoned, Refused) and (reasoned.kind, reasoned.field) == ("conflict", "outcome")
    assert "changes neither" in reasoned.reason


def test_only_who_may_report_on_a_won_lead_corrects_its_amount_and_a_lost_deal_is_not_won_by_a_correction():
    won = apply_disposition(handoff("qualified"), report("won", amount=Decimal("50000"), currency="EUR"), SALES)
    stranger = apply_disposition(won.handoff, report("won", rep="ben", amount=Decimal("5000"), currency="EUR"), SALES)
    assert isinstance(stranger, Refused) and (stranger.kind, stranger.field) == ("conflict", "rep_id")
    assert "held by ana" in stranger.reason
    lost = apply_disposition(handoff("qualified"), report("lost", reason_code="price"), SALES)
    after_loss = apply_disposition(lost.handoff, report("won", amount=Decimal("5000"), currency="EUR"), SALES)
    assert isinstance(after_loss, Refused) and "closed as lost" in after_loss.reason
    lost_after_win = apply_disposition(won.handoff, report("lost", reason_code="price"), SALES)
    assert isinstance(lost_after_win, Refused) and "closed as won" in lost_after_win.reason


def test_a_rep_who_rejects_a_lead_from_the_queue_is_its_holder_when_it_returns_to_nurture():
    verdict = apply_disposition(handoff(owner="queue:emea"), report("rejected", rep="ben", reason_code="not-a-fit"),
                                SALES)
    assert isinstance(verdict, Applied) and (verdict.handoff.status, verdict.handoff.owner_id) == ("rejected", "ben")


def test_unknown_reps_and_reason_codes_are_invalid_not_conflicts():
    assert apply_disposition(handoff(), report("accepted", rep="zed"), SALES).field == "rep_id"
    verdict = apply_disposition(handoff(), report("rejected", reason_code="meh"), SALES)
    assert isinstance(verdict, Refused) and (verdict.kind, verdict.field) == ("invalid", "reason_code")


#: The route of the leads ``handoff`` makes, as a missed deadline places them again.
EMEA = Route("team", "emea", "territory emea / smb")


def test_a_missed_deadline_passes_the_lead_to_the_next_rep_who_has_not_held_it():
    b = breach(handoff(owner="ana"), EMEA, SALES, {}, NOW)
    assert b.action == "reassigned" and b.assignment.owner_id == "ben"
    assert b.handoff.holders == ("ana",) and b.handoff.reassignments == 1
    assert b.handoff.due_at is not None and b.rotation is not None


def test_after_the_allowed_reassignments_the_lead_escalates_to_the_team_queue():
    once = breach(handoff(owner="ana"), EMEA, SALES, {}, NOW).handoff
    b = breach(once, EMEA, SALES, {}, NOW)
    assert b.action == "escalated" and b.assignment.owner_id == "queue:emea"
    assert b.handoff.due_at is None and b.rotation is None


def test_each_missed_deadline_hands_the_lead_on_under_the_next_number_whether_reassigned_or_escalated():
    first = handoff(owner="ana")
    reassigned = breach(first, EMEA, SALES, {}, NOW).handoff
    escalated = breach(reassigned, EMEA, SALES, {}, NOW).handoff
    assert [(h.owner_id, h.seq) for h in (first, reassigned, escalated)] == [
        ("ana", 1), ("ben", 2), ("queue:emea", 3)]


#: Ana works days, Ben evenings (UTC).
SHIFTS = parse_routing_data({**SALES.model_dump(), "reps": [
    {**r, "timezone": "UTC", **({"working_hours": {"start": "17:00", "end": "24:00"}} if r["id"] == "ben" else {})}
    for r in SALES.model_dump()["reps"]]})


def test_a_lead_whose_deadline_passes_before_anyone_else_is_on_shift_waits_for_them_not_for_the_team():
    """Routed to Ana at 16:00 with 15 minutes: at 16:16 Ben is not on shift yet. It waits in the queue, to be
    handed to Ben at 17:00 (not back to Ana, who missed it), instead of escalating with no deadline for good."""
    day = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    b = breach(handoff(owner="ana", due_at=day + timedelta(hours=16, minutes=15)), EMEA, SHIFTS, {},
               day + timedelta(hours=16, minutes=16))
    assert (b.action, b.assignment.owner_id, b.handoff.due_at) == ("escalated", "queue:emea", None)
    assert b.handoff.waiting_since == day + timedelta(hours=16, minutes=16) and "waits" in b.assignment.reason
    assert b.handoff.seq == 2  # the queue holds it now: a hand-off of its own
    still_day = place(Route("team", "emea", "waited"), SHIFTS, {}, day + timedelta(hours=16, minutes=30),
                      Presence(), passed_over=b.handoff.holders)
    assert isinstance(still_day, Waiting)  # Ana is on shift, but she held it
    evening = place(Route("team", "emea", "waited"), SHIFTS, {}, day + timedelta(hours=17, minutes=1),
                    Presence(), passed_over=b.handoff.holders)
    assert isinstance(evening, Placed) and evening.rep.id == "ben"


def test_a_lead_every_rep_of_the_team_held_escalates_to_the_team_queue_for_good():
    b = breach(handoff(owner="ben", holders=("ana",)), EMEA, SHIFTS, {}, NOW)
    assert (b.action, b.assignment.owner_id, b.handoff.waiting_since) == ("escalated", "queue:emea", None)


def test_a_merged_lead_closes_with_no_deadline_and_a_repeat_changes_nothing():
    from routing.domain import Merged, Refused, Repeated, merge_into

    lead, survivor = handoff("accepted"), replace(handoff("routed"), lead_id=uuid.UUID(int=8))
    merged = merge_into(lead, survivor, "ana", SALES)
    assert isinstance(merged, Merged) and merged.handoff.closed
    assert (merged.handoff.status, merged.handoff.due_at, merged.handoff.merged_into) == ("merged", None, survivor.lead_id)
    assert isinstance(merge_into(merged.handoff, survivor, "ana", SALES), Repeated)
    elsewhere = merge_into(merged.handoff, replace(survivor, lead_id=uuid.UUID(int=9)), "ana", SALES)
    assert isinstance(elsewhere, Refused) and elsewhere.kind == "conflict"
    assert isinstance(merge_into(lead, lead, "ana", SALES), Refused)
    assert isinstance(merge_into(survivor, merged.handoff, "ana", SALES), Refused)  # into a lead merged away


def test_only_a_rep_who_may_report_on_a_lead_may_merge_it_away():
    from routing.domain import Merged, merge_into

    lead, survivor = handoff("accepted"), replace(handoff("routed", owner="ben"), lead_id=uuid.UUID(int=8))
    unknown = merge_into(lead, survivor, "anna.schmidt", SALES)
    assert isinstance(unknown, Refused) and (unknown.kind, unknown.field) == ("invalid", "rep_id")
    not_theirs = merge_into(lead, survivor, "ben", SALES)  # the survivor's holder, not the lead's
    assert isinstance(not_theirs, Refused) and (not_theirs.kind, not_theirs.field) == ("conflict", "rep_id")
    assert "held by ana" in not_theirs.reason
    queued = replace(lead, status="routed", owner_id="queue:emea")
    assert isinstance(merge_into(queued, survivor, "ben", SALES), Merged)  # any rep of its team may take it
    assert merge_into(queued, survivor, "cy", SALES).field == "rep_id"  # not one of another team


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_won_or_lost_lead_is_not_merged_away_but_a_rejected_lead_may_be_merged_into_it(outcome):
    from routing.domain import Merged, merge_into

    closed, rejected = handoff(outcome, due_at=None), replace(handoff("rejected"), lead_id=uuid.UUID(int=8))
    refused = merge_into(closed, rejected, "ana", SALES)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("conflict", "lead_id")
    assert f"closed as {outcome}" in refused.reason
    assert f"merge {rejected.lead_id} into {closed.lead_id} instead" in refused.reason
    into_it = merge_into(rejected, closed, "ana", SALES)
    assert isinstance(into_it, Merged) and into_it.handoff.merged_into == closed.lead_id


@pytest.mark.parametrize("stage", ["routed", "accepted", "contacted", "qualified"])
def test_a_lead_sales_still_works_is_not_merged_into_one_rejected_back_to_nurture_but_takes_it_in(stage):
    """S, the person's old address, was rejected by Ben; D, the new one, is Ana's. Merged into S, D could never be
    qualified (closed as merged) nor S (Ben's, and closed as rejected): the person's revenue would be lost. Ana may
    merge S into D herself: Ben, who turned it down, may have left."""
    from routing.domain import Merged, merge_into

    d = handoff(stage, owner="ana")
    s = replace(handoff("rejected", owner="ben", due_at=None), lead_id=uuid.UUID(int=8))
    refused = merge_into(d, s, "ana", SALES)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("conflict", "survivor_id")
    assert "closed as rejected" in refused.reason
    assert f"merge {s.lead_id} into {d.lead_id} instead:" in refused.reason  # advice Ana can follow
    for rep in ("ana", "ben"):
        taken_in = merge_into(s, d, rep, SALES)
        assert isinstance(taken_in, Merged) and taken_in.handoff.merged_into == d.lead_id
    assert isinstance(merge_into(s, replace(d, owner_id="cy"), "ana", SALES), Refused)  # holding neither


@pytest.mark.parametrize("outcome", ["won", "lost"])
@pytest.mark.parametrize("stage", ["routed", "accepted", "contacted", "qualified"])
def test_a_lead_sales_still_works_and_a_won_or_lost_one_of_the_same_person_are_kept_apart(stage, outcome):
    """A customer back after a closed deal is a new deal (capture opens a new lead for them): merged into the
    closed lead it could never be won, and a won or lost lead is never merged away."""
    from routing.domain import merge_into

    open_ = handoff(stage, owner="ana")
    deal = replace(handoff(outcome, owner="ben", due_at=None), lead_id=uuid.UUID(int=8))
    into_deal, into_open = merge_into(open_, deal, "ana", SALES), merge_into(deal, open_, "ben", SALES)
    assert isinstance(into_deal, Refused) and (into_deal.kind, into_deal.field) == ("conflict", "survivor_id")
    assert f"closed as {outcome}" in into_deal.reason
    assert isinstance(into_open, Refused) and (into_open.kind, into_open.field) == ("conflict", "lead_id")
    # Only a lead sales may still reject can be turned down as a repeat of that deal, and then merged.
    rejectable = stage in ("routed", "accepted")
    for refused in (into_deal, into_open):
        assert f"keep {open_.lead_id} apart from {deal.lead_id}" in refused.reason
        assert (f"reject it, then merge it into {deal.lead_id}" in refused.reason) == rejectable
    if rejectable:  # Ben asked: the advice names who may follow it
        assert "said by ana, who holds it" in into_open.reason and "said by" not in into_deal.reason


def test_two_closed_deals_of_one_person_stay_two_leads():
    from routing.domain import merge_into

    won, lost = handoff("won", due_at=None), replace(handoff("lost", due_at=None), lead_id=uuid.UUID(int=8))
    refused = merge_into(won, lost, "ana", SALES)
    assert isinstance(refused, Refused) and f"{lost.lead_id} is closed as lost too" in refused.reason


@pytest.mark.parametrize("rep", ["ana", "ben", "cy"])
def test_a_report_on_a_lead_merged_away_is_refused_naming_the_lead_to_report_on_instead_whoever_makes_it(rep):
    """Ana held D when it was merged into S; a CRM keeping both records reports on D: the refusal names S, not who
    held D, so the report can be sent there; so are Ben, who holds S, and Cy, of another team."""
    from routing.domain import merge_into, remembered

    d = handoff("contacted", history=(remembered(report("contacted")),))
    s = replace(handoff("accepted", owner="ben"), lead_id=uuid.UUID(int=8))
    merged = merge_into(d, s, "ana", SALES).handoff
    refused = apply_disposition(merged, report("qualified", rep=rep), SALES)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("conflict", "outcome")
    assert refused.reason == f"the lead is closed as merged into {s.lead_id}; report on {s.lead_id} instead"
    assert isinstance(apply_disposition(merged, report("contacted"), SALES), Repeated)  # a resend from before it


def test_leads_merged_away_as_read_holding_their_person_in_another_name_that_lead_and_a_merge_already_done_repeats():
    """D was merged into S, and S since into T: routing reads both as merged into T, the lead that holds the person
    now. D into S again (a retry), or into T, is done already; D or S into another lead, or another lead into S, is
    refused naming T, not S, which would send the rep round the chain."""
    from routing.domain import Merged, merge_into

    t, other = (replace(handoff("accepted"), lead_id=uuid.UUID(int=i)) for i in (9, 10))
    d = handoff("merged", due_at=None, merged_into=t.lead_id)
    s = replace(handoff("merged", due_at=None, merged_into=t.lead_id), lead_id=uuid.UUID(int=8))
    assert isinstance(merge_into(d, s, "ana", SALES), Repeated)
    assert isinstance(merge_into(d, t, "ana", SALES), Repeated)
    moved_on = merge_into(d, other, "ana", SALES)
    assert isinstance(moved_on, Refused) and (moved_on.kind, moved_on.field) == ("conflict", "survivor_id")
    assert moved_on.reason == f"the lead was already merged away: {t.lead_id} holds the person now"
    into_s = merge_into(other, s, "ana", SALES)
    assert isinstance(into_s, Refused) and into_s.field == "survivor_id"
    assert into_s.reason == (f"the survivor was itself merged away: {t.lead_id} holds the person now; merge into "
                             "that lead")
    assert isinstance(merge_into(handoff("accepted"), other, "ana", SALES), Merged)  # two leads not merged: no repeat


def test_a_merge_into_a_lead_merged_into_this_one_says_the_two_are_one_person_already():
    """S was merged into L; asked to merge L into S, the refusal advised merging into L: into the lead itself."""
    from routing.domain import merge_into

    lead = handoff("accepted")
    s = replace(handoff("merged", due_at=None, merged_into=lead.lead_id), lead_id=uuid.UUID(int=8))
    refused = merge_into(lead, s, "ana", SALES)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("conflict", "survivor_id")
    assert refused.reason == (f"the survivor was merged into this lead already: the two are one person, held by "
                              f"{lead.lead_id}")


def test_a_lost_deal_without_a_code_carries_the_reps_words_alone():
    lost = apply_disposition(handoff("accepted"), report("lost", reason="went with a competitor"), SALES)
    assert isinstance(lost, Applied) and lost.steps[0].reason == "lost by Ana: went with a competitor"


def test_a_rejected_lead_back_in_nurture_may_be_merged_away():
    from routing.domain import Merged, merge_into

    rejected, survivor = handoff("rejected", due_at=None), replace(handoff("accepted"), lead_id=uuid.UUID(int=8))
    assert isinstance(merge_into(rejected, survivor, "ana", SALES), Merged)
