"""Rate limits on capture's public endpoints, with the ``limits`` library.

Guarantees: a browser's submissions are counted per client address and form
(``CAPTURE_RATE_LIMIT``, or the form's ``rate_limit``); a server posting with
a ``capture:write`` key is counted per key (``CAPTURE_KEY_RATE_LIMIT``, or the
key's own limit), never per address. Over the limit is ``429`` with
``Retry-After``, before the body is read. ``X-Forwarded-For`` is believed only
from ``CAPTURE_TRUSTED_PROXIES``: the client is the nearest address in it not
one of them. The counts live in each process's memory (``limits``'
MemoryStorage): with N capture processes a client may get up to N times the
limit; a shared store (``limits`` supports Redis) would make them exact.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rate(text: str, where: str) -> RateLimitItem:
    """``30/minute``, ``5 per second``...; raises ValueError naming ``where``."""
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a rate like 30/minute or 100/second") from None


def parse_networks(text: str, where: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """Who is asking: the peer, unless it is a trusted proxy; then the nearest untrusted hop it forwards for."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    address = peer or "unknown"
    for hop in reversed([*hops]) if _trusted(address, trusted) else ():
        address = hop
        if not _trusted(hop, trusted):
            break
    return address


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class Throttle:
    def __init__(self) -> None:
        self._limiter = FixedWindowRateLimiter(MemoryStorage())

    def retry_after(self, rate: RateLimitItem, *identity: str) -> int | None:
        """None when this hit is within ``rate`` for ``identity``; else seconds until the window resets."""
        if self._limiter.hit(rate, *identity):
            return None
        reset = self._limiter.get_window_stats(rate, *identity).reset_time
        return max(1, int(reset - time.time()) + 1)
