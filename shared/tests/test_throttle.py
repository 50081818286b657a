"""Rate limits with an injected clock, and whose count a request adds to: no IO, no sleeping."""

import structlog
from starlette.requests import Request

from leadpipe_common import throttle as throttle_module
from leadpipe_common.throttle import Throttle, client_address, counted_as, parse_networks, parse_rate, request_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def request_from(peer: str, forwarded_for: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    return Request({"type": "http", "headers": headers, "client": (peer, 50000)})


def test_a_forwarded_address_from_a_peer_not_trusted_is_logged_once_as_a_proxy_likely_not_named(monkeypatch):
    """Behind an ingress left out of TRUSTED_PROXIES (the k8s manifests set none) every client was the ingress,
    one client's wrong keys throttling all of them, and nothing said why."""
    monkeypatch.setattr(throttle_module, "_forwarded_untrusted_said", set())  # nothing said yet
    with structlog.testing.capture_logs() as lines:
        believed = request_address(request_from("10.0.0.2", "203.0.113.9"), PROXIES)
        direct = request_address(request_from("198.51.100.7"), PROXIES)
        ingress = [request_address(request_from("10.0.0.2", f"203.0.113.{n}"), ()) for n in range(3)]
    assert (believed, direct, ingress) == ("203.0.113.9", "198.51.100.7", ["10.0.0.2"] * 3)
    [line] = lines
    assert (line["log_level"], line["peer"]) == ("warning", "10.0.0.2") and "TRUSTED_PROXIES" in line["event"]


def test_a_header_a_client_forged_does_not_use_up_the_warning_the_proxy_not_named_needs(monkeypatch):
    """The warning was said once a process: a client on the internet that sent X-Forwarded-For first took it, and
    the ingress left out of TRUSTED_PROXIES, sending it with every request after, was never named."""
    monkeypatch.setattr(throttle_module, "_forwarded_untrusted_said", set())
    with structlog.testing.capture_logs() as lines:
        request_address(request_from("198.51.100.7", "203.0.113.9"), PROXIES)  # forged, from the client itself
        for n in range(3):
            request_address(request_from("192.168.5.4", f"203.0.113.{n}"), PROXIES)  # the ingress, not named
    assert [line["peer"] for line in lines] == ["198.51.100.7", "192.168.5.4"]


def test_peers_not_trusted_are_warned_of_up_to_a_bound_then_once_as_more_then_not_at_all(monkeypatch):
    """Anyone can send the header from every address they have: the peers remembered, and the lines logged, must not
    grow with them."""
    said: set[str] = set()
    monkeypatch.setattr(throttle_module, "_forwarded_untrusted_said", said)
    bound = throttle_module.FORWARDED_UNTRUSTED_PEERS
    with structlog.testing.capture_logs() as lines:
        for n in range(bound + 10):
            request_address(request_from(f"198.51.{n // 250}.{n % 250}", "203.0.113.9"), ())
        request_address(request_from("2001:db8:1:2::17", "203.0.113.9"), ())
    assert bound == 64 and len(lines) == bound + 1 and len(said) == bound + 1
    assert {line["log_level"] for line in lines} == {"warning"} and "more than 64" in lines[-1]["event"]


def test_an_ipv6_peer_not_trusted_is_warned_of_once_for_its_slash_64(monkeypatch):
    """Else one client could fill the peers remembered from its own /64 and hide the proxy's warning."""
    monkeypatch.setattr(throttle_module, "_forwarded_untrusted_said", set())
    with structlog.testing.capture_logs() as lines:
        for n in range(1, 100):
            request_address(request_from(f"2001:db8:1:2::{n:x}", "203.0.113.9"), ())
        request_address(request_from("10.0.0.2", "203.0.113.9"), ())
    assert [line["peer"] for line in lines] == ["2001:db8:1:2::1", "10.0.0.2"]
