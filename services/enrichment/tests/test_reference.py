"""The reference data enrichment ships with, as marketing will meet it (read from the bundled files)."""

import pytest

from enrichment.domain import classify_title
from enrichment.reference import load_reference
from enrichment.settings import DATA

SHIPPED = load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml")


@pytest.mark.parametrize(("title", "seniority"), [
    ("Product Owner", "individual-contributor"), ("Business Process Owner", "individual-contributor"),
    ("Executive Assistant to the CEO", "individual-contributor"), ("Assistant to the CFO", "individual-contributor"),
    ("Owner", "c-level"), ("Co-Founder & CEO", "c-level"), ("Chief Marketing Officer", "c-level"),
    ("SVP Sales", "vp"), ("Head of Growth", "director"), ("Marketing Manager", "manager"),
    ("Software Engineer", "individual-contributor"), ("Marketing Intern", "entry"),
])
def test_a_senior_word_in_a_title_that_is_not_a_senior_role_does_not_make_it_one(title, seniority):
    """A 'Product Owner' scored as a decision maker would go to sales from a newsletter sign-up."""
    assert classify_title(title, SHIPPED.seniority) == seniority
