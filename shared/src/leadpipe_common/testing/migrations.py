"""Helpers for migration tests: a database of its own on the test stack's Postgres server, and a service's
``migrate`` command run on it as an operator runs it (a subprocess, with only DATABASE_URL set to it).

Guarantees: the database is dropped when the block ends, with any connection still open to it; a migration
that fails fails the test with its stderr."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def migrate(service: str, database_url: str, revision: str) -> None:
    """``python -m <service> migrate <revision>`` against ``database_url``."""
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", service, "migrate", revision], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


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
