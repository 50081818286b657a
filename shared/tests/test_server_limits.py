"""uvicorn as the services run it (``cli.server_options``), on a real socket: what it lets a client hold."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from leadpipe_common.cli import server_options
from leadpipe_common.local.infra import free_port
from leadpipe_common.settings import ServiceSettings

GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[int]:
    """A server on a free port with the options a service with ``settings`` gets; yields the port."""
    options = server_options(ServiceSettings(host="127.0.0.1", port=free_port(), **settings))
    server = uvicorn.Server(uvicorn.Config(lambda: app, **{**options, "lifespan": "off"}))
    serve = asyncio.create_task(server.serve())
    while not server.started:
        assert not serve.done(), serve.result()
        await asyncio.sleep(0.01)
    try:
        yield options["port"]
    finally:
        server.should_exit = True
        await serve


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def status_of(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The status line of the answer to a GET sent on the connection."""
    writer.write(GET)
    line = await asyncio.wait_for(reader.readline(), 5)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the rest of its head: no body follows
    return line.split(b" ")[1]


async def test_past_max_connections_a_request_is_answered_503_and_its_connection_closed():
    async with serving(max_connections=2) as port:
        held = [await connect(port) for _ in range(2)]
        assert [await status_of(*connection) for connection in held] == [b"204", b"204"]  # kept alive, both
        reader, writer = await connect(port)
        assert await status_of(reader, writer) == b"503"
        await asyncio.wait_for(reader.read(), 5)  # its body, then the end: closed, its file descriptor free again
        assert reader.at_eof()
        held[0][1].close()
        await asyncio.sleep(0.1)  # for the server to see it gone
        assert await status_of(*await connect(port)) == b"204"


async def test_an_idle_kept_alive_connection_is_closed_after_keep_alive_s():
    async with serving(keep_alive_s=1) as port:
        reader, writer = await connect(port)
        assert await status_of(reader, writer) == b"204"
        assert await asyncio.wait_for(reader.read(), 3) == b""  # uvicorn's own 5 s would have run past this
