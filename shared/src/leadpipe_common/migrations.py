"""Alembic, one migration history per service, each in its own schema.

Guarantees: ``upgrade`` creates the service's schema if needed and keeps the
service's ``alembic_version`` table inside that schema, so services migrate
independently against one shared server or against separate databases. It
holds a Postgres advisory lock per schema for the whole upgrade, so replicas
that all migrate on start (init containers) run one after another, and the
later ones find nothing left to do.
Migrations ship inside each service's package, so an installed wheel can
migrate without the source tree.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine


def config(migrations_dir: Path, database_url: str, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    command.upgrade(config(migrations_dir, database_url, schema), revision)


#: The shared ``auth`` schema (API keys, ``leadpipe_common.auth``): every service migrates it before its own,
#: since every service checks keys (the advisory lock makes the later ones find nothing to do).
AUTH_MIGRATIONS = Path(__file__).parent / "auth_migrations"


def upgrade_service(migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    upgrade(AUTH_MIGRATIONS, database_url, schema="auth")
    upgrade(migrations_dir, database_url, schema=schema, revision=revision)


def run_env(target_metadata: sa.MetaData) -> None:
    """Body of every service's ``env.py``: online migrations over asyncpg."""
    cfg = context.config
    schema: str = cfg.attributes["schema"]
    url: str = cfg.attributes["database_url"]

    def migrate(connection: sa.Connection) -> None:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"leadpipe-migrate:{schema}"})
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(main())


def create_inbox(schema: str) -> None:
    """Create ``<schema>.inbox`` (see ``leadpipe_common.db``) inside a migration.

    Frozen: migrations that already ran call this, so a later change to the
    inbox needs a new migration, never an edit here.
    """
    from alembic import op
    from sqlalchemy.dialects.postgresql import UUID

    op.create_table(
        "inbox",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )


def create_outbox(schema: str) -> None:
    """Create ``<schema>.outbox`` (see ``leadpipe_common.outbox``) inside a migration. Frozen like the inbox."""
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
