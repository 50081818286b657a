"""Helpers for migration tests: a database of its own on the test stack's Postgres server, and a service's
migrations run on it as its ``migrate`` command runs them (``migrations.upgrade_service``, in this process).

Guarantees: the database is dropped when the block ends, with any connection still open to it; a migration
that fails fails the test with its exception."""

from __future__ import annotations

import contextlib
import importlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def migrate(service: str, database_url: str, revision: str) -> None:
    """What ``<service> migrate <revision>`` does against ``database_url``: the shared schema, then the service's
    own, to ``revision``. In this process, not a subprocess: an interpreter's start and imports cost ~2 s a call,
    some 35 calls over the suite (the command line itself, its messages and exit codes, is run by the tests that
    read them). In a thread of its own, as the migration runs its own event loop and a test's may be running."""
    from leadpipe_common import migrations

    migrations_dir = Path(importlib.import_module(service).__file__ or "").parent / "migrations"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(migrations.upgrade_service, migrations_dir, database_url, schema=service,
                    revision=revision).result()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A new database on ``server_url``'s server (a service's schema name is fixed, so an older release's tables
    need a database of their own): its URL and an engine on it."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    server = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with server.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        engine = create_async_engine(url)
        try:
            yield url, engine
        finally:
            await engine.dispose()
            async with server.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await server.dispose()
