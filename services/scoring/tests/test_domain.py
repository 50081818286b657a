import functools
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from leadpipe_common.events import Attribution, Contact, Enrichment, LeadEnriched, Sourced, Touch
from scoring.app import load_rules
from scoring.domain import (
    FACTS, READS, InvalidRules, TouchFacts, check_rescore_at, explain, parse_rules, rules_digest, rules_disagreement,
    score, touch_of, unbumped_rules,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)

RULES = parse_rules({
    "version": "test-1",
    "grades": {"A": 80, "B": 60, "C": 35},
    "thresholds": {"mql": 50, "nurture": 10},
    "fit": [
        {"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30},
        {"rule": "Decision maker", "field": "seniority", "in": ["c-level", "vp"], "points": 20},
        {"rule": "Free mail", "field": "is_free_mail", "equals": True, "points": -10},
    ],
    "intent": [
        {"rule": "Demo", "field": "offer", "equals": "demo", "points": 40},
        {"rule": "Newsletter", "field": "offer", "equals": "newsletter", "points": 10},
    ],
    "disqualify": [{"rule": "Disposable", "field": "is_disposable", "equals": True}],
})


def lead(*, employees=None, seniority=None, free=False, disposable=False, offer=None) -> LeadEnriched:
    def s(v, src="test"):
        return None if v is None else Sourced(value=v, source=src)

    return LeadEnriched(
        lead_id=uuid.uuid4(), captured_at=NOW, enriched_at=NOW,
        contact=Contact(email="jo@example.com"), attribution=Attribution(offer=offer),
        enrichment=Enrichment(
            email_domain="example.com", is_free_mail=Sourced(value=free, source="t"),
            is_disposable=Sourced(value=disposable, source="t"),
            employee_count=s(employees), seniority=s(seniority),
        ),
    )


def test_a_senior_enterprise_demo_request_is_an_mql_graded_a():
    s = score(lead(employees=5000, seniority="vp", offer="demo"), RULES)
    assert (s.value, s.grade, s.decision) == (90, "A", "mql")
    assert (s.fit, s.intent) == (50, 40)


def test_every_point_is_explained():
    s = score(lead(employees=5000, offer="demo"), RULES)
    assert [(r.rule, r.category, r.points) for r in s.reasons] == [("Enterprise", "fit", 30), ("Demo", "intent", 40)]


def test_each_reason_names_the_contact_fields_its_rule_read():
    """The seniority is read from the job title; a head count from the companies file, a touch's offer and the
    company's domain (from the e-mail address) tell of no contact field."""
    rules = parse_rules({**_raw(), "fit": [
        {"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30},
        {"rule": "Decision maker", "field": "seniority", "in": ["c-level", "vp"], "points": 20},
        {"rule": "Business e-mail address", "field": "company_domain", "present": True, "points": 10}],
        "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 40}]})
    vp = lead(employees=5000, seniority="vp", offer="demo")
    vp = vp.model_copy(update={"enrichment": vp.enrichment.model_copy(update={
        "company_domain": Sourced(value="example.com", source="email")})})
    assert [(r.rule, r.reads) for r in score(vp, rules).reasons] == [
        ("Enterprise", []), ("Decision maker", ["job_title"]), ("Business e-mail address", []), ("Demo", [])]


def test_a_rule_on_the_country_reads_the_phone_too_unless_the_form_gave_the_country():
    """The person's own facts read their fields. The country is the form's, else the phone's or the company's:
    one that is not the form's tells of the phone, and that the form gave none."""
    rules = parse_rules({**_raw(), "fit": [
        {"rule": "Served country", "field": "country", "in": ["US"], "points": 10},
        {"rule": "Reachable by phone", "field": "has_phone", "equals": True, "points": 5},
        {"rule": "Opted in", "field": "marketing_consent", "equals": True, "points": 5}],
        "intent": [{"rule": "Wrote a message", "field": "has_message", "equals": True, "points": 5}]})

    def reads(source: str) -> dict[str, list[str]]:
        enrichment = lead().enrichment.model_copy(update={
            "country": Sourced(value="US", source=source), "phone_e164": Sourced(value="+14155550100", source="form")})
        told = lead().model_copy(update={"enrichment": enrichment, "contact": Contact(
            email="jo@example.com", phone="+1 415 555 0100", message="call me", marketing_consent=True)})
        return {r.rule: r.reads for r in score(told, rules).reasons}

    assert reads("form") == {"Served country": ["country"], "Reachable by phone": ["phone"],
                             "Opted in": ["marketing_consent"], "Wrote a message": ["message"]}
    assert reads("phone")["Served country"] == reads("companies")["Served country"] == ["country", "phone"]


def test_every_fact_a_rule_may_test_names_the_contact_fields_it_comes_from():
    assert set(READS) == set(FACTS)
    assert {field for fields in READS.values() for field in fields} <= set(Contact.model_fields)


def test_a_newsletter_sign_up_goes_to_nurture():
    s = score(lead(employees=5000, offer="newsletter"), RULES)
    assert (s.value, s.decision) == (40, "nurture")


def test_a_score_below_the_nurture_bar_is_disqualified():
    s = score(lead(free=True, offer="newsletter"), RULES)
    assert (s.value, s.decision) == (0, "disqualified")


def test_a_disposable_address_is_disqualified_whatever_the_score():
    s = score(lead(employees=5000, seniority="vp", offer="demo", disposable=True), RULES)
    assert s.decision == "disqualified"
    assert "Disposable" in explain(s, RULES)


def test_the_score_is_clamped_to_0_100():
    rules = RULES.model_copy(update={"intent": [RULES.intent[0].model_copy(update={"points": 500})]})
    assert score(lead(offer="demo"), rules).value == 100


def test_the_rules_version_is_stamped_on_the_score():
    assert score(lead(), RULES).rules_version == "test-1"


def test_a_rule_on_an_unknown_fact_is_refused_naming_the_rule():
    with pytest.raises(InvalidRules, match=r"^scoring rules are invalid: fit: rule 'x': field: Input should be "
                                           r"'industry'"):
        parse_rules({**_raw(), "fit": [{"rule": "x", "field": "favourite_colour", "equals": "red"}]})


def test_a_refusal_names_the_rule_not_its_place_in_its_list_and_one_without_a_name_by_its_place():
    """fit.7.points: its author had to count the rules to find the eighth."""
    fit = [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 20},
           {"rule": "Served", "field": "country", "in": ["DE"], "points": "10"}]
    with pytest.raises(InvalidRules, match=r"^scoring rules are invalid: fit: rule 'Served': points: '10' is text"):
        parse_rules({**_raw(), "fit": fit})
    with pytest.raises(InvalidRules, match=r"^scoring rules are invalid: fit\.1\.rule: is required$"):
        parse_rules({**_raw(), "fit": [fit[0], {"field": "country", "in": ["DE"], "points": 10}]})


@pytest.mark.parametrize(("misspelt", "where", "known"), [
    ({"fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "point": 20}]},
     "fit: rule 'Enterprise': point: is not a key a rule takes",
     "rule, field, equals, in, not_in, gte, lt, present, points, half_life_days"),
    ({"repeat_within_minutes": 5}, "repeat_within_minutes: is not a key the rules file takes",
     "version, grades, thresholds, fit, intent, disqualify, repeats_within_minutes"),
    ({"grades": {"A": 80, "B": 60, "C": 35, "D": 10}}, r"grades\.D: is not a key grades takes", "A, B, C"),
    ({"thresholds": {"mql": 50, "nurture": 10, "sql": 80}}, r"thresholds\.sql: is not a key thresholds takes",
     "mql, nurture"),
])
def test_a_key_the_rules_do_not_know_is_refused_beside_the_keys_they_know(misspelt, where, known):
    """point: for points: read as a rule of no points, until refused as "not a field this takes" with no hint."""
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: {where} \(misspelt\?\); it takes {known}$"):
        parse_rules({**_raw(), **misspelt})


def test_a_rule_without_an_operator_is_refused():
    with pytest.raises(InvalidRules, match="needs an operator"):
        parse_rules({**_raw(), "fit": [{"rule": "x", "field": "industry", "points": 3}]})


@pytest.mark.parametrize(("condition", "why"), [
    ({"field": "utm_medium", "in": [["cpc", "ppc"]]}, "in"),  # a list in a list: unhashable on the first lead
    ({"field": "country", "in": ["DK", False]}, "country is not yes or no"),  # [DK, NO] unquoted in YAML
    ({"field": "offer", "equals": True}, "offer is not yes or no"),
    ({"field": "employee_count", "equals": "big"}, "rule 'x': employee_count is a number, so 'big' never matches it"),
    ({"field": "employee_count", "in": [200, "1000"]}, "employee_count is a number, so '1000' never matches it: "
                                                      "write a number, unquoted"),
    ({"field": "industry", "gte": 10}, "rule 'x': industry is text, and gte compares numbers"),
    ({"field": "has_phone", "lt": 1}, "has_phone is yes or no, and lt compares numbers"),
    ({"field": "is_free_mail", "equals": "yes"}, "rule 'x': is_free_mail is yes or no: compare it with true or "
                                                 "false, unquoted, not 'yes'"),
    ({"field": "has_phone", "equals": 1}, "has_phone is yes or no: compare it with true or false"),
    ({"field": "utm_campaign", "equals": 2026}, r"rule 'x': utm_campaign is text, but a value here reads as a number, "
                                                r"which never matches it: quote it exactly as you wrote it$"),
    ({"field": "country", "equals": "Germany"}, r"rule 'x': country is a two-letter country code \(ISO 3166-1 "
                                                r"alpha-2: DE, GB, US\), as enrichment gives every country, so "
                                                r"'Germany' never matches it"),
    ({"field": "company_country", "not_in": ["DE", "DEU"]}, "company_country is a two-letter country code.*: DEU "
                                                           "is DE"),
    # Two letters, but no country's: enrichment gives GB, so a UK lead never scored the rule's points.
    ({"field": "country", "in": ["US", "UK", "DE"]}, r"rule 'x': country is a two-letter country code \(ISO 3166-1 "
                                                     r"alpha-2: DE, GB, US\), as enrichment gives every country, so "
                                                     r"'UK' never matches it: the United Kingdom is GB"),
    ({"field": "country", "equals": "en"}, "'en' never matches it: EN is English, a language: England is in GB"),
    ({"field": "company_country", "in": ["EL"]}, "'EL' never matches it: Greece is GR"),
    ({"field": "country", "not_in": ["SP"]}, "'SP' never matches it: Spain is ES"),
    ({"field": "country", "equals": "QQ"}, "'QQ' never matches it$"),
    # A head count is whole and never below zero: enrichment refuses any other.
    ({"field": "employee_count", "in": [1000.5]}, r"rule 'x': employee_count is a count, a whole number 0 or more, "
                                                  r"so 1000.5 never matches it: write a whole number$"),
    ({"field": "employee_count", "equals": -5}, "employee_count is a count, a whole number 0 or more, so -5 never"),
    ({"field": "employee_count", "not_in": [200, 9.5]}, "employee_count is a count, .* so 9.5 never matches it"),
])
def test_a_rule_comparing_with_what_its_fact_can_never_be_is_refused_at_start(condition, why):
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**_raw(), "fit": [{"rule": "x", "points": 3, **condition}]})


@pytest.mark.parametrize(("category", "condition", "why"), [
    ("fit", {"field": "has_phone", "present": False}, "present: false never holds: has_phone is true or false for "
                                                       "every lead \\(false when there is none\\): write equals: false"),
    ("fit", {"field": "marketing_consent", "present": True}, "present: true holds for every lead: marketing_consent is "
                                                             "true or false for every lead \\(false when there is "
                                                             "none\\): write equals: true"),
    ("disqualify", {"field": "is_disposable", "present": True, "equals": True}, "present: true holds for every lead: "
                                                                              "is_disposable is true or false for "
                                                                              "every lead .*: remove present"),
    ("intent", {"field": "has_message", "present": False}, "present: false never holds: has_message is true or false for every lead .*: write "
                                                           "equals: false"),
    ("fit", {"field": "email_domain", "present": False}, "present: false never holds: every lead has an "
                                                         "email_domain: remove the rule"),
    ("disqualify", {"field": "email_domain", "present": True}, "present: true holds for every lead: every lead has an "
                                                               "email_domain: test the domain with equals, in or "
                                                               "not_in"),
])
def test_present_on_a_fact_every_lead_has_is_refused_saying_what_to_write(category, condition, why):
    """has_phone present: false, written for "no phone", loaded and never held: a lead without a valid number has
    has_phone false, not unknown."""
    points = {} if category == "disqualify" else {"points": 5}
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: {category}: rule 'x': {why}$"):
        parse_rules({**_raw(), category: [{"rule": "x", **condition, **points}]})


@pytest.mark.parametrize("category", ["fit", "intent"])
def test_a_fit_or_intent_rule_without_points_is_refused_as_it_would_score_nothing(category):
    """Loaded as 0 points, a lead's reasons read "Asked for a demo 0"."""
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: {category}: rule 'Asked for a demo' needs "
                                           rf"points \(a whole number, below 0 to take points off\): without them "
                                           rf"it scores nothing$"):
        parse_rules({**_raw(), category: [{"rule": "Asked for a demo", "field": "offer", "equals": "demo"}]})


@pytest.mark.parametrize(("condition", "why"), [
    ({"field": "utm_medium", "in": ["cpc", "ppc "]}, "utm_medium never has spaces around it as 'ppc ' has \\(they are "
                                                     "stripped as it comes in\\), so it never matches: write 'ppc'"),
    ({"field": "utm_medium", "not_in": ["cpc", ""]}, r"utm_medium is never empty \(''\): a blank one is unknown, which "
                                                     "present: false tests: remove the value"),
    ({"field": "offer", "equals": "  "}, r"offer is never empty \('  '\): .*"),
    ({"field": "country", "in": [" DE"]}, "country never has spaces around it as ' DE' has .*: write 'DE'"),
    ({"field": "seniority", "equals": "vp\t"}, r"seniority never has spaces around it as 'vp\\t' has .*: write 'vp'"),
])
def test_a_text_value_empty_or_with_spaces_around_it_is_refused_naming_it(condition, why):
    """in: ["cpc ", ""] loaded and never matched: capture strips what a form sends and keeps a blank field unknown."""
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: fit: rule 'x': {why}$"):
        parse_rules({**_raw(), "fit": [{"rule": "x", "points": 3, **condition}]})


@pytest.mark.parametrize(("written", "why"), [
    # YAML 1.1 reads these unquoted as 83 (octal), 202611 and 630 (minutes and seconds): quoted so, none matched.
    ("equals: 0123", "utm_campaign is text, but a value here reads as a number, which never matches it: quote it "
                     "exactly as you wrote it"),
    ("in: [2026_11]", "utm_campaign is text, but a value here reads as a number, .*"),
    ("not_in: [10:30]", "utm_campaign is text, but a value here reads as a number, .*"),
    ("equals: 2026-12-05", "equals: a value here reads as a date, which no fact is: quote it exactly as you wrote it"),
    ("in: [spring, 2026-12-05]", r"in\.1: a value here reads as a date, .*"),
])
def test_a_text_value_yaml_reads_as_a_number_or_a_date_is_refused_saying_to_quote_it_as_written(written, why):
    """utm_campaign equals: 0123 was refused saying to quote it as "83", which would never match either."""
    rule = yaml.safe_load(f"{{rule: x, field: utm_campaign, points: 3, {written}}}")
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: fit: rule 'x': {why}$") as refused:
        parse_rules({**_raw(), "fit": [rule]})
    assert not re.search(r"83|202611|630", str(refused.value))


@pytest.mark.parametrize(("category", "condition", "why"), [
    ("fit", {"rule": "Budget influencer", "field": "seniority", "equals": "directors"}, re.escape(
        "fit: rule 'Budget influencer': seniority is one of entry, individual-contributor, manager, director, vp, "
        "c-level (what enrichment reads from a job title), so 'directors' never matches it: did you mean director?")),
    ("fit", {"rule": "Buying department", "field": "department", "in": ["marketing", "sale"]}, re.escape(
        "fit: rule 'Buying department': department is one of marketing, sales, engineering, it, finance, operations, "
        "hr, product, customer-success, executive (what enrichment reads from a job title), so 'sale' never matches "
        "it: did you mean sales?")),
    # No value near enough to guess at: the list alone.
    ("disqualify", {"rule": "Students", "field": "seniority", "not_in": ["vp", "c-level", "Intern"]},
     r"disqualify: rule 'Students': seniority is one of .* \(what enrichment reads from a job title\), so 'Intern' "
     r"never matches it"),
], ids=["directors", "sale", "nothing-near"])
def test_a_seniority_or_department_enrichment_never_gives_is_refused_naming_the_rule_and_the_ones_it_gives(
        category, condition, why):
    """equals: directors and in: [marketing, sale] loaded and never matched: enrichment gives director and sales."""
    points = {"points": 12} if category == "fit" else {}
    with pytest.raises(InvalidRules, match=rf"^scoring rules are invalid: {why}$"):
        parse_rules({**_raw(), category: [{**condition, **points}]})


@pytest.mark.parametrize("field", ["marketing_consent", "has_phone", "seniority", "country", "employee_count"])
def test_an_intent_rule_on_a_fact_about_the_person_is_refused_as_it_would_count_once_per_touch(field):
    """Five newsletter touches of a consenting person scored a consent rule's 10 points five times."""
    value = {"marketing_consent": True, "has_phone": True, "seniority": "vp", "country": "DE", "employee_count": 10}
    with pytest.raises(InvalidRules, match=rf"intent: rule 'Consented': {field} is a fact about the person, not about "
                                           r"a touch, .*: make it a fit rule"):
        parse_rules({**_raw(), "intent": [{"rule": "Consented", "field": field, "equals": value[field], "points": 10}]})


def test_an_intent_rule_on_a_fact_of_the_touch_is_accepted():
    rules = parse_rules({**_raw(), "intent": [*({"rule": f, "field": f, "present": True, "points": 1}
                                                for f in ("form_id", "offer", "utm_source", "utm_medium", "utm_campaign",
                                                          "utm_content")),
                                              {"rule": "Message", "field": "has_message", "equals": True, "points": 1}]})
    assert len(rules.intent) == 7


@pytest.mark.parametrize("points", [-100, 0])
def test_points_on_a_disqualify_rule_are_refused_as_they_would_never_be_counted(points):
    """A competitor rule's -100 was listed among the reasons of a lead scored 83: the reasons added up to -17."""
    with pytest.raises(InvalidRules, match=r"disqualify: rule 'Competitor': a disqualify rule has no points \(it "
                                           r"disqualifies the lead whatever its score\): remove points"):
        parse_rules({**_raw(), "disqualify": [{"rule": "Competitor", "field": "company_domain",
                                               "in": ["salesforce.com"], "points": points}]})


@pytest.mark.parametrize("category", ["fit", "disqualify"])
def test_a_half_life_on_a_rule_of_who_the_person_is_is_refused_as_it_would_be_ignored(category):
    with pytest.raises(InvalidRules, match=rf"{category}: rule 'Manager': half_life_days is for intent rules"):
        parse_rules({**_raw(), category: [{"rule": "Manager", "field": "seniority", "equals": "manager",
                                           "half_life_days": 30}]})


@pytest.mark.parametrize(("condition", "why"), [
    ({"field": "employee_count", "gte": 1000, "lt": 200}, r"rule 'x': gte: 1000 and lt: 200 leave no number between "
                                                          r"them, so it never holds"),
    ({"field": "employee_count", "gte": 200, "lt": 200}, "gte: 200 and lt: 200 leave no number between them"),
    ({"field": "employee_count", "lt": 0}, r"rule 'x': lt: 0 leaves no employee_count below it: it is a count, a "
                                           r"whole number 0 or more, so it never holds$"),
    ({"field": "employee_count", "lt": -0.5}, "lt: -0.5 leaves no employee_count below it"),
    ({"field": "employee_count", "gte": 10.5, "lt": 10.9}, r"rule 'x': gte: 10.5 and lt: 10.9 leave no "
                                                           r"employee_count between them: it is a count, a whole "
                                                           r"number 0 or more, so it never holds$"),
    ({"field": "employee_count", "gte": -5, "lt": 0}, "gte: -5 and lt: 0 leave no employee_count between them"),
    ({"field": "industry", "in": []}, r"rule 'x': in: \[\] lists no value, so it never holds"),
    ({"field": "seniority", "present": False, "equals": "vp"}, "rule 'x': present: false holds only when seniority "
                                                               "is unknown, which has no value for equals to test"),
    ({"field": "employee_count", "present": False, "gte": 10}, "present: false .* no value for gte to test"),
    ({"field": "industry", "present": False, "not_in": ["Retail"]}, "present: false .* no value for not_in to test"),
])
def test_a_rule_that_can_never_hold_is_refused_at_start(condition, why):
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**_raw(), "fit": [{"rule": "x", "points": 3, **condition}]})


def test_bounds_on_a_count_that_leave_it_a_whole_number_are_accepted_and_hold_for_it():
    """gte: 10.5 holds for 11 and up, as gte: 11 does: a bound between two counts is no rule that never holds."""
    rules = parse_rules({**_raw(), "fit": [
        {"rule": "No staff", "field": "employee_count", "lt": 1, "points": 1},
        {"rule": "Ten up", "field": "employee_count", "gte": 10, "points": 1},
        {"rule": "Over ten and a half", "field": "employee_count", "gte": 10.5, "points": 1},
        {"rule": "Eleven", "field": "employee_count", "gte": 10.5, "lt": 11.5, "points": 1},
        {"rule": "Thousands", "field": "employee_count", "in": [1000, 2000.0], "points": 1},
    ]})

    def fired(employees: int) -> list[str]:
        return [r.rule for r in score(lead(employees=employees), rules).reasons]

    assert fired(0) == ["No staff"]
    assert fired(10) == ["Ten up"]
    assert fired(11) == ["Ten up", "Over ten and a half", "Eleven"]
    assert fired(1000) == fired(2000) == ["Ten up", "Over ten and a half", "Thousands"]


@pytest.mark.parametrize(("category", "condition", "why"), [
    ("disqualify", {"field": "company_domain", "not_in": []},
     r"disqualify: rule 'x': not_in: \[\] lists no value, so it excludes none and the rule holds for every lead "
     r"whose company_domain is known: list the values to exclude, or write present: true if that is meant"),
    ("fit", {"field": "seniority", "equals": "vp", "not_in": []},
     r"fit: rule 'x': not_in: \[\] lists no value, so it excludes none: list the values to exclude, or remove "
     r"not_in"),
])
def test_not_in_listing_no_value_is_refused_at_start_as_it_excludes_none(category, condition, why):
    """A competitor knockout whose list was left empty loaded, and disqualified every lead."""
    points = {"points": 3} if category == "fit" else {}
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**_raw(), category: [{"rule": "x", **points, **condition}]})


@pytest.mark.parametrize(("condition", "why"), [
    ({"field": "seniority", "equals": "vp", "not_in": ["c-level", "VP"]},
     r"fit: rule 'x': seniority equals 'vp', which not_in excludes, so it never holds: keep one or the other"),
    ({"field": "seniority", "equals": "vp", "in": ["c-level", "director"]},
     "rule 'x': seniority equals 'vp', which in does not list, so it never holds"),
    ({"field": "is_free_mail", "equals": True, "in": [False]}, "is_free_mail equals true, which in does not list"),
    ({"field": "employee_count", "equals": 50, "gte": 200}, "employee_count equals 50, which gte: 200 leaves out, so "
                                                            "it never holds"),
    ({"field": "industry", "in": ["Software", "Retail"], "not_in": ["retail", "Insurance", "SOFTWARE"]},
     r"rule 'x': every value of in for industry is ruled out \('Software', 'Retail' by not_in\), so it never "
     r"holds: keep one or the other"),
    ({"field": "employee_count", "in": [50, 5000, 300], "not_in": [300], "gte": 200, "lt": 1000},
     r"employee_count is ruled out \(50 by gte: 200; 5000 by lt: 1000; 300 by not_in\)"),
    ({"field": "company_domain", "in": ["müller.de"], "not_in": ["xn--mller-kva.de"]},
     r"company_domain is ruled out \('müller.de' by not_in\)"),
    ({"field": "has_phone", "not_in": [True, False]}, "rule 'x': has_phone is yes or no, and not_in excludes both, so "
                                                      "it never holds"),
])
def test_tests_of_one_fact_that_contradict_each_other_are_refused_at_start(condition, why):
    """seniority equals vp, not_in [VP] loaded and never fired: no lead is a vp and not one."""
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**_raw(), "fit": [{"rule": "x", "points": 3, **condition}]})


def test_tests_of_one_fact_that_leave_a_value_between_them_are_accepted():
    rules = parse_rules({**_raw(), "fit": [
        {"rule": "Senior", "field": "seniority", "equals": "vp", "in": ["VP", "c-level"], "not_in": ["director"],
         "points": 1},
        {"rule": "Not retail", "field": "industry", "in": ["Software", "Retail"], "not_in": ["retail"], "points": 1},
        {"rule": "Mid", "field": "employee_count", "in": [50, 500], "gte": 200, "lt": 1000, "points": 1},
    ]})
    assert [r.rule for r in score(lead(employees=500, seniority="vp"), rules).reasons] == ["Senior", "Mid"]


def test_not_in_holds_only_for_a_known_value_as_every_test_but_present_false():
    """A knockout not_in the senior ranks disqualified every lead whose seniority was unknown, and an intent rule
    not_in the newsletter scored every touch without an offer: whoever means unknowns says present: false."""
    rules = parse_rules({**_raw(), "fit": [{"rule": "Rank unknown", "field": "seniority", "present": False,
                                            "points": 1}],
                         "intent": [{"rule": "More than news", "field": "offer", "not_in": ["newsletter"],
                                     "points": 5}],
                         "disqualify": [{"rule": "Junior", "field": "seniority", "not_in": ["vp", "c-level"]}]})

    def fired(lead_: LeadEnriched) -> list[str]:
        return [r.rule for r in score(lead_, rules).reasons]

    assert fired(lead(seniority="manager", offer="demo")) == ["More than news", "Junior"]
    assert fired(lead(seniority="VP", offer="newsletter")) == []
    assert fired(lead()) == ["Rank unknown"]


def test_outside_intent_a_fact_of_a_touch_is_the_first_touchs_and_only_intent_sees_each_touch():
    """rules.yaml said fit is tested against the latest data, yet a fit rule on offer saw the first touch only: the
    lead's attribution is its first touch, as reports attribute it (documented so, not refused: a knockout on the
    campaign a lead came from has no other way to be written)."""
    rules = parse_rules({**_raw(),
                         "fit": [{"rule": f"Came for {o}", "field": "offer", "equals": o, "points": 1}
                                 for o in ("webinar", "demo")],
                         "intent": [{"rule": f"Asked for {o}", "field": "offer", "equals": o, "points": 10}
                                    for o in ("webinar", "demo")],
                         "disqualify": [{"rule": "Bot campaign", "field": "utm_campaign", "equals": "bots"}]})
    first = lead(offer="webinar").model_copy(update={"attribution": Attribution(offer="webinar", utm_campaign="bots")})
    later = first.model_copy(update={"touch": Touch(touch_id=uuid.uuid4(), at=NOW + timedelta(days=1),
                                                    attribution=Attribution(offer="demo"))})
    assert [(r.rule, r.category) for r in score(later, rules, [touch_of(first), touch_of(later)]).reasons] == [
        ("Came for webinar", "fit"), ("Asked for webinar", "intent"), ("Asked for demo", "intent"),
        ("Bot campaign", "disqualify")]


def test_a_rule_testing_that_a_fact_is_unknown_is_accepted():
    rules = parse_rules({**_raw(), "fit": [{"rule": "No size", "field": "employee_count", "present": False,
                                            "points": -3}]})
    assert [r.rule for r in score(lead(), rules).reasons] == ["No size"]


@pytest.mark.parametrize(("rules", "why"), [
    ({"fit": [{"rule": "Big", "field": "employee_count", "gte": 1000, "points": 20},
              {"rule": "Big", "field": "employee_count", "gte": 5000, "points": 5}]},
     r"fit: rule 'Big' is named twice \(also in fit\): every reason names its rule"),
    ({"fit": [{"rule": "Demo", "field": "seniority", "equals": "vp", "points": 5}],
      "intent": [{"rule": "Paper", "field": "offer", "equals": "paper", "points": 5},
                 {"rule": "Demo", "field": "offer", "equals": "demo", "points": 30}]},
     r"intent: rule 'Demo' is named twice \(also in fit\)"),
    ({"intent": [{"rule": "Ads", "field": "utm_medium", "equals": "cpc", "points": 1}],
      "disqualify": [{"rule": "Ads", "field": "is_disposable", "equals": True}]},
     r"disqualify: rule 'Ads' is named twice \(also in intent\)"),
])
def test_rules_of_one_name_are_refused_naming_it_as_their_reasons_could_not_be_told_apart(rules, why):
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**_raw(), **rules})


@pytest.mark.parametrize(("grades", "why"), [
    ({"A": 60, "B": 80, "C": 35}, r"grades: B: 80 must be below A \(60\), or no lead would be graded B"),
    ({"A": 80, "B": 60, "C": 60}, r"grades: C: 60 must be below B \(60\), or no lead would be graded C"),
    ({"A": 180, "B": 60, "C": 35}, r"grades: A: 180 is above 100, the highest score: no lead would be graded A"),
    ({"A": 80, "B": 60, "C": 0}, r"grades: C: 0: every score \(0 to 100\) reaches it, so no lead would be graded "
                                 r"below C"),
])
def test_grade_thresholds_that_leave_a_grade_unreachable_are_refused_naming_the_grade(grades, why):
    with pytest.raises(InvalidRules, match=why):
        parse_rules({**RULES.model_dump(by_alias=True), "grades": grades})


@pytest.mark.parametrize(("listed", "spelt"), [("müller.de", "xn--mller-kva.de"), ("XN--MLLER-KVA.de", "Müller.de")])
def test_a_rule_naming_a_non_ascii_domain_matches_it_whichever_spelling_the_rule_and_the_lead_use(listed, spelt):
    """Capture keeps an address's domain in Unicode, a rule may name it in ASCII (xn--): compared as written, a
    competitor so named was never knocked out."""
    rules = parse_rules({**_raw(), "disqualify": [{"rule": "Competitor", "field": "company_domain", "in": [listed]},
                                                  {"rule": "Their staff", "field": "email_domain", "equals": listed}]})
    enrichment = lead().enrichment.model_copy(update={"email_domain": spelt,
                                                      "company_domain": Sourced(value=spelt, source="email")})
    s = score(lead().model_copy(update={"enrichment": enrichment}), rules)
    assert [r.rule for r in s.reasons if r.category == "disqualify"] == ["Competitor", "Their staff"]


@pytest.mark.parametrize(("written", "fix"), [
    ("https://hubspot.com/pricing", "write the domain alone: hubspot.com"),
    ("@hubspot.com", "write the domain alone: hubspot.com"),
    ("HubSpot.COM.", "write the domain alone: HubSpot.COM"),
    ("www.hubspot.com", "write the domain alone: hubspot.com"),
    ("", "write it like acme.com"),
    ("hub_spot.com", "write it like acme.com"),
    ("hubspot", "write it like acme.com"),
])
def test_a_domain_in_a_rule_that_no_address_ends_in_is_refused_with_the_domain_to_write(written, fix):
    """Loaded, https://hubspot.com matched no lead: the competitor's staff were scored as prospects, no word said."""
    for field, test in (("company_domain", "in"), ("email_domain", "not_in"), ("company_domain", "equals")):
        value = written if test == "equals" else ["salesforce.com", written]
        with pytest.raises(InvalidRules, match=rf"disqualify: rule 'Competitor': {field} is a domain as it follows "
                                               rf"the @ of an address, so {re.escape(repr(written))} never matches it: "
                                               rf"{re.escape(fix)}$"):
            parse_rules({**_raw(), "disqualify": [{"rule": "Competitor", "field": field, test: value}]})


def test_a_domain_written_in_capitals_is_accepted_and_matches_as_an_address_spells_it():
    """As in companies.csv: a domain has no case, and an address's is compared in lower case."""
    rules = parse_rules({**_raw(), "disqualify": [{"rule": "Competitor", "field": "email_domain",
                                                   "in": ["HubSpot.COM"]}]})
    enrichment = lead().enrichment.model_copy(update={"email_domain": "hubspot.com"})
    assert score(lead().model_copy(update={"enrichment": enrichment}), rules).decision == "disqualified"


@pytest.mark.parametrize(("where", "written", "why"), [
    # Read as 1, 1.0, 15 and false, each of these loaded and scored other than written.
    ("fit.0.points", True, "true reads as yes or no, not a whole number: write a whole number, unquoted"),
    ("fit.0.points", "15", "'15' is text, not a whole number: write a whole number, unquoted"),
    ("fit.0.points", 7.5, "7.5 is not a whole number: write one, unquoted"),
    ("fit.0.points", 7.0, "7.0 is written with a decimal point: write 7"),
    ("fit.0.gte", True, "true reads as yes or no, not a number: write a number, unquoted"),
    ("fit.0.lt", "1000", "'1000' is text, not a number: write a number, unquoted"),
    # Unquoted all the same: YAML 1.1 reads an exponent without a dot and a sign as text.
    ("fit.0.gte", "1e3", r"'1e3' is text to YAML, which reads a number with an exponent only written like "
                         r"1\.0e\+3: write 1000"),
    ("fit.0.present", "no", "'no' is text, not true or false: write true or false, unquoted"),
    ("fit.0.present", 0, "0 is a number, not true or false: write true or false, unquoted"),
    ("intent.0.half_life_days", "30", "'30' is text, not a number: write a number, unquoted"),
    ("repeats_within_minutes", True, "true reads as yes or no, not a number: write a number, unquoted"),
    ("thresholds.mql", "60", "'60' is text, not a whole number: write a whole number, unquoted"),
    ("grades.A", True, "true reads as yes or no, not a whole number: write a whole number, unquoted"),
    ("fit.0.rule", "", r"is empty: name the rule \(a lead's reasons show it\)"),
    ("fit.0.rule", "  ", "is empty: name the rule"),
    ("fit.0.rule", 5, "5 is a number, not text: quote it"),
    ("version", "", "is empty: write the version stamped on each scored lead"),
    # A score is 0 to 100 whatever is summed; a 400-digit number loaded, then failed every lead it matched.
    ("intent.0.points", 10 ** 400, "points: Input should be less than or equal to 1000"),
    ("fit.0.points", -1001, "points: Input should be greater than or equal to -1000"),
])
def test_a_setting_of_the_rules_of_another_type_than_it_takes_is_refused_saying_what_to_write(where, written, why):
    raw = {**_raw(), "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 20}],
           "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 30, "half_life_days": 30}]}
    *parents, key = [int(part) if part.isdigit() else part for part in where.split(".")]
    functools.reduce(lambda node, part: node[part], parents, raw)[key] = written
    with pytest.raises(InvalidRules, match=why):
        parse_rules(raw)


@pytest.mark.parametrize(("where", "written", "why"), [
    ("fit.0.gte", ".nan", r"^scoring rules are invalid: fit: rule 'Enterprise': gte: \.nan is not a number, so no "
                          r"employee_count passes it and it never holds: write one$"),
    ("fit.0.lt", ".NaN", r"fit: rule 'Enterprise': lt: \.nan is not a number, so no employee_count passes it"),
    ("fit.0.gte", ".inf", r"fit: rule 'Enterprise': gte: \.inf leaves no employee_count that passes it, so it never "
                          r"holds: write a number$"),
    ("fit.0.lt", "-.inf", r"fit: rule 'Enterprise': lt: -\.inf leaves no employee_count that passes it"),
    ("fit.0.gte", "-.inf", r"fit: rule 'Enterprise': gte: -\.inf leaves out no employee_count: write a number, or "
                           r"remove gte \(present: true holds for every lead whose employee_count is known\)$"),
    ("fit.0.lt", ".inf", r"fit: rule 'Enterprise': lt: \.inf leaves out no employee_count: write a number, or remove "
                         r"lt"),
    ("fit.0.equals", ".nan", r"fit: rule 'Enterprise': employee_count is a number, so \.nan never matches it: write a "
                             r"number$"),
    ("fit.0.not_in", "[10, .inf]", r"fit: rule 'Enterprise': employee_count is a number, so \.inf never matches it"),
    ("intent.0.half_life_days", ".nan", r"intent: rule 'Demo': half_life_days: \.nan is not a number: write a number "
                                        r"of days, or remove half_life_days for points that never fade$"),
    ("intent.0.half_life_days", ".inf", r"intent: rule 'Demo': half_life_days: \.inf is infinite: write a number of "
                                        r"days"),
    ("repeats_within_minutes", ".nan", r"^scoring rules are invalid: repeats_within_minutes: \.nan is not a number: "
                                       r"write a number of minutes \(0: every touch counts\)$"),
])
def test_yamls_not_a_number_and_infinities_are_refused_where_a_number_is_written_naming_the_rule_and_the_key(
        where, written, why):
    """gte: .nan loaded, and its rule never held: no number is at least NaN, below it or equal to it."""
    raw = {**_raw(), "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 20}],
           "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 30, "half_life_days": 30}]}
    *parents, key = [int(part) if part.isdigit() else part for part in where.split(".")]
    functools.reduce(lambda node, part: node[part], parents, raw)[key] = yaml.safe_load(written)  # as YAML reads it
    with pytest.raises(InvalidRules, match=why):
        parse_rules(raw)


def test_whole_numbers_are_taken_for_a_number_of_the_rules():
    rules = parse_rules({**_raw(), "repeats_within_minutes": 5,
                         "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 30,
                                     "half_life_days": 30}]})
    assert (rules.repeats_within_minutes, rules.intent[0].half_life_days) == (5, 30)


def test_a_yes_or_no_fact_is_compared_with_yes_or_no():
    assert parse_rules({**_raw(), "fit": [{"rule": "x", "field": "is_free_mail", "equals": False, "points": 3}]})


def test_each_fact_compared_with_its_own_kind_of_value_is_accepted():
    assert parse_rules({**_raw(), "fit": [
        {"rule": "Size", "field": "employee_count", "in": [50, 100.0], "points": 1},
        {"rule": "Band", "field": "employee_count", "gte": 20, "lt": 200, "points": 1},
        {"rule": "Served", "field": "country", "in": ["de", "GB", "XK"], "points": 1},
        {"rule": "Campaign", "field": "utm_campaign", "equals": "2026", "points": 1},
        {"rule": "Phone", "field": "has_phone", "equals": True, "points": 1},
    ]})


@pytest.mark.parametrize(("written", "why"), [
    ("2026-12-05", r'version: 2026-12-05 reads as a date, not text: quote it \(version: "2026-12-05"\)'),
    ("1.10", "version: 1.1 reads as a number, not text: quote it as you wrote it"),
])
def test_an_unquoted_version_yaml_reads_as_a_date_or_a_number_is_refused_saying_to_quote_it(written, why):
    raw = yaml.safe_load(f"version: {written}\ngrades: {{A: 80, B: 60, C: 35}}\nthresholds: {{mql: 50, nurture: 10}}\n")
    with pytest.raises(InvalidRules, match=why):
        parse_rules(raw)


SHIPPED_RULES = Path(__file__).parents[1] / "src" / "scoring" / "data" / "rules.yaml"


def test_the_shipped_rules_file_is_valid():
    rules = load_rules(SHIPPED_RULES)
    assert rules.thresholds.mql > rules.thresholds.nurture


def test_with_the_shipped_rules_a_free_mail_reader_is_nurtured_and_climbs_with_each_visit_not_disqualified():
    """The shipped nurture bar of 15 disqualified a Gmail address's white paper download (-10 + 8: 0): a closed
    stage, so each later visit opened a new lead, disqualified again, and the intent never added up; the product
    keeps "disqualified" for spam, competitors and the invalid (the disqualify rules)."""
    rules = load_rules(SHIPPED_RULES)
    reader = lead(free=True, offer="whitepaper-lead-scoring")
    first = score(reader, rules, [], NOW)
    again = score(reader, rules, [touch(0, "demo")], NOW)  # a later visit, on the same open lead
    assert (first.value, first.decision) == (0, "nurture")
    assert again.value > first.value and again.decision == "nurture"
    assert score(lead(disposable=True, offer="demo"), rules, [], NOW).decision == "disqualified"


def test_a_second_fit_section_in_the_rules_file_is_refused_naming_the_line_not_put_in_place_of_the_first(
        tmp_path):
    """YAML keeps the last of a key given twice: the second fit: replaced the whole first one without a word."""
    shipped = SHIPPED_RULES.read_text()
    first = next(n for n, line in enumerate(shipped.splitlines(), 1) if line.startswith("fit:"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(shipped + "fit:\n  - {rule: Served country, field: country, in: [US], points: 10}\n")
    again = len(shipped.splitlines()) + 1
    with pytest.raises(ValueError, match=rf"^{rules}:{again}:1: 'fit' is given again \(first on line {first}\)"):
        load_rules(rules)


def _raw():
    return {"version": "v", "grades": {"A": 80, "B": 60, "C": 35}, "thresholds": {"mql": 50, "nurture": 10}}


DECAYING = parse_rules({
    "version": "decay-1", "grades": {"A": 80, "B": 60, "C": 35}, "thresholds": {"mql": 50, "nurture": 10},
    "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30}],
    "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 40, "half_life_days": 10},
               {"rule": "Newsletter", "field": "offer", "equals": "newsletter", "points": 10}],
})


def touch(days_ago: float, offer: str) -> TouchFacts:
    return TouchFacts(uuid.uuid5(uuid.NAMESPACE_URL, f"{days_ago}/{offer}"), NOW - timedelta(days=days_ago),
                      {"offer": offer})


def test_intent_decays_by_each_rules_half_life_and_each_reason_names_its_touch():
    s = score(lead(employees=5000), DECAYING, [touch(10, "demo"), touch(20, "demo"), touch(400, "newsletter")], NOW)
    intent = [(r.points, r.full_points, r.touch_at) for r in s.reasons if r.category == "intent"]
    assert intent == [(10, 10, NOW - timedelta(days=400)),  # no half-life: it never fades
                      (10, 40, NOW - timedelta(days=20)), (20, 40, NOW - timedelta(days=10))]
    assert (s.fit, s.intent, s.value) == (30, 40, 70)


def test_the_reasons_add_up_to_the_score():
    """Four touches decayed to 2.4 points each show 2 each: the score counts 8, not round(9.6) = 10."""
    half = parse_rules({**_raw(), "repeats_within_minutes": 0,  # four touches within a second, each counted
                        "intent": [{"rule": "Paper", "field": "offer", "equals": "paper", "points": 10,
                                    "half_life_days": 1}]})
    days = 2.0589  # 10 * 0.5 ** (days / 1) = 2.4
    s = score(lead(), half, [touch(days + i / 1e6, "paper") for i in range(4)], NOW)
    assert [r.points for r in s.reasons if r.category == "intent"] == [2, 2, 2, 2]
    assert s.intent == sum(r.points for r in s.reasons if r.category == "intent") == 8


def test_the_same_form_sent_twice_within_minutes_is_one_wish_and_counts_once():
    """A double click or a reload sent the demo request again: counted twice it made a B an A (64 -> 94)."""
    twice = [touch(1, "demo"), touch(1 - 2 / 86400, "demo")]  # two seconds apart
    s = score(lead(), RULES, twice, NOW)
    assert [(r.rule, r.touch_at) for r in s.reasons if r.category == "intent"] == [("Demo", NOW - timedelta(days=1))]
    assert s.intent == 40
    # Asked again an hour later, it is a second wish; another rule is never held back by the first.
    later = [touch(1, "demo"), touch(1 - 1 / 24, "demo"), touch(1 - 3 / 86400, "newsletter")]
    assert score(lead(), RULES, later, NOW).intent == 90
    every = RULES.model_copy(update={"repeats_within_minutes": 0})
    assert score(lead(), every, twice, NOW).intent == 80  # 0: every touch counts, as before


def test_the_same_touches_score_the_same_at_the_same_moment_whatever_their_order():
    touches = [touch(3, "demo"), touch(1, "newsletter")]
    assert score(lead(), DECAYING, touches, NOW) == score(lead(), DECAYING, list(reversed(touches)), NOW)
    assert score(lead(), DECAYING, touches, NOW + timedelta(days=30)).intent < score(lead(), DECAYING, touches,
                                                                                     NOW).intent


def test_new_rules_recycle_nurture_to_mql_and_only_count_an_mql_below_the_bar():
    from scoring.domain import RescoreSummary, rescore_move

    mql, nurture = score(lead(employees=5000, offer="demo"), RULES), score(lead(offer="newsletter"), RULES)
    assert rescore_move("nurture", mql) == "to_mql" and rescore_move("mql", nurture) == "below_bar"
    assert rescore_move("mql", mql) is None and rescore_move("nurture", nurture) is None
    summary = RescoreSummary("v2")
    for move, grade, source in (("to_mql", "B", "ads"), ("to_mql", "B", "ads"), (None, "C", None),
                                ("below_bar", "C", None)):
        summary.add(move, grade, source, score_changed=move is not None)
    assert summary.moves == {("to_mql", "B", "ads"): 2, ("below_bar", "C", "(none)"): 1}
    assert (summary.leads, summary.changed_scores, summary.count("to_mql")) == (4, 3, 2)


def test_a_new_knockout_disqualifies_a_nurture_lead_and_is_counted_for_an_mql_by_its_rule():
    """A competitor rule added: an MQL scoring 100 was counted "below the MQL bar", and a nurture lead it now
    knocked out was counted nowhere and stayed open."""
    from scoring.domain import RescoreSummary, knockouts_of, rescore_move

    competitor = RULES.model_copy(update={"disqualify": parse_rules({**_raw(), "disqualify": [
        {"rule": "Competitor", "field": "email_domain", "equals": "example.com"}]}).disqualify})
    top, low = (score(lead(employees=5000, seniority="vp", offer="demo"), competitor),
                score(lead(offer="newsletter"), competitor))
    assert top.value == 90 and knockouts_of(top) == knockouts_of(low) == ["Competitor"]
    assert (rescore_move("mql", top), rescore_move("nurture", low)) == ("mql_knocked_out", "knocked_out")
    # One a later touch knocked out live stays open, as the live path left it: a touch never disqualifies.
    assert rescore_move("nurture", low, knocked_out_before=["Competitor"]) is None
    assert rescore_move("nurture", low, knocked_out_before=["Students"]) == "knocked_out"  # not this rule
    summary = RescoreSummary("v2")
    summary.add("mql_knocked_out", top.grade, "ads", score_changed=True, knockouts=knockouts_of(top))
    summary.add("knocked_out", low.grade, "ads", score_changed=True, knockouts=knockouts_of(low))
    assert summary.knockouts == {("mql_knocked_out", "Competitor"): 1, ("knocked_out", "Competitor"): 1}
    assert summary.count("below_bar") == 0


def test_a_lead_several_disqualify_rules_hold_for_is_explained_and_counted_under_each():
    """A competitor using a disposable address: its step named the competitor alone, and a re-score counted it under
    that rule alone, so a rule added after another counted none of the leads both hold for."""
    from scoring.domain import RescoreSummary, knockouts_of

    both = RULES.model_copy(update={"disqualify": parse_rules({**_raw(), "disqualify": [
        {"rule": "Competitor", "field": "email_domain", "equals": "example.com"},
        {"rule": "Disposable", "field": "is_disposable", "equals": True}]}).disqualify})
    rival = lead(offer="demo")
    rival = rival.model_copy(update={"enrichment": rival.enrichment.model_copy(update={
        "is_disposable": rival.enrichment.is_disposable.model_copy(update={"value": True})})})
    s = score(rival, both)
    assert explain(s, both).startswith("Competitor, Disposable (grade")
    summary = RescoreSummary("v2")
    summary.add("knocked_out", s.grade, "ads", score_changed=True, knockouts=knockouts_of(s))
    assert summary.knockouts == {("knocked_out", "Competitor"): 1, ("knocked_out", "Disposable"): 1}
    assert summary.count("knocked_out") == 1


def test_a_raised_nurture_bar_disqualifies_a_nurture_lead_under_it_and_counts_an_mql_under_it():
    """rules.yaml says to raise the nurture bar to close leads not worth nurturing: it did nothing, and said
    nothing."""
    from scoring.domain import rescore_move

    raised = RULES.model_copy(update={"thresholds": RULES.thresholds.model_copy(update={"nurture": 20})})
    newsletter = score(lead(offer="newsletter"), raised)  # 10: nurture under a bar of 10, not under one of 20
    assert newsletter.decision == "disqualified" and score(lead(offer="newsletter"), RULES).decision == "nurture"
    assert (rescore_move("nurture", newsletter), rescore_move("mql", newsletter)) == ("below_nurture",
                                                                                        "mql_below_nurture")


def test_a_rescore_may_be_as_of_any_moment_within_a_day_of_now_and_no_further():
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for within in (now - timedelta(days=1), now, now + timedelta(days=1)):
        check_rescore_at(within, now)
    with pytest.raises(ValueError, match=r"2025-11-23T09:00\+00:00 is more than a day before now"):
        check_rescore_at(datetime(2025, 11, 23, 9, 0, tzinfo=UTC), now)
    with pytest.raises(ValueError, match="more than a day after now"):
        check_rescore_at(now + timedelta(days=1, minutes=1), now)
    with pytest.raises(ValueError, match=r"10:00\+00:00 is after now .*add --dry-run"):
        check_rescore_at(now + timedelta(hours=1), now, dry_run=False)
    check_rescore_at(now, now, dry_run=False)


def test_rules_changed_under_an_unchanged_version_are_told_apart_from_a_new_version():
    """A rule's points edited and the version left as it was: scores before and after carried one version, and a
    re-score's events (ids derived from it) were taken for the earlier re-score's."""
    edited = RULES.model_copy(update={"thresholds": RULES.thresholds.model_copy(update={"mql": 40})})
    old, new = rules_digest(RULES), rules_digest(edited)
    assert old != new and rules_digest(RULES.model_copy(update={"version": "test-2"})) == old
    assert "bump version" in unbumped_rules("test-1", new, ("test-1", old))
    assert unbumped_rules("test-2", new, ("test-1", old)) is None  # a new version: the service's start is normal
    assert unbumped_rules("test-1", new, ("test-1", None)) is None  # scored before digests were kept
    assert unbumped_rules("test-1", old, None) is None


def test_a_rescore_disagrees_with_rules_of_another_version_than_the_newest_score_naming_both():
    why = rules_disagreement("test-2", ("test-1", "x"))
    assert "test-2" in why and "test-1" in why and "restart" in why
    assert rules_disagreement("test-1", ("test-1", "x")) is None and rules_disagreement("t", None) is None
