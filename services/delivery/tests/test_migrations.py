"""delivery's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-delivery migrate`` as an operator runs it, in a database of their own."""

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from delivery.store import _PURGE, DeliveryStore


def migrate(database_url: str, revision: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "delivery", "migrate", revision], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@contextlib.asynccontextmanager
async def fresh_database(stack) -> AsyncIterator[tuple[str, AsyncEngine]]:  # noqa: ANN001
    """A database of its own on the stack's server (delivery's schema name is fixed), dropped after."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    server = create_async_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
        engine = create_async_engine(url)
        try:
            yield url, engine
        finally:
            await engine.dispose()
            async with server.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await server.dispose()


async def test_deliveries_stored_before_0003_keep_their_bodies_until_a_purge_clears_the_finished_ones(stack):
    """Under 0002 every delivery had to keep its body for ever; from 0003 a finished one loses it (and its
    receiver's last answer) once old enough, and a purge round finds those by an index, not by reading the
    whole history."""
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    stored = [  # (status, done_at)
        ("delivered", long_ago), ("dead", long_ago), ("delivered", long_ago + timedelta(days=40)), ("pending", None),
    ]
    async with fresh_database(stack) as (url, engine):
        migrate(url, "0002")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO delivery.deliveries (subscription_id, lead_id, event_id, event_type, body, created_at, "
                "status, attempts, next_at, last_status, last_response, done_at) VALUES ('crm', :lead, :event, "
                "'lead.routed', :body, :created, :status, 1, :created, 500, 'busy', :done)"),
                [{"lead": uuid.uuid4(), "event": uuid.uuid4(), "body": b'{"data": {"email": "ana@example.com"}}',
                  "created": long_ago - timedelta(hours=1), "status": status, "done": done}
                 for status, done in stored])
        migrate(url, "head")
        async with engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a handful of rows: any plan would do
            plan = "\n".join((await conn.execute(sa.text(f"EXPLAIN {_PURGE.text}"),
                                                 {"cutoff": long_ago + timedelta(days=30), "limit": 100})).scalars())
            purged = await DeliveryStore(conn).purge(long_ago + timedelta(days=30), limit=100)
            rows = (await conn.execute(sa.text(
                "SELECT status, body IS NULL, last_response, last_status FROM delivery.deliveries ORDER BY seq"))).all()
    assert "deliveries_unpurged" in plan
    assert purged == 2
    assert [tuple(r) for r in rows] == [("delivered", True, None, 500), ("dead", True, None, 500),
                                        ("delivered", False, "busy", 500), ("pending", False, "busy", 500)]
