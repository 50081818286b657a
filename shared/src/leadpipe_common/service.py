"""What a consuming service is: one declaration, and the composition root that runs it.

A service declares, in one :class:`Service` value, what it consumes (event
class to a module-level handler), its store, inbox and outbox, its HTTP
routes (and the webhooks it sends, documented beside them) and its
background loops. Its input topics and whether it serves the AsyncAPI
document come from ``topology``; ``consumer_app`` refuses a declaration that
disagrees with the table (or reads a topic written outside leadpipe with an
inbox that keeps no digests).

Guarantees of ``consumer_app`` (the composition root): nothing is built
until its lifespan starts (settings are read by the caller, clients are built
in the lifespan; the service's context is built from them). Every write goes through a unit of work
(``leadpipe_common.uow``): the runner's batches, the routes' requests and the
background loops' rounds alike; a service with an outbox gets its relay, and
a unit of work that published wakes it at once (it then lingers up to
``<SERVICE>_OUTBOX_LINGER_MS`` to take what else comes: capture's relay as long as 20 messages take
at the recent rate, at most 100 ms). On shutdown it stops the
runner first (finish batch, commit, leave the group), then the background
loops together (each finishes its round, within its own bound), then the
relay, then the producer, then the database pool.
``/readyz`` fails while the database is unreachable, the runner is retrying
or not running, or an essential background loop's last round failed (not a
housekeeping one's, ``essential = False``: see ``loop_checks``); for a service
that serves without the broker, only the database counts. Routes reach the
running service as ``Annotated[Runtime[...], Depends(runtime)]``, and do
their database work within the request's deadline
(``Runtime.request_unit_of_work``, ``Runtime.request_connection``:
``<SERVICE>_DB_REQUEST_DEADLINE_S``), as an API key's lookup does.
A service that needs the broker to start and cannot reach it says so in one
log line (the servers, KAFKA_BOOTSTRAP_SERVERS, aiokafka's reason) and its
start fails without a traceback; any other failure of the start is logged
with its traceback, as a bug must be. The database is not needed to start
(``/readyz`` says while it is away).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import httpx
import sqlalchemy as sa
import structlog
from aiokafka.errors import KafkaConnectionError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from leadpipe_common import asyncapi, heap, topics, topology
from leadpipe_common import logging as lp_logging
from leadpipe_common.auth import Keys, Sessions, WrongKeys, principal
from leadpipe_common.consumer import BatchApplier, BatchHandler, ConsumerRunner, Outcome
from leadpipe_common.db import (UNAVAILABLE, answered_within, error_text, is_unavailable, make_engine,
                                make_sessionmaker, ping, transaction_within)
from leadpipe_common.envelope import Envelope
from leadpipe_common.events import Event
from leadpipe_common.kafka import quiet_client_logs
from leadpipe_common.http import (BodyLimit, HeadAsGet, RefuseNul, SecurityHeaders, ServerErrors, StrictRoute,
                                  install_problem_handlers, problem_responses, takes_json)
from leadpipe_common.ops import Check, RequestMetrics, ops_router, require
from leadpipe_common.outbox import Claim, OutboxRelay, table_claim
from leadpipe_common.producer import Producer
from leadpipe_common.retry import backoff
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.throttle import parse_networks, parse_rate
from leadpipe_common.uow import SqlUnitOfWork, UnitOfWork

log = structlog.get_logger(__name__)

C = TypeVar("C")  # what the service's handlers need besides the store: reference data, a clock
S = TypeVar("S")  # the service's store: its own tables, on one unit of work's session


class Background(Protocol):
    name: str
    failing: bool
    #: Whether its failing makes the service unready (``loop_checks``).
    essential: bool

    def start(self) -> None: ...
    async def stop(self) -> None: ...


#: A handler: the unit of work, a batch of new events of its class, and the service's context in;
#: one outcome per event id out (an event left out is applied with no output).
Handler = Callable[[UnitOfWork[S], Sequence[Envelope], C], Awaitable[Mapping[Any, Outcome]]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clients:
    """What the composition root builds from settings, handed to the service's context factory."""

    engine: AsyncEngine
    producer: Producer
    #: Cut the outbox relay's idle wait: something was just committed for it.
    wake_relay: Callable[[], None]
    #: For calls to other HTTP services (pooled; closed at shutdown); each call sets its own timeout.
    http: httpx.AsyncClient


@dataclass(frozen=True)
class Runtime(Generic[C, S]):
    """The running service, as its routes and background loops reach it."""

    settings: ConsumerSettings
    context: C
    engine: AsyncEngine
    producer: Producer
    unit_of_work: Callable[[], SqlUnitOfWork[S]]
    wake_relay: Callable[[], None]

    @asynccontextmanager
    async def request_unit_of_work(self) -> AsyncIterator[SqlUnitOfWork[S]]:
        """A route's unit of work: ``unit_of_work()``, its end included, within the request's deadline
        (``<SERVICE>_DB_REQUEST_DEADLINE_S``): past it, ``db.Unanswered``, a 503 with Retry-After."""
        async with answered_within(self.settings.request_deadline_s()), self.unit_of_work() as uow:
            yield uow

    def request_connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A route's connection, in a transaction, within the request's deadline (``db.transaction_within``)."""
        return transaction_within(self.engine, self.settings.request_deadline_s())


@dataclass(frozen=True)
class Service(Generic[C, S]):
    name: str
    summary: str
    consumes: Mapping[type[Event], Handler[Any, Any]]
    store: Callable[[AsyncSession], S]
    inbox: sa.Table | None = None
    outbox: sa.Table | None = None
    routes: Sequence[APIRouter] = ()
    #: The requests it sends to others (delivery's to webhooks), as operations of its OpenAPI document's
    #: ``webhooks``: documented, never served. Each a function making the router, called when the document is
    #: first asked for: the models it builds cost a process ~1 MB it would otherwise keep for nothing.
    webhooks: Sequence[Callable[[], APIRouter]] = ()
    #: Started after the relay, in this order; stopped together before it, so the relay sends what they committed.
    background: Callable[[Runtime[C, S]], Sequence[Background]] = field(default=lambda runtime: ())
    #: Looks at a record's headers (and the service's context) only: records it declines are passed over
    #: undecoded.
    select: Callable[[Sequence[tuple[str, bytes]], C], bool] | None = None
    #: What the relay publishes, when the service's own table is its outbox (capture's leads), whose rows outlive
    #: their publication (``OutboxRelay``'s ``keeps``); by default the ``outbox`` table's rows, deleted as sent.
    relay: Claim | None = None
    #: Its routes work with the broker away (capture stores leads for its relay): the consumer and the
    #: producer then start whenever the broker can be reached, and only the database decides readiness.
    serves_without_broker: bool = False
    #: The transport of the shared HTTP client (``Clients.http``), when the service needs its own (delivery's
    #: connects only to public addresses); httpx's default otherwise.
    http_transport: Callable[[ConsumerSettings], httpx.AsyncBaseTransport] | None = None
    #: Paths of its JSON API (``/v1/...``) that read requests leniently on purpose, all others being
    #: ``StrictRoute``'s (``check``): capture's public posts and form tokens, whose forms' action URLs and
    #: script tags carry whatever query their site adds, and which read their own bodies as forms are read.
    lenient_paths: frozenset[str] = frozenset()
    #: Pure-ASGI middleware placed innermost, inside the shared edge (metrics, security headers, body limit,
    #: NUL check) and before FastAPI's own layers: for the few requests that come by the thousand and may skip
    #: the router (capture's public posts). It passes every other request on.
    fast_lane: Callable[..., Any] | None = None

    def check(self) -> None:
        """Raise ValueError when the declaration disagrees with the topology table, a route of its own would
        take a path every service serves (its routes are matched first: see ``consumer_app``), or a route of its
        JSON API reads requests leniently without being declared to (``lenient_paths``)."""
        routes = [route for router in self.routes for route in router.routes]
        paths = {route.path for route in routes}
        taken = sorted(paths & shared_paths())
        if taken:
            raise ValueError(f"{self.name} declares routes on {taken}, which every service serves itself")
        if stale := sorted(self.lenient_paths - paths):
            raise ValueError(f"{self.name} names {stale} in lenient_paths, which none of its routes serves")
        lenient = [f"{sorted(route.methods)[0]} {route.path}" for route in routes
                   if (takes_json(route) or (isinstance(route, APIRoute) and route.path.split("/")[1:2] == ["v1"]
                                             and route.path not in self.lenient_paths))
                   and not isinstance(route, StrictRoute)]
        if lenient:
            raise ValueError(f"{self.name}'s routes {lenient} would drop a query parameter they do not take or read "
                             "a JSON key given twice as its last value: make their router with "
                             "route_class=StrictRoute (leadpipe_common.http), or name the path in lenient_paths")
        inputs = topology.inputs_of(self.name)
        carried = {event for topic in inputs for event in topology.channel(topic).readable}
        stray = [e.type for e in self.consumes if e not in carried]
        if stray:
            raise ValueError(f"{self.name} consumes {stray}, which no topic it reads carries (topology.py)")
        idle = [t for t in inputs if not set(topology.channel(t).events) & set(self.consumes)]
        if idle:
            raise ValueError(f"{self.name} reads {idle} (topology.py) but consumes nothing from it")
        external = [t for t in inputs if t in topology.EXTERNAL_INPUTS]
        if external and (self.inbox is None or "digest" not in self.inbox.c):
            # Without digests a record under an id used before for another would be taken for a redelivery.
            raise ValueError(f"{self.name} reads {external}, written outside leadpipe, but its inbox keeps no "
                             "digests: declare it with inbox_table(.., digests=True)")

    def handlers(self, ctx: C) -> dict[str, BatchHandler]:
        """Each consumed type's handler, given the context: one callable per handler, however many types it is
        declared for, so the runner can tell one handler's events from another's (two partials of one function
        are not equal)."""
        bound = {handler: functools.partial(handler, ctx=ctx) for handler in set(self.consumes.values())}
        return {event.type: bound[handler] for event, handler in self.consumes.items()}

    def claim(self) -> Claim | None:
        if self.relay is not None:
            return self.relay
        return table_claim(self.outbox) if self.outbox is not None else None

    @property
    def produces(self) -> list[str]:
        """The topics it writes events to (dead letters aside: every consumer may write those)."""
        return [t for t in topology.outputs_of(self.name) if t != topics.DEADLETTER]


async def stop_background(loops: Sequence[Background], relay: Background | None) -> None:
    """Stop ``loops`` together, then ``relay``, which sends what they committed. Each waits for its round within
    its own bound, and a database gone silent holds every one at once: one after another, their bounds added up
    past a pod's grace period. A stop that fails is raised once the others (and the relay) have stopped; should
    several fail, the first is raised and the others logged."""
    stopped = await asyncio.gather(*(loop.stop() for loop in loops), return_exceptions=True)
    failed = [(loop, outcome) for loop, outcome in zip(loops, stopped, strict=True) if isinstance(outcome, BaseException)]
    for loop, outcome in failed[1:]:  # said here: only the first is raised, and a relay failing too raises its own
        log.error("a background loop failed to stop", loop=loop.name, error=error_text(outcome))
    if relay is not None:
        await relay.stop()
    if failed:
        raise failed[0][1]


@functools.cache
def shared_paths() -> frozenset[str]:
    """The paths ``consumer_app`` serves in every service (probes, metrics, API documents)."""
    return frozenset(route.path for router in (ops_router(dict), docs_router(), asyncapi.router())
                     for route in router.routes)


def runtime_of(request: Request) -> Runtime[Any, Any]:
    return request.app.state.runtime


async def runtime(request: Request) -> Runtime[Any, Any]:
    """The ``Depends`` of every route: ``Annotated[Runtime[Ctx, Store], Depends(runtime)]``. A coroutine,
    because FastAPI runs a plain function dependency in its thread pool: a thread hand-off per request."""
    return runtime_of(request)


def loop_checks(loops: Sequence[Background]) -> dict[str, Check]:
    """The readiness checks of a service's background loops: one for each essential loop, failing while its last
    round failed. A housekeeping loop (delivery's purge) has none: while it fails the service still does its
    work, and a probe that took the pod out of service would stop that too (it is logged and counted instead)."""
    return {loop.name: require(lambda loop=loop: not loop.failing, "failing; retrying with backoff (see the logs)")
            for loop in loops if loop.essential}


def consumer_app(service: Service[C, S], settings: ConsumerSettings, context: Callable[[Clients], C]) -> FastAPI:
    """The app of ``service``; ``context`` builds what its handlers and routes need once the clients exist."""
    service.check()
    checks: dict[str, Check] = {}
    #: Set once a failed start has been said in its own line.
    start_failure_said: list[BaseException] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        lp_logging.configure(service.name, settings.log_level, settings.log_json)
        asyncio.get_running_loop().set_exception_handler(lp_logging.loop_errors)
        engine = make_engine(settings, serving=True)
        producer = Producer(settings, client_id=service.name)
        claim = service.claim()
        relay = (OutboxRelay(engine, producer, claim, name=service.name, batch_max=settings.outbox_batch_max,
                             idle_s=settings.outbox_idle_s, linger_s=settings.outbox_linger_ms / 1000,
                             round_target=settings.outbox_round_target, keeps=service.relay is not None)
                 if claim is not None else None)
        wake = relay.wake if relay else (lambda: None)
        unit_of_work = functools.partial(SqlUnitOfWork, make_sessionmaker(engine), service.store, service.inbox,
                                         service.outbox, on_publish=wake)
        app.state.keys = Keys(engine, settings.bootstrap_key.get_secret_value() if settings.bootstrap_key else None,
                              deadline_s=settings.request_deadline_s())
        http = httpx.AsyncClient(timeout=10, follow_redirects=False,
                                 transport=service.http_transport(settings) if service.http_transport else None)
        ctx = context(Clients(engine=engine, producer=producer, wake_relay=wake, http=http))
        rt = Runtime(settings=settings, context=ctx, engine=engine, producer=producer, unit_of_work=unit_of_work,
                     wake_relay=wake)
        app.state.runtime = rt
        applier = BatchApplier(
            service=service.name, handlers=service.handlers(ctx),
            unit_of_work=unit_of_work, select=functools.partial(service.select, ctx=ctx) if service.select else None,
        )
        runner = ConsumerRunner(settings=settings, service=service.name, input_topics=topology.inputs_of(service.name),
                                applier=applier, producer=producer)
        loops: list[Background] = [*([relay] if relay else []), *service.background(rt)]
        # Everything built so far lives as long as the process (reference data, clients not yet connected);
        # no connection or task exists yet, and a frozen one would never be collected once dropped.
        heap.settle()
        checks["database"] = lambda: ping(engine)
        starting: asyncio.Task[None] | None = None
        if service.serves_without_broker:
            starting = asyncio.create_task(_start_when_broker_is_up(producer, runner), name=f"{service.name}-start")
        else:
            try:
                # aiokafka logs every failed attempt on its own: the failure is said once, below.
                with quiet_client_logs():
                    await producer.start()
                    await runner.start()
            except KafkaConnectionError as exc:
                log.error("cannot start: no broker answers at KAFKA_BOOTSTRAP_SERVERS",
                          servers=settings.kafka_bootstrap_servers, error=str(exc))
                start_failure_said.append(exc)
                await producer.stop()
                raise
            checks["broker"] = require(lambda: producer.started, "producer not connected")
            checks["consumer"] = require(lambda: runner.ready, "consumer is retrying a batch or not running")
            checks.update(loop_checks(loops))
        for loop in loops:
            loop.start()
        log.info("service started", topics=topology.inputs_of(service.name), port=settings.port)
        try:
            yield
        finally:
            if starting is not None:
                starting.cancel()
            await runner.stop()
            try:
                await stop_background([loop for loop in loops if loop is not relay], relay)
            finally:
                await producer.stop()
                await http.aclose()
                await engine.dispose()
            log.info("service stopped")

    # The API documents are served behind a key (below), not by FastAPI's open defaults. FastAPI's native
    # OpenTelemetry is off: leadpipe configures no OpenTelemetry provider (traces ride as `traceparent`,
    # metrics are Prometheus'), and left on it looks up three global providers on every request.
    app = FastAPI(title=f"leadpipe {service.name}", version="1", summary=service.summary, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.router.lifespan = _traceback_unless_said(app.router.lifespan, start_failure_said)  # type: ignore[method-assign]
    app.state.sessions = Sessions(settings.session_secret.get_secret_value() if settings.session_secret else None)
    app.state.public_origins = settings.public_origins
    app.state.wrong_keys = WrongKeys(parse_rate(settings.bad_key_rate_limit, settings.variable("bad_key_rate_limit")),
                                     parse_networks(settings.trusted_proxies, settings.variable("trusted_proxies")))
    # Outermost last: metrics see every answer, security headers go on every one, the limit is on every body,
    # and no text with a NUL gets past the edge.
    if service.fast_lane is not None:
        app.add_middleware(service.fast_lane)
    app.add_middleware(ServerErrors)
    app.add_middleware(RefuseNul)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, deadline_s=settings.body_deadline_s)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestMetrics)
    install_problem_handlers(app, unavailable=UNAVAILABLE, retry_later=is_unavailable)
    # The service's own routes first: the router tries routes in order, and capture's public posts are the
    # requests that come by the thousand (matching them after the ops and docs routes was ~13 % of capture's
    # HTTP path). Service.check refuses a route of its own on one of the shared paths below.
    for router in service.routes:
        app.include_router(router)
    if service.webhooks:
        document = app.openapi

        def openapi_with_webhooks() -> dict[str, Any]:
            if app.openapi_schema is None and not app.webhooks.routes:
                for make in service.webhooks:
                    app.webhooks.include_router(make())
            return document()

        app.openapi = openapi_with_webhooks  # type: ignore[method-assign]
    app.include_router(ops_router(lambda: checks))
    app.include_router(docs_router(), dependencies=[Depends(principal)])  # any valid key, or a dashboard session
    if service.produces:
        app.include_router(asyncapi.router(), dependencies=[Depends(principal)],  # any valid key
                           responses=problem_responses(401))
    return app


def _traceback_unless_said(lifespan: Callable[[Any, Any, Any], Awaitable[None]],
                           said: list[BaseException]) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """Starlette's lifespan handler, but for a failed start already said in a line of its own (an unreachable
    broker): Starlette hands uvicorn the start's traceback to log, a dozen frames around that line in one
    log event, which read as a bug."""

    async def handle(scope: Any, receive: Any, send: Any) -> None:
        async def say(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed" and said:
                message = {**message, "message": ""}  # uvicorn logs a message only when there is one
            await send(message)

        await lifespan(scope, receive, say)

    return handle


#: Swagger UI's files, pinned and held to their hashes (Subresource Integrity): an admin pastes a key into the
#: page, and FastAPI's default (``swagger-ui-dist@5``, whatever 5.x the CDN serves now) would run any release's
#: script beside it. The hashes are of the npm package's files, which jsDelivr serves byte for byte.
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.36.0/"
_SWAGGER_FILES = {
    "swagger-ui-bundle.js": "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+",
    "swagger-ui.css": "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc",
}


def swagger_ui(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page with its files pinned by hash, no favicon or validator badge fetched from
    elsewhere (the page's policy allows images from itself only)."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title, swagger_favicon_url="data:,",
                               swagger_js_url=SWAGGER_UI + "swagger-ui-bundle.js",
                               swagger_css_url=SWAGGER_UI + "swagger-ui.css",
                               swagger_ui_parameters={"validatorUrl": None})
    html = page.body.decode()
    for name, digest in _SWAGGER_FILES.items():
        for attribute in ("src", "href"):
            tag = f'{attribute}="{SWAGGER_UI}{name}"'
            if tag in html:
                html = html.replace(tag, f'{tag} integrity="{digest}" crossorigin="anonymous"')
                break
        else:
            raise RuntimeError(f"FastAPI's Swagger UI page no longer links {name} as expected")
    return HTMLResponse(html)


def docs_router() -> APIRouter:
    """``/openapi.json`` and the Swagger UI at ``/docs``: for callers with a key (the Authorize button takes it)
    or a browser signed in to the dashboard, whose session every service on the host accepts."""
    router = APIRouter(include_in_schema=False, responses=problem_responses(401))

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs")
    async def docs(request: Request) -> HTMLResponse:
        return swagger_ui(request.scope.get("root_path", "") + "/openapi.json", f"{request.app.title} API")

    return router


async def _start_when_broker_is_up(producer: Producer, runner: ConsumerRunner) -> None:
    for attempt in itertools.count():
        try:
            await producer.start()
            await runner.start()
            return
        except Exception as exc:
            delay = backoff(attempt, base=0.5, cap=10)
            log.warning("cannot reach the broker yet; the consumer starts when it can", error=repr(exc),
                        retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
