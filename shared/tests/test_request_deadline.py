"""A request's database work within its deadline (``db.answered_within``, ``Runtime.request_unit_of_work`` and
``request_connection``, every service's routes), with no Postgres: a Postgres gone silent (a network partition, a
frozen host) never answers, and a request must not wait for it until the operating system gives up on the connection."""

import asyncio
import importlib
import time

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common.auth import CACHE_S, Keys
from leadpipe_common.db import Unanswered, answered_within, is_unavailable
from leadpipe_common.local.configdoc import service_settings
from leadpipe_common.service import Runtime
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.testing.failover import Failover
from leadpipe_common.testing.fakes import NeverAnswers, SilentSession
from leadpipe_common.uow import SqlUnitOfWork

BOOTSTRAP_KEY = "the-bootstrap-key-0123456789"


def serving(session: SilentSession, deadline_s: float, engine: object = None) -> Runtime:
    """A service's runtime whose units of work are on ``session``, its connections from ``engine``."""
    return Runtime(settings=ConsumerSettings(db_request_deadline_s=deadline_s), context=None,
                   engine=engine, producer=None, wake_relay=lambda: None,  # type: ignore[arg-type]
                   unit_of_work=lambda: SqlUnitOfWork(lambda: session, lambda s: s))  # type: ignore[arg-type]


async def test_a_requests_unit_of_work_postgres_never_answers_ends_at_its_deadline_and_closes_its_connection():
    """The ROLLBACK a unit of work ends with would wait for the statement in flight, for ever on a silent Postgres:
    the connection is closed instead, never back in the pool mid-statement."""
    session = SilentSession()
    started = time.monotonic()
    with pytest.raises(Unanswered) as raised:
        async with asyncio.timeout(5):  # the test's own guard: a request that waits for Postgres fails it
            async with serving(session, deadline_s=0.05).request_unit_of_work() as uow:
                session.silent = True
                await uow.session.execute("UPDATE ...")
    assert time.monotonic() - started < 1
    assert session.calls == ["UPDATE ...", "invalidate", "close"]
    assert is_unavailable(raised.value)  # a 503 with Retry-After, as every service answers it


async def test_a_unit_of_work_failed_by_an_error_rolls_back_and_keeps_its_connection():
    session = SilentSession()
    with pytest.raises(ValueError, match="the broker said no"):
        async with serving(session, deadline_s=5).request_unit_of_work() as uow:
            await uow.session.execute("UPDATE ...")
            raise ValueError("the broker said no")
    assert session.calls == ["UPDATE ...", "ROLLBACK", "close"]


async def test_a_requests_connection_postgres_never_answers_ends_at_its_deadline():
    started = time.monotonic()
    with pytest.raises(Unanswered):
        async with asyncio.timeout(5), serving(SilentSession(), 0.05, NeverAnswers()).request_connection() as conn:
            await conn.execute("SELECT ...")
    assert time.monotonic() - started < 1


LEAD = "7f3c2a9e-4b1d-4e8a-9c6f-2d5e8a1b3c4d"


@pytest.mark.parametrize("name, path", [
    ("capture", "/v1/quarantine"), ("routing", f"/v1/leads/{LEAD}/handoff"),
    ("delivery", f"/v1/deliveries?lead_id={LEAD}"), ("reporting", "/v1/reports/funnel"),
    ("reporting", "/dashboard")])
async def test_a_route_postgres_never_answers_is_answered_503_to_retry_at_the_requests_deadline(name, path):
    """On a Postgres gone silent each held its request, its connection and its client until the operating system gave
    up on the connection, minutes later."""
    app = importlib.import_module(f"{name}.app").create_app()
    app.state.keys = Keys(None, BOOTSTRAP_KEY)  # type: ignore[arg-type]  # the bootstrap key is never looked up
    store = importlib.import_module(f"{name}.service").SERVICE.store
    app.state.runtime = Runtime(
        settings=service_settings(name)(db_request_deadline_s=0.05), context=None,
        engine=NeverAnswers(), producer=None, wake_relay=lambda: None,  # type: ignore[arg-type]
        unit_of_work=lambda: SqlUnitOfWork(lambda: SilentSession(silent=True), store))  # type: ignore[arg-type]
    started = time.monotonic()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as client:
        r = await asyncio.wait_for(client.get(path, headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}), timeout=5)
    assert (r.status_code, r.headers.get("retry-after")) == (503, "5"), r.text
    assert time.monotonic() - started < 1


async def test_a_timeout_of_the_blocks_own_is_not_taken_for_postgres_unanswered():
    """A call inside the block with a timeout of its own (an HTTP call's) says so, not that Postgres is silent."""
    with pytest.raises(TimeoutError) as raised:
        async with answered_within(5), asyncio.timeout(0.01):
            await asyncio.Event().wait()
    assert not isinstance(raised.value, Unanswered)


def test_a_deadline_of_0_is_none():
    assert ConsumerSettings(db_request_deadline_s=0).request_deadline_s() is None
    assert ConsumerSettings().request_deadline_s() == 30.0


async def test_a_key_lookup_postgres_stops_answering_is_given_up_on_at_its_deadline_its_connection_closed(stack):
    """On the real Postgres, behind a proxy that stops passing its answers on (``testing.failover``)."""
    failover = Failover(sa.engine.make_url(stack.database_url))
    async with failover as proxied:
        engine = create_async_engine(proxied, pool_size=1, max_overflow=0)
        invalidated: list[object] = []
        sa.event.listen(engine.sync_engine, "invalidate", lambda conn, record, exc: invalidated.append(conn))
        now = [0.0]
        keys = Keys(engine, None, deadline_s=1.0, clock=lambda: now[0])
        try:
            assert await asyncio.wait_for(keys.find("0" * 12), timeout=30) is None  # the pool's connection set up
            failover.silence()
            started = time.monotonic()
            with pytest.raises(Unanswered):
                await asyncio.wait_for(keys.find("1" * 12), timeout=30)
            assert time.monotonic() - started < 1 + 2 + 3  # and SQLAlchemy's goodbye, up to 2 s
            assert len(invalidated) == 1  # closed, never back in the pool mid-statement
            failover.resume()
            now[0] += CACHE_S  # till then no lookup is tried (test_auth)
            assert await asyncio.wait_for(keys.find("2" * 12), timeout=30) is None  # on a new connection
        finally:
            await engine.dispose()

