"""The fault tests' conservation check must be able to fail: pure, no stack."""

from tests.faults import conservation_problems


def test_one_outcome_per_lead_is_conserved():
    assert conservation_problems({"a": {"e1": "routed"}, "b": {"e2": "nurture"}}) == []


def test_the_same_outcome_published_twice_under_one_id_is_one_outcome():
    assert conservation_problems({"a": {"e1": "routed"}}) == []


def test_a_lead_with_two_terminal_outcomes_is_caught():
    assert "two terminal outcomes" in conservation_problems({"a": {"e1": "routed", "e2": "nurture"}})[0]


def test_a_lead_routed_twice_under_two_ids_is_caught():
    assert conservation_problems({"a": {"e1": "routed", "e2": "routed"}})


def test_a_lead_without_an_outcome_is_caught():
    assert "never reached an outcome" in conservation_problems({"a": {}, "b": {"e1": "routed"}})[0]


def test_a_stalled_lead_is_not_an_outcome():
    assert conservation_problems({"a": {"e1": "deadlettered"}}) == ["leads ended in ['deadlettered']"]
