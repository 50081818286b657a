"""The probes and the HTTP edge's HEAD, on an app with no service behind it."""

import asyncio

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from leadpipe_common.http import HeadAsGet
from leadpipe_common.ops import REQUESTS, RequestMetrics, ops_router


async def test_readiness_asked_by_many_at_once_is_checked_once_and_answers_them_all():
    """/readyz is public: each request ran the checks (a database ping on the pool the service's work waits for),
    and, once they were run one at a time, a check of a second or more dated at its start was stale for every probe
    waiting on it: five probes of a 0.3 s check took 1.5 s."""
    ran = 0

    async def slow() -> None:
        nonlocal ran
        ran += 1
        await asyncio.sleep(0.3)

    app = FastAPI()
    app.include_router(ops_router(lambda: {"database": slow}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(5)))
        took = asyncio.get_running_loop().time() - started
    assert [a.status_code for a in answers] == [200] * 5 and ran == 1
    assert took < 0.9  # one check, not five in a row


async def test_a_head_is_answered_as_the_get_and_counted_under_its_route():
    """HeadAsGet passes the app a copy of the scope: the route the router matched was left in the copy, and every
    HEAD was counted as "(no route)"."""
    app = FastAPI()

    @app.get("/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    def counted() -> float:
        return REGISTRY.get_sample_value(REQUESTS._name + "_total",
                                         {"method": "HEAD", "route": "/things/{thing}", "status": "200"}) or 0.0

    before = counted()
    edge = RequestMetrics(HeadAsGet(app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://edge") as client:
        head = await client.head("/things/a")
    assert head.status_code == 200 and head.headers["content-type"] == "application/json"
    assert counted() == before + 1
