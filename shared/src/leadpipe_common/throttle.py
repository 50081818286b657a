"""Rate limits counted in a process's memory, and whose count a request adds to (rates written ``30/minute``,
``5 per second``, ``100/2 hours``: the ``limits`` library's notation, one rate at a time): capture's public posts
(``capture.throttle``) and every service's wrong API keys (``auth.WrongKeys``) are counted with these.

Guarantees: a client is its address, an IPv6 address by its /64.
``X-Forwarded-For`` is believed only from the trusted proxies given (a
service's ``<SERVICE>_TRUSTED_PROXIES``): the client is the nearest address in
it not one of them (a port a proxy appends to an address is no part of it).
An ``X-Forwarded-For`` from a peer not trusted is logged, a warning that
the proxy it likely came from was not named: each such peer (an IPv6 one by
its /64) at most once an hour, and at most ``FORWARDED_UNTRUSTED_PER_MINUTE``
(10) warnings a minute in all; those left unsaid in a minute are counted, and
one line says how many, with the next header from any such peer after that
minute. The peers remembered are at most ``FORWARDED_UNTRUSTED_PEERS``
(1,024), the oldest warned of forgotten first: more than the 610 at most an
hour can warn of, so none is forgotten within its hour.
The counts live in each process's memory, a fixed window per rate and
identity that starts at its first hit: with N processes a client may get up
to N times the limit (a shared store would make them exact). Over a limit,
the wait is whole seconds, never 0.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from starlette.requests import Request

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rate:
    """At most ``amount`` in a window of ``seconds``."""

    amount: int
    seconds: int


#: The ``limits`` library's notation (a month is 30 days, a year 12 of them), read here: the library cost every
#: process 1.5 MB of resident memory (with wrapt, deprecated and importlib_resources) for this parse alone, the
#: counting being ``Throttle``'s own.
_RATE = re.compile(r"\s*([0-9]+)\s*(?:/|per)\s*([0-9]+)?\s*(second|minute|hour|day|month|year)s?\s*",
                   re.IGNORECASE)
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "month": 30 * 86_400, "year": 360 * 86_400}


def parse_rate(text: str, where: str) -> Rate:
    """``30/minute``, ``5 per second``, ``100/2 hours``...; raises ValueError naming ``where``. One rate only:
    ``limits`` took ``1/second; 50/minute`` and kept the first, the second dropped without a word."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{where}: {text!r} is not a rate like 30/minute or 100/second (one rate)")
    amount, multiple, unit = int(match[1]), int(match[2] or 1), match[3].lower()
    if amount < 1:  # would refuse every request it counts with a 429
        raise ValueError(f"{where}: {text!r} lets nothing through; at least 1 per period")
    if multiple < 1:
        raise ValueError(f"{where}: {text!r} has a period of no length")
    return Rate(amount, multiple * _SECONDS[unit])


def parse_networks(text: str, where: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """Who is asking: the peer, unless it is a trusted proxy; then the nearest untrusted hop it forwards for."""
    hops = [_without_port(h.strip()) for h in (forwarded_for or "").split(",") if h.strip()]
    address = peer or "unknown"
    for hop in reversed([*hops]) if is_trusted(address, trusted) else ():
        address = hop
        if not is_trusted(hop, trusted):
            break
    return address


def request_address(request: Request, trusted: Sequence[Network]) -> str:
    """``client_address`` of a request. An ``X-Forwarded-For`` from a peer not in ``trusted`` is logged as a
    warning (each peer at most once an hour, see ``ForwardedUntrusted``): that peer is likely a proxy not named in
    ``<SERVICE>_TRUSTED_PROXIES``, behind which every client counts as one address."""
    peer = request.client.host if request.client else None
    # Every X-Forwarded-For line, in order (a proxy may add its own line after the client's forged one).
    forwarded = ", ".join(request.headers.getlist("x-forwarded-for"))
    if forwarded and not is_trusted(peer or "", trusted):
        _forwarded_untrusted.say(peer)
    return client_address(peer, forwarded, trusted)


#: How often each peer not trusted may be warned of for its X-Forwarded-For. A proxy left out of TRUSTED_PROXIES
#: sends the header with every request: once tells, and again an hour later keeps it in the log. Said once a process
#: (or once a peer for the first 64 peers), a header forged by clients from enough addresses used it all up before
#: the real proxy's first request, and the operator never learnt their proxy was not named.
FORWARDED_UNTRUSTED_EVERY_S = 3600.0
#: The most warnings a minute, for all peers: anyone can send the header, from as many addresses as they have.
FORWARDED_UNTRUSTED_PER_MINUTE = 10
#: The most peers remembered: more than an hour's warnings at FORWARDED_UNTRUSTED_PER_MINUTE, so the one forgotten
#: when full was last warned of over an hour ago.
FORWARDED_UNTRUSTED_PEERS = 1024


class ForwardedUntrusted:
    """Warnings of an X-Forwarded-For from peers not trusted, bounded in time and in memory (see the module)."""

    MINUTE_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: ``counted_as`` (so one IPv6 client cannot fill it from its /64) -> when it was last warned of; oldest
        #: first, as a peer moves to the end when warned of again.
        self._said: OrderedDict[str, float] = OrderedDict()
        self._minute_ends = 0.0
        self._said_this_minute = 0
        self._unsaid = 0

    def say(self, peer: str | None) -> None:
        who = counted_as(peer or "unknown")
        now = self._clock()
        if now >= self._minute_ends:
            if self._unsaid:  # no timer to say it when the minute ends: the next such header says it
                log.warning(f"{self._unsaid} more X-Forwarded-For from addresses not in <SERVICE>_TRUSTED_PROXIES "
                            f"were not warned of in a minute (at most {FORWARDED_UNTRUSTED_PER_MINUTE} warnings a "
                            "minute)", unsaid=self._unsaid)
            self._minute_ends, self._said_this_minute, self._unsaid = now + self.MINUTE_S, 0, 0
        said_at = self._said.get(who)
        if said_at is not None and now - said_at < FORWARDED_UNTRUSTED_EVERY_S:
            return
        if self._said_this_minute >= FORWARDED_UNTRUSTED_PER_MINUTE:
            # Not remembered as said, so the proxy's next request may get its warning in a later minute.
            self._unsaid += 1
            return
        self._said_this_minute += 1
        self._said.pop(who, None)  # to the end, as the newest
        self._said[who] = now
        if len(self._said) > FORWARDED_UNTRUSTED_PEERS:
            self._said.popitem(last=False)
        log.warning("X-Forwarded-For came from an address not in <SERVICE>_TRUSTED_PROXIES and is not believed: if it "
                    "is your proxy (an ingress, a load balancer), name its network there, or every client behind it "
                    "counts as that one address against the rate limits, one client's wrong keys against all of them "
                    "(said at most once an hour for each such address)", peer=peer)


_forwarded_untrusted = ForwardedUntrusted()


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


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    """Whether ``address`` is in one of the ``trusted`` networks. An IPv4 peer on a dual-stack socket (a service
    on ``::`` with several workers) comes as ``::ffff:a.b.c.d``: read as the IPv4 address, as a proxy is named."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
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

    def retry_after(self, rate: Rate, *identity: str, count: bool = True) -> int | None:
        """None when this hit is within ``rate`` for ``identity`` (it counts, unless ``count`` is false: a look
        only); else whole seconds until the window ends (it does not count)."""
        now = self._clock()
        if now >= self._sweep_at:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
            self._sweep_at = now + self.SWEEP_S
        key = (rate.amount, rate.seconds, *identity)
        ends, hits = self._windows.get(key, (0.0, 0))
        if now >= ends:
            ends, hits = now + rate.seconds, 0
        if hits >= rate.amount:
            return max(1, math.ceil(ends - now))
        if count:
            self._windows[key] = (ends, hits + 1)
        return None
