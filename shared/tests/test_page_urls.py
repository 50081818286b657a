"""What of a page's address is kept without its visitor: the campaign's parameters, not the person's."""

import pytest

from leadpipe_common.page_urls import without_visitor

KEPT = [
    "https://example.com/demo",
    "https://example.com/demo?utm_source=news&utm_medium=email&utm_campaign=q4&utm_term=crm&utm_content=hero",
    "https://example.com/demo?gclid=Cj0KCQ&fbclid=IwAR2&msclkid=abc&ref=partner&li_fat_id=1&custom=whatever",
    "https://example.com/demo?ref=@acme",  # an @ with no dot after it is a handle, no address
    "https://example.com/demo#pricing",
    "https://example.com/demo#name",  # an anchor, not a parameter
    "https://example.com/demo?a=1&&b=2",  # nothing to cut: as written, blanks and all
    "HTTPS://Example.com/Demo?Utm_Source=X",
    "https://example.com/demo?keyword=crm&campaign=spring&promo=SPRING20",  # words that hold no listed name whole
    "www.example.com/demo?utm_source=x",
    "(direct)",
]


@pytest.mark.parametrize("url", KEPT)
def test_a_page_with_nothing_of_its_visitor_is_kept_as_it_is_written(url):
    assert without_visitor(url) == url


@pytest.mark.parametrize(("url", "kept"), [
    ("https://example.com/demo?utm_source=news&email=ada@stripe.com&gclid=x", "https://example.com/demo?utm_source=news&gclid=x"),
    ("https://example.com/demo?e=ada%40stripe.com&utm_source=news", "https://example.com/demo?utm_source=news"),
    ("https://example.com/demo?u=ada%2540stripe.com", "https://example.com/demo"),
    ("https://example.com/demo?to=Ada+Lovelace+<ada@stripe.com>", "https://example.com/demo"),
    ("https://example.com/demo?ada@stripe.com&ref=x", "https://example.com/demo?ref=x"),
    ("https://example.com/demo?E-Mail=x&first_name=Ada&LastName=L&fname=A&lname=L&name=Ada&ref=x",
     "https://example.com/demo?ref=x"),
    ("https://example.com/demo?phone=%2B44207&tel=1&mobile=2&phone_number=3&utm_medium=sms",
     "https://example.com/demo?utm_medium=sms"),
    ("https://example.com/reset?token=abc&password=pw&pass=pw&code=123&auth=x&session=s&sid=s&key=k&ref=x",
     "https://example.com/reset?ref=x"),
    ("https://example.com/demo?access_token=a&user_email=b&emailAddress=c&JSESSIONID=d&api-key=e",
     "https://example.com/demo"),
    ("https://example.com/demo?contact[email]=x&contact[first_name]=Ada&utm_source=form",
     "https://example.com/demo?utm_source=form"),
    ("https://example.com/demo?utm_source=news&mc_eid=1a2b&mkt_tok=MzQ&_hsenc=p2A&_ke=eyJ",
     "https://example.com/demo?utm_source=news"),
    ("https://ada:secret@example.com/demo?ref=x", "https://example.com/demo?ref=x"),
    ("https://example.com/app#/reset?token=abc", "https://example.com/app"),
    ("https://example.com/demo?ref=x#ada@stripe.com", "https://example.com/demo?ref=x"),
    ("https://example.com/demo?email=ada@stripe.com", "https://example.com/demo"),
], ids=["email-parameter", "any-name-percent-encoded", "encoded-twice", "in-a-longer-value", "in-a-name",
        "names", "phones", "secrets", "names-holding-a-word", "bracketed-names", "mailing-tools-ids", "userinfo",
        "fragment-parameters", "fragment-address", "only-parameter"])
def test_what_names_the_visitor_is_cut_and_the_rest_kept(url, kept):
    assert without_visitor(url) == kept


@pytest.mark.parametrize("url", [
    "https://example.com/people/ada@stripe.com/", "https://example.com/people/ada%40stripe.com",
    "https://medium.com/@ada", "mailto:ada@stripe.com", "tel:+442079460000", "ada@stripe.com",
    "http://[::1/?email=ada@stripe.com", "?email=ada@stripe.com", "#token=abc",
], ids=["path", "path-encoded", "path-handle", "mailto", "tel", "bare-address", "malformed", "query-only",
        "fragment-only"])
def test_a_page_whose_path_names_someone_or_that_no_parser_reads_is_not_kept_at_all(url):
    assert without_visitor(url) is None


def test_an_erasure_keeps_the_scheme_host_and_path_alone():
    assert without_visitor("https://ada:pw@example.com/demo?utm_source=x&gclid=y#top", query=False) == \
        "https://example.com/demo"
