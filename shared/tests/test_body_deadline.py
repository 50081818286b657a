"""The shared edge's deadline on a request's body: a client trickling one in gets 408, and its endpoint nothing."""

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from leadpipe_common.http import BodyLimit, RefuseNul, install_problem_handlers

DEADLINE_S = 0.2


class Lead(BaseModel):
    email: str


def app(reached: list[Any]) -> FastAPI:
    """An app on the shared edge, as ``consumer_app`` builds it, whose routes read a body each way there is;
    ``reached``: what each endpoint got."""
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(RefuseNul)
    app.add_middleware(BodyLimit, max_bytes=64 * 1024, deadline_s=DEADLINE_S)

    @app.post("/body")
    async def body(request: Request) -> dict[str, str]:
        reached.append(await request.body())
        return {"read": "body"}

    @app.post("/stream")
    async def stream(request: Request) -> dict[str, str]:
        reached.append(b"".join([chunk async for chunk in request.stream()]))
        return {"read": "stream"}

    @app.post("/form")
    async def form(request: Request) -> dict[str, str]:
        reached.append(dict(await request.form()))
        return {"read": "form"}

    @app.post("/model")
    async def model(lead: Lead) -> dict[str, str]:
        reached.append(lead)
        return {"read": "model"}

    @app.post("/streamed")
    async def streamed(request: Request) -> StreamingResponse:
        reached.append(await request.body())

        async def slowly():
            yield b"a"
            await asyncio.sleep(DEADLINE_S * 2)  # Starlette awaits the client's disconnect meanwhile
            yield b"b"

        return StreamingResponse(slowly())

    return app


READERS = ["/body", "/stream", "/form", "/model"]
JSON = (b"application/json", b'{"email": "ann@example.com"}')
FORM = (b"application/x-www-form-urlencoded", b"email=ann%40example.com")


def sent_as(path: str) -> tuple[bytes, bytes]:
    """A body each route reads: a form to the form's, JSON to the others."""
    return FORM if path == "/form" else JSON


async def post(app: FastAPI, path: str, content_type: bytes, chunks: list[tuple[float, bytes]]
               ) -> tuple[int, dict[bytes, bytes], bytes]:
    """The status, headers and body of the answer to a post whose body arrives in ``chunks``, each (seconds the
    client waits before it, its bytes); the client hangs up once the answer is whole."""
    pending = list(chunks)
    answered = asyncio.Event()
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not pending:
            await answered.wait()
            return {"type": "http.disconnect"}
        wait, body = pending.pop(0)
        if wait:
            await asyncio.sleep(wait)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", content_type)], "client": ("203.0.113.7", 50000), "server": ("test", 80)}
    await app(scope, receive, send)
    start = messages[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in messages[1:])


@pytest.mark.parametrize("path", READERS)
async def test_a_body_still_arriving_at_the_deadline_is_refused_with_408_and_its_endpoint_gets_nothing(path):
    reached: list[Any] = []
    content_type, body = sent_as(path)
    status, headers, answer = await post(app(reached), path, content_type, [(0, body[:5]), (30, body[5:])])
    assert status == 408
    assert json.loads(answer) == {"error": f"the request body did not arrive within {DEADLINE_S:g} s"}
    assert headers[b"connection"] == b"close"  # the rest of the body is not waited for
    assert reached == []


async def test_the_deadline_counts_from_the_requests_start_not_from_each_read():
    """Each piece comes well within the deadline of the one before: a client sending a byte every few seconds
    would pass any wait between reads, and hold its connection as long as it liked."""
    reached: list[Any] = []
    pieces = [(DEADLINE_S / 3, JSON[1][i:i + 4]) for i in range(0, len(JSON[1]), 4)]
    status, _, _ = await post(app(reached), "/body", JSON[0], pieces)
    assert status == 408 and reached == []


async def test_a_stop_cancelling_a_request_that_waits_for_its_body_is_a_cancellation_not_a_late_body():
    """A server's stop cancels the requests it holds: taken for a late body, it would be answered and go on."""
    reached: list[Any] = []
    reading = asyncio.create_task(post(app(reached), "/body", JSON[0], [(0, JSON[1][:5]), (30, JSON[1][5:])]))
    await asyncio.sleep(DEADLINE_S / 4)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert reached == []


@pytest.mark.parametrize("path", READERS)
async def test_a_body_arriving_in_pieces_within_the_deadline_is_read_whole_however_the_endpoint_reads_it(path):
    reached: list[Any] = []
    content_type, body = sent_as(path)
    status, headers, answer = await post(app(reached), path, content_type,
                                         [(0, body[:5]), (DEADLINE_S / 10, body[5:9]), (0, body[9:])])
    assert (status, json.loads(answer)) == (200, {"read": path[1:]}), answer
    assert b"connection" not in headers
    assert reached in ([body], [{"email": "ann@example.com"}], [Lead(email="ann@example.com")])


async def test_a_body_that_arrived_in_time_is_read_whole_however_late_the_endpoint_reads_it():
    """Only waiting on the client is late: an endpoint busy past the deadline before it reads still gets it."""
    reached: list[Any] = []
    slow = app(reached)

    @slow.post("/busy")
    async def busy(request: Request) -> dict[str, str]:
        await asyncio.sleep(DEADLINE_S * 1.5)
        reached.append(await request.body())
        return {"read": "body"}

    status, _, _ = await post(slow, "/busy", JSON[0], [(0, JSON[1])])
    assert status == 200 and reached == [JSON[1]]


async def test_once_the_body_is_in_a_response_may_stream_past_the_deadline():
    """Starlette awaits the client's disconnect while a response streams: that wait is not the body's."""
    reached: list[Any] = []
    status, _, answer = await post(app(reached), "/streamed", JSON[0], [(0, JSON[1])])
    assert (status, answer) == (200, b"ab")
    assert reached == [JSON[1]]
