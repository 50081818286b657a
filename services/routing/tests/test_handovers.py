"""A rep's open leads handed to another rep, or back through routing (``routing.domain.handovers``)."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from leadpipe_common.events import Assignment, LeadDispositioned
from routing.domain import (
    Applied, Breach, Handoff, Kept, Presence, Refused, Route, apply_disposition, breach, hand_to, handover_refused,
    parse_routing_data, reroute,
)

OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
#: Emea's reps work office hours in UTC; apac has none of its own and overflows to emea.
DATA = parse_routing_data({
    "reps": [{"id": "ana", "name": "Ana", "team": "emea"}, {"id": "ben", "name": "Ben", "team": "emea"},
             {"id": "cy", "name": "Cy", "team": "emea"}, {"id": "old", "name": "Old", "team": "emea",
                                                          "active": False}],
    "accounts": [], "working_hours": OFFICE,
    "teams": {"apac": {"when_nobody_available": "overflow", "overflow_to": "emea"}},
    "territories": {"regions": {"emea": ["DE"], "apac": ["JP"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all",
                    "teams": [{"team": "emea", "region": "emea"}, {"team": "apac", "region": "apac"}],
                    "default_team": "emea"},
    "sla": {"acceptance": {"A": "15m"}, "max_reassignments": 1},
})
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
EMEA = Route("team", "emea", "territory emea / all")
APAC = Route("team", "apac", "territory apac / all")
WHY = "handed over from ana by sales-ops: left the company"


def held(status="routed", owner="ana", **kw) -> Handoff:
    due = MONDAY + timedelta(minutes=15) if status == "routed" else None
    return Handoff(lead_id=uuid.UUID(int=7), status=status, owner_id=owner, team="emea", grade="A",
                   **{"due_at": due, **kw})


def sent_as(method="territory") -> Assignment:
    return Assignment(owner_id="ana", owner_name="Ana", team="emea", method=method, reason="territory emea / all")


def rep(rep_id):
    found = DATA.rep(rep_id)
    assert found is not None
    return found


def test_an_accepted_lead_handed_to_a_named_rep_stays_accepted_with_no_deadline_and_is_theirs_to_carry_on():
    accepted = held("accepted", history=())
    after, told = hand_to(accepted, sent_as(), rep("ben"), DATA, MONDAY, WHY)
    assert (after.status, after.owner_id, after.team, after.due_at) == ("accepted", "ben", "emea", None)
    assert after.holders == ("ana",) and after.reassignments == 0 and after.seq == accepted.seq + 1
    assert (told.owner_id, told.owner_name, told.method, told.reason) == ("ben", "Ben", "territory", WHY)
    carried_on = apply_disposition(after, LeadDispositioned(lead_id=after.lead_id, outcome="contacted",
                                                            rep_id="ben"), DATA)
    assert isinstance(carried_on, Applied) and carried_on.handoff.owner_id == "ben"


def test_an_unaccepted_lead_handed_to_a_named_rep_at_night_is_due_in_their_next_working_hours():
    after, _ = hand_to(held(), sent_as(), rep("ben"), DATA, NIGHT, WHY)
    assert (after.status, after.due_at) == ("routed", datetime(2026, 11, 24, 9, 15, tzinfo=UTC))


def test_a_lead_its_holder_took_from_the_queue_is_handed_over_as_its_territorys_not_as_the_queues():
    _, told = hand_to(held("accepted"), sent_as("queue"), rep("ben"), DATA, MONDAY, WHY)
    assert told.method == "territory"


@pytest.mark.parametrize(("rep_id", "to", "field", "reason"), [
    ("ana", "zed", "to", "no rep 'zed' in the reps file"),
    ("ana", "old", "to", "old is inactive in the reps file"),
    ("ana", "ana", "to", "ana is the rep whose leads are handed over"),
    ("queue:emea", "ben", "rep_id", "queue:emea is a team's queue, not a rep"),
    ("queue:emea", None, "rep_id", "queue:emea is a team's queue, not a rep"),
])
def test_a_handover_is_refused_naming_the_field_unless_it_goes_to_another_active_rep_in_the_files(
        rep_id, to, field, reason):
    refused = handover_refused(rep_id, to, DATA)
    assert isinstance(refused, Refused) and (refused.kind, refused.field) == ("invalid", field)
    assert refused.reason.startswith(reason)


def test_the_leads_of_a_rep_gone_from_the_files_may_be_handed_to_a_rep_or_through_routing():
    assert handover_refused("left.long.ago", "ben", DATA) is None
    assert handover_refused("left.long.ago", None, DATA) is None


def test_an_unaccepted_lead_through_routing_goes_where_a_missed_deadline_would_send_it_and_counts_no_breach():
    lead = held(holders=("cy",))
    b = reroute(lead, EMEA, DATA, {}, MONDAY, Presence(), WHY)
    missed = breach(lead, EMEA, DATA, {}, MONDAY, Presence())
    assert (b.action, b.assignment.owner_id, b.rotation) == (missed.action, missed.assignment.owner_id, missed.rotation)
    assert b.assignment.owner_id == "ben"  # ana holds it, cy held it before
    assert b.handoff == replace(missed.handoff, reassignments=0)  # a hand-off of its own too (``seq``)
    assert b.assignment.reason.startswith(WHY) and b.handoff.due_at == MONDAY + timedelta(minutes=15)


def test_an_unaccepted_lead_through_routing_at_night_waits_in_its_teams_queue_for_the_morning():
    b = reroute(held(), EMEA, DATA, {}, NIGHT, Presence(), WHY)
    assert (b.assignment.owner_id, b.handoff.waiting_since, b.handoff.due_at) == ("queue:emea", NIGHT, None)


def test_an_accepted_lead_through_routing_goes_to_the_next_rep_still_accepted_with_no_deadline():
    b = reroute(held("accepted"), EMEA, DATA, {}, MONDAY, Presence(), WHY)
    assert isinstance(b, Breach) and (b.handoff.owner_id, b.handoff.status, b.handoff.due_at) == ("ben", "accepted", None)
    assert b.handoff.holders == ("ana",) and b.rotation is not None and b.handoff.seq == 2
    assert b.assignment.reason.startswith(f"{WHY}; territory emea / all; weighted rotation in emea")


@pytest.mark.parametrize("status", ["accepted", "contacted", "qualified"])
@pytest.mark.parametrize("route", [EMEA, APAC], ids=["its team off shift", "through its overflow off shift"])
def test_a_lead_sales_accepted_that_nobody_can_take_now_stays_with_its_holder_saying_why(status, route):
    """Not to a queue: the queue watch hands out only leads waiting to be accepted (and a queue the files stop
    staffing gives up only those), and a rep of the team may only accept or reject a lead from it: it would stay
    there for ever."""
    lead = held(status)
    kept = reroute(lead, route, DATA, {}, NIGHT, Presence(), WHY)
    assert isinstance(kept, Kept) and kept.handoff == lead
    assert "nobody in emea can take it now (ana has held it, ben off shift, cy off shift, old inactive)" in kept.reason
    assert kept.reason.endswith("a lead sales accepted does not wait in a queue: it stays with ana")


def test_an_accepted_lead_every_active_rep_of_its_route_held_stays_with_its_holder():
    kept = reroute(held("accepted", holders=("ben", "cy")), EMEA, DATA, {}, MONDAY, Presence(), WHY)
    assert isinstance(kept, Kept)
    held_it = "ana has held it, ben has held it, cy has held it"
    assert f"nobody in emea can take it now ({held_it}, old inactive)" in kept.reason
