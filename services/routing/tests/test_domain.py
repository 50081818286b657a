import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadpipe_common.events import Attribution, Contact, Enrichment, LeadScored, Score, Sourced
from routing.domain import InvalidRoutingData, assign, choose_route, next_turn, parse_routing_data
from routing.reference import load_routing_data

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

DATA = parse_routing_data({
    "reps": [
        {"id": "ana", "name": "Ana", "team": "emea", "weight": 2},
        {"id": "ben", "name": "Ben", "team": "emea", "weight": 1},
        {"id": "cy", "name": "Cy", "team": "emea-ent", "weight": 1},
        {"id": "dee", "name": "Dee", "team": "rest", "active": False},
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
    assignment, state = assign(route, DATA, {})
    assert (assignment.owner_id, assignment.method) == ("cy", "account")
    assert state is None  # the rotation did not turn


def test_an_account_whose_owner_left_falls_back_to_territory():
    route = choose_route(mql("gone.com", country="FR", employees=50), DATA)
    assert (route.kind, route.team) == ("team", "emea")


def test_territory_and_segment_choose_the_team():
    assert choose_route(mql(country="DE", employees=5000), DATA).team == "emea-ent"
    assert choose_route(mql(country="DE", employees=10), DATA).team == "emea"
    assert choose_route(mql(country="DE"), DATA).team == "emea"  # unknown size counts as smb


def test_a_country_outside_every_territory_goes_to_the_default_team():
    assert choose_route(mql(country="BR"), DATA).team == "rest"


def test_a_team_with_nobody_active_holds_the_lead_in_its_queue():
    assignment, _ = assign(choose_route(mql(country="BR"), DATA), DATA, {})
    assert (assignment.owner_id, assignment.method) == ("queue:rest", "queue")


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


def test_an_account_owned_by_someone_not_in_the_reps_file_is_refused():
    with pytest.raises(InvalidRoutingData, match="not reps"):
        parse_routing_data({**DATA.model_dump(), "accounts": [{"domain": "x.com", "name": "X", "owner": "zed"}]})


def test_the_shipped_reference_files_are_consistent():
    data_dir = Path(__file__).parents[1] / "src" / "routing" / "data"
    data = load_routing_data(data_dir / "reps.yaml", data_dir / "accounts.csv", data_dir / "territories.yaml")
    assert data.reps and data.accounts
