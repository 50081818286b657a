"""capture when Postgres cannot serve a request, with no Postgres: every pooled connection is taken (the pool's
checkout times out) and each request path that reaches the database answers 503 with Retry-After; and a row held
elsewhere is waited for only so long (the lock and statement timeouts capture's pool asks for)."""

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from leadpipe_common import service as shared_service
from leadpipe_common.auth import Keys, new_key
from leadpipe_common.db import make_engine, make_sessionmaker, per_server_settings
from leadpipe_common.service import Runtime
from leadpipe_common.uow import SqlUnitOfWork
from leadpipe_common.throttle import parse_rate

from capture.api import Capture, Limits
from capture.app import create_app, load_forms, load_identity
from capture.redrive import LONGEST_WAIT_S, Redriver
from capture.settings import CaptureSettings
from capture.store import CaptureStore, outbox
from capture.writer import LeadWriter

NOWHERE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
ADMIN = f"test-bootstrap-{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def exhausted_pool() -> AsyncIterator[AsyncEngine]:
    """An engine whose only connection is taken for good: every checkout times out (``sqlalchemy.exc.TimeoutError``),
    as when every pooled connection is held (a flood, a lock nobody releases) for the pool's timeout."""
    async def never_connects() -> None:
        await asyncio.Event().wait()

    engine = create_async_engine(NOWHERE, pool_size=1, max_overflow=0, pool_timeout=0.05,
                                 async_creator=never_connects)
    taken = asyncio.create_task(engine.connect().start())
    await asyncio.sleep(0)
    try:
        yield engine
    finally:
        taken.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taken
        await engine.dispose()


def serving(engine: AsyncEngine) -> FastAPI:
    """capture's app on ``engine``, its state as the lifespan leaves it (no broker, no loop started)."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    app = create_app(settings)
    app.state.keys = Keys(engine, ADMIN)
    context = Capture(forms=load_forms(settings.forms_file).forms, writer=LeadWriter(engine, 1, lambda: None, utc_now),
                      clock=utc_now, limits=Limits(parse_rate("100/second", "rate"), parse_rate("100/second", "rate"),
                                                   {}, ()),
                      token_key=b"k" * 32, verifier=None, identity=load_identity(settings.identity_file))  # type: ignore[arg-type]
    app.state.runtime = Runtime(settings=settings, context=context, engine=engine, producer=None,  # type: ignore[arg-type]
                                unit_of_work=functools.partial(SqlUnitOfWork, make_sessionmaker(engine), CaptureStore,
                                                               None, outbox), wake_relay=lambda: None)
    return app


def utc_now() -> datetime:
    return datetime.now(UTC)


async def answers(method: str, path: str, **kwargs) -> httpx.Response:
    async with exhausted_pool() as engine:
        transport = httpx.ASGITransport(app=serving(engine), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://capture") as client:
            return await client.request(method, path, **kwargs)


def is_retry_later(r: httpx.Response) -> bool:
    return r.status_code == 503 and r.headers.get("retry-after") == "5" and bool(r.json()["error"])


async def test_releasing_a_quarantined_submission_while_the_pool_is_exhausted_is_answered_retry_later():
    r = await answers("POST", f"/v1/quarantine/{uuid.uuid4()}/release", headers={"Authorization": f"Bearer {ADMIN}"})
    assert is_retry_later(r), (r.status_code, r.text)


async def test_listing_the_quarantine_while_the_pool_is_exhausted_is_answered_retry_later():
    r = await answers("GET", "/v1/quarantine", headers={"Authorization": f"Bearer {ADMIN}"})
    assert is_retry_later(r), (r.status_code, r.text)


async def test_a_lead_posted_with_an_api_key_that_cannot_be_looked_up_is_answered_retry_later():
    """The key's lookup, before the body is read, checks a connection out too (on the fast lane)."""
    r = await answers("POST", "/v1/leads", json={"email": "ada@example.com"},
                      headers={"Authorization": f"Bearer {new_key()[1]}"})
    assert is_retry_later(r), (r.status_code, r.text)


async def test_an_admin_key_that_cannot_be_looked_up_is_answered_retry_later():
    r = await answers("GET", "/v1/quarantine", headers={"Authorization": f"Bearer {new_key()[1]}"})
    assert is_retry_later(r), (r.status_code, r.text)


class Built(Exception):
    """The serving process's engine is built: the lifespan goes no further."""


async def test_capture_serves_from_connections_that_give_up_on_a_held_row_and_a_statement_that_does_not_end(
        monkeypatch):
    """Set at connect, on every connection of the serving process's pool; an engine an admin command builds from the
    same settings (or a migration) has none, so nothing cuts a long one short."""
    sent: list[dict] = []

    async def connect(*args, **kwargs):  # noqa: ANN202
        sent.append(kwargs.get("server_settings") or {})
        raise OSError("no Postgres here")

    engines: list[AsyncEngine] = []

    def building(*args, **kwargs):  # noqa: ANN202
        engines.append(make_engine(*args, **kwargs))
        raise Built

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(shared_service, "make_engine", building)
    monkeypatch.setattr(shared_service.lp_logging, "configure", lambda *args: None)
    settings = CaptureSettings(DATABASE_URL=NOWHERE, db_lock_timeout_ms=1500)
    app = create_app(settings)
    with pytest.raises(Built):
        async with app.router.lifespan_context(app):
            pass
    for engine in (*engines, make_engine(settings)):
        with pytest.raises(OSError):
            async with engine.connect():
                pass
        await engine.dispose()
    # Not the client check: a Postgres before 14 refuses a start-up that asks for it (per_server_settings sets it).
    assert sent == [{"lock_timeout": "1500", "statement_timeout": "5000"}, {}]


@pytest.mark.parametrize(("check_ms", "server_major", "asked"), [
    (250, 14, {"client_connection_check_interval": "250"}),
    (250, 17, {"client_connection_check_interval": "250"}),
    (250, 13, {}),
    (0, 17, {}),
], ids=["postgres-14", "postgres-17", "postgres-13", "check-off"])
def test_capture_asks_postgres_14_or_later_to_check_it_is_still_connected_and_an_older_one_nothing(
        check_ms, server_major, asked):
    """Postgres runs a statement of a connection closed under it on until it checks that its client is still there;
    a Postgres before 14 has no such check and refused every connection that asked for one (SQLSTATE 42704: 500s)."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, db_client_check_ms=check_ms)
    assert settings.db_settings_for(server_major) == asked


class NewConnection:
    """A new connection of capture's pool as its ``connect`` listener gets it (SQLAlchemy's adapted asyncpg
    connection, whose ``run_async`` runs a coroutine on the asyncpg one) on a server of version ``major``."""

    def __init__(self, major: int) -> None:
        self.major = major
        self.ran: list[tuple[Any, ...]] = []
        self.driver_connection = self

    def get_server_version(self) -> SimpleNamespace:
        return SimpleNamespace(major=self.major, minor=0, micro=0)

    def run_async(self, fn):  # noqa: ANN001, ANN201
        return asyncio.run(fn(self))

    async def execute(self, query: str, *args: Any) -> str:
        self.ran.append((query, *args))
        return "SELECT 1"


def test_each_new_connection_of_capture_is_asked_for_the_client_check_its_server_has():
    connected = per_server_settings(CaptureSettings(DATABASE_URL=NOWHERE, db_client_check_ms=250).db_settings_for)
    new, old = NewConnection(16), NewConnection(13)
    connected(new, None)
    connected(old, None)
    assert new.ran == [("SELECT set_config($1, $2, false)", "client_connection_check_interval", "250")]
    assert old.ran == []


def leadpipes_connect_listeners(engine: AsyncEngine) -> list[Any]:
    """The ``connect`` listeners of ``engine``'s pool that are leadpipe's (SQLAlchemy's own set up its dialect)."""
    return [fn for fn in engine.sync_engine.pool.dispatch.connect if fn.__module__.startswith("leadpipe_common")]


def test_the_serving_pool_asks_each_new_connection_for_the_client_check_and_a_commands_asks_nothing(monkeypatch):
    """The engine factory attaches the per-server settings to the serving process's engine, the one the lifespan
    builds; an admin command's engine from the same settings is asked nothing (a long command is not cut short)."""
    built: list[AsyncEngine] = []

    def building(*args, **kwargs):  # noqa: ANN202
        built.append(make_engine(*args, **kwargs))
        raise Built

    async def start(app: FastAPI) -> None:
        with pytest.raises(Built):
            async with app.router.lifespan_context(app):
                pass

    monkeypatch.setattr(shared_service, "make_engine", building)
    monkeypatch.setattr(shared_service.lp_logging, "configure", lambda *args: None)
    settings = CaptureSettings(DATABASE_URL=NOWHERE, db_client_check_ms=250)
    asyncio.run(start(create_app(settings)))
    served, commanded = NewConnection(16), NewConnection(16)
    for connected in leadpipes_connect_listeners(built[0]):
        connected(served, None)
    for connected in leadpipes_connect_listeners(make_engine(settings)):
        connected(commanded, None)
    assert served.ran == [("SELECT set_config($1, $2, false)", "client_connection_check_interval", "250")]
    assert commanded.ran == []


class Recorded:
    """An engine whose transactions record the statements they are sent, and their parameters, and find nothing
    stuck."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.params: list[dict[str, Any]] = []

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator["Recorded"]:
        yield self

    async def execute(self, statement, params=None):  # noqa: ANN001, ANN201
        self.sent.append(str(statement))
        self.params.append(params or {})
        return self

    def all(self) -> list:
        return []

    def one(self):  # noqa: ANN201
        return type("Counts", (), {"stuck": 0, "exhausted": 0})


async def test_the_re_driver_lifts_the_statement_timeout_capture_sets_for_requests_for_its_own_transaction():
    """After a long outage, counting the stuck leads may take longer than a request may; it must still finish."""
    engine = Recorded()
    await Redriver(engine, after_s=300, every_s=30, max_redrives=3, on_redrive=lambda: None).step()  # type: ignore[arg-type]
    assert engine.sent[0] == "SELECT set_config('statement_timeout', '0', true)"


async def test_the_re_drive_waits_its_backed_off_deadline_and_the_stuck_count_keeps_a_re_driven_lead():
    """least(after * backoff^n, 3600) capped even the first wait (CAPTURE_REDRIVE_AFTER_S=7200 re-drove after an
    hour). But counted by that deadline, which each re-drive starts again, a lead that never finishes was stuck only at
    the check that re-drove it (1 check in 100), and an alert on capture_leads_stuck never fired: it counts every
    lead re-driven, or CAPTURE_REDRIVE_AFTER_S past its publishing, until its outcome. (What Postgres makes of both
    is test_writer's.)"""
    engine = Recorded()
    await Redriver(engine, after_s=7200, every_s=30, max_redrives=3, on_redrive=lambda: None,  # type: ignore[arg-type]
                   backoff=2).step()
    stuck, redrive = engine.sent[1:]
    assert "count(*)" in stuck and "UPDATE" in redrive
    # The first wait CAPTURE_REDRIVE_AFTER_S, each further one backoff times longer, up to an hour unless the first
    # is longer.
    deadline = "greatest(:after, least(:after * power(:backoff, redrives), :longest))"
    assert deadline in redrive and deadline not in stuck
    assert "terminal_stage IS NULL AND (redrives > 0 OR published_at < now() - make_interval(secs => :after))" in stuck
    assert [(p["after"], p["backoff"], p["longest"]) for p in engine.params[1:]] == [(7200, 2, LONGEST_WAIT_S)] * 2


async def test_a_serving_process_hands_what_no_code_caught_to_the_handler_that_leaves_values_out(monkeypatch):
    """asyncio's own handler writes a forgotten task's exception whole (``lp_logging.loop_errors``)."""
    def building(*args, **kwargs):  # noqa: ANN202
        raise Built

    monkeypatch.setattr(shared_service, "make_engine", building)
    monkeypatch.setattr(shared_service.lp_logging, "configure", lambda *args: None)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    app = create_app(CaptureSettings(DATABASE_URL=NOWHERE))
    try:
        with pytest.raises(Built):
            async with app.router.lifespan_context(app):
                pass
        assert loop.get_exception_handler() is shared_service.lp_logging.loop_errors
    finally:
        loop.set_exception_handler(before)
