"""A TCP proxy to a test stack's Postgres that can go silent, for the tests of what a client does when Postgres
stops answering without closing the connection (a failover dropping packets, a network partition, a frozen host)."""

from __future__ import annotations

import asyncio
import contextlib

import sqlalchemy as sa


class Failover:
    """A TCP proxy to the stack's Postgres whose answers can stop (``silence``), as behind a failover that drops
    packets: what Postgres sends is held, not delivered, and the connections stay open; what is sent to it goes
    through, so a statement may commit whose answer never comes."""

    def __init__(self, url: sa.engine.URL) -> None:
        self._upstream = (url.host, url.port or 5432)
        self._url = url
        self._answering = asyncio.Event()
        self._answering.set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> sa.engine.URL:
        """The URL of Postgres through the proxy."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self._url.set(host="127.0.0.1", port=self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def silence(self) -> None:
        self._answering.clear()

    def resume(self) -> None:
        self._answering.set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, self._answering))
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event | None) -> None:
        with contextlib.suppress(ConnectionError):  # held answers, delivered once the client has hung up
            while data := await source.read(65536):
                if flowing is not None:
                    await flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()  # the other side hung up: so does this one, and Postgres ends the session
