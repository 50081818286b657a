"""What a manager is shown of the teams' queues: every team counted, a renamed one too, and who may take its leads."""

import uuid
from datetime import UTC, datetime, timedelta

from routing.domain import Queued, Tally, parse_routing_data, queue_of_team, queues, takers, teams_waiting, waited_s

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DATA = parse_routing_data({
    "reps": [{"id": "ana", "name": "Ana", "team": "emea"}, {"id": "ben", "name": "Ben", "team": "emea"},
             {"id": "cy", "name": "Cy", "team": "emea", "active": False},
             {"id": "kai", "name": "Kai", "team": "desk"},
             # Left with the team apac was before it went to the desk: named by the files, staffed by nobody.
             {"id": "old", "name": "Old", "team": "apac-old", "active": False}],
    "accounts": [],
    "teams": {"apac": {"when_nobody_available": "overflow", "overflow_to": "desk"}},
    "territories": {"regions": {"emea": ["DE"], "apac": ["JP"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all",
                    "teams": [{"team": "emea", "region": "emea"}, {"team": "apac", "region": "apac"}],
                    "default_team": "desk"},
})


def test_every_team_the_files_name_is_listed_by_name_those_with_nobody_queued_with_none():
    assert [(q.team, q.waiting, q.escalated, q.grades, q.oldest_waiting) for q in queues([], DATA)] == [
        ("apac", 0, 0, (), None), ("apac-old", 0, 0, (), None), ("desk", 0, 0, (), None), ("emea", 0, 0, (), None)]


def test_a_teams_queue_is_counted_over_its_grades_ungraded_leads_last_and_its_longest_wait_is_the_oldest_of_them():
    tallies = [Tally("emea", None, 0, 1, None), Tally("emea", "B", 2, 0, NOW - timedelta(hours=1)),
               Tally("emea", "A", 1, 3, NOW - timedelta(hours=2)), Tally("desk", "C", 1, 0, NOW)]
    emea = next(q for q in queues(tallies, DATA) if q.team == "emea")
    assert (emea.waiting, emea.escalated, emea.oldest_waiting) == (3, 4, NOW - timedelta(hours=2))
    assert [t.grade for t in emea.grades] == ["A", "B", None]
    assert (emea.count("waiting"), emea.count("escalated")) == (3, 4)


def test_a_lead_in_the_queue_of_a_team_the_files_no_longer_name_is_listed_under_it_with_nobody_to_take_it():
    """emea-old was renamed emea after the lead was escalated to its queue: the queue watch moves it, and until then
    nobody may take it."""
    tallies = [Tally("emea-old", "B", 0, 1, None)]
    renamed = next(q for q in queues(tallies, DATA) if q.team == "emea-old")
    assert (renamed.in_files, renamed.takers, renamed.escalated) == (False, (), 1)
    assert queue_of_team("emea-old", tallies, DATA) == renamed


def test_an_unknown_team_with_nobody_queued_has_no_queue_but_a_team_of_the_files_has_an_empty_one():
    assert queue_of_team("nowhere", [Tally("emea", "B", 1, 0, NOW)], DATA) is None
    desk = queue_of_team("desk", [Tally("emea", "B", 1, 0, NOW)], DATA)
    assert desk is not None and (desk.in_files, desk.waiting, desk.takers) == (True, 0, ("kai",))


def test_the_reps_who_may_take_a_lead_from_a_queue_are_the_teams_active_ones_not_its_overflows():
    assert takers("emea", DATA) == ("ana", "ben")  # cy is inactive
    assert takers("apac", DATA) == ()  # its overflow's reps take its waiting leads, by the queue watch, not by a report
    assert takers("apac-old", DATA) == ()


def test_leads_in_a_queue_stand_oldest_first_those_that_came_at_one_moment_by_lead_id():
    ids = sorted(uuid.uuid4() for _ in range(3))
    later = Queued(ids[0], "A", "waiting", NOW, 0, 1)
    batch = [Queued(i, "B", "escalated", NOW - timedelta(hours=1), 2, 3) for i in reversed(ids[1:])]
    assert sorted([later, *batch], key=lambda q: q.position) == [*reversed(batch), later]


def test_a_wait_is_counted_by_routings_clock_and_one_stamped_ahead_of_it_has_not_begun():
    assert waited_s(NOW - timedelta(minutes=90), NOW) == 5400.0
    assert waited_s(NOW + timedelta(seconds=2), NOW) == 0.0  # written by a process whose clock runs ahead


def test_the_teams_with_leads_waiting_are_those_the_queue_watch_hands_out_from_not_those_with_escalated_ones_alone():
    assert teams_waiting([Tally("emea", "A", 0, 2, None), Tally("emea", "B", 1, 0, NOW),
                          Tally("desk", "C", 0, 1, None)]) == {"emea"}
