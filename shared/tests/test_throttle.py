"""Rate limits with an injected clock, and whose count a request adds to: no IO, no sleeping."""

import pytest
import structlog
from starlette.requests import Request

from leadpipe_common import throttle as throttle_module
from leadpipe_common.throttle import (
    Rate, Throttle, client_address, counted_as, parse_networks, parse_rate, request_address,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("written", "rate"), [
    ("30/minute", Rate(30, 60)), ("5 per second", Rate(5, 1)), ("100/2 hours", Rate(100, 7200)),
    ("1/Second", Rate(1, 1)), (" 30 / minute ", Rate(30, 60)), ("10/days", Rate(10, 86_400)),
    ("3/month", Rate(3, 30 * 86_400)), ("1 per 2 years", Rate(1, 720 * 86_400)), ("5 persecond", Rate(5, 1)),
])
def test_rates_are_read_in_the_limits_librarys_notation(written, rate):
    assert parse_rate(written, "CAPTURE_RATE_LIMIT") == rate


@pytest.mark.parametrize(("written", "why"), [
    # The limits library kept the first of several and dropped the others without a word.
    ("1/second; 50/minute", "is not a rate like 30/minute or 100/second"),
    ("30/fortnight", "is not a rate like"), ("thirty/minute", "is not a rate like"), ("", "is not a rate like"),
    ("0/second", "lets nothing through"), ("5/0 seconds", "has a period of no length"),
])
def test_a_rate_it_cannot_read_is_refused_naming_where_it_was_written(written, why):
    with pytest.raises(ValueError, match=f"^CAPTURE_RATE_LIMIT: {written!r} {why}"):
        parse_rate(written, "CAPTURE_RATE_LIMIT")


def test_hits_within_the_rate_pass_and_the_next_waits_until_the_window_ends():
    clock = Clock()
    throttle = Throttle(clock)
    rate = parse_rate("3/minute", "test")
    assert [throttle.retry_after(rate, "address", "203.0.113.7") for _ in range(3)] == [None, None, None]
    clock.now += 20
    assert throttle.retry_after(rate, "address", "203.0.113.7") == 40
    assert throttle.retry_after(rate, "address", "198.51.100.1") is None  # another client has its own window
    clock.now += 40
    assert throttle.retry_after(rate, "address", "203.0.113.7") is None  # a new window


def test_refused_hits_do_not_count_and_a_waiting_client_never_sees_zero_seconds():
    clock = Clock()
    throttle = Throttle(clock)
    rate = parse_rate("1/second", "test")
    assert throttle.retry_after(rate, "key", "k1") is None
    clock.now += 0.999
    assert throttle.retry_after(rate, "key", "k1") == 1
    clock.now += 0.002
    assert throttle.retry_after(rate, "key", "k1") is None


def test_a_look_at_a_count_does_not_add_to_it():
    throttle = Throttle(Clock())
    rate = parse_rate("2/minute", "test")
    assert [throttle.retry_after(rate, "bad key", "203.0.113.7", count=False) for _ in range(5)] == [None] * 5
    assert [throttle.retry_after(rate, "bad key", "203.0.113.7") for _ in range(2)] == [None, None]
    assert throttle.retry_after(rate, "bad key", "203.0.113.7", count=False) == 60


def test_passed_windows_are_swept_so_many_clients_do_not_grow_memory_forever():
    clock = Clock()
    throttle = Throttle(clock)
    rate = parse_rate("5/second", "test")
    for i in range(1000):
        throttle.retry_after(rate, "address", f"10.0.{i // 250}.{i % 250}")
    clock.now += Throttle.SWEEP_S
    throttle.retry_after(rate, "address", "192.0.2.1")
    assert len(throttle._windows) == 1


PROXIES = parse_networks("10.0.0.0/8", "test")


def test_a_port_a_proxy_appends_to_the_client_address_is_no_part_of_whose_count_it_is():
    """Azure Application Gateway forwards the client's port too: a new one for every connection."""
    assert client_address("10.0.0.1", "203.0.113.7:51234", PROXIES) == "203.0.113.7"
    assert client_address("10.0.0.1", "[2001:db8::1]:443", PROXIES) == "2001:db8::1"
    assert client_address("10.0.0.1", "[2001:db8::1]", PROXIES) == "2001:db8::1"
    assert client_address("10.0.0.1", "203.0.113.7:51234, 10.0.0.2:8080", PROXIES) == "203.0.113.7"


def test_an_address_without_a_port_is_taken_as_it_is():
    assert client_address("10.0.0.1", "2001:db8::1", PROXIES) == "2001:db8::1"  # its last group is no port
    assert client_address("10.0.0.1", "::ffff:203.0.113.7", PROXIES) == "::ffff:203.0.113.7"
    assert client_address("10.0.0.1", "203.0.113.7", PROXIES) == "203.0.113.7"
    assert client_address("10.0.0.1", "unknown", PROXIES) == "unknown"
    assert client_address("198.51.100.9", "203.0.113.7:51234", PROXIES) == "198.51.100.9"  # not from a proxy


def test_an_ipv6_client_is_counted_by_its_slash_64_and_an_ipv4_one_by_its_address():
    assert counted_as("2001:db8:1:2::17") == counted_as("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert counted_as("2001:db8:1:3::17") != counted_as("2001:db8:1:2::17")
    assert counted_as("203.0.113.9") == counted_as("::ffff:203.0.113.9") == "203.0.113.9"
    assert counted_as("unknown") == "unknown"


def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy():
    proxies = parse_networks("10.0.0.0/8, 192.168.1.5", "test")
    assert client_address("198.51.100.7", "203.0.113.9", proxies) == "198.51.100.7"  # not a proxy: spoofed header
    assert client_address("10.1.2.3", "203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("10.1.2.3", "203.0.113.9, 192.168.1.5", proxies) == "203.0.113.9"  # two proxies deep
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
    # An IPv4 proxy on a dual-stack socket (a service on :: with several workers) comes mapped into IPv6.
    assert client_address("::ffff:10.1.2.3", "203.0.113.9", proxies) == "203.0.113.9"


def request_from(peer: str, forwarded_for: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return Request({"type": "http", "headers": headers, "client": (peer, 50000)})


def fresh_warnings(monkeypatch, clock: Clock | None = None) -> Clock:
    """Nothing warned of yet, on a clock the test moves."""
    clock = clock or Clock()
    monkeypatch.setattr(throttle_module, "_forwarded_untrusted", throttle_module.ForwardedUntrusted(clock))
    return clock


def test_a_forwarded_address_from_a_peer_not_trusted_is_logged_once_as_a_proxy_likely_not_named(monkeypatch):
    """Behind an ingress left out of TRUSTED_PROXIES (the k8s manifests set none) every client was the ingress,
    one client's wrong keys throttling all of them, and nothing said why."""
    fresh_warnings(monkeypatch)
    with structlog.testing.capture_logs() as lines:
        believed = request_address(request_from("10.0.0.2", "203.0.113.9"), PROXIES)
        direct = request_address(request_from("198.51.100.7"), PROXIES)
        ingress = [request_address(request_from("10.0.0.2", f"203.0.113.{n}"), ()) for n in range(3)]
    assert (believed, direct, ingress) == ("203.0.113.9", "198.51.100.7", ["10.0.0.2"] * 3)
    [line] = lines
    assert (line["log_level"], line["peer"]) == ("warning", "10.0.0.2") and "TRUSTED_PROXIES" in line["event"]


def test_requests_without_the_header_or_from_a_trusted_proxy_never_look_at_the_warnings(monkeypatch):
    """They are nearly every request: the warnings may cost only the requests that bring one."""
    def no_clock() -> float:
        raise AssertionError("the warnings were looked at")
    fresh_warnings(monkeypatch, no_clock)  # type: ignore[arg-type]
    assert request_address(request_from("198.51.100.7"), PROXIES) == "198.51.100.7"
    assert request_address(request_from("10.0.0.2", "203.0.113.9"), PROXIES) == "203.0.113.9"


def test_a_header_a_client_forged_does_not_use_up_the_warning_the_proxy_not_named_needs(monkeypatch):
    """The warning was said once a process: a client on the internet that sent X-Forwarded-For first took it, and
    the ingress left out of TRUSTED_PROXIES, sending it with every request after, was never named."""
    fresh_warnings(monkeypatch)
    with structlog.testing.capture_logs() as lines:
        request_address(request_from("198.51.100.7", "203.0.113.9"), PROXIES)  # forged, from the client itself
        for n in range(3):
            request_address(request_from("192.168.5.4", f"203.0.113.{n}"), PROXIES)  # the ingress, not named
    assert [line["peer"] for line in lines] == ["198.51.100.7", "192.168.5.4"]


def test_headers_forged_from_many_addresses_after_a_start_delay_the_proxys_warning_by_a_minute_not_for_ever(
        monkeypatch):
    """Each peer was warned of once, for the first 64 a process saw, and then never again: a forger with 64
    addresses (or an IPv6 /48) spent them all before the ingress's first request, and it was never named."""
    clock = fresh_warnings(monkeypatch)
    ingress = request_from("192.168.5.4", "203.0.113.9")
    with structlog.testing.capture_logs() as lines:
        for n in range(100):
            request_address(request_from(f"2001:db8:0:{n:x}::1", "203.0.113.9"), PROXIES)
        request_address(ingress, PROXIES)
        clock.now += 60
        request_address(ingress, PROXIES)
    peers = [line.get("peer") for line in lines]
    assert len(peers) == 10 + 2 and peers[-1] == "192.168.5.4"  # ten forged, the line of those unsaid, the ingress
    assert "192.168.5.4" not in peers[:-1]


def test_at_most_ten_warnings_are_said_a_minute_and_one_line_says_how_many_were_not(monkeypatch):
    """Anyone can send the header from every address they have: the lines logged must not grow with them."""
    clock = fresh_warnings(monkeypatch)
    with structlog.testing.capture_logs() as lines:
        for n in range(25):
            request_address(request_from(f"198.51.100.{n}", "203.0.113.9"), ())
        clock.now += 59
        request_address(request_from("198.51.100.200", "203.0.113.9"), ())
        clock.now += 1
        request_address(request_from("198.51.100.201", "203.0.113.9"), ())
    assert throttle_module.FORWARDED_UNTRUSTED_PER_MINUTE == 10 and len(lines) == 10 + 2
    assert {line["log_level"] for line in lines} == {"warning"}
    assert [line["peer"] for line in lines[:10]] == [f"198.51.100.{n}" for n in range(10)]
    assert lines[10]["unsaid"] == 16 and "16 more" in lines[10]["event"]
    assert lines[11]["peer"] == "198.51.100.201"


def test_each_peer_not_trusted_is_warned_of_again_an_hour_after_it_was_last(monkeypatch):
    """Once tells the operator; again an hour later keeps a proxy still not named in the log they read today."""
    clock = fresh_warnings(monkeypatch)
    ingress = request_from("192.168.5.4", "203.0.113.9")
    with structlog.testing.capture_logs() as lines:
        request_address(ingress, ())
        clock.now += 3599
        request_address(ingress, ())
        clock.now += 1
        request_address(ingress, ())
    assert [line["peer"] for line in lines] == ["192.168.5.4", "192.168.5.4"]


def test_the_peers_remembered_stay_bounded_and_none_is_forgotten_within_its_hour(monkeypatch):
    """Forgotten within its hour, a peer could be warned of again at once; remembered without a bound, every
    address a forger has would stay in memory."""
    clock = fresh_warnings(monkeypatch)
    warnings: throttle_module.ForwardedUntrusted = throttle_module._forwarded_untrusted
    for n in range(3000):
        clock.now += 6  # ten new peers a minute, as many as are warned of
        request_address(request_from(f"10.{n // 250}.{n % 250}.1", "203.0.113.9"), ())
    assert len(warnings._said) == throttle_module.FORWARDED_UNTRUSTED_PEERS == 1024
    assert clock.now - next(iter(warnings._said.values())) > throttle_module.FORWARDED_UNTRUSTED_EVERY_S
    with structlog.testing.capture_logs() as lines:
        clock.now += 3599 - 600  # the peer warned of ten minutes ago is remembered for its whole hour
        request_address(request_from(f"10.{2899 // 250}.{2899 % 250}.1", "203.0.113.9"), ())
    assert lines == []


def test_an_ipv6_peer_not_trusted_is_warned_of_once_for_its_slash_64(monkeypatch):
    """Else one client could fill the peers remembered from its own /64 and hide the proxy's warning."""
    fresh_warnings(monkeypatch)
    with structlog.testing.capture_logs() as lines:
        for n in range(1, 100):
            request_address(request_from(f"2001:db8:1:2::{n:x}", "203.0.113.9"), ())
        request_address(request_from("10.0.0.2", "203.0.113.9"), ())
    assert [line["peer"] for line in lines] == ["2001:db8:1:2::1", "10.0.0.2"]
