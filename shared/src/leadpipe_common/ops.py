"""Operational endpoints every service mounts: ``/healthz``, ``/readyz``, ``/metrics``.

Guarantees: ``/healthz`` answers 200 while the process is alive and serving
(it touches no dependency, so an orchestrator never restarts a healthy process
because Postgres blinked). ``/readyz`` answers 200 only when every readiness
check passes (broker connected, database reachable, consumer running), else
503 with each failing check and the kind of its error (the probe is public:
the error itself, which may name hosts and users, goes to the log). The two
probes need no key. ``/metrics`` is Prometheus text, for an API key with
``metrics:read`` (or ``admin``) only: 401 without a key, as every keyed
endpoint, even before any key exists; 403 for a key without the scope (a
dashboard session included). It shows lead volumes, subscription ids and, on
capture, when a bot's post was caught, which no caller without a key may
learn. A scraper's key is looked up at most once every ``auth.CACHE_S``
seconds. With :class:`RequestMetrics` installed it counts every HTTP request
by method, route template (never the raw path, so ids do not explode the
series) and status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from leadpipe_common.auth import READ_METRICS, needs
from leadpipe_common.http import ResponseHook, problem_responses

log = structlog.get_logger(__name__)

REQUESTS = Counter("leadpipe_http_requests_total", "HTTP requests answered, by route template and status",
                   ["method", "route", "status"])

#: A check raises (any exception) when its dependency is not usable.
Check = Callable[[], Awaitable[None]]


#: How long a readiness answer serves the probes after it (``/readyz``).
READY_FOR_S = 1.0


async def _checked(named: dict[str, Check]) -> tuple[dict[str, Any], int]:
    """Every check run at once, each within 2 s: the answer's body and status."""
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), timeout=2) for check in named.values()), return_exceptions=True
    )
    report = {}
    for name, res in zip(named, results, strict=True):
        if isinstance(res, BaseException):
            log.warning("not ready", check=name, error=repr(res))
            report[name] = f"failing: {type(res).__name__}"
        else:
            report[name] = "ok"
    ok = bool(named) and all(v == "ok" for v in report.values())
    return {"status": "ready" if ok else "not ready", "checks": report}, 200 if ok else 503


def ops_router(checks: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """``checks`` is read per request so the lifespan can fill it in after start."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # The probe is public: run for every request, a flood of them took the pool's connections the service's own
    # work waits for (a ping each). One check runs at a time, and its answer serves READY_FOR_S.
    last: list[tuple[float, dict[str, Any], int]] = []
    checking = asyncio.Lock()

    @router.get("/readyz", summary="Broker, database and consumer are usable")
    async def readyz() -> JSONResponse:
        async with checking:
            loop = asyncio.get_running_loop()
            if not last or loop.time() - last[0][0] >= READY_FOR_S:
                body, status = await _checked(dict(checks()))
                # Dated when it was known, not when asked: a check of 1 s or more, dated at its start, was stale for
                # every probe waiting on it, each of which then ran one of its own, one after another.
                last[:] = [(loop.time(), body, status)]
        _, body, status = last[0]
        return JSONResponse(body, status_code=status)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                description="Needs an API key with `metrics:read` (or `admin`): a Prometheus scrape job sends it "
                            "with `authorization: {credentials_file: ...}`.",
                dependencies=[needs(READ_METRICS)],
                responses=problem_responses(401, 403, _403="the API key lacks the scope metrics:read"))
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def require(condition: Callable[[], bool], reason: str) -> Check:
    async def check() -> None:
        if not condition():
            raise RuntimeError(reason)

    return check


class RequestMetrics(ResponseHook):
    """Counts requests in ``leadpipe_http_requests_total`` once each is done."""

    def starting(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        scope["leadpipe.status"] = message["status"]

    def finished(self, scope: dict[str, Any]) -> None:
        # The router leaves the matched route in the scope; no match is one series, not one per path.
        route = getattr(scope.get("route"), "path", "(no route)")
        # 500: what the server answers when the app raised before responding.
        REQUESTS.labels(scope["method"], route, str(scope.get("leadpipe.status", 500))).inc()
