"""What a client's connection may hold before its request reaches the app: uvicorn's HTTP protocol, bounded.

uvicorn (its httptools protocol, which the services run) keeps every byte of
a request's head (its request line and headers) until the head is whole,
for as long as the client takes: one connection sending headers without end
grew a process by 200 MB a second, and one sending nothing, or a byte now
and then, was held for ever. Neither was bounded by ``limit_concurrency``,
which uvicorn checks only once a head is whole.

Guarantees of :class:`BoundedHeads`, with ``<SERVICE>_MAX_HEADER_BYTES``,
``<SERVICE>_HEADER_DEADLINE_S``, ``<SERVICE>_MAX_CONNECTIONS`` and
``<SERVICE>_MAX_CONNECTIONS_PER_ADDRESS``:

- a head that goes on past ``MAX_HEADER_BYTES`` is answered ``400`` and its
  connection closed, having held no more than that (one that began in the
  same read as the end of a body, a pipelined request, or the rest of a
  body the app refused, no more than twice that: a read is fed to the
  parser a head's worth at a time);
- a connection is closed when a request's head is not whole
  ``HEADER_DEADLINE_S`` after the connection opened, or after its first
  bytes came (an idle kept-alive connection is closed after
  ``<SERVICE>_KEEP_ALIVE_S``, as before); nobody is told (a browser's
  speculative connection never sends anything);
- a connection accepted while ``MAX_CONNECTIONS`` are open is closed at
  once, so heads in progress are no more than that (and it no longer counts
  among them: left counted until asyncio reported it lost, a turn later,
  uvicorn answered 503 the admitted requests whose heads came meanwhile);
- a connection accepted while its client address (an IPv6 one by its /64,
  as the rate limits count) holds ``MAX_CONNECTIONS_PER_ADDRESS`` open ones
  is closed at once, so one address's flood of idle or slow connections
  leaves the rest of the process to everyone else; a peer in
  ``<SERVICE>_TRUSTED_PROXIES`` is not counted (its connections carry many
  clients: the proxy limits them). Such closes are logged, a warning at most
  once a minute naming the last address and how many since the last one
  (closes in the minute after a warning are told by the next, if any);
- the rest of a body the app answered early (a ``413``, a ``401``) is
  thrown away as it comes and timed as a head is; once it is in, the
  connection is idle as after any answer (``KEEP_ALIVE_S``);
- a head refused while an earlier request on the connection is still being
  answered (pipelining) lets that answer go first (saying ``Connection:
  close`` unless it had begun) and then closes: written over it, the
  refusal was taken for its answer, and a client retried a request already
  done. The bytes that follow are thrown away meanwhile; how long the answer
  takes is the app's to bound;
- a head that arrives whole in one read, the common request, arms no timer:
  a connection's first request costs one, cancelled when its head is whole.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from leadpipe_common.throttle import counted_as, is_trusted


HEAD_LATE = "Request head not in within the header deadline."
#: How often a close of a connection past its address's limit is said, at most.
REFUSED_SAID_EVERY_S = 60.0


@dataclass
class _Addresses:
    """One server's count of each client address's open connections, and what its warnings have said of the
    connections closed past the limit (every connection's protocol shares it, as it shares ``connections``)."""

    held: Counter[str] = field(default_factory=Counter)
    #: When the last warning was said (the loop's clock), and the closes since.
    said_at: float = float("-inf")
    unsaid: int = 0


class BoundedHeads(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above (``max_head_bytes``, ``head_deadline_s``,
    ``max_per_address`` but for the peers in ``not_counted``; the connections' limit is uvicorn's
    ``limit_concurrency``, less the one asking)."""

    def __init__(self, *args: Any, max_head_bytes: int, head_deadline_s: float, max_per_address: int | None = None,
                 not_counted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = max_head_bytes
        self._head_deadline_s = head_deadline_s
        self._max_per_address = max_per_address
        self._not_counted = tuple(not_counted)
        #: The client address this connection is counted against (None: not counted).
        self._address: str | None = None
        #: Bytes of the head in progress so far.
        self._head = 0
        self._in_head = False
        #: Heads whole on this connection so far.
        self._heads = 0
        self._head_timer: asyncio.TimerHandle | None = None
        #: A head was refused while an answer was owed: what comes now is thrown away.
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            # uvicorn would answer its request 503, once a head came: till then it would hold it like any other.
            transport.close()
            self.connections.discard(self)
            return
        address = self._counted_address()
        if address is not None:
            held = self._addresses().held
            if held[address] >= self._max_per_address:  # type: ignore[operator]
                transport.close()
                self.connections.discard(self)
                self._say_refused(address)
                return
            held[address] += 1
            self._address = address
        self._head_timer = self.loop.call_later(self._head_deadline_s, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        if self._address is not None:
            held = self._addresses().held
            held[self._address] -= 1
            if held[self._address] <= 0:
                del held[self._address]
            self._address = None
        super().connection_lost(exc)

    def _counted_address(self) -> str | None:
        """What this connection counts against: its peer's address (an IPv6 one's /64, which one subscriber gets
        whole and could spend an address a connection from), unless no limit is set, there is no peer address (a
        Unix socket) or the peer is a proxy named as trusted."""
        if self._max_per_address is None or not self.client:
            return None
        host = self.client[0]
        return None if is_trusted(host, self._not_counted) else counted_as(host)

    def _say_refused(self, address: str) -> None:
        """A warning at most once a minute (a flood would write one a connection): behind a proxy not named as
        trusted, the proxy's clients get its 502s, and this is where the operator learns why."""
        book, now = self._addresses(), self.loop.time()
        book.unsaid += 1
        if now < book.said_at + REFUSED_SAID_EVERY_S:
            return
        unsaid, book.said_at, book.unsaid = book.unsaid, now, 0
        self.logger.warning("%d connection(s) closed as soon as accepted since the last such warning: a client "
                            "address (%s, the last) held <SERVICE>_MAX_CONNECTIONS_PER_ADDRESS (%d) open ones. "
                            "Behind a proxy, name it in <SERVICE>_TRUSTED_PROXIES", unsaid, address,
                            self._max_per_address)

    def _addresses(self) -> _Addresses:
        """This server's ``_Addresses``, kept on uvicorn's state of the server."""
        book: _Addresses | None = getattr(self.server_state, "leadpipe_addresses", None)
        if book is None:
            book = self.server_state.leadpipe_addresses = _Addresses()  # type: ignore[attr-defined]
        return book

    def data_received(self, data: bytes) -> None:
        while data and not self._refused:
            if not self._awaiting_head():
                # A request's body (uvicorn reads no more of it than the app takes), a head's worth at a time: a
                # pipelined head that begins in it is counted from the next piece, not after the whole read.
                piece, data = data[:self._max_head], data[self._max_head:]
                super().data_received(piece)
                if self.transport.is_closing():
                    return
                continue
            room = self._max_head - self._head
            if room <= 0:
                self._refuse("Request headers too large.")
                return
            # No more than the head may still hold, unless it ends in them: then the rest is its body.
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            # The piece is the head's alone when the head began before it, or when nothing came before it but
            # whole requests and no head ends in it; else (the rest of a body the app refused, or a pipelined
            # request, then the head's start) it goes uncounted: no more than the room left.
            alone = self._in_head or self.cycle is None or not self.cycle.more_body
            heads = self._heads
            super().data_received(piece)
            if self.transport.is_closing():
                return  # uvicorn refused what it read (not HTTP)
            if self._in_head and alone and self._heads == heads:
                self._head += len(piece)
        if self._in_head or self._draining():
            self._start_head_clock()  # a head not whole yet, or the rest of a body answered early

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head = True, 0
        # The keep-alive timer armed when an early-answered body's rest came in (on_message_complete) may have
        # been armed in this very read: uvicorn disarms it only as a read starts, and would close the connection
        # mid-request.
        self._unset_keepalive_if_required()

    def on_headers_complete(self) -> None:
        self._in_head, self._head, self._heads = False, 0, self._heads + 1
        self._stop_head_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        draining = self._draining()
        super().on_message_complete()
        if draining:
            # The rest of a body answered early is in (uvicorn leaves such a cycle as it was): the connection is
            # idle now, kept alive as after any answer, which uvicorn armed no timer for.
            self.cycle.more_body = False
            self._stop_head_clock()
            if not self.transport.is_closing() and not self.pipeline and self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)

    def _draining(self) -> bool:
        """The app answered before the request's body was all in: what comes is the rest of it."""
        return self.cycle is not None and self.cycle.response_complete and self.cycle.more_body

    def _refuse(self, reason: str) -> None:
        """A head too long or too late: ``400`` (or, past its deadline, a close), unless an earlier request's
        answer is still owed: that goes first, saying ``Connection: close``, and the head is thrown away."""
        self._stop_head_clock()
        if reason != HEAD_LATE:  # a browser's speculative connection that never sends is no one's fault
            self.logger.warning(reason)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive, self._refused = False, True
        elif reason == HEAD_LATE:
            self.transport.close()
        else:
            self.send_400_response(reason)

    def _awaiting_head(self) -> bool:
        return self._in_head or self.cycle is None or self.cycle.response_complete

    def _start_head_clock(self) -> None:
        """From now, unless it runs already: the head began in this read (or the connection's opening did)."""
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_deadline_s, self._head_late)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(HEAD_LATE)
