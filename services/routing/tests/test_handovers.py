"""A rep's open leads handed to another rep, or back through routing (``routing.domain.handovers``)."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from leadpipe_common.events import Assignment, LeadDispositioned
from routing.domain import (
    Applied, Handoff, Presence, Refused, Route, apply_disposition, breach, hand_to, handover_refused,
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
    assert after.holders == ("ana",) and after.reassignments == 0
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
    assert b.handoff == replace(missed.handoff, reassignments=0)
    assert b.assignment.reason.startswith(WHY) and b.handoff.due_at == MONDAY + timedelta(minutes=15)


def test_an_unaccepted_lead_through_routing_at_night_waits_in_its_teams_queue_for_the_morning():
    b = reroute(held(), EMEA, DATA, {}, NIGHT, Presence(), WHY)
    assert (b.assignment.owner_id, b.handoff.waiting_since, b.handoff.due_at) == ("queue:emea", NIGHT, None)


def test_an_accepted_lead_through_routing_goes_to_the_next_rep_still_accepted_with_no_deadline():
    b = reroute(held("accepted"), EMEA, DATA, {}, MONDAY, Presence(), WHY)
    assert (b.handoff.owner_id, b.handoff.status, b.handoff.due_at) == ("ben", "accepted", None)


def test_an_accepted_lead_nobody_can_take_now_goes_with_no_waiting_mark_to_a_queue_whose_reps_may_take_it():
    """Apac has no reps of its own: waiting in its queue, an accepted lead would be handed out by no watch (the
    queue watch starts acceptance deadlines) and taken by no rep (only a queue's own team may take from it)."""
    b = reroute(held("accepted"), APAC, DATA, {}, NIGHT, Presence(), WHY)
    assert (b.handoff.owner_id, b.handoff.waiting_since, b.handoff.due_at) == ("queue:emea", None, None)
    assert b.handoff.status == "accepted" and b.handoff.holders == ("ana",)
    taken = apply_disposition(b.handoff, LeadDispositioned(lead_id=b.handoff.lead_id, outcome="contacted",
                                                           rep_id="cy"), DATA)
    assert isinstance(taken, Applied) and (taken.handoff.owner_id, taken.handoff.status) == ("cy", "contacted")
