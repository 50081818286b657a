"""<SERVICE>_PUBLIC_ORIGIN: where browsers reach a service behind a proxy that terminates TLS, written as a
browser writes the Origin header, or refused at start saying why."""

import re

import pytest
from pydantic import ValidationError

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
