"""The composition root shared by every consuming service.

Guarantees: ``consumer_app`` builds nothing until its lifespan starts (settings
are read by the caller, clients are built in the lifespan); on shutdown it
stops the runner first (finish batch, commit, leave the group), then the
service's background loops (timers, outbox relays: each finishes its round),
then the producer, then the database pool. ``/readyz`` fails while the
database is unreachable, the runner is retrying or not running, or a
background loop's last round failed. The
service's own routes reach the clients through ``request.app.state.ctx``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from leadpipe_common import asyncapi, topology
from leadpipe_common import logging as lp_logging
from leadpipe_common.consumer import BatchHandler, ConsumerRunner
from leadpipe_common.db import Inbox, make_engine, make_sessionmaker, ping
from leadpipe_common.ops import Check, RequestMetrics, ops_router, require
from leadpipe_common.producer import Producer
from leadpipe_common.settings import ConsumerSettings

log = structlog.get_logger(__name__)


class Background(Protocol):
    def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """The clients a service's routes and background loops share."""

    settings: ConsumerSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    producer: Producer
    extras: dict[str, Any]


def consumer_app(
    *,
    name: str,
    summary: str,
    settings: ConsumerSettings,
    inbox_table: sa.Table | None,
    handlers: Callable[[Context], Mapping[str, BatchHandler]],
    routers: Sequence[APIRouter] = (),
    background: Callable[[Context], Sequence[Background]] = lambda ctx: (),
    select: Callable[[Sequence[tuple[str, bytes]]], bool] | None = None,
    produces: bool = True,
) -> FastAPI:
    """``inbox_table=None`` means the handlers are idempotent by construction and produce nothing.
    A service that ``produces`` serves the AsyncAPI document of the topics."""
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        lp_logging.configure(name, settings.log_level, settings.log_json)
        engine = make_engine(settings)
        producer = Producer(settings, client_id=name)
        ctx = Context(settings=settings, engine=engine, sessionmaker=make_sessionmaker(engine),
                      producer=producer, extras={})
        app.state.ctx = ctx
        runner = ConsumerRunner(
            settings=settings,
            service=name,
            input_topics=topology.inputs_of(name),
            handlers=handlers(ctx),
            sessionmaker=ctx.sessionmaker,
            inbox=Inbox(inbox_table) if inbox_table is not None else None,
            producer=producer,
            select=select,
        )
        loops = list(background(ctx))
        await producer.start()
        await runner.start()
        for loop in loops:
            loop.start()
        checks["database"] = lambda: ping(engine)
        checks["broker"] = require(lambda: producer.started, "producer not connected")
        checks["consumer"] = require(lambda: runner.ready, "consumer is retrying a batch or not running")
        for loop in loops:
            if hasattr(loop, "failing"):
                checks[getattr(loop, "name", "background")] = require(
                    lambda loop=loop: not loop.failing, "failing; retrying with backoff (see the logs)")
        log.info("service started", topics=topology.inputs_of(name), port=settings.port)
        try:
            yield
        finally:
            await runner.stop()
            for loop in loops:
                await loop.stop()
            await producer.stop()
            await engine.dispose()
            log.info("service stopped")

    app = FastAPI(title=f"leadpipe {name}", version="1", summary=summary, lifespan=lifespan)
    app.add_middleware(RequestMetrics)
    app.include_router(ops_router(lambda: checks))
    if produces:
        app.include_router(asyncapi.router())
    for router in routers:
        app.include_router(router)
    return app
