"""<SERVICE>_PUBLIC_ORIGIN: where browsers reach a service behind a proxy that terminates TLS (one origin, or
several when it has more than one name), written as a browser writes the Origin header, or refused at start
saying why; a browser's post from any of them is this site's own."""

import re
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from leadpipe_common.http import cross_site, public_origin
from leadpipe_common.settings import ServiceSettings


@pytest.mark.parametrize("given, origin", [
    ("https://reports.example.com", "https://reports.example.com"),
    ("https://Reports.Example.COM/", "https://reports.example.com"),
    ("https://reports.example.com:443", "https://reports.example.com"),
    ("http://127.0.0.1:8004", "http://127.0.0.1:8004"),
    ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
])
def test_a_public_origin_is_kept_as_a_browser_writes_it_in_origin(given, origin):
    assert ServiceSettings(public_origin=given).public_origin == origin


@pytest.mark.parametrize("given, says", [
    ("reports.example.com", "is not an origin: write http(s)://host[:port]"),
    ("ftp://reports.example.com", "is not an origin"),
    ("https://reports.example.com/dashboard", "with no path, query or user"),
    ("https://reports.example.com?x=1", "with no path, query or user"),
    ("https://me@reports.example.com", "with no path, query or user"),
    ("https://reports.example.com:99999", "port that is not a number in 1-65535"),
    ("https://reports.example.com:https", "port that is not a number in 1-65535"),
])
def test_a_public_origin_that_is_no_origin_is_refused_saying_why(given, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        ServiceSettings(public_origin=given)


def test_without_a_public_origin_a_service_goes_by_the_address_each_request_came_to():
    assert ServiceSettings().public_origin is None


def test_several_public_origins_are_each_kept_as_a_browser_writes_it_the_canonical_first():
    settings = ServiceSettings(public_origin="https://Reports.Example.com/, https://leadpipe.internal.example.com:443")
    assert settings.public_origins == ("https://reports.example.com", "https://leadpipe.internal.example.com")


def test_one_public_origin_is_the_only_one():
    one = "https://reports.example.com"
    assert ServiceSettings(public_origin=one).public_origins == (one,)
    assert ServiceSettings().public_origins == ()


@pytest.mark.parametrize("given, says", [
    ("https://reports.example.com,https://leadpipe.internal.example.com/dashboard",
     "'https://leadpipe.internal.example.com/dashboard' is not an origin"),
    ("https://reports.example.com,", "has an empty origin (a comma doubled, or one at either end)"),
    ("https://a.example.com,,https://b.example.com", "has an empty origin"),
    ("https://reports.example.com;https://leadpipe.internal.example.com", "is not an origin"),
])
def test_a_bad_origin_among_several_is_refused_naming_it(given, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        ServiceSettings(public_origin=given)


def request(public_origin: str | None, headers: dict[str, str]) -> Request:
    """A request that came to http://reporting (behind the proxy), to a service with this setting."""
    state = SimpleNamespace(public_origins=ServiceSettings(public_origin=public_origin).public_origins)
    raw = [(b"host", b"reporting")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "scheme": "http", "path": "/", "query_string": b"",
                    "headers": raw, "app": SimpleNamespace(state=state)})


TWO_NAMES = "https://reports.example.com,https://leadpipe.internal.example.com"


@pytest.mark.parametrize("origin, crossed", [
    ("https://reports.example.com", False),
    ("https://leadpipe.internal.example.com", False),
    ("http://leadpipe.internal.example.com", True),
    ("http://reporting", True),
    ("https://evil.example", True),
], ids=["the canonical name", "the other name", "the other name over http", "the address behind the proxy",
        "another site"])
def test_a_post_from_any_of_several_public_origins_is_this_sites_own(origin, crossed):
    assert cross_site(request(TWO_NAMES, {"origin": origin})) is crossed


@pytest.mark.parametrize("setting, headers, origin", [
    ("https://reports.example.com,http://leadpipe.internal", {"origin": "http://leadpipe.internal"},
     "http://leadpipe.internal"),
    ("https://reports.example.com,http://leadpipe.internal", {"origin": "https://reports.example.com"},
     "https://reports.example.com"),
    ("https://reports.example.com,http://leadpipe.internal", {}, "https://reports.example.com"),
    ("https://reports.example.com,http://leadpipe.internal", {"origin": "https://evil.example"},
     "https://reports.example.com"),
    (None, {}, "http://reporting"),
], ids=["the other name", "the canonical name", "no Origin: the canonical", "another site: the canonical",
        "unset: the address it came to"])
def test_a_request_is_at_the_public_origin_its_browser_names_else_the_canonical_one(setting, headers, origin):
    """What decides whether the dashboard's cookie is Secure: one sent over plain http would be dropped."""
    assert public_origin(request(setting, headers)) == origin
