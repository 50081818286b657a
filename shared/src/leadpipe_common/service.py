"""The composition root shared by every consuming service.

Guarantees: ``consumer_app`` builds nothing until its lifespan starts (settings
are read by the caller, clients are built in the lifespan); on shutdown it
stops the runner first (finish batch, commit, leave the group), then the
producer, then the database pool. ``/readyz`` fails while the database is
unreachable or the runner is retrying or not running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
import structlog
from fastapi import FastAPI

from leadpipe_common import logging as lp_logging
from leadpipe_common.consumer import BatchHandler, ConsumerRunner
from leadpipe_common.db import Inbox, make_engine, make_sessionmaker, ping
from leadpipe_common.ops import Check, ops_router, require
from leadpipe_common.producer import Producer
from leadpipe_common.settings import ConsumerSettings

log = structlog.get_logger(__name__)


def consumer_app(
    *,
    name: str,
    summary: str,
    settings: ConsumerSettings,
    input_topics: Sequence[str],
    inbox_table: sa.Table,
    handlers: Callable[[], Mapping[str, BatchHandler]],
) -> FastAPI:
    checks: dict[str, Check] = {}
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        lp_logging.configure(name, settings.log_level, settings.log_json)
        engine = make_engine(settings)
        producer = Producer(settings, client_id=name)
        runner = ConsumerRunner(
            settings=settings,
            service=name,
            input_topics=input_topics,
            handlers=handlers(),
            sessionmaker=make_sessionmaker(engine),
            inbox=Inbox(inbox_table),
            producer=producer,
        )
        await producer.start()
        await runner.start()
        state["runner"] = runner
        checks["database"] = lambda: ping(engine)
        checks["broker"] = require(lambda: producer.started, "producer not connected")
        checks["consumer"] = require(lambda: runner.ready, "consumer is retrying a batch or not running")
        log.info("service started", topics=list(input_topics), port=settings.port)
        try:
            yield
        finally:
            await runner.stop()
            await producer.stop()
            await engine.dispose()
            log.info("service stopped")

    app = FastAPI(title=f"leadpipe {name}", version="1", summary=summary, lifespan=lifespan)
    app.include_router(ops_router(lambda: checks))
    return app
