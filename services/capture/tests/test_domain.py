import uuid
from datetime import UTC, datetime

import pytest

from capture.domain import Form, InvalidSubmission, capture_lead, may_post_from, parse_forms, suspicions

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
LEAD_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def capture(fields, **kw):
    return capture_lead(fields, lead_id=LEAD_ID, received_at=NOW, **kw)


def test_a_valid_submission_becomes_a_captured_lead_with_attribution():
    lead = capture({"email": " Ada@Example.com ", "first_name": "Ada", "utm_source": "google", "offer": "demo"})
    assert lead.contact.email == "Ada@example.com"  # domain lower-cased, local part kept
    assert lead.contact.first_name == "Ada"
    assert lead.attribution.utm_source == "google"
    assert lead.attribution.offer == "demo"
    assert lead.captured_at == NOW


def test_missing_email_is_refused_naming_the_field():
    with pytest.raises(InvalidSubmission) as err:
        capture({"first_name": "Ada"})
    assert [(e.field, e.reason) for e in err.value.errors] == [("email", "is required")]


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": "not-an-address", "marketing_consent": "perhaps", "first_name": "x" * 201})
    assert {e.field for e in err.value.errors} == {"email", "marketing_consent", "first_name"}


def test_unknown_fields_are_ignored():
    lead = capture({"email": "ada@example.com", "hubspotutk": "abc", "gclid": "123"})
    assert lead.contact.email == "ada@example.com"


def test_a_ticked_checkbox_records_consent_and_when_it_was_given():
    lead = capture({"email": "ada@example.com", "marketing_consent": "on"})
    assert lead.contact.marketing_consent is True
    assert lead.contact.marketing_consent_at == NOW


def test_no_consent_records_no_time():
    lead = capture({"email": "ada@example.com"})
    assert lead.contact.marketing_consent is False
    assert lead.contact.marketing_consent_at is None


def test_blank_form_fields_are_absent_not_empty_strings():
    lead = capture({"email": "ada@example.com", "company": "   ", "phone": ""})
    assert lead.contact.company is None and lead.contact.phone is None


def test_the_form_in_the_url_wins_and_its_offer_fills_in():
    form = Form(form_id="demo-request", name="Demo", offer="demo")
    lead = capture({"email": "ada@example.com", "form_id": "other"}, form=form, form_id="demo-request")
    assert lead.attribution.form_id == "demo-request"
    assert lead.attribution.offer == "demo"


def test_an_offer_sent_with_the_submission_beats_the_forms_default():
    form = Form(form_id="demo-request", name="Demo", offer="demo")
    lead = capture({"email": "ada@example.com", "offer": "webinar"}, form=form, form_id="demo-request")
    assert lead.attribution.offer == "webinar"


def test_a_form_id_with_odd_characters_is_refused():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": "ada@example.com"}, form_id="<script>")
    assert err.value.errors[0].field == "form_id"


def test_the_forms_file_rejects_unknown_keys():
    with pytest.raises(ValueError, match="forms.demo: unknown keys"):
        parse_forms({"forms": {"demo": {"thank_you": "https://x"}}})


def test_a_form_may_name_the_origins_whose_pages_post_it_with_fetch():
    forms = parse_forms({"forms": {"demo": {"allowed_origins": ["https://www.example.com"]}}})
    assert may_post_from("https://www.example.com", forms["demo"], frozenset())
    assert not may_post_from("https://www.example.com", None, frozenset())  # the JSON API: only the global list
    assert may_post_from("https://app.example.com", None, frozenset({"https://app.example.com"}))
    assert not may_post_from("https://evil.example", forms["demo"], frozenset({"https://app.example.com"}))


@pytest.mark.parametrize("origin", ["https://www.example.com/path", "*", "www.example.com", "ftp://x.example"])
def test_an_origin_that_is_not_scheme_host_and_port_is_refused(origin):
    with pytest.raises(ValueError, match="is not an origin"):
        parse_forms({"forms": {"demo": {"allowed_origins": [origin]}}})


def test_a_filled_hidden_field_is_a_bots_mark_and_a_form_may_name_its_own():
    forms = parse_forms({"forms": {"demo": {"honeypot": "website"}}})
    assert suspicions({"email": "a@b.co", "_gotcha": "http://spam"}, None) == ["the hidden field _gotcha was filled in"]
    assert suspicions({"email": "a@b.co", "_gotcha": ""}, None) == []
    assert suspicions({"email": "a@b.co", "website": "x"}, forms["demo"]) == ["the hidden field website was filled in"]
    assert suspicions({"email": "a@b.co", "_gotcha": "x"}, forms["demo"]) == []


def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy():
    from capture.throttle import client_address, parse_networks

    proxies = parse_networks("10.0.0.0/8, 192.168.1.5", "test")
    assert client_address("198.51.100.7", "203.0.113.9", proxies) == "198.51.100.7"  # not a proxy: spoofed header
    assert client_address("10.1.2.3", "203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("10.1.2.3", "203.0.113.9, 192.168.1.5", proxies) == "203.0.113.9"  # two proxies deep
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
