"""Alembic, one migration history per service, each in its own schema.

Guarantees: ``upgrade`` creates the service's schema if needed and keeps the
service's ``alembic_version`` table inside that schema, so services migrate
independently against one shared server or against separate databases. It
holds a Postgres advisory lock per schema for the whole upgrade, so replicas
that all migrate on start (init containers) run one after another, and the
later ones find nothing left to do; one that finds the schema at the head
asked for already is done without the lock (a full replay of reporting holds
it for as long as it runs). A migration waits at most
``lock_timeout_s`` (``DATABASE_MIGRATION_LOCK_TIMEOUT_S``, 10 s by default)
for a lock on a table it changes, then fails having changed nothing
(``TableBusy``). Migrations only go up: a target older
than the revision in place is refused (``NotAnUpgrade``), as is one the
service's history does not have (alembic's ``CommandError``, before any
connection is made); ``upgrade`` returns the revisions in place before and
after, so that what is said is what was done.
Migrations ship inside each service's package, so an installed wheel can
migrate without the source tree.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from leadpipe_common.db import engine_for, sqlstate
from leadpipe_common.logging import run_command
from leadpipe_common.settings import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_MIGRATION_LOCK_TIMEOUT_S


def config(migrations_dir: Path, database_url: str, schema: str,
           connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
           lock_timeout_s: float = DEFAULT_MIGRATION_LOCK_TIMEOUT_S) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    cfg.attributes["connect_timeout_s"] = connect_timeout_s
    cfg.attributes["lock_timeout_s"] = lock_timeout_s
    return cfg


class NotAnUpgrade(CommandError):
    """The target is older than the revision in place: an upgrade to it would do nothing."""


class TableBusy(Exception):
    """A table the migration changes stayed held by another transaction past its lock timeout: nothing changed."""


#: The revisions in place in a schema (none before its first migration).
Heads = tuple[str, ...]


def upgrade(migrations_dir: Path, database_url: str, schema: str, revision: str = "head",
            connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
            lock_timeout_s: float = DEFAULT_MIGRATION_LOCK_TIMEOUT_S) -> tuple[Heads, Heads]:
    """The revisions in place before and after; a connection not set up within ``connect_timeout_s``
    (``DATABASE_CONNECT_TIMEOUT_S``) fails with ``db.ConnectTimeout``, a table held by another transaction for
    ``lock_timeout_s`` (``DATABASE_MIGRATION_LOCK_TIMEOUT_S``) with ``TableBusy``."""
    cfg = config(migrations_dir, database_url, schema, connect_timeout_s, lock_timeout_s)
    command.upgrade(cfg, revision)
    return cfg.attributes["before"], cfg.attributes["after"]


def check_revision(migrations_dir: Path, revision: str) -> None:
    """Raise ``CommandError`` for a ``revision`` the history does not have, before anything connects.

    A relative target (``+1``, ``head-1``) depends on what is in place: alembic resolves it once connected."""
    if re.search(r"[+-]\d+$", revision):
        return
    script = ScriptDirectory.from_config(config(migrations_dir, "", ""))
    try:
        script.get_revisions(revision)
    except AssertionError:  # alembic asserts, rather than says, that "", "@" or "0001@" names no revision
        raise CommandError("not a revision (a revision id such as 0003, or head)") from None


def older_than_in_place(script: ScriptDirectory, current: Heads, destination: str) -> bool:
    """Whether ``destination`` lies below a revision in place (``current``): alembic's upgrade to it runs no step,
    so a migrate that meant to go back would report success having changed nothing."""
    try:
        targets = [rev.revision for rev in script.get_revisions(destination) if rev is not None]
    except CommandError:
        return False  # relative, resolved by alembic against what is in place
    if not targets:
        return bool(current)  # "base" under any revision
    for target in targets:
        for head in current:
            if head == target:
                continue
            try:
                if any(True for _ in script.iterate_revisions(head, target)):
                    return True
            except RevisionError:  # not an ancestor of this head
                continue
    return False


#: The shared ``auth`` schema (API keys, ``leadpipe_common.auth``): every service migrates it before its own,
#: since every service checks keys (the advisory lock makes the later ones find nothing to do).
AUTH_MIGRATIONS = Path(__file__).parent / "auth_migrations"


def upgrade_service(migrations_dir: Path, database_url: str, schema: str, revision: str = "head",
                    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                    lock_timeout_s: float = DEFAULT_MIGRATION_LOCK_TIMEOUT_S) -> tuple[Heads, Heads]:
    """The service's revisions in place before and after; a target it does not have is refused before the
    shared schema is touched."""
    check_revision(migrations_dir, revision)
    upgrade(AUTH_MIGRATIONS, database_url, schema="auth", connect_timeout_s=connect_timeout_s,
            lock_timeout_s=lock_timeout_s)
    return upgrade(migrations_dir, database_url, schema=schema, revision=revision,
                   connect_timeout_s=connect_timeout_s, lock_timeout_s=lock_timeout_s)


def run_env(target_metadata: sa.MetaData) -> None:
    """Body of every service's ``env.py``: online migrations over asyncpg."""
    cfg = context.config
    schema: str = cfg.attributes["schema"]
    url: str = cfg.attributes["database_url"]
    lock_timeout_s: float = cfg.attributes["lock_timeout_s"]

    def migrate(connection: sa.Connection) -> None:
        # Already at the head asked for: done, without the lock. A full replay of reporting holds it for as long as
        # it runs (``reporting.replay``), and a pod's init container that has nothing to migrate must not wait that
        # long to start it. What is asked and in place is checked again under the lock when there is work.
        in_place = tuple(MigrationContext.configure(connection, opts={"version_table_schema": schema})
                         .get_current_heads())
        asked = context.get_revision_argument()  # "head" comes resolved to its revision
        if in_place and set(in_place) == ({asked} if isinstance(asked, str) else set(asked or ())):
            cfg.attributes["before"] = cfg.attributes["after"] = in_place
            return
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"leadpipe-migrate:{schema}"})
        # After the advisory lock: a replica's migrate still waits for another's as long as that one takes.
        # In whole milliseconds, never rounded down to 0, which Postgres reads as no timeout at all.
        connection.execute(sa.text(f"SET LOCAL lock_timeout = '{math.ceil(lock_timeout_s * 1000)}ms'"))
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        migration = context.get_context()
        before = tuple(migration.get_current_heads())
        destination = context.get_revision_argument()
        if (isinstance(destination, str) and migration.script is not None
                and older_than_in_place(migration.script, before, destination)):
            raise NotAnUpgrade(f"{destination} is older than the revision in place ({', '.join(before)}): migrate "
                               "only upgrades, it never goes back")
        try:
            with context.begin_transaction():
                context.run_migrations()
        except sa.exc.DBAPIError as exc:
            if sqlstate(exc) != "55P03":  # lock_timeout's "lock not available"
                raise
            raise TableBusy(f"a table of {schema} is held by another transaction: waited {lock_timeout_s:g} s for "
                            "it, changed nothing; run migrate again once it ends (pg_stat_activity shows who holds "
                            "it: a session 'idle in transaction', a long report)") from None
        cfg.attributes["before"], cfg.attributes["after"] = before, tuple(migration.get_current_heads())

    async def main() -> None:
        engine = engine_for(url, cfg.attributes["connect_timeout_s"])
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migrate)
        finally:
            await engine.dispose()

    run_command(main())


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


def add_inbox_lead_id(schema: str) -> None:
    """Add ``lead_id`` to ``<schema>.inbox`` (see ``db.inbox_table``) inside a migration: the lead each event's
    outputs are about, so an erasure finds them. Rows recorded before keep NULL (filling them in would hold the
    table while the consumer waits): docs/upgrading.md gives the statement to run afterwards. Frozen like the
    inbox."""
    from alembic import op
    from sqlalchemy.dialects.postgresql import UUID

    op.add_column("inbox", sa.Column("lead_id", UUID(as_uuid=True)), schema=schema)
    op.create_index("inbox_by_lead", "inbox", ["lead_id"], schema=schema,
                    postgresql_where=sa.text("lead_id IS NOT NULL"))


def drop_inbox_lead_id(schema: str) -> None:
    """``add_inbox_lead_id`` undone. Frozen like the inbox."""
    from alembic import op

    op.drop_index("inbox_by_lead", table_name="inbox", schema=schema)
    op.drop_column("inbox", "lead_id", schema=schema)


def create_erased_leads(schema: str) -> None:
    """Create ``<schema>.erased_leads`` inside a migration: the leads whose person was erased (``lead.erased``) and
    when, kept whether the stage held the lead or not, so that a redriven or late event of one is dropped. Frozen
    like the inbox."""
    from alembic import op
    from sqlalchemy.dialects.postgresql import UUID

    op.create_table("erased_leads",
                    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
                    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
                    schema=schema)


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
