import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from leadpipe_common.events import Contact
from leadpipe_common.testing import factories
from leadpipe_common.throttle import parse_rate

from capture.domain import (ConsentWord, Form, InvalidSubmission, OnRecord, address_stem, captcha_answer,
                            captcha_suspicions, capture_lead, erasure_key, fingerprint, form_named, issue_form_token,
                            landing_utms, latest_contact, may_post_from, naming_visitors, newer_word, overlong,
                            parse_forms, parse_identity, parse_origins, parse_unlisted, person_key, quarantined_fields,
                            stated_consent, suspicions, unread_consent, unverifiable)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
LEAD_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def capture(fields, at=NOW, **kw):
    return capture_lead(fields, lead_id=LEAD_ID, received_at=at, **kw)


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


@pytest.mark.parametrize("blank", [None, "", "  "], ids=["json-null", "empty", "blank"])
def test_a_blank_or_null_email_is_refused_as_required_as_a_missing_one_is(blank):
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": blank, "first_name": "Ada"})
    assert [(e.field, e.reason) for e in err.value.errors] == [("email", "is required")]


def test_an_email_that_is_no_text_is_still_refused_as_no_string():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": ["ada@example.com"]})
    assert [(e.field, e.reason) for e in err.value.errors] == [("email", "Input should be a valid string")]


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": "not-an-address", "phone": "1" * 41, "first_name": "x" * 201})
    assert {e.field for e in err.value.errors} == {"email", "phone", "first_name"}


def test_unknown_fields_are_ignored():
    lead = capture({"email": "ada@example.com", "hubspotutk": "abc", "gclid": "123"})
    assert lead.contact.email == "ada@example.com"


def test_a_ticked_checkbox_records_consent_and_when_it_was_given():
    lead = capture({"email": "ada@example.com", "marketing_consent": "on"})
    assert lead.contact.marketing_consent is True
    assert lead.contact.marketing_consent_at == NOW


@pytest.mark.parametrize("silent", [{}, {"marketing_consent": ""}, {"marketing_consent": " "}],
                         ids=["left-out", "empty", "blank"])
def test_no_consent_records_no_time(silent):
    lead = capture({"email": "ada@example.com", **silent})
    assert lead.contact.marketing_consent is False
    assert lead.contact.marketing_consent_at is None


@pytest.mark.parametrize(("sent", "said"), [(1, True), (0, False), ("1", True), ("0", False), ("Yes", True),
                                            ("OFF", False), (True, True), (False, False)])
def test_json_one_and_zero_say_yes_and_no_as_the_text_and_the_booleans_do(sent, said):
    fields = {"email": "ada@example.com", "marketing_consent": sent}
    assert (capture(fields).contact.marketing_consent, stated_consent(fields), unread_consent(fields)) == (said, said, [])


@pytest.mark.parametrize("sent", ["yes please", "checked", "I agree", 2, -1, 0.5, ["on"], {"value": "on"}])
def test_a_consent_value_neither_yes_nor_no_keeps_the_lead_as_having_said_nothing(sent):
    """A form builder sending the box's label was a 422 for the whole submission, which the visitor could not fix;
    it must not be taken for a yes either."""
    fields = {"email": "ada@example.com", "marketing_consent": sent}
    lead = capture(fields)
    assert (lead.contact.marketing_consent, lead.contact.marketing_consent_at) == (False, None)
    assert stated_consent(fields) is None
    assert unread_consent(fields) == ["marketing_consent"]


@pytest.mark.parametrize("silent", [{}, {"marketing_consent": None}, {"marketing_consent": " "}])
def test_consent_left_out_or_blank_is_nothing_said_not_a_value_unread(silent):
    assert unread_consent({"email": "ada@example.com", **silent}) == []


def test_json_numbers_on_text_fields_are_taken_as_their_text():
    """Zapier, Make and spreadsheets send a phone number or a numeric campaign term as a number: each was a 422."""
    lead = capture({"email": "ada@example.com", "phone": 4155552671, "company": 3, "utm_term": 2024,
                    "utm_content": 1.5, "form_id": 42})
    assert (lead.contact.phone, lead.contact.company) == ("4155552671", "3")
    assert (lead.attribution.utm_term, lead.attribution.utm_content, lead.attribution.form_id) == ("2024", "1.5", "42")


def test_a_json_number_longer_than_its_field_is_refused_naming_it_as_text_is():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": "ada@example.com", "phone": 10**41})
    assert [(e.field, e.reason) for e in err.value.errors] == [("phone", "String should have at most 40 characters")]


@pytest.mark.parametrize(("fields", "form_id", "named"), [
    ({"form_id": 2024}, None, "2024"), ({"form_id": " demo "}, None, "demo"), ({"form_id": "demo"}, "contact", "contact"),
    ({"form_id": True}, None, None), ({}, None, None)])
def test_the_form_a_submission_names_is_the_one_its_lead_is_filed_under(fields, form_id, named):
    assert form_named(fields, form_id) == named
    if named is not None:
        assert capture({"email": "ada@example.com", **fields}, form_id=form_id).attribution.form_id == named


PAGE = "https://www.example.com/demo?utm_source=linkedin&utm_campaign=q4%20launch&utm_term=cloud+crm&gclid=x"


def test_utms_left_out_are_taken_from_the_landing_pages_query_string():
    lead = capture({"email": "ada@example.com", "landing_page": PAGE})
    assert (lead.attribution.utm_source, lead.attribution.utm_campaign, lead.attribution.utm_term,
            lead.attribution.utm_medium) == ("linkedin", "q4 launch", "cloud crm", None)


@pytest.mark.parametrize("blank", [None, "", "  "], ids=["json-null", "empty", "blank"])
def test_a_blank_utm_field_is_taken_from_the_landing_page_too(blank):
    assert capture({"email": "ada@example.com", "landing_page": PAGE,
                    "utm_source": blank}).attribution.utm_source == "linkedin"


def test_a_utm_field_sent_wins_over_the_landing_pages():
    lead = capture({"email": "ada@example.com", "landing_page": PAGE, "utm_source": "newsletter"})
    assert (lead.attribution.utm_source, lead.attribution.utm_campaign) == ("newsletter", "q4 launch")


def test_a_utm_from_the_landing_page_is_cut_to_the_fields_limit_and_said_to_be_as_a_sent_one_is():
    """Taken from the landing page, it was cut but never counted in capture_attribution_cut_total."""
    fields = {"email": "ada@example.com", "landing_page": f"https://example.com/?utm_campaign={'c' * 300}"}
    assert capture(fields).attribution.utm_campaign == "c" * 200
    assert overlong(fields) == overlong({"utm_campaign": "c" * 300}) == ["utm_campaign"]
    assert overlong({**fields, "utm_campaign": "sent"}) == []  # the field sent wins, uncut


@pytest.mark.parametrize(("page", "utms"), [
    ("https://example.com/?utm_source=a&utm_source=b", {"utm_source": "a"}),
    ("https://example.com/?utm_source=&utm_medium=+", {}),
    ("https://example.com/?utm_source=a%00b&utm_medium=cpc", {"utm_medium": "cpc"}),
    ("https://example.com/?UTM_SOURCE=a&utm_sources=b&utm_id=c", {}),
    ("https://example.com/#?utm_source=a", {}),
    ("https://example.com/?utm_content=ada%40stripe.com&utm_term=ada%2540x.io&utm_medium=email",
     {"utm_medium": "email"}),
    ("https://example.com/?utm_campaign=%C3%A9t%C3%A9&utm_source=%E9t%E9&utm_medium=%81%8D", {
        "utm_campaign": "été", "utm_source": "été"}),
    ("https://example.com/?utm_campaign=été+2026&utm_term=a%2Bb", {"utm_campaign": "été 2026", "utm_term": "a+b"}),
    ("https://example.com/", {}), ("http://[::1/?utm_source=a", {}), (None, {}), (42, {})],
    ids=["first-wins", "blank", "nul", "other-names", "fragment", "address", "not-utf-8", "unescaped", "no-query",
         "malformed", "null", "number"])
def test_only_a_landing_pages_utm_parameters_with_something_to_say_are_read(page, utms):
    assert landing_utms(page) == utms


def test_blank_form_fields_are_absent_not_empty_strings():
    lead = capture({"email": "ada@example.com", "company": "   ", "phone": ""})
    assert lead.contact.company is None and lead.contact.phone is None


def test_a_field_of_nothing_but_invisible_characters_is_absent_and_a_touch_keeps_what_the_lead_said():
    """A zero-width space or a word joiner survived strip(): the field was given, and a touch put an invisible
    first name and phone over the lead's."""
    lead = capture({"email": "ada@example.com", "first_name": "Ada", "phone": "+1 415 555 2671",
                    "last_name": "\u200eLovelace\ufeff"})
    touch = capture({"email": "ada@example.com", "first_name": "\u200b", "phone": " \u2060 "})
    assert (touch.contact.first_name, touch.contact.phone, lead.contact.last_name) == (None, None, "Lovelace")
    merged = latest_contact(OnRecord(lead.contact), touch).contact
    assert (merged.first_name, merged.phone) == ("Ada", "+1 415 555 2671")
    assert capture({"email": "ada@example.com", "company": "\u0645\u200c\u0627"}).contact.company == "\u0645\u200c\u0627"
    scotland = "Go \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"  # tag characters: a flag
    assert capture({"email": "ada@example.com", "message": scotland}).contact.message == scotland
    assert capture({"email": "ada@example.com", "company": "\u200b\u3000\u200b x \u2060"}).contact.company == "x"


def test_an_invisible_character_around_a_form_id_an_address_to_erase_or_a_utm_is_trimmed_as_in_a_field():
    """Blankness was judged two ways: a form id with a zero-width space was looked up as no form but filed as the
    form; a quarantined address with one could not be named by an erasure; an invisible utm_source hid the next."""
    assert form_named({"form_id": "\u200bdemo-request"}, None) == "demo-request"
    assert erasure_key("ada@example.com\u200b", IDENTITY) == erasure_key("ada@example.com", IDENTITY)
    assert landing_utms("https://x.example/?utm_source=%E2%80%8B&utm_source=google&utm%5Fmedium=cpc") == {
        "utm_source": "google", "utm_medium": "cpc"}


def test_a_landing_page_with_long_tracking_parameters_is_cut_to_its_limit_and_the_lead_kept():
    """location.href with long tracking parameters, or an ad's long utm_content, was a 422 no visitor could act on:
    the lead was lost."""
    page = "https://www.example.com/demo?" + "gclid=" + "a" * 3000
    lead = capture({"email": "ada@example.com", "landing_page": page, "referrer": page, "utm_content": "é" * 250,
                    "utm_term": "  spring sale  "})
    assert lead.attribution.landing_page == page[:2048] and lead.attribution.referrer == page[:2048]
    assert lead.attribution.utm_content == "é" * 200
    assert lead.attribution.utm_term == "spring sale"


def test_a_cut_leaves_no_half_a_percent_escape_at_the_end():
    page = "https://www.example.com/?q=" + "a" * 2019 + "%2Fb"  # the 2,048th character is the 2 of %2F
    assert capture({"email": "ada@example.com", "landing_page": page}).attribution.landing_page == page[:2046]


@pytest.mark.parametrize("kept", range(1, 13))
def test_a_cut_leaves_no_part_of_a_characters_escapes_at_the_end(kept):
    """Cut after %C3 of %C3%A9 (é), the page kept a lone byte escape, on which decodeURIComponent throws: a cut
    anywhere in the escapes of one character (here 😀, %F0%9F%98%80) drops them all, one after them keeps them."""
    smiley = "%F0%9F%98%80"
    start = "https://www.example.com/?q=" + "a" * (2048 - 27 - kept)  # the cut keeps `kept` characters of smiley
    page = start + smiley + "b" * 100
    landing_page = capture({"email": "ada@example.com", "landing_page": page}).attribution.landing_page
    assert landing_page == (start + smiley if kept == len(smiley) else start)
    assert unquote(landing_page, errors="strict").endswith("a😀" if kept == len(smiley) else "a")


def test_only_what_a_script_fills_in_is_cut_and_what_the_person_typed_is_refused():
    long = {"email": "ada@example.com", "first_name": "x" * 201, "message": "x" * 5001, "offer": "x" * 201,
            "utm_source": "x" * 201, "landing_page": "https://example.com/" + "x" * 2048}
    with pytest.raises(InvalidSubmission) as err:
        capture(long)
    assert {e.field for e in err.value.errors} == {"first_name", "message", "offer"}
    assert overlong(long) == ["utm_source", "landing_page"]
    assert overlong({"utm_source": "x" * 200, "landing_page": None}) == []


@pytest.mark.parametrize(("page", "kept"), [
    ("https://example.com/demo?utm_source=news&email=ada%40stripe.com&gclid=x",
     "https://example.com/demo?utm_source=news&gclid=x"),
    ("https://ada:pw@example.com/reset?token=abc#/welcome?name=Ada", "https://example.com/reset"),
    ("https://example.com/people/ada@stripe.com", None),
    ("http://[::1/?email=ada@stripe.com", None),
    ("https://example.com/demo?utm_source=news&fbclid=IwAR2&ref=partner#pricing",
     "https://example.com/demo?utm_source=news&fbclid=IwAR2&ref=partner#pricing"),
], ids=["address-parameter", "userinfo-token-fragment", "path", "malformed", "campaign-alone"])
@pytest.mark.parametrize("field", ["landing_page", "referrer"])
def test_a_page_keeps_its_campaigns_parameters_and_loses_what_names_its_visitor(field, page, kept):
    """leads.lifecycle carries the attribution on every step and is kept for ever, where no erasure reaches."""
    fields = {"email": "ada@stripe.com", field: page}
    assert getattr(capture(fields).attribution, field) == kept
    assert naming_visitors(fields) == ([] if kept == page else [field])


def test_the_landing_pages_utms_are_read_before_its_visitor_is_cut():
    page = "https://example.com/demo?utm_source=news&utm_campaign=q4&email=ada@stripe.com"
    attribution = capture({"email": "ada@stripe.com", "landing_page": page}).attribution
    assert (attribution.utm_source, attribution.utm_campaign) == ("news", "q4")
    assert attribution.landing_page == "https://example.com/demo?utm_source=news&utm_campaign=q4"


def test_a_long_page_loses_its_visitor_before_it_is_cut_to_its_limit():
    """Cut to 2,048 characters first, ``to=ada@stripe`` lost its dot and was kept as no address."""
    page = "https://example.com/demo?gclid=" + "a" * 2003 + "&to=ada@stripe.com&ref=x"
    assert page[:2048].endswith("&to=ada@stripe")
    fields = {"email": "ada@stripe.com", "landing_page": page}
    assert capture(fields).attribution.landing_page == page.replace("&to=ada@stripe.com", "")
    assert (overlong(fields), naming_visitors(fields)) == ([], ["landing_page"])


def test_an_attribution_field_that_is_not_text_is_still_refused():
    with pytest.raises(InvalidSubmission) as err:
        capture({"email": "ada@example.com", "utm_content": ["a", "b"]})
    assert [e.field for e in err.value.errors] == ["utm_content"]


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


@pytest.mark.parametrize(("raw", "reason"), [
    ({"forms": {"report": {"offer": 2024}}}, r"forms.report.offer: expected text \(quote it: offer: \"2024\"\)"),
    ({"forms": {"report": {"name": True}}}, "forms.report.name: expected text"),
    ({"forms": {"report": {"thank_you_url": "/thanks"}}}, "forms.report.thank_you_url: expected an absolute http"),
    ({"forms": {"report": {"thank_you_url": 42}}}, "forms.report.thank_you_url: expected an absolute http"),
    ({"forms": {"contact us": {}}}, "forms.contact us: a form id is 1 to 100 letters"),
    ({"forms": {False: {}}}, "forms.False: a form id is .* quote one YAML reads otherwise"),
    ({"form": {"demo": {"require_token": True}}}, r"unknown keys \['form'\] \(known: forms, unlisted\)"),
    ({"forms": ["demo"]}, "forms: expected a mapping"),
], ids=["number-offer", "boolean-name", "relative-thank-you-url", "number-thank-you-url", "id-with-a-space",
        "yaml-boolean-id", "misspelt-top-level-key", "forms-as-a-list"])
def test_the_forms_file_refuses_what_would_fail_each_post_later_or_switch_its_checks_off(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_forms(raw)


def test_a_thank_you_url_beyond_ascii_is_kept_as_a_header_can_carry_it():
    """Starlette writes headers in Latin-1: as written, a Japanese host in HX-Redirect was a 500 after the lead was
    stored. Its escapes stay as they were."""
    forms = parse_forms({"forms": {"jp": {"thank_you_url": "https://例え.JP/спасибо?q=ü&r=%20#top"}}})
    assert forms["jp"].thank_you_url == "https://xn--r8jz45g.jp/%D1%81%D0%BF%D0%B0%D1%81%D0%B8%D0%B1%D0%BE?q=%C3%BC&r=%20#top"
    assert parse_forms({"forms": {"en": {"thank_you_url": "https://example.com/thanks?a=1"}}})[
        "en"].thank_you_url == "https://example.com/thanks?a=1"
    with pytest.raises(ValueError, match="forms.x.thank_you_url: its host is no domain name IDNA can spell in ASCII"):
        parse_forms({"forms": {"x": {"thank_you_url": "https://thanks😀.example/"}}})


def test_a_utm_sent_as_its_own_field_holding_an_address_is_left_out():
    """A mail tool's merge tag (utm_source=ann@example.com) went on every lifecycle event, kept for ever where no
    erasure reaches; one read from the landing page was left out already."""
    lead = capture({"email": "ann@example.com", "utm_source": "ann@example.com", "utm_campaign": "Spring @ home",
                    "utm_content": "for ann+news@example.com"})
    assert (lead.attribution.utm_source, lead.attribution.utm_content) == (None, None)
    assert lead.attribution.utm_campaign == "Spring @ home"  # an @ alone names no one


def test_a_form_id_of_digits_is_the_text_it_reads_as():
    assert list(parse_forms({"forms": {2024: {"offer": "report"}}})) == ["2024"]


def test_a_form_listed_as_a_number_and_as_text_is_refused_not_one_dropped():
    """2024: and '2024': are two keys to YAML and one form id: the later replaced the earlier without a word."""
    with pytest.raises(ValueError, match=r"^forms\.2024: listed twice"):
        parse_forms({"forms": {2024: {"offer": "report"}, "2024": {"offer": "demo"}}})


@pytest.mark.parametrize("setting, value", [
    ("min_fill_seconds", float("nan")), ("min_fill_seconds", float("inf")), ("token_max_age_seconds", float("inf")),
    ("token_max_age_seconds", 1e12), ("token_max_age_seconds", float("nan")),
])
def test_a_time_no_token_could_be_checked_against_is_refused_naming_the_setting(setting, value):
    """YAML reads .nan and .inf as numbers: a NaN fill time passed every check (none was made), and a token age of
    1e12 s overflowed each token's time: a 500 on every token asked for."""
    with pytest.raises(ValueError, match=rf"^forms\.demo\.{setting}: expected a .* number of seconds, at most "):
        parse_forms({"forms": {"demo": {"require_token": True, setting: value}}})


@pytest.mark.parametrize("min_fill, max_age", [(100, 10), (60, 90)])
def test_a_fill_time_over_half_the_tokens_life_is_refused(min_fill, max_age):
    """Past the whole life no token could be old enough and young enough at once: every submission was
    quarantined. Past half, a page's renewed token (asked for at half its old one's life) was not old enough
    before the old one expired: what was posted then was quarantined."""
    with pytest.raises(ValueError, match=rf"^forms\.demo\.min_fill_seconds: {min_fill} is more than half "
                                         rf"token_max_age_seconds \({max_age}\)"):
        parse_forms({"forms": {"demo": {"min_fill_seconds": min_fill, "token_max_age_seconds": max_age}}})
    assert parse_forms({"forms": {"demo": {"min_fill_seconds": 45, "token_max_age_seconds": 90}}})


def test_a_forms_offer_is_read_as_a_submitted_one():
    """Rules and reports match an offer whole: a form's "demo " matched no rule's "demo"."""
    assert parse_forms({"forms": {"demo": {"offer": " demo\u200b "}}})["demo"].offer == "demo"
    assert parse_forms({"forms": {"demo": {"offer": "   "}}})["demo"].offer is None
    with pytest.raises(ValueError, match=r"^forms\.demo\.offer: at most 200 characters"):
        parse_forms({"forms": {"demo": {"offer": "x" * 201}}})


@pytest.mark.parametrize("field", ["email", "marketing_consent", "_token"])
def test_a_captcha_field_naming_a_field_of_the_submission_is_refused(field):
    """Every person's address would go to the CAPTCHA provider as the widget's answer, and be refused there."""
    with pytest.raises(ValueError, match=rf"^forms\.demo\.captcha\.field: {field} is a field of the submission"):
        parse_forms({"forms": {"demo": {"captcha": {"provider": "turnstile", "secret_env": "X", "field": field}}}})


def test_unlisted_checks_take_only_what_a_form_not_listed_can_have():
    assert parse_unlisted({}).require_token is False and parse_unlisted({}).captcha is None
    assert parse_unlisted({"unlisted": {"require_token": True, "rate_limit": "5/minute"}}).require_token
    with pytest.raises(ValueError, match=r"unlisted: unknown keys \['thank_you_url'\]"):
        parse_unlisted({"unlisted": {"thank_you_url": "https://example.com/thanks"}})


def test_a_rate_that_lets_nothing_through_is_refused():
    with pytest.raises(ValueError, match="forms.demo.rate_limit: '0/minute' lets nothing through"):
        parse_rate("0/minute", "forms.demo.rate_limit")


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


@pytest.mark.parametrize(("written", "sent"), [
    ("https://www.example.com:443", "https://www.example.com"), ("http://127.0.0.1:80", "http://127.0.0.1"),
    ("https://www.example.com:0443", "https://www.example.com"),
    ("http://app.example:08080", "http://app.example:8080"),
    ("https://app.example:80", "https://app.example:80"), ("http://app.example:443", "http://app.example:443"),
    ("https://www.example.com", "https://www.example.com")])
def test_an_origin_is_kept_as_browsers_send_it_without_its_schemes_default_port(written, sent):
    """Browsers leave the default port out of Origin: https://www.example.com:443 was taken, and matched no page."""
    forms = parse_forms({"forms": {"demo": {"allowed_origins": [written]}}})
    assert forms["demo"].allowed_origins == {sent}
    assert may_post_from(sent, forms["demo"], frozenset())
    assert parse_origins(f"{written}, https://other.example", "CAPTURE_CORS_ORIGINS") == {sent, "https://other.example"}


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_an_origin_naming_a_port_no_page_has_is_refused_naming_it(port):
    with pytest.raises(ValueError, match=f"CAPTURE_CORS_ORIGINS: 'https://www.example.com:{port}' names port "
                                         f"{int(port)}; a port is 1 to 65535"):
        parse_origins(f"https://www.example.com:{port}", "CAPTURE_CORS_ORIGINS")


def test_an_origin_whose_port_is_written_in_other_digits_than_ascii_is_refused_naming_where():
    """Browsers write a port in ASCII digits; one in Arabic-Indic digits was read as 443 by the old check, and is
    now refused where it is written rather than by the shared normalisation, which would not name it."""
    with pytest.raises(ValueError, match="CAPTURE_CORS_ORIGINS: 'https://www.example.com:٤٤٣' is not an origin like"):
        parse_origins("https://www.example.com:٤٤٣", "CAPTURE_CORS_ORIGINS")


def test_a_filled_hidden_field_is_a_bots_mark_and_a_form_may_name_its_own():
    forms = parse_forms({"forms": {"demo": {"honeypot": "website"}}})

    def judged(fields, form):
        return suspicions(fields, form, NOW, KEY)

    assert judged({"email": "a@b.co", "_gotcha": "http://spam"}, None) == ["the hidden field _gotcha was filled in"]
    assert judged({"email": "a@b.co", "_gotcha": ""}, None) == []
    assert judged({"email": "a@b.co", "website": "x"}, forms["demo"]) == ["the hidden field website was filled in"]
    assert judged({"email": "a@b.co", "_gotcha": "x"}, forms["demo"]) == []


@pytest.mark.parametrize("field", ["company", "email", "utm_source", "_token"])
def test_a_honeypot_naming_a_field_people_fill_in_is_refused_naming_the_form_and_the_field(field):
    """Every real person who filled in the company field was quarantined as a bot."""
    with pytest.raises(ValueError, match=f"forms.demo.honeypot: {field} is a field of the submission"):
        parse_forms({"forms": {"demo": {"honeypot": field}}})
    with pytest.raises(ValueError, match=f"unlisted.honeypot: {field} is a field"):
        parse_unlisted({"unlisted": {"honeypot": field}})


def test_a_honeypot_naming_the_forms_captcha_field_is_refused():
    """The CAPTCHA widget fills its field for every person who solves it: each would be quarantined."""
    with pytest.raises(ValueError, match="forms.demo.honeypot: cf-turnstile-response is a field"):
        parse_forms({"forms": {"demo": {"honeypot": "cf-turnstile-response", "captcha": {
            "provider": "turnstile", "secret_env": "TURNSTILE_SECRET"}}}})


KEY = b"k" * 32
TOKEN_FORM = parse_forms({"forms": {"demo": {"require_token": True, "min_fill_seconds": 3,
                                             "token_max_age_seconds": 3600}}})["demo"]


def fill(seconds_after_shown: float, token_form: str = "demo", key: bytes = KEY) -> list[str]:
    token = issue_form_token(token_form, NOW, key)
    return suspicions({"_token": token}, TOKEN_FORM, NOW + timedelta(seconds=seconds_after_shown), KEY)


def test_a_person_who_took_their_time_passes_the_fill_time_check():
    assert fill(3) == [] and fill(600) == []


def test_a_submission_sooner_than_the_forms_minimum_fill_time_is_a_bots():
    assert fill(0.4) == ["sent 0.4 s after the form was shown (at least 3 s expected)"]


def test_an_expired_forged_or_missing_token_is_a_bots():
    assert fill(3601) == ["the form token expired (1.0 h old; at most 1 h)"]
    assert fill(10, key=b"another key") == ["the form token is forged or belongs to another form"]
    assert fill(10, token_form="pricing") == ["the form token is forged or belongs to another form"]
    stamp, mac = issue_form_token("demo", NOW, KEY).split(".")
    earlier = format(int(stamp, 16) - 60_000, "x")  # claims the form was shown a minute sooner
    assert suspicions({"_token": f"{earlier}.{mac}"}, TOKEN_FORM, NOW, KEY) == [
        "the form token is forged or belongs to another form"]
    assert suspicions({}, TOKEN_FORM, NOW, KEY) == ["no form token (the form's token script did not run)"]
    assert suspicions({"_token": ["a", "list"]}, TOKEN_FORM, NOW, KEY) == [
        "no form token (the form's token script did not run)"]


@pytest.mark.parametrize("token", ["\ud800", "1.\ud800", "\ud800.abc", "é.abc"])
def test_a_token_no_key_could_have_signed_is_forged_not_an_error(token):
    """JSON lets a bot send a lone surrogate, which could not be hashed: the post was a 500."""
    assert suspicions({"_token": token}, TOKEN_FORM, NOW, KEY) == [
        "the form token is forged or belongs to another form"]


def test_a_form_that_does_not_require_a_token_ignores_it():
    plain = parse_forms({"forms": {"demo": {}}})["demo"]
    assert suspicions({"_token": "garbage"}, plain, NOW, KEY) == []


CAPTCHA = parse_forms({"forms": {"demo": {"captcha": {
    "provider": "turnstile", "secret_env": "TURNSTILE_SECRET", "on_error": "closed"}}}})["demo"].captcha
#: A reCAPTCHA v3 form: its answers carry a score.
SCORED = parse_forms({"forms": {"demo": {"captcha": {
    "provider": "recaptcha", "secret_env": "RECAPTCHA_SECRET", "on_error": "closed", "min_score": 0.5}}}})[
    "demo"].captcha


def test_a_provider_names_its_verifier_and_answer_field():
    assert CAPTCHA.verify_url == "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    assert CAPTCHA.field == "cf-turnstile-response" and not CAPTCHA.fail_open and CAPTCHA.timeout_s == 3
    assert captcha_answer({"cf-turnstile-response": " abc "}, CAPTCHA) == "abc"


def test_a_solved_captcha_vouches_and_an_unsolved_one_does_not():
    assert captcha_suspicions(CAPTCHA, "abc", {"success": True}) == []
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": 0.9}) == []
    assert captcha_suspicions(CAPTCHA, "abc", {"success": False, "error-codes": ["invalid-input-response"]}) == [
        "the CAPTCHA was not solved (invalid-input-response)"]
    assert captcha_suspicions(CAPTCHA, None, None) == ["no CAPTCHA answer"]
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": 0.2}) == [
        "the CAPTCHA score 0.2 is below the form's 0.5"]


@pytest.mark.parametrize(("provider", "setting", "value"), [
    ("turnstile", "min_score", 0.5), ("hcaptcha", "min_score", 0.5), ("hcaptcha", "action", "contact_us")])
def test_a_check_of_what_a_captcha_does_not_answer_is_refused_at_start(provider, setting, value):
    """Every answer would lack it: every submission of the form would be quarantined, silently."""
    with pytest.raises(ValueError, match=f"forms.demo.captcha.{setting}: {provider} answers no "):
        parse_forms({"forms": {"demo": {"captcha": {"provider": provider, "secret_env": "S", setting: value}}}})


def test_a_captcha_answer_no_widget_gives_is_unsolved_and_not_sent_to_the_verifier():
    """A lone surrogate could not be sent (the post was a 500); a Turnstile token is at most 2,048 characters."""
    assert unverifiable(CAPTCHA, "\ud800abc") == "the answer is not text a widget gives"
    assert captcha_suspicions(CAPTCHA, "\ud800abc", None) == [
        "the CAPTCHA was not solved (the answer is not text a widget gives)"]
    assert unverifiable(CAPTCHA, "x" * 2048) is None
    assert captcha_suspicions(CAPTCHA, "x" * 2049, None) == [
        "the CAPTCHA was not solved (the answer is 2,049 characters long; the widget's are at most 2,048)"]
    assert unverifiable(SCORED, "x" * 5000) is None  # reCAPTCHA documents no bound: its verifier judges


@pytest.mark.parametrize(("codes", "said"), [(5, "no reason given"), (None, "no reason given"),
                                            ({"a": 1}, "no reason given"), ("bad-request", "bad-request"),
                                            ([5, "bad-request"], "5, bad-request")])
def test_error_codes_that_are_not_a_list_of_text_are_read_as_well_as_they_can_be(codes, said):
    """A verifier answering a number there made every check of the form a 500."""
    assert captcha_suspicions(CAPTCHA, "abc", {"success": False, "error-codes": codes}) == [
        f"the CAPTCHA was not solved ({said})"]


def test_an_unreachable_verifier_or_a_refused_secret_follows_the_forms_on_error():
    fail_open = replace(CAPTCHA, fail_open=True)
    refused = {"success": False, "error-codes": ["invalid-input-secret"]}
    assert captcha_suspicions(fail_open, "abc", None) == []
    assert captcha_suspicions(fail_open, "abc", refused) == []  # our misconfiguration, not the person's fault
    assert captcha_suspicions(CAPTCHA, "abc", None) == [
        "the CAPTCHA could not be verified (verifier unavailable; the form fails closed)"]
    assert captcha_suspicions(CAPTCHA, "abc", refused) == [
        "the CAPTCHA could not be verified (invalid-input-secret; the form fails closed)"]


def test_a_captcha_solved_under_another_sitekey_is_a_bots_even_on_a_form_failing_open():
    """hCaptcha's sitekey-secret-mismatch was taken for our misconfiguration: failing open, a token solved on
    another site was let in, and the form's hostnames never checked."""
    fail_open = replace(CAPTCHA, fail_open=True, hostnames=frozenset({"www.example.com"}))
    mismatch = {"success": False, "error-codes": ["sitekey-secret-mismatch"]}
    assert captcha_suspicions(fail_open, "abc", mismatch) == ["the CAPTCHA was not solved (sitekey-secret-mismatch)"]


def test_a_captcha_answer_without_a_score_does_not_pass_a_form_that_asks_for_one():
    # A v2 or invisible token solved with the same secret carries no score: it must not skip the v3 check.
    no_score = "the CAPTCHA answer carries no score; the form asks for at least 0.5"
    assert captcha_suspicions(SCORED, "abc", {"success": True}) == [no_score]
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": None}) == [no_score]
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": "0.9"}) == [no_score]
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": True}) == [no_score]
    assert captcha_suspicions(SCORED, "abc", {"success": True, "score": float("nan")}) == [
        "the CAPTCHA score nan is below the form's 0.5"]
    assert captcha_suspicions(replace(SCORED, min_score=None), "abc", {"success": True}) == []


@pytest.fixture
def site():
    """A reCAPTCHA v3 form bound to its site and its widget's action."""
    return parse_forms({"forms": {"demo": {"captcha": {
        "provider": "recaptcha", "secret_env": "RECAPTCHA_SECRET", "hostnames": ["www.example.com", "example.com"],
        "action": "contact_us"}}}})["demo"].captcha


ON_SITE = {"success": True, "hostname": "www.example.com", "action": "contact_us"}


def test_a_captcha_names_the_sites_and_the_action_it_expects(site):
    assert site.hostnames == {"www.example.com", "example.com"} and site.action == "contact_us"
    assert CAPTCHA.hostnames == frozenset() and CAPTCHA.action is None
    assert captcha_suspicions(site, "abc", ON_SITE) == []
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": "Example.COM"}) == []  # host names ignore case
    turnstile = parse_forms({"forms": {"demo": {"captcha": {
        "provider": "turnstile", "secret_env": "X", "hostnames": ["127.0.0.1", "localhost"], "action": "demo-form"}}}})
    assert turnstile["demo"].captcha.action == "demo-form"  # Turnstile's actions may hold a -, reCAPTCHA's a /


def test_a_captcha_solved_on_another_site_is_a_bots(site):
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": "spam.example"}) == [
        "the CAPTCHA was solved on spam.example, not on example.com, www.example.com"]
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": "www.example.com.spam.example"}) == [
        "the CAPTCHA was solved on www.example.com.spam.example, not on example.com, www.example.com"]
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": "x" * 300}) == [
        f"the CAPTCHA was solved on {'x' * 100}…, not on example.com, www.example.com"]


def test_a_captcha_answer_naming_no_site_is_a_bots_when_the_form_names_its_sites(site):
    expected = ["the CAPTCHA answer names no host; the form expects example.com, www.example.com"]
    assert captcha_suspicions(site, "abc", {"success": True, "action": "contact_us"}) == expected
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": ""}) == expected
    assert captcha_suspicions(site, "abc", {**ON_SITE, "hostname": None}) == expected


def test_a_captcha_solved_for_another_widget_of_the_same_keys_is_a_bots(site):
    assert captcha_suspicions(site, "abc", {**ON_SITE, "action": "login"}) == [
        "the CAPTCHA was solved for the action login, not contact_us"]
    assert captcha_suspicions(site, "abc", {**ON_SITE, "action": "Contact_Us"}) == [
        "the CAPTCHA was solved for the action Contact_Us, not contact_us"]
    assert captcha_suspicions(site, "abc", {**ON_SITE, "action": "a\nb"}) == [
        "the CAPTCHA was solved for the action 'a\\nb', not contact_us"]
    assert captcha_suspicions(site, "abc", {**ON_SITE, "action": ""}) == [
        "the CAPTCHA answer carries no action; the form expects contact_us"]
    assert captcha_suspicions(site, "abc", {"success": True, "hostname": "example.com"}) == [
        "the CAPTCHA answer carries no action; the form expects contact_us"]


def test_every_way_a_solved_captcha_misses_the_form_is_named(site):
    strict = replace(site, min_score=0.5)
    assert captcha_suspicions(strict, "abc", {"success": True, "hostname": "spam.example", "action": "login"}) == [
        "the CAPTCHA was solved on spam.example, not on example.com, www.example.com",
        "the CAPTCHA was solved for the action login, not contact_us",
        "the CAPTCHA answer carries no score; the form asks for at least 0.5"]
    # Unsolved, or unverifiable, is judged before what the answer says about the site.
    assert captcha_suspicions(strict, "abc", {"success": False, "error-codes": ["timeout-or-duplicate"]}) == [
        "the CAPTCHA was not solved (timeout-or-duplicate)"]
    assert captcha_suspicions(replace(strict, fail_open=True), "abc", None) == []


@pytest.mark.parametrize(("setting", "value"), [
    ("hostnames", ["https://www.example.com"]),
    ("hostnames", ["www.example.com:443"]),
    ("hostnames", ["example.com/contact"]),
    ("hostnames", ["*.example.com"]),
    ("hostnames", ["WWW.example.com"]),
    ("hostnames", ["example.com."]),
    ("hostnames", ["example..com"]),
    ("hostnames", ["-example.com"]),
    ("hostnames", ["example.com\n"]),
    ("hostnames", [""]),
    ("hostnames", [443]),
    ("hostnames", []),
    ("hostnames", "example.com"),
    ("action", ""),
    ("action", "x" * 101),
    ("action", "contact us"),
    ("action", "contact.us"),
    ("action", "contact_us\n"),
    ("action", 5),
])
def test_a_captcha_site_or_action_misconfigured_is_refused_naming_the_setting(setting, value):
    with pytest.raises(ValueError, match=rf"^forms\.demo\.captcha\.{setting}: "):
        parse_forms({"forms": {"demo": {"captcha": {"provider": "recaptcha", "secret_env": "X", setting: value}}}})


@pytest.mark.parametrize(("captcha", "message"), [
    ({"provider": "friendly", "secret_env": "X"}, "is not one of"),
    ({"verify_url": "https://v.example/siteverify", "secret_env": "X"}, "name a provider"),
    ({"provider": "hcaptcha"}, "secret_env: name the environment variable"),
    ({"provider": "hcaptcha", "secret_env": "X", "on_error": "maybe"}, "on_error"),
    ({"provider": "hcaptcha", "secret_env": "X", "timeout_s": 0}, "timeout_s"),
    ({"provider": "hcaptcha", "secret_env": "X", "secret": "0x123"}, "unknown keys"),
    # A list or a mapping where a name goes was a TypeError ("unhashable type") at start, or read as its repr.
    ({"provider": ["recaptcha", "turnstile"], "secret_env": "X"}, r"provider: \['recaptcha', 'turnstile'\] is not "),
    ({"provider": {"name": "hcaptcha"}, "secret_env": "X"}, "provider: .* is not one of"),
    ({"provider": "hcaptcha", "secret_env": "X", "field": ["h-captcha-response"]}, "field: expected text, not list"),
])
def test_a_captcha_misconfigured_is_refused_naming_the_entry(captcha, message):
    with pytest.raises(ValueError, match=message):
        parse_forms({"forms": {"demo": {"captcha": captcha}}})


def test_forms_not_in_the_forms_file_share_one_count_per_address():
    from capture.throttle import browser_identity

    forms = {"demo-request": object()}
    assert browser_identity("203.0.113.9", "demo-request", forms) == ("address", "203.0.113.9", "demo-request")
    made_up = {browser_identity("203.0.113.9", f"x{i}", forms) for i in range(5)} | {
        browser_identity("203.0.113.9", None, forms)}
    assert made_up == {("address", "203.0.113.9", "api")}


IDENTITY = parse_identity({"plus_tags": True, "providers": {"gmail.com": {"ignore_dots": True},
                                                             "googlemail.com": {"same_as": "gmail.com"},
                                                             "tags.example": {"plus_tags": False}}})


@pytest.mark.parametrize(("email", "person"), [
    ("Jane.Doe@Siemens.com", "jane.doe@siemens.com"),  # case never matters; dots do, except at gmail.com
    ("jane.doe+webinar@siemens.com", "jane.doe@siemens.com"),
    ("Jane.Doe+news@GoogleMail.com", "janedoe@gmail.com"),
    ("j.a.n.e.doe@gmail.com", "janedoe@gmail.com"),
    ("jane+x@tags.example", "jane+x@tags.example"),  # a provider where +tags are distinct mailboxes
    ("+jane@siemens.com", "+jane@siemens.com"),  # a leading plus is the name, not a tag
])
def test_an_address_names_its_person_by_the_provider_rules(email, person):
    assert person_key(email, IDENTITY) == person


def test_identity_rules_that_make_no_sense_are_refused_naming_the_entry():
    with pytest.raises(ValueError, match="providers.a.example"):
        parse_identity({"providers": {"a.example": {"ignore_dot": True}}})
    with pytest.raises(ValueError, match="itself an alias"):
        parse_identity({"providers": {"a.example": {"same_as": "b.example"}, "b.example": {"same_as": "c.example"}}})


@pytest.mark.parametrize(("raw", "message"), [
    (["plus_tags"], "expected a mapping with plus_tags: and providers: at the top level"),
    ({"providers": ["gmail.com"]}, "providers: expected a mapping of mail domains"),
])
def test_identity_rules_of_the_wrong_shape_are_refused_not_crashed_on(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_identity(raw)


@pytest.mark.parametrize(("provider", "message"), [
    # Read for its truth, the text "false" was true: j.doe@acme.com and jdoe@acme.com became one person.
    ({"ignore_dots": "false"}, r"providers.acme.com.ignore_dots: expected true or false, not 'false' \(leave out"),
    ({"plus_tags": "no"}, r"providers.acme.com.plus_tags: expected true or false, not 'no' \(leave out the quotes\)"),
    ({"ignore_dots": 1}, r"providers.acme.com.ignore_dots: expected true or false, not 1$"),
    ({"same_as": "GMAIL.COM."}, r"providers.acme.com.same_as: 'GMAIL.COM.' is not a domain .*\(write the domain "
                                r"alone: GMAIL.COM"),
    ({"same_as": ["gmail.com"]}, r"providers.acme.com.same_as: \['gmail.com'\] is not a domain"),
    ({"same_as": "gmail"}, r"providers.acme.com.same_as: 'gmail' is not a domain .*\(write it like gmail.com"),
    ({"same_as": "gmail.com", "ignore_dots": True}, r"providers.acme.com: an alias \(same_as\) takes the rules of "
                                                    r"gmail.com; give ignore_dots there"),
    ({"ignore_dot": True}, r"providers.acme.com: unknown keys \['ignore_dot'\] \(known: ignore_dots, plus_tags"),
    (False, r"providers.acme.com: expected a mapping of ignore_dots, plus_tags, same_as"),
], ids=["quoted-false", "quoted-no", "number", "fully-qualified-alias", "alias-list", "alias-no-domain",
        "alias-with-rules-of-its-own", "misspelt-key", "not-a-mapping"])
def test_an_identity_value_of_the_wrong_type_is_refused_naming_the_entry_and_key(provider, message):
    with pytest.raises(ValueError, match=message):
        parse_identity({"providers": {"acme.com": provider}})


@pytest.mark.parametrize(("providers", "message"), [
    ({"https://gmail.com": {"ignore_dots": True}},
     r"providers.https://gmail.com: .*\(write the domain alone: gmail.com\)"),
    ({True: {"ignore_dots": True}}, "providers.True: True is not a domain"),
    ({"gmail.com": {"ignore_dots": True}, "Gmail.com": {}}, "providers.Gmail.com: gmail.com is listed already"),
], ids=["a-site", "a-yaml-boolean", "listed-twice-in-two-cases"])
def test_an_identity_provider_that_is_no_mail_domain_is_refused(providers, message):
    with pytest.raises(ValueError, match=message):
        parse_identity({"providers": providers})


def test_a_provider_written_in_either_spelling_of_its_domain_rules_its_addresses():
    rules = parse_identity({"providers": {"XN--MLLER-KVA.de": {"ignore_dots": True},
                                          "mueller.example": {"same_as": "xn--mller-kva.de"}}})
    # Addresses are kept as email-validator spells them, the Unicode way: an alias names the same person.
    assert person_key("j.doe@müller.de", rules) == person_key("j.doe@mueller.example", rules) == "jdoe@müller.de"


def person_of(address: str) -> str:
    """The person key of ``address`` as capture keeps it (email-validator's spelling)."""
    return person_key(capture({"email": address}).contact.email, IDENTITY)


@pytest.mark.parametrize(("one", "another"), [("jo@straße.de", "jo@strasse.de"), ("jo@ας.gr", "jo@ασ.gr")])
def test_addresses_at_two_domains_that_casefold_spells_alike_are_two_people(one, another):
    """str.casefold makes ß "ss" and ς "σ": straße.de (xn--strae-oqa.de) and strasse.de, two domains with two
    owners, were one person's, and one's post a touch of the other's lead."""
    assert person_of(one) != person_of(another)


@pytest.mark.parametrize("typed", ["Jo@Straße.DE", "jo@STRAẞE.de", "JO@straße.de"])
def test_a_domain_with_a_sharp_s_names_one_person_whatever_case_it_was_typed_in(typed):
    assert person_of(typed) == "jo@straße.de"


@pytest.mark.parametrize(("address", "person"), [
    ("Jo@Müller.DE", "jo@müller.de"), ("Jo@闲鱼.SHOP", "jo@闲鱼.shop"),
    # Cherokee: IDNA folds to the capital letters, as casefold does; lower() would have changed these people's keys.
    ("Jo@ꭰꭱ.com", "jo@ᎠᎡ.com"),
])
def test_a_person_at_a_domain_that_idna_and_casefold_fold_alike_keeps_their_key(address, person):
    assert person_of(address) == person


def test_the_identity_rules_of_a_domain_with_a_sharp_s_are_its_own_not_those_of_its_casefold_twin():
    """Looked up as strasse.example, straße.example's own entry never applied, and strasse.de's applied to straße.de."""
    rules = parse_identity({"providers": {"straße.example": {"same_as": "gmail.com"},
                                          "gmail.com": {"ignore_dots": True}, "strasse.de": {"ignore_dots": True}}})
    assert person_key("j.o@straße.example", rules) == "jo@gmail.com"
    assert person_key("j.o@straße.de", rules) == "j.o@straße.de"


@pytest.mark.parametrize("asked", ["jo@straße.de", " JO@Straße.DE ", "jo+news@xn--strae-oqa.de"])
def test_an_erasure_names_the_person_every_spelling_of_their_address_names_as_a_submission_would(asked):
    """The address an admin types is read as a submission's (email-validator's spelling, an IDNA domain as its
    Unicode), so it finds the person whichever way the lead came in."""
    assert erasure_key(asked, IDENTITY) == person_of("Jo+x@Straße.de") == "jo@straße.de"


@pytest.mark.parametrize("sent", ["J.Doe+news@GoogleMail.com", "+tag.x+y@gmail.com", "ÉLODIE.x@stripe.com",
                                  "e\u0301mile@stripe.com", "ßtefan+x@stripe.com", "Ａda.b@stripe.com", "jo@x.de"])
def test_a_quarantined_address_is_found_by_a_stem_its_person_key_begins_with_under_any_identity_rules(sent):
    """A quarantined submission is found by its stem (``store.forget_quarantined``) when the key an erasure reads
    its kept address as, under the rules of the erasure's day, not those it was kept under, begins with it."""
    stem = address_stem(capture({"email": sent}).contact.email)
    kept = quarantined_fields({"email": sent})["email"]
    keys = {erasure_key(kept, parse_identity({"plus_tags": plus_tags,
                                              "providers": {"gmail.com": {"ignore_dots": dots},
                                                            "googlemail.com": {"same_as": "gmail.com"}}}))
            for plus_tags in (True, False) for dots in (True, False)}
    assert stem and all(key.startswith(stem) for key in keys), (stem, keys)


def test_an_address_stem_ends_before_what_a_rule_may_change():
    assert [address_stem(a) for a in ("J.Doe+news@gmail.com", "jdoe+news@gmail.com", "+x+y@gmail.com", "jo@x.de")] \
        == ["j", "jdoe", "+x", "jo"]


def test_an_erasure_naming_no_address_is_refused_without_repeating_it():
    with pytest.raises(ValueError) as refused:
        erasure_key("jane doe at example", IDENTITY)
    assert "jane" not in str(refused.value)


def test_a_request_fingerprint_ignores_field_order_but_not_values_or_the_form():
    assert fingerprint({"email": "a@b.co", "x": "1"}, "demo") == fingerprint({"x": "1", "email": "a@b.co"}, "demo")
    assert fingerprint({"email": "a@b.co"}, "demo") != fingerprint({"email": "a@b.co"}, "pricing")
    assert fingerprint({"email": "a@b.co"}, None) != fingerprint({"email": "c@b.co"}, None)


def test_a_touch_that_leaves_fields_out_keeps_what_the_person_told_before():
    before = OnRecord(Contact(email="jo@x.example", job_title="CTO", country="US", marketing_consent=True))
    now = latest_contact(before, capture({"email": "jo@x.example", "job_title": "CEO", "message": "call me"})).contact
    assert (now.job_title, now.country, now.message, now.marketing_consent) == ("CEO", "US", "call me", True)


@pytest.mark.parametrize("no", ["0", "off", "false", False])
def test_a_touch_saying_no_to_marketing_withdraws_the_consent_given_before_and_its_time(no):
    """The hidden "0" of an unticked checkbox made a contact false, which the merge took for a field left out: the
    person's old consent, and its time, went on to the sales tools."""
    given = OnRecord(capture({"email": "jo@x.example", "marketing_consent": "on"}).contact)
    withdrawal = {"email": "jo@x.example", "marketing_consent": no}
    now = latest_contact(given, capture(withdrawal, at=LATER), stated_consent(withdrawal)).contact
    assert (now.marketing_consent, now.marketing_consent_at) == (False, None)


@pytest.mark.parametrize("silent", [{}, {"marketing_consent": None}, {"marketing_consent": ""},
                                    {"marketing_consent": " "}, {"marketing_consent": "yes please"}],
                         ids=["left-out", "json-null", "empty", "blank", "neither-yes-nor-no"])
def test_a_touch_saying_nothing_of_marketing_keeps_the_consent_given_before(silent):
    """A blank consent was a no, unlike a blank in any other field: an importer sending "" for what it did not know
    withdrew the consent of every person it touched."""
    given = OnRecord(capture({"email": "jo@x.example", "marketing_consent": "on"}).contact)
    touch = {"email": "jo@x.example", "job_title": "CEO", **silent}
    now = latest_contact(given, capture(touch, at=LATER), stated_consent(touch)).contact
    assert (now.marketing_consent, now.marketing_consent_at, now.job_title) == (True, NOW, "CEO")


YES, NO = {"email": "jo@x.example", "marketing_consent": "on"}, {"email": "jo@x.example", "marketing_consent": "0"}


def opened(fields, at):
    """What a lead opened by ``fields`` at ``at`` has on record."""
    return OnRecord.first(capture(fields, at=at), stated_consent(fields))


def said_no_at(at, opening):
    """The record of a person who said no at ``at``: opening their lead, or touching it after an earlier yes."""
    if opening:
        return opened(NO, at)
    return latest_contact(opened(YES, at - timedelta(days=1)), capture(NO, at=at), False)


@pytest.mark.parametrize("opening", [True, False], ids=["the-no-opened-the-lead", "the-no-touched-it"])
@pytest.mark.parametrize("yes_at", [NOW, LATER], ids=["older-yes", "yes-as-old"])
def test_a_released_yes_not_newer_than_the_no_given_since_does_not_grant_consent_again(opening, yes_at):
    """A yes quarantined at T1, a no at T2, the yes released at T3: taken as the newest word, the release made the
    person consent again. The rest of what it sent is taken, as from any touch."""
    record = said_no_at(LATER, opening)
    released = latest_contact(record, capture(YES | {"job_title": "CTO"}, at=yes_at), True)
    assert (released.contact.marketing_consent, released.contact.marketing_consent_at) == (False, None)
    assert released.contact.job_title == "CTO"
    assert released.consent_withdrawn_at == LATER  # so an old yes released next is no newer either


@pytest.mark.parametrize("opening", [True, False], ids=["the-no-opened-the-lead", "the-no-touched-it"])
def test_a_released_yes_newer_than_the_no_on_record_grants_consent(opening):
    record = said_no_at(NOW, opening)
    released = latest_contact(record, capture(YES, at=LATER), True)
    assert (released.contact.marketing_consent, released.contact.marketing_consent_at) == (True, LATER)
    assert released.consent_withdrawn_at is None


def test_a_released_no_older_than_the_yes_given_since_leaves_the_consent():
    record = opened(YES, LATER)
    released = latest_contact(record, capture(NO, at=NOW), False)
    assert (released.contact.marketing_consent, released.contact.marketing_consent_at) == (True, LATER)
    assert released.consent_withdrawn_at is None


def test_a_released_yes_grants_consent_to_a_person_who_has_said_nothing_of_it_since():
    """Only a word counts against it: a form without the checkbox, whose false is silence, does not."""
    record = opened({"email": "jo@x.example"}, LATER)
    released = latest_contact(record, capture(YES, at=NOW), True)
    assert (released.contact.marketing_consent, released.contact.marketing_consent_at) == (True, NOW)


# A person's word outlives the lead they gave it on: their next lead, opened once that one closed, is weighed
# against it.
SAID_NO, SAID_YES = ConsentWord(False, LATER), ConsentWord(True, LATER)


def opened_after(fields, at, person_said):
    """What a lead opened by ``fields`` at ``at`` has on record, its person's last word being ``person_said``."""
    return OnRecord.first(capture(fields, at=at), stated_consent(fields), person_said)


@pytest.mark.parametrize("yes_at", [NOW, LATER], ids=["older-yes", "yes-as-old"])
def test_a_released_yes_older_than_the_no_given_on_a_closed_lead_opens_a_lead_without_consent(yes_at):
    """Yes on Monday, caught in quarantine on Tuesday, no on Wednesday, the lead lost, Tuesday's released on
    Thursday: the new lead took the yes, the no having been the closed lead's, and marketing mailed her. The rest of
    what it sent is taken."""
    record = opened_after(YES | {"job_title": "CTO"}, yes_at, SAID_NO)
    assert (record.contact.marketing_consent, record.contact.marketing_consent_at) == (False, None)
    assert record.contact.job_title == "CTO"
    assert record.consent_withdrawn_at == LATER  # so an old yes released onto the new lead next is no newer either


def test_a_lead_opened_saying_nothing_after_a_no_keeps_it_against_an_older_yes_released_onto_it():
    """A new lead opened without a word recorded no consent, rightly, but no time for the no: a yes from before the
    no, released as a touch of it, gave consent back."""
    record = opened_after({"email": "jo@x.example"}, LATER + timedelta(days=1), SAID_NO)
    assert (record.contact.marketing_consent, record.consent_withdrawn_at) == (False, LATER)
    released = latest_contact(record, capture(YES, at=NOW), True)
    assert (released.contact.marketing_consent, released.contact.marketing_consent_at) == (False, None)


def test_a_lead_opened_by_a_no_older_than_its_persons_no_keeps_the_newer():
    """Kept at its own time, the older no let a yes sent between the two count."""
    record = opened_after(NO, NOW, SAID_NO)
    assert record.consent_withdrawn_at == LATER
    released = latest_contact(record, capture(YES, at=NOW + timedelta(minutes=30)), True)
    assert released.contact.marketing_consent is False


def test_a_yes_sent_after_its_persons_no_opens_a_lead_with_consent():
    record = opened_after(YES, LATER + timedelta(days=1), SAID_NO)
    assert (record.contact.marketing_consent, record.contact.marketing_consent_at) == (True, LATER + timedelta(days=1))
    assert record.consent_withdrawn_at is None


@pytest.mark.parametrize("fields", [{"email": "jo@x.example"}, NO], ids=["saying-nothing", "an-older-no"])
def test_a_yes_given_on_a_closed_lead_is_not_carried_into_a_new_one(fields):
    """A first submission that says nothing records no consent, whatever its person said on another lead; nor does
    a yes given since make one that said no give it."""
    assert opened_after(fields, NOW, SAID_YES) == OnRecord.first(capture(fields, at=NOW), stated_consent(fields))
    assert opened_after(fields, NOW, SAID_YES).contact.marketing_consent is False


def test_a_persons_word_is_the_newer_by_when_it_was_sent_one_as_old_counting_as_older():
    older_yes, newer_yes = ConsentWord(True, NOW), ConsentWord(True, LATER + timedelta(hours=1))
    assert newer_word(SAID_NO, older_yes) == SAID_NO  # released after the no it came before
    assert newer_word(older_yes, SAID_NO) == SAID_NO
    assert newer_word(SAID_NO, ConsentWord(True, LATER)) == SAID_NO
    assert newer_word(SAID_NO, newer_yes) == newer_yes
    assert newer_word(SAID_NO, None) == SAID_NO  # saying nothing keeps it
    assert newer_word(None, older_yes) == older_yes
    assert newer_word(None, None) is None


def test_a_submission_says_its_word_as_of_when_it_was_sent():
    assert ConsentWord.of(capture(NO, at=NOW), False) == ConsentWord(False, NOW)
    assert ConsentWord.of(capture({"email": "jo@x.example"}, at=NOW), None) is None


def test_what_quarantine_keeps_of_a_bots_padding_fits_one_event_whatever_it_sent():
    """JSON writes a control character in six bytes: the padding made a quarantined event the broker refused."""
    import json

    from capture.domain import KEPT_BYTES, quarantined_fields

    padded = {f"f{i}": "\x01" * 5000 for i in range(100)} | {"email": "bot@example.com"}
    kept = quarantined_fields(padded)
    assert kept["email"] == "bot@example.com"
    assert len(json.dumps(kept)) <= KEPT_BYTES + 100
    small = {f"f{i}": "spam" for i in range(20)}
    assert quarantined_fields(small) == small  # what a bot usually sends is kept whole


@pytest.mark.parametrize("sent", [1.0, 0.0, -0.0, True, False, 1, 0, "1.0", "on", "yes please", 2, 0.5, ["on"]])
def test_what_quarantine_keeps_of_a_consent_says_what_the_consent_sent_said(sent):
    from capture.domain import quarantined_fields

    fields = {"email": "ada@example.com", "marketing_consent": sent}
    kept = quarantined_fields(fields)
    assert (stated_consent(kept), unread_consent(kept)) == (stated_consent(fields), unread_consent(fields))


def test_a_persons_newer_no_holds_on_a_lead_they_touch_but_their_yes_is_not_carried_over():
    """Said on a lead sales merged into this one, the no is on no record of this lead's."""
    monday, tuesday = datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    silent = OnRecord(factories.captured("ann@home.example").contact)
    heeded = silent.heeding(ConsentWord(False, tuesday))
    assert (heeded.contact.marketing_consent, heeded.consent_withdrawn_at) == (False, tuesday)
    assert latest_contact(heeded, factories.captured("ann@sap.com").model_copy(update={"captured_at": monday}),
                          True).contact.marketing_consent is False  # her yes from before the no
    yes = OnRecord(factories.captured("ann@home.example", marketing_consent=True,
                                      marketing_consent_at=tuesday).contact)
    assert yes.heeding(ConsentWord(False, monday)) == yes  # an older no
    assert yes.heeding(ConsentWord(False, tuesday)).contact.marketing_consent is False  # as old: the no
    assert silent.heeding(ConsentWord(True, tuesday)) == silent
