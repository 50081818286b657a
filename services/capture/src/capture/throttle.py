"""Rate limits on capture's public endpoints (rates written as the ``limits`` library parses them).

Guarantees: a browser's submissions are counted per client address (an IPv6
address by its /64) and form (``CAPTURE_RATE_LIMIT``, or the form's
``rate_limit``; forms not in the forms file share one count); a server posting with
a ``capture:write`` key is counted per key (``CAPTURE_KEY_RATE_LIMIT``, or the
key's own limit), never per address. Over the limit is ``429`` with
``Retry-After``, before the body is read; a JSON post to ``/v1/leads`` naming a
form with its own ``rate_limit`` in the body is also counted under that form,
once the body is read. A client address whose unknown or revoked keys reach
``CAPTURE_RATE_LIMIT`` gets ``429`` before the key is looked up (a made-up key
must not buy a database lookup per request where no key would be throttled),
unless its key id was found valid before (looked up once every few seconds
at most, whoever sends it). ``X-Forwarded-For`` is believed only
from ``CAPTURE_TRUSTED_PROXIES``: the client is the nearest address in it not
one of them (a port a proxy appends to an address is no part of it). The
counts live in each process's memory, a fixed window per rate and identity
that starts at its first hit: with N capture processes a client may get up
to N times the limit (a shared store would make them exact).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Container, Sequence

from limits import RateLimitItem, parse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rate(text: str, where: str) -> RateLimitItem:
    """``30/minute``, ``5 per second``...; raises ValueError naming ``where``."""
    try:
        rate = parse(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a rate like 30/minute or 100/second") from None
    if rate.amount < 1:  # would refuse every submission with a 429
        raise ValueError(f"{where}: {text!r} lets nothing through; at least 1 per period")
    return rate


def parse_networks(text: str, where: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """Who is asking: the peer, unless it is a trusted proxy; then the nearest untrusted hop it forwards for."""
    hops = [_without_port(h.strip()) for h in (forwarded_for or "").split(",") if h.strip()]
    address = peer or "unknown"
    for hop in reversed([*hops]) if _trusted(address, trusted) else ():
        address = hop
        if not _trusted(hop, trusted):
            break
    return address


def _without_port(hop: str) -> str:
    """A forwarded address without the port some proxies append (Azure Application Gateway: ``203.0.113.7:51234``,
    ``[2001:db8::1]:443``): with it, each connection would be a client of its own to the rate limits."""
    if hop.startswith("["):
        host, closed, port = hop[1:].partition("]")
        return host if closed and (not port or port[:1] == ":" and port[1:].isdigit()) else hop
    host, colon, port = hop.rpartition(":")
    # One colon only: a bare IPv6 address ends in digits after a colon too.
    return host if colon and ":" not in host and port.isdigit() else hop


def counted_as(address: str) -> str:
    """Whose count a client address adds to: an IPv6 address's /64, which one subscriber (a home, a server)
    gets whole and can spend an address a request from; an IPv4 address is itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def browser_identity(address: str, form_id: str | None, forms: Container[str]) -> tuple[str, str, str]:
    """Whose count a browser's submission adds to: its address's (``counted_as``) for the form it names;
    forms not in the forms file share one count (``/v1/forms/x1``, ``/x2`` ... are not a fresh count each)."""
    return "address", counted_as(address), form_id if form_id is not None and form_id in forms else "api"


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class Throttle:
    """Fixed windows in this process's memory.

    Not ``limits``' MemoryStorage: it starts a timer thread to expire its keys
    whenever the previous one has ended, which under a steady 100 leads/s cost
    each capture worker about a tenth of its CPU. Here a window restarts when
    it has passed, and passed windows are swept once a minute.
    """

    SWEEP_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: (rate, identity) -> (when the window ends, hits in it)
        self._windows: dict[tuple[object, ...], tuple[float, int]] = {}
        self._sweep_at = clock() + self.SWEEP_S

    def retry_after(self, rate: RateLimitItem, *identity: str, count: bool = True) -> int | None:
        """None when this hit is within ``rate`` for ``identity`` (it counts, unless ``count`` is false: a look
        only); else whole seconds until the window ends (it does not count)."""
        now = self._clock()
        if now >= self._sweep_at:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
            self._sweep_at = now + self.SWEEP_S
        key = (rate.amount, rate.get_expiry(), *identity)
        ends, hits = self._windows.get(key, (0.0, 0))
        if now >= ends:
            ends, hits = now + rate.get_expiry(), 0
        if hits >= rate.amount:
            return max(1, math.ceil(ends - now))
        if count:
            self._windows[key] = (ends, hits + 1)
        return None
