"""uvicorn as the services run it (``cli.server_options``), on a real socket: what a client may hold of it."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request

from leadpipe_common.cli import server_options
from leadpipe_common.http import BodyLimit, install_problem_handlers
from leadpipe_common.local.infra import free_port
from leadpipe_common.settings import ServiceSettings

GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
HEAD_START = b"POST / HTTP/1.1\r\nHost: test\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers how many bytes of body it read; at /refuse, 413 without reading it."""
    if scope["path"] == "/refuse":
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"1")]})
        await send({"type": "http.response.body", "body": b"!"})
        return
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(str(size))).encode())]})
    await send({"type": "http.response.body", "body": str(size).encode()})


def edge(body_deadline_s: float) -> FastAPI:
    """An app behind the shared edge's body limit, as ``consumer_app`` builds it, that reads each body."""
    edged = FastAPI()
    install_problem_handlers(edged)
    edged.add_middleware(BodyLimit, max_bytes=64 * 1024, deadline_s=body_deadline_s)

    @edged.post("/")
    async def read(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    return edged


@contextlib.asynccontextmanager
async def serving(serve_app: Any = app, **settings: Any) -> AsyncIterator[int]:
    """``serve_app`` on a free port with the options a service with ``settings`` gets; yields the port."""
    options = server_options(ServiceSettings(host="127.0.0.1", port=free_port(), **settings))
    server = uvicorn.Server(uvicorn.Config(lambda: serve_app, **{**options, "lifespan": "off"}))
    serve = asyncio.create_task(server.serve())
    while not server.started:
        assert not serve.done(), serve.result()
        await asyncio.sleep(0.01)
    try:
        yield options["port"]
    finally:
        server.should_exit = True
        await serve


async def connect(port: int, source: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the server, from ``source`` (another loopback address, 127.0.0.2: another client)."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0) if source else None)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: bytes = GET) -> tuple[bytes, bytes]:
    """The status and body of the answer to ``request``, sent on the connection."""
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head.split(b" ")[1], await asyncio.wait_for(reader.readexactly(length), 5)


async def closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before it closed the connection, which it must do ``within`` seconds."""
    sent = await asyncio.wait_for(reader.read(), within)
    assert reader.at_eof()
    return sent


async def test_a_connection_past_max_connections_is_closed_at_once_and_the_limit_itself_served():
    """uvicorn answers 503 only once a request's head is whole: till then it held every connection offered."""
    async with serving(max_connections=2) as port:
        held = [await connect(port) for _ in range(2)]
        assert [(await answer(*connection))[0] for connection in held] == [b"200", b"200"]  # kept alive, both
        reader, writer = await connect(port)
        assert await closed(reader, within=5) == b""  # by the server: the writer is held open
        held[0][1].close()
        await asyncio.sleep(0.1)  # for the server to see it gone
        assert (await answer(*await connect(port)))[0] == b"200"


async def test_one_address_past_its_connections_is_closed_at_once_while_another_address_is_served(caplog):
    """Counted per process alone, a flood of idle connections from one address took every connection there was,
    and everyone else was refused while it lasted. The closes are said, once a minute at most."""
    async with serving(max_connections=10, max_connections_per_address=2) as port:
        held = [await connect(port) for _ in range(2)]
        assert [(await answer(*connection))[0] for connection in held] == [b"200", b"200"]
        for _ in range(2):
            reader, writer = await connect(port)
            assert await closed(reader, within=5) == b""  # the third from 127.0.0.1, and a fourth
        said = [r.getMessage() for r in caplog.records if "MAX_CONNECTIONS_PER_ADDRESS" in r.getMessage()]
        assert len(said) == 1 and "(127.0.0.1, the last)" in said[0]
        assert (await answer(*await connect(port, source="127.0.0.2")))[0] == b"200"  # another client
        held[0][1].close()
        await asyncio.sleep(0.1)  # for the server to see it gone: the address has room again
        assert (await answer(*await connect(port)))[0] == b"200"


async def test_a_trusted_proxys_connections_are_not_counted_per_address():
    """Behind a proxy every client has its address: counted, a proxy's two-hundredth client was refused."""
    async with serving(max_connections=10, max_connections_per_address=2, trusted_proxies="127.0.0.0/30") as port:
        held = [await connect(port) for _ in range(4)]
        assert [(await answer(*connection))[0] for connection in held] == [b"200"] * 4


async def test_an_idle_kept_alive_connection_is_closed_after_keep_alive_s():
    async with serving(keep_alive_s=1) as port:
        reader, writer = await connect(port)
        assert (await answer(reader, writer))[0] == b"200"
        await closed(reader, within=3)  # uvicorn's own 5 s would have run past this


@pytest.mark.parametrize(("sent", "trickled"), [(b"", b""), (HEAD_START, b"X-A")], ids=["nothing", "part of a head"])
async def test_a_connection_whose_head_is_not_whole_by_the_header_deadline_is_closed(sent, trickled):
    async with serving(header_deadline_s=0.5) as port:
        reader, writer = await connect(port)
        writer.write(sent)
        for byte in trickled:  # a byte now and then: no wait between reads is the deadline
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        assert await closed(reader, within=2) == b""


async def test_on_a_kept_alive_connection_the_head_deadline_runs_from_the_first_bytes_after_an_answer():
    """Idle, it is kept KEEP_ALIVE_S (behind a load balancer, longer than its idle timeout); its next head is
    timed from its first bytes, which uvicorn took for a sign of life, and then waited on for ever."""
    async with serving(header_deadline_s=0.4, keep_alive_s=5) as port:
        reader, writer = await connect(port)
        assert (await answer(reader, writer))[0] == b"200"
        await asyncio.sleep(0.8)  # idle past the head deadline: no head is late yet
        assert (await answer(reader, writer))[0] == b"200"
        writer.write(HEAD_START)
        assert await closed(reader, within=2) == b""


@pytest.mark.parametrize("piece", [5000, 500], ids=["in one read", "in pieces"])
async def test_a_head_going_on_past_max_header_bytes_is_refused_400_and_its_connection_closed(piece):
    """uvicorn kept all of it: one connection sending headers without end grew the process by 200 MB a second."""
    head = HEAD_START + b"X-Pad: " + b"a" * 4200  # not ended, and just past the limit: what comes after the
    async with serving(max_header_bytes=4096) as port:  # refusal, the server's closed socket answers with a reset
        reader, writer = await connect(port)
        for start in range(0, len(head), piece):
            writer.write(head[start:start + piece])
            await asyncio.sleep(0.05)
        sent = await closed(reader, within=5)
    assert sent.startswith(b"HTTP/1.1 400 ") and sent.endswith(b"Request headers too large.")


@pytest.mark.parametrize("pieces", [1, 4], ids=["in one read", "in pieces"])
async def test_a_head_within_max_header_bytes_is_served_with_its_body_however_it_arrives(pieces):
    """The read that ends the head may carry more of the body than a head may hold: that is no head too long."""
    body = b"b" * 20_000
    head = HEAD_START + b"X-Pad: " + b"a" * 3000 + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with serving(max_header_bytes=4096) as port:
        reader, writer = await connect(port)
        step = len(head) // pieces + 1
        for start in range(0, len(head) - step, step):
            writer.write(head[start:start + step])
            await asyncio.sleep(0.05)
        last = (len(head) - 1) // step * step
        assert await answer(reader, writer, head[last:] + body) == (b"200", b"20000")
        assert await answer(reader, writer, head + body) == (b"200", b"20000")  # and the next, kept alive


async def test_the_rest_of_a_body_the_app_answered_without_reading_is_not_counted_as_the_next_head():
    """uvicorn throws it away as it comes: taken for the next request's head, it was refused as one too long."""
    body = b"b" * 19_900
    padded = b"GET / HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 1000 + b"\r\n\r\n"
    async with serving(max_header_bytes=4096) as port:
        reader, writer = await connect(port)
        refused = b"POST /refuse HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
        assert await answer(reader, writer, refused + body[:100]) == (b"413", b"!")
        writer.write(body[100:] + padded[:20])  # the rest, and the next head's start, in one read
        await asyncio.sleep(0.1)
        assert await answer(reader, writer, padded[20:]) == (b"200", b"0")


async def test_a_body_trickled_past_the_body_deadline_is_answered_408_and_the_server_closes_its_connection():
    """The answer says Connection: close; kept alive, the rest of the body, thrown away as it came, held it."""
    async with serving(edge(body_deadline_s=0.3)) as port:
        reader, writer = await connect(port)
        writer.write(HEAD_START + b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{")
        await asyncio.sleep(0.1)
        writer.write(b'"a')  # the deadline counts from the request's start, not from the last bytes
        sent = await closed(reader, within=3)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"\r\nconnection: close" in head.lower()
    assert body == b'{"error":"the request body did not arrive within 0.3 s"}'


class Transport(asyncio.Transport):
    """A connection's transport, as a protocol sees it: what it wrote, and whether it closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent, self.closed = b"", False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_a_connection_refused_past_the_limit_no_longer_counts_so_an_admitted_ones_request_is_served():
    """asyncio reports the refused connection lost a turn later: counted till then, uvicorn answered 503 the
    requests of admitted connections whose heads came meanwhile, a flood's every turn."""
    from uvicorn.server import ServerState

    config = uvicorn.Config(lambda: app, **{**server_options(ServiceSettings(max_connections=2)), "lifespan": "off"})
    config.load()
    state = ServerState()
    admitted, also, refused = (config.http_protocol_class(config=config, server_state=state, app_state={})
                               for _ in range(3))
    transports = [Transport() for _ in range(3)]
    for protocol, transport in zip((admitted, also, refused), transports, strict=True):
        protocol.connection_made(transport)
    assert transports[2].closed and len(state.connections) == 2
    admitted.data_received(GET)  # in the same turn
    await asyncio.sleep(0.05)
    assert transports[0].sent.startswith(b"HTTP/1.1 200 ") and not transports[0].closed


REFUSED = b"POST /refuse HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100


async def test_after_an_early_answer_and_the_rest_of_its_body_the_connection_is_kept_alive_not_cut_at_the_head_deadline():
    """Behind a load balancer KEEP_ALIVE_S outlasts its idle timeout: closed at the head deadline instead, the
    balancer's next request met a closed connection (a 502)."""
    async with serving(header_deadline_s=0.5, keep_alive_s=5) as port:
        reader, writer = await connect(port)
        assert await answer(reader, writer, REFUSED) == (b"413", b"!")
        writer.write(b"a" * 900)
        await asyncio.sleep(1)  # idle past the head deadline, within keep-alive
        assert (await answer(reader, writer))[0] == b"200"


async def test_a_request_sent_with_the_rest_of_an_early_answered_body_is_answered_past_keep_alive_s():
    """The keep-alive timer the body's end armed, in the same read as the next head, was never disarmed: the
    connection closed mid-request, its answer lost (a capture post retried and stored twice)."""
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/refuse":
            await app(scope, receive, send)
            return
        await asyncio.sleep(1.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(slow, keep_alive_s=1) as port:
        reader, writer = await connect(port)
        assert await answer(reader, writer, REFUSED) == (b"413", b"!")
        assert await answer(reader, writer, b"a" * 900 + GET) == (b"200", b"ok")


def protocol_of(transport: Transport, serve_app: Any = app, **settings: Any) -> Any:
    """A connection of a service's server (``cli.server_options``), made on ``transport``."""
    from uvicorn.server import ServerState

    config = uvicorn.Config(lambda: serve_app, **{**server_options(ServiceSettings(**settings)), "lifespan": "off"})
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)
    return protocol


async def test_a_pipelined_head_in_the_read_that_ends_a_body_is_counted_from_its_next_piece_not_held_whole(
        monkeypatch):
    """A read passed whole held every byte of the next head it carried: a quarter of a megabyte a connection."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    parsed: list[int] = []
    feed = HttpToolsProtocol.data_received
    monkeypatch.setattr(HttpToolsProtocol, "data_received",
                        lambda self, data: (parsed.append(len(data)), feed(self, data))[1])
    transport = Transport()
    protocol = protocol_of(transport, max_header_bytes=1024)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\n")
    protocol.data_received(b"x" + b"GET /b HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 250_000)
    assert sum(parsed[1:]) <= 1 + 2 * 1024
    await asyncio.sleep(0.05)  # the first request's answer, then the close its refused successor asked for
    assert transport.sent.startswith(b"HTTP/1.1 200 ") and b"connection: close" in transport.sent.lower()
    assert transport.closed


async def test_a_head_refused_while_an_earlier_request_is_answered_lets_that_answer_go_first_then_closes():
    """Written over it, the 400 was read as the first request's answer (or nothing came): a client retried a
    request already done, and capture stored a lead twice."""
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    async with serving(slow, max_header_bytes=1024) as port:
        reader, writer = await connect(port)
        writer.write(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi" + HEAD_START + b"X-Pad: "
                     + b"a" * 2000)
        sent = await closed(reader, within=5)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ") and b"connection: close" in head.lower() and body == b"done"


async def test_a_websocket_upgrade_is_answered_as_a_request_not_handed_to_a_protocol_no_deadline_holds():
    async with serving(header_deadline_s=0.5) as port:
        reader, writer = await connect(port)
        status, _ = await answer(reader, writer, b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert status == b"200"
