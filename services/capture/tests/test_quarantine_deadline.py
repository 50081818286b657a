"""The quarantine's unit of work on the real Postgres, behind a proxy that stops passing its answers on
(``testing.failover``: a network partition, a frozen host): given up on at the request's deadline and its connection
closed, whatever statement it waited on; an Idempotency-Key's claim runs on the asyncpg connection itself, where
SQLAlchemy does not see it cancelled, and the ROLLBACK a unit of work ended with then waited for Postgres for ever."""

import asyncio
import functools
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common.db import Unanswered, make_sessionmaker, raw_connection
from leadpipe_common.envelope import new_traceparent
from leadpipe_common.service import Runtime
from leadpipe_common.testing import factories
from leadpipe_common.testing.failover import Failover
from leadpipe_common.uow import SqlUnitOfWork

from capture.settings import CaptureSettings
from capture.store import CaptureStore, outbox
from capture.writer import Submitted, claim_key

DEADLINE_S = 1.0


async def test_a_quarantine_postgres_stops_answering_mid_claim_is_given_up_on_at_its_deadline_its_connection_closed(
        stack, db):
    run = uuid.uuid4().hex[:8]
    bot = Submitted(lead=factories.captured(f"bot.{run}@example.com"), person_key=f"bot.{run}@example.com",
                    request_id=uuid.uuid4(), traceparent=new_traceparent(), idempotency_key=f"public /v1/leads {run}",
                    fingerprint="f", keyed=False)
    row = {"lead_id": bot.lead.lead_id, "received_at": bot.lead.captured_at, "reasons": ["a test's"],
           "form_id": None, "utm_source": None, "fields": {"email": bot.person_key}}
    failover = Failover(sa.engine.make_url(stack.database_url))
    async with failover as proxied:
        engine = create_async_engine(proxied, pool_size=1, max_overflow=0)
        invalidated: list[object] = []
        sa.event.listen(engine.sync_engine, "invalidate", lambda conn, record, exc: invalidated.append(conn))
        rt = Runtime(settings=CaptureSettings(db_request_deadline_s=DEADLINE_S), context=None, engine=engine,
                     producer=None, wake_relay=lambda: None,  # type: ignore[arg-type]
                     unit_of_work=functools.partial(SqlUnitOfWork, make_sessionmaker(engine), CaptureStore, None,
                                                    outbox))
        try:
            started = time.monotonic()
            with pytest.raises(Unanswered):
                async with asyncio.timeout(30), rt.request_unit_of_work() as uow:
                    await uow.store.quarantine(row)
                    failover.silence()
                    await claim_key(await raw_connection(uow.store.session), bot, datetime.now(UTC), {"status": "x"})
            assert time.monotonic() - started < DEADLINE_S + 2 + 3  # and SQLAlchemy's goodbye, up to 2 s
            assert len(invalidated) == 1  # closed, never back in the pool mid-statement
            failover.resume()
            async with asyncio.timeout(30), rt.request_unit_of_work() as uow:  # on a new connection
                assert await uow.store.lock_quarantined(uuid.uuid4()) is None
        finally:
            await engine.dispose()
    async with db.connect() as conn:
        kept = (await conn.execute(sa.text("SELECT count(*) FROM capture.quarantine WHERE lead_id = :id"),
                                   {"id": bot.lead.lead_id})).scalar()
    assert kept == 0  # never committed: Postgres rolled it back with the connection
