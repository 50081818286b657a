"""What a client's connection may hold before its request reaches the app: uvicorn's HTTP protocol, bounded.

uvicorn (its httptools protocol, which the services run) keeps every byte of
a request's head (its request line and headers) until the head is whole,
for as long as the client takes: one connection sending headers without end
grew a process by 200 MB a second, and one sending nothing, or a byte now
and then, was held for ever. Neither was bounded by ``limit_concurrency``,
which uvicorn checks only once a head is whole.

Guarantees of :class:`BoundedHeads`, with ``<SERVICE>_MAX_HEADER_BYTES``,
``<SERVICE>_HEADER_DEADLINE_S`` and ``<SERVICE>_MAX_CONNECTIONS``:

- a head that goes on past ``MAX_HEADER_BYTES`` is answered ``400`` and its
  connection closed, having held no more than that (one that began in the
  read after a pipelined request, or after the rest of a body the app
  refused, no more than twice that);
- a connection is closed when a request's head is not whole
  ``HEADER_DEADLINE_S`` after the connection opened, or after the first
  bytes that came once the previous answer was sent (an idle kept-alive
  connection is closed after ``<SERVICE>_KEEP_ALIVE_S``, as before);
- a connection accepted while ``MAX_CONNECTIONS`` are open is closed at
  once, so heads in progress are no more than that;
- a head that arrives whole in one read, the common request, arms no timer:
  a connection's first request costs one, cancelled when its head is whole.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHeads(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above (``max_head_bytes``, ``head_deadline_s``; the
    connections' limit is uvicorn's ``limit_concurrency``, less the one asking)."""

    def __init__(self, *args: Any, max_head_bytes: int, head_deadline_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = max_head_bytes
        self._head_deadline_s = head_deadline_s
        #: Bytes of the head in progress so far.
        self._head = 0
        self._in_head = False
        #: Heads whole on this connection so far.
        self._heads = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            # uvicorn would answer its request 503, once a head came: till then it would hold it like any other.
            transport.close()
            return
        self._head_timer = self.loop.call_later(self._head_deadline_s, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data:
            if not self._awaiting_head():
                super().data_received(data)  # a request's body: uvicorn reads no more of it than the app takes
                break
            room = self._max_head - self._head
            if room <= 0:
                self.logger.warning("Request headers too large.")
                self.send_400_response("Request headers too large.")
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
        if self._awaiting_head():
            self._start_head_clock()  # a head not whole yet, or any bytes after an answer

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head = True, 0

    def on_headers_complete(self) -> None:
        self._in_head, self._head, self._heads = False, 0, self._heads + 1
        self._stop_head_clock()
        super().on_headers_complete()

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
            self.transport.close()
