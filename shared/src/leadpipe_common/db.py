"""Database helpers: the async engine, sessions, and the idempotent inbox.

Guarantees:
- Engines are built by a service's composition root from its settings, never
  at import time. The serving process's pool (``make_engine(.., serving=True)``,
  the one place that gives them) may start each connection with Postgres
  settings of its own (``db_server_settings``: capture's lock and statement
  timeouts, for its requests) and give it more once its server's version is
  known (``db_settings_for``: capture's check that the client is still
  connected); admin commands and migrations build their engines without
  them, so nothing cuts a long one short.
- ``raw_pooled`` is a pooled connection's asyncpg connection itself (each
  statement its own transaction), ``raw_transaction`` one transaction on it,
  for the hottest paths (capture's writer, where most requests commit alone
  at moderate load, and every outbox relay): through SQLAlchemy a
  transaction cost ~0.4 ms of Python and each statement ~0.3 ms more. A
  block failed by the database or the network, or cancelled, never returns
  its connection to the pool (SQLAlchemy did not see the error, so it cannot
  tell a dead connection); one failed by anything else (the broker, say)
  returns it idle, its transaction rolled back. A cancelled block (a
  deadline: capture's write rounds) closes its connection at once, sending
  no ROLLBACK: asyncpg would first wait for Postgres to acknowledge the
  cancel of the statement in flight, which a silent Postgres (a failover
  dropping packets) never does, and the deadline would end nothing. Postgres
  rolls back the transaction of a connection that closes; whether a COMMIT
  in flight took is unknown, as after any lost connection. Nor is a cancel
  sent (asyncpg sends its CancelRequest from a task that ``terminate``
  cancels before it connects): Postgres runs the statement in flight on,
  holding its rows and locks, until it notices the connection closed (while
  idle at once; while running a statement only if the pool asks it to check,
  ``client_connection_check_interval``, as capture's does) or the
  statement's timeout ends it. A cancel of our own was not added: asyncpg
  offers none in public, and one to a silent Postgres would wait too.
- ``answered_within(seconds)``: a request's database work (an API key's
  lookup, a route's unit of work) given up on when Postgres has not done it
  within ``seconds`` (``<SERVICE>_DB_REQUEST_DEADLINE_S``): the block is
  cancelled and ``Unanswered`` raised, a ``TimeoutError``, so unavailable: a
  ``503`` with ``Retry-After``. Postgres gone silent (a network partition, a
  frozen host) ends no statement, and its own ``statement_timeout`` cannot
  answer for it: the request, its pooled connection and its client waited
  until the operating system gave up on the connection, minutes later.
  Whether the work was done is unknown, as after any lost connection. The
  block's connections must end where a cancellation reaches them, none
  returned to the pool mid-statement: ``raw_pooled`` and ``raw_transaction``
  close theirs at once, a unit of work and SQLAlchemy's own statements
  invalidate theirs (SQLAlchemy closes it, waiting up to 2 s for Postgres to
  acknowledge first), and an ``engine.begin()`` block
  (``transaction_within``) ends its transaction (the COMMIT or ROLLBACK)
  inside it. Not ``engine.connect()``: the ROLLBACK of the transaction its
  first statement began is sent by its close, which SQLAlchemy shields from
  cancellation, so a Postgres gone silent just then held the block past its
  deadline.
- ``insert_rows`` writes a batch of rows as ONE statement (``INSERT ..
  SELECT .. FROM unnest(<one array per column>)``) in the session's
  transaction, rows in the order given; ``upsert``, the inbox, the outbox
  and the stores' batch writes use it. ``executemany`` had Postgres bind
  and run one INSERT per row and SQLAlchemy build each row's parameters in
  Python. An upsert keeps the last of a batch's rows for a key (one
  statement may not update a row twice). Its errors are SQLAlchemy's
  ``DBAPIError``, as through a session. Only column types that travel
  unchanged in an array are taken, and Python-side column defaults are not
  applied (a table with one is refused for rows that leave it out).
- ``among(column, name)`` is ``column = ANY(:name)``: a batch's ids travel as ONE array parameter, so a
  lookup's text is the same whatever the batch's size and asyncpg prepares it once per connection. With
  ``in_()`` each new length was a new statement (one parameter per value): prepared, planned and cached
  again, and SQLAlchemy expanded the list in Python on every call.
- A new connection not set up within ``DATABASE_CONNECT_TIMEOUT_S`` (10 s
  by default, not asyncpg's 60) fails with ``ConnectTimeout`` (a
  ``TimeoutError``), for every engine built here (``engine_for``):
  services', commands' and migrations'. Only a connect raises it: a
  statement past ``DATABASE_URL``'s ``command_timeout`` is asyncpg's bare
  ``TimeoutError``, so what says "did not answer" is never about a slow
  statement.
- ``is_unavailable(exc)`` tells an error that means Postgres cannot serve
  this now (unreachable, every pooled connection busy, a lock or statement
  timeout, a deadlock, too many connections, a shutdown) from a bug (a
  missing table, a constraint, bad SQL); ``UNAVAILABLE`` are the classes
  either may come as. Every service answers a request that meets the first
  ``503`` with ``Retry-After`` (``http.install_problem_handlers``), never
  ``500``; a bug stays a ``500``, so that someone looks.
- ``compiled_once`` statements are compiled once per process: SQLAlchemy 2.0
  cannot cache PostgreSQL's ``INSERT .. ON CONFLICT``, and compiled it again on
  every batch (about a tenth of a stage's CPU).
- The inbox (one table per consuming service, ``<schema>.inbox``) records
  every input event id a service has applied, together with the exact
  messages it produced for it, in the same transaction as the service's own
  writes (an event two processes apply at once is committed by the first; the
  other's transaction fails and is retried). Applying an event twice is
  therefore impossible, and a redelivered event re-emits byte-identical
  outputs (same ids), so a crash between the DB commit and the produce loses
  nothing and doubles nothing. An inbox declared with digests (a service
  reading a topic written outside leadpipe, ``topology.EXTERNAL_INPUTS``)
  also keeps, for each event read from such a topic, ``record_digest`` of the
  record's value: a record whose id it holds under another digest is no
  redelivery (``redelivered``) but another record under a used id. A row
  kept without a digest (an internal topic's event, or recorded before the
  column was added) takes any record with its id for a redelivery, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg
import sqlalchemy as sa
from pydantic import ValidationError
from pydantic_core import to_json
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from leadpipe_common.envelope import Message, schema_violations
from leadpipe_common.erasure import erased_message
from leadpipe_common.settings import DEFAULT_CONNECT_TIMEOUT_S, ServiceSettings


#: What a database error comes as: Postgres unreachable or gone (``OSError``), a statement that failed
#: (``DBAPIError``; asyncpg's own errors where a path runs on asyncpg itself: capture's writer, a key's claim),
#: or every pooled connection taken for the pool's checkout timeout (``sqlalchemy.exc.TimeoutError``, which is
#: no ``DBAPIError``). Whether one means "not now" is ``is_unavailable``'s to say.
UNAVAILABLE: tuple[type[Exception], ...] = (OSError, DBAPIError, PoolTimeout, asyncpg.PostgresError,
                                            asyncpg.InterfaceError)
#: SQLSTATEs a retry may cure: the classes of connection exceptions (08), insufficient resources (53: too many
#: connections, out of memory or disk), operator intervention (57: a statement cancelled or timed out, a
#: shutdown, "cannot connect now"); a serialization failure, a deadlock, lock_timeout's "lock not available", and
#: a read-only transaction (a failover landed the connection on a standby; a managed Postgres nearly out of disk).
_RETRY_CLASSES = ("08", "53", "57")
_RETRY_CODES = frozenset({"40001", "40P01", "55P03", "25006"})
#: OSErrors of files, which no wait cures and no database raises (a connection's are ConnectionError, timeouts,
#: or a plain OSError naming what each address answered).
_NOT_THE_DATABASE = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (SQLAlchemy's wrapper, or the driver's own), None for any other error."""
    error: BaseException | None = exc
    for _ in range(3):
        if error is None:
            break
        code = getattr(error, "sqlstate", None) or getattr(getattr(error, "orig", None), "sqlstate", None)
        if isinstance(code, str) and code:
            return code
        error = error.__cause__
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means Postgres cannot serve this now, so that the same request may pass later: the
    connection or the pool failed, or Postgres said so (by SQLSTATE, on the error or the one it wraps)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _NOT_THE_DATABASE):
            return False
        if isinstance(error, (OSError, PoolTimeout, asyncpg.InterfaceError)):  # asyncio's TimeoutError included
            return True
        code = getattr(error, "sqlstate", None)
        if isinstance(code, str) and code:
            return code[:2] in _RETRY_CLASSES or code in _RETRY_CODES
        error = getattr(error, "orig", None) or error.__cause__  # SQLAlchemy's wrapper, then asyncpg's own
    return False


#: asyncpg names a value it could not send, and its reason may quote it again ("invalid input for query argument
#: $1: 'x' (invalid UUID 'x': ...)"): the rest of that line goes.
_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+)[^\n]*")


#: What may follow a name Postgres's message quotes ("column "grade" of relation "scores" violates ..."): after
#: anything else, the quote that seemed to close the name is a value's own.
_AFTER_NAME = re.compile(r"[\s,;:)]|$")
#: SQLSTATE classes whose messages quote names and tokens of the statement's own text only, never a value bound to
#: it (42: a syntax error, an undefined table or column, no privilege; 3F: an invalid schema): what they quote
#: stays, for the deployment mistake it names.
_NAMES_CLASSES = ("42", "3F")


def error_text(exc: BaseException) -> str:
    """``exc`` as a log line or a dead letter may carry it: what failed and where, never a value bound to a
    statement (leads' personal data; ``make_engine`` hides SQLAlchemy's parameters, this asyncpg's own).

    An error from Postgres or asyncpg's word on it (``exc``, or one it wraps) is given as its class, the first
    line of its message cut at the first quote that does not open a name the error carries (its table, column,
    constraint), its SQLSTATE and those names: its DETAIL (``Failing row contains (...)``, ``Key (email)=(...)``), its HINT and the
    statement's text go, since the first two quote the row's values; so does the message of a wrapper around it
    (SQLAlchemy's repeats the error whole), and that of an exception raised while handling one when it repeats
    the error's message, DETAIL or HINT (``RuntimeError(f"batch failed: {exc}")``). A validation error
    (pydantic's, a stored event read back under a stricter model, say; FastAPI's) is given as each field refused
    and why, its text quoting the values; and so, without its message, is an exception repeating its text."""
    pg = postgres_error(exc)
    if pg is None:
        if is_validation_error(exc):
            title = f" ({exc.title})" if isinstance(exc, ValidationError) else ""
            return f"{type(exc).__name__}{title}: {schema_violations(exc)}"
        told = f"{type(exc).__name__}: {exc}"
        if any(part in told for part in _quoted(exc)):
            return f"{type(exc).__name__}: (its message repeats a database or validation error's; not shown)"
        return _ARGUMENT_VALUE.sub(r"\1 (its value not shown)", told)
    code = getattr(pg, "sqlstate", None) or "?"
    names = {getattr(pg, field, None) for field in ("schema_name", "table_name", "column_name", "constraint_name",
                                                     "data_type_name")} - {None}
    line = _ARGUMENT_VALUE.sub(r"\1 (its value not shown)", str(pg.args[0]).split("\n", 1)[0] if pg.args else "")
    if not code.startswith(_NAMES_CLASSES):
        line = _values_cut(line, names)
    table = ".".join(n for n in (getattr(pg, "schema_name", None), getattr(pg, "table_name", None)) if n)
    where = "".join(f", {label} {name}" for label, name in (
        ("table", table), ("column", getattr(pg, "column_name", None)),
        ("constraint", getattr(pg, "constraint_name", None))) if name)
    text = f"{type(pg).__name__}: {line} [SQLSTATE {code}{where}]"
    return text if pg is exc else f"{type(exc).__name__}: {text}"


def _values_cut(line: str, names: set[str]) -> str:
    """``line`` up to the first double quote that does not open one of ``names``, then "(value not shown)".

    Postgres quotes a value raw, not doubling a quote in it: ``"ada"@example.com"`` is one value, which a quoted
    string ended at its second quote, leaving ``@example.com"``; a value's newline put its closing quote on a line
    the first is cut from. Only what is a name is known to end, so nothing after a value is kept."""
    start = line.find('"')
    while start != -1:
        name = next((n for n in names if n and line.startswith(f'"{n}"', start)
                     and _AFTER_NAME.match(line, start + len(n) + 2)), None)
        if name is None:
            return line[:start] + "(value not shown)"
        start = line.find('"', start + len(name) + 2)
    return line


def quotes_values(exc: BaseException) -> bool:
    """Whether an error whose text quotes values (a lead's personal data), which ``error_text`` tells without
    them, is in ``exc``'s chain (what it wraps, was raised while handling, an exception group's members): one from
    Postgres, or a validation error (pydantic's, or FastAPI's of a request or an answer)."""
    return any(isinstance(e, asyncpg.PostgresError) or is_validation_error(e) for e in _chain(exc))


#: How asyncpg begins its error about a value it could not bind, which it raises from the codec's error: that one
#: quotes the value.
_UNBOUND = ("invalid input for query argument", "invalid input in executemany() argument")


def unbound_value(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps, asyncpg's error about a value it could not bind to a statement."""
    pg = postgres_error(exc)
    return pg is not None and bool(pg.args) and str(pg.args[0]).startswith(_UNBOUND)


def is_validation_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a validation error (``_validation``), which ``error_text`` tells without its values."""
    return isinstance(exc, _validation())


def _validation() -> tuple[type[Exception], ...]:
    """The validation errors, whose text quotes the values refused: pydantic's, and FastAPI's of a request or an
    answer once FastAPI is in (a command that never serves does without importing it)."""
    fastapi = sys.modules.get("fastapi.exceptions")
    return (ValidationError,) if fastapi is None else (ValidationError, fastapi.ValidationException)


def _quoted(exc: BaseException) -> Iterator[str]:
    """What the errors in ``exc``'s chain that quote values say, each part that holds one: a wrapper repeating
    any of it is told without its message."""
    for error in _chain(exc):
        if isinstance(error, asyncpg.PostgresError):
            parts: Iterable[object] = (error.args[0] if error.args else None, error.detail, error.hint)
        elif is_validation_error(error) and error is not exc:
            # Inputs as their text shows them; a short one (a digit, a word) says nothing of whom it was about.
            parts = (str(error), *(str(e.get("input")) for e in error.errors()
                                   if isinstance(e.get("input"), str | int | float)))
        else:
            continue
        yield from (part for part in parts if isinstance(part, str) and len(part) >= 4)


def postgres_errors(exc: BaseException) -> list[asyncpg.PostgresError]:
    """Every error from Postgres in ``exc``'s chain, as far as a traceback of it goes and SQLAlchemy's ``orig``:
    a rollback that fails while a failed insert is handled has the insert's error, and its row, as its context."""
    return [e for e in _chain(exc) if isinstance(e, asyncpg.PostgresError)]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception in its chain, once each: what it wraps (SQLAlchemy's ``orig``), was caused by
    or raised while handling, an exception group's members."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        context = None if error.__suppress_context__ else error.__context__
        members = error.exceptions if isinstance(error, BaseExceptionGroup) else ()
        todo += [e for e in (getattr(error, "orig", None), error.__cause__, context, *members)
                 if isinstance(e, BaseException)]


def postgres_error(exc: BaseException) -> asyncpg.PostgresError | None:
    """The error from Postgres ``exc`` is or wraps (SQLAlchemy's ``orig``, its asyncpg adapter's cause), if any."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, asyncpg.PostgresError):
            return error
        error = getattr(error, "orig", None) or error.__cause__
    return None


class ConnectTimeout(TimeoutError):
    """A new connection was not set up within its connect timeout: Postgres, or whatever holds its port, did not
    answer. (asyncpg's own TimeoutError says nothing, and is what a statement past ``command_timeout`` raises too.)"""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Postgres did not answer a new connection within {seconds:g} s")
        self.seconds = seconds


class Unanswered(TimeoutError):
    """Postgres did not answer a request's database work within its deadline (``answered_within``): it may or may not
    have done it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Postgres did not answer within {seconds:g} s")
        self.seconds = seconds


@contextlib.asynccontextmanager
async def answered_within(seconds: float | None) -> AsyncIterator[None]:
    """The block, cancelled when it has not ended within ``seconds`` (None: no deadline), and ``Unanswered`` raised:
    for a request's database work (see the module on the connections it may use)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            yield
    except TimeoutError as exc:
        if deadline.expired():
            raise Unanswered(seconds) from exc  # type: ignore[arg-type]  # expired: it had seconds
        raise


@contextlib.asynccontextmanager
async def transaction_within(engine: AsyncEngine, seconds: float | None) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction, ``engine.begin()``, within ``answered_within(seconds)``: for reads too,
    ``begin()``, not ``connect()`` (see the module)."""
    async with answered_within(seconds), engine.begin() as conn:
        yield conn


def engine_for(url: str, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, *,
               server_settings: Mapping[str, str] | None = None, **options: Any) -> AsyncEngine:
    """An engine on ``url`` (``options``: ``create_async_engine``'s) whose new connections fail with
    ``ConnectTimeout`` when not set up within ``connect_timeout_s``; ``server_settings``: Postgres settings each
    starts with (sent with the connection's start-up, so they cost no round trip: a ``SET`` per transaction
    would cost one)."""
    engine = create_async_engine(url, connect_args={
        "timeout": connect_timeout_s, **({"server_settings": dict(server_settings)} if server_settings else {})},
        **options)

    def connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        # The dialect's own connect, as SQLAlchemy would call it; only here is a timeout known to be the connect's.
        try:
            return dialect.connect(*cargs, **cparams)
        except TimeoutError as exc:
            raise ConnectTimeout(connect_timeout_s) from exc

    sa.event.listen(engine.sync_engine, "do_connect", connect)
    return engine


def make_engine(settings: ServiceSettings, *, serving: bool = False) -> AsyncEngine:
    """The engine of a service or a command (``engine_for``): a connection not set up within
    ``DATABASE_CONNECT_TIMEOUT_S`` fails with ``ConnectTimeout`` (an ``OSError``: unavailable, a 503).

    ``serving``: the serving process's, whose every new connection is given the Postgres settings ``settings``
    asks for (``db_server_settings`` at start-up, ``db_settings_for`` once its server's version is known); a
    command's or a migration's has none, so that nothing cuts a long one short."""
    # No pre-ping: it costs a round trip per transaction. A connection that
    # went stale (Postgres restarted) fails its transaction, which every
    # caller already retries or answers 503 for, and the pool then drops it.
    engine = engine_for(
        settings.database_url,
        settings.database_connect_timeout_s,
        server_settings=settings.db_server_settings() if serving else None,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_recycle=1800,
        # An error's message names its statement, not its parameters: those are leads' personal data, and the
        # message goes to logs and dead letters.
        hide_parameters=True,
    )
    if serving:
        # Before the pool's first connection, which nothing has asked for yet.
        sa.event.listen(engine.sync_engine, "connect", per_server_settings(settings.db_settings_for))
    return engine


def per_server_settings(settings_for: Callable[[int], Mapping[str, str]]) -> Callable[[Any, Any], None]:
    """A pool's ``connect`` listener: sets on each new connection the Postgres settings its server's major version
    allows (``ServiceSettings.db_settings_for``: a setting an older server lacks, asked at start-up, would refuse
    the connection), outside any transaction, so that they last as long as it does."""
    def connected(dbapi_connection: Any, record: Any) -> None:
        wanted = settings_for(dbapi_connection.driver_connection.get_server_version().major)
        for name, value in wanted.items():
            dbapi_connection.run_async(lambda raw, name=name, value=value:
                                       raw.execute("SELECT set_config($1, $2, false)", name, value))
    return connected


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def raw_connection(conn: AsyncConnection | AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``conn`` (a session's: inside its transaction once it has run a statement)."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    assert isinstance(driver, asyncpg.Connection)
    return driver


def json_value(value: Any) -> Any:
    """A json/jsonb value read through asyncpg: decoded by SQLAlchemy's codec on its pooled connections,
    text on a bare connection."""
    return json.loads(value) if isinstance(value, str) else value


@contextlib.asynccontextmanager
async def raw_pooled(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """The asyncpg connection of a pooled one, in no transaction (a statement alone commits on its own); a
    block failed by the database or the network, or cancelled (a query may be half done), takes the connection
    out of the pool (cancelled, closed at once: see the module); one failed by something else with the connection
    idle returns it."""
    async with engine.connect() as conn:
        raw = await raw_connection(conn)
        try:
            yield raw
        except Exception as exc:
            if isinstance(exc, _CONNECTION_ERRORS) or raw.is_closed() or raw.is_in_transaction():
                await conn.invalidate()
            raise
        except BaseException:
            # Before SQLAlchemy's close, which would first wait (up to 2 s) for the cancel of the statement in flight.
            raw.terminate()
            await conn.invalidate()
            raise


#: Failures after which a connection's state is unknown.
_CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@contextlib.asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on the asyncpg connection of a pooled one: committed if the block ends normally, rolled back
    if it fails; a cancelled block's connection is closed instead (see the module)."""
    async with raw_pooled(engine) as raw:
        # Not ``async with raw.transaction()``: its ROLLBACK of a cancelled block would wait for the cancelled
        # statement's end first; raw_pooled closes that block's connection at once instead.
        transaction = raw.transaction()
        await transaction.start()
        try:
            yield raw
        except Exception:
            await transaction.rollback()
            raise
        await transaction.commit()


def among(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``column = ANY(:name)``, ``name`` bound to a list (or tuple) when the statement runs.

    Build the statement once (a module's constant) and pass ``{name: values}`` to ``execute``; in an UPDATE,
    a ``name`` that is also a column of the table would be taken as a value to SET. Measured on
    scoring's inbox lookup, client CPU a call: 25 ids 415 -> 265 us; 5 to 200 ids, varying as batches do,
    1,300 -> 540 us (each new length of an IN list was prepared anew).
    """
    return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))


def compiled_once(build: Callable[[], Any], *depends_on: Any) -> Any:
    """``build()``'s statement compiled once per process and per ``depends_on`` (the tables it is about), where
    SQLAlchemy 2.0 has no cache key for ``INSERT .. ON CONFLICT`` and compiles it on every execution.

    ``build`` is a lambda returning a statement built beforehand (a module's constant, or one built once per
    table): a lambda that builds SQL from its closure's plain values (names, keys) fails inside SQLAlchemy,
    which replaces those values with trackers while it analyses the lambda.
    """
    return sa.lambda_stmt(build, track_closure_variables=False, track_on=list(depends_on))


async def in_transaction(conn: AsyncConnection | AsyncSession) -> tuple[asyncpg.Connection, dict[str, Any]]:
    """The asyncpg connection of ``conn`` inside its transaction (SQLAlchemy's asyncpg adapter begins it
    lazily, with the first statement it runs: one is run here if none has been), and the execution options
    in force (a ``schema_translate_map`` must apply to SQL written by hand too)."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    raw = await raw_connection(conn)
    if not raw.is_in_transaction():
        await conn.execute(sa.text("SELECT 1"))
    return raw, _options(conn)


def _options(conn: AsyncConnection) -> dict[str, Any]:
    return dict(conn.sync_connection.get_execution_options()) if conn.sync_connection else {}


def translated(options: dict[str, Any], schema: str | None) -> str | None:
    """``schema`` as the execution ``options`` of a connection map it (``schema_translate_map``, which
    SQLAlchemy applies to its own statements only, not to text written by hand)."""
    return (options.get("schema_translate_map") or {}).get(schema, schema)


async def schema_in_force(conn: AsyncConnection | AsyncSession, schema: str) -> str:
    """``schema`` as ``conn``'s ``schema_translate_map`` maps it: for a ``text()`` statement naming tables."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    return translated(_options(conn), schema) or schema


def table_name(table: sa.Table, schema: str | None = None) -> str:
    """``table``'s name for SQL written by hand, quoted, in ``schema`` (by default its own)."""
    schema = schema or table.schema
    return f"{_quote(schema)}.{_quote(table.name)}" if schema else _quote(table.name)


@dataclass(frozen=True)
class _Column:
    name: str
    array: str  # the type of the array its values travel in
    select: str  # how the SELECT list reads it back: cast to the column's type where text carried it
    encode: Callable[[Any], Any] | None  # a value to what travels (JSON to text)


_DIALECT = postgresql.dialect()
_quote = _DIALECT.identifier_preparer.quote
#: Types whose Python values asyncpg sends as they are, as SQLAlchemy would (no bind processing to skip).
_PLAIN = (sa.Integer, sa.Numeric, sa.Boolean, sa.DateTime, sa.Date, sa.LargeBinary, sa.Uuid)


def _column(table: sa.Table, name: str) -> _Column:
    col = table.c[name]
    typ = col.type
    if isinstance(typ, sa.TypeDecorator | sa.Enum | sa.ARRAY) or not isinstance(typ, (*_PLAIN, sa.String, sa.JSON)):
        raise TypeError(f"{table.fullname}.{name}: a {type(typ).__name__} column cannot travel in insert_rows")
    sql_type = typ.compile(dialect=_DIALECT)
    quoted = _quote(name)
    if isinstance(typ, sa.String):
        # As text, assigned to the column by the INSERT: a value too long for a VARCHAR(n) is refused as in
        # any INSERT (an explicit cast to VARCHAR(n) would cut it short without a word).
        return _Column(name, "text[]", f"u.{quoted}", None)
    if isinstance(typ, sa.JSON):
        # JSON travels as text: no driver codec is involved, on pooled or bare connections alike. Python's
        # None is JSON null, as SQLAlchemy's JSON type stores it, unless the column says otherwise. Encoded by
        # pydantic: a value may be a model (or hold models), which spares the caller a model_dump, and
        # plain data encodes in about half json.dumps' time; by field name, as model_dump writes them
        # (pydantic_core's to_json defaults to aliases).
        keep_null = bool(typ.none_as_null)
        return _Column(name, "text[]", f"u.{quoted}::{sql_type}",
                       lambda v, keep_null=keep_null: None if v is None and keep_null
                       else to_json(v, by_alias=False).decode())
    return _Column(name, f"{sql_type}[]", f"u.{quoted}", None)


@functools.cache
def _insert_sql(table: sa.Table, schema: str | None, columns: tuple[str, ...],
                conflict: str) -> tuple[str, tuple[_Column, ...]]:
    cols = tuple(_column(table, c) for c in columns)
    defaulted = [c.name for c in table.c if c.name not in columns and c.default is not None]
    if defaulted:
        raise ValueError(f"{table.fullname}: rows leave out {defaulted}, whose default is SQLAlchemy's, not the "
                         "database's: give them a value")
    arrays = ", ".join(f"${i}::{c.array}" for i, c in enumerate(cols, 1))
    names = ", ".join(_quote(c) for c in columns)
    sql = (f"INSERT INTO {table_name(table, schema)} ({names}) SELECT {', '.join(c.select for c in cols)} "
           f'FROM unnest({arrays}) WITH ORDINALITY AS u({names}, "ord") ORDER BY "ord" {conflict}')
    return sql, cols


async def insert_rows(conn: AsyncConnection | AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]], *,
                      conflict: str = "") -> None:
    """Insert ``rows`` (dicts with the same keys; a column left out takes its server default; a JSON column's
    value may be a pydantic model or hold models) in one statement, in their order. ``conflict`` is the
    statement's ``ON CONFLICT ..`` clause, if any: SQL written in code, never input (the row already stored
    is named by the table's name, unqualified)."""
    if not rows:
        return
    raw, options = await in_transaction(conn)
    schema = translated(options, table.schema)
    columns = tuple(rows[0])
    sql, cols = _insert_sql(table, schema, columns, conflict)
    try:
        arrays = [[row[c.name] for row in rows] if c.encode is None else [c.encode(row[c.name]) for row in rows]
                  for c in cols]
    except KeyError as exc:
        raise ValueError(f"rows for {table.fullname} must all have the same columns: one lacks {exc}") from None
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"rows for {table.fullname} must all have the same columns")
    try:
        await raw.execute(sql, *arrays)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # What a statement through the session raises, so callers' handling (a 503, a retry) holds.
        raise DBAPIError(sql, None, exc) from exc


async def upsert(conn: AsyncConnection | AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]],
                 key: str) -> None:
    """Insert ``rows``; a row whose ``key`` exists replaces the stored one (last write wins, within the batch
    too: a column the rows leave out takes its default)."""
    if not rows:
        return
    last = list({row[key]: row for row in rows}.values())
    updates = ", ".join(f"{_quote(c.name)} = excluded.{_quote(c.name)}" for c in table.c if c.name != key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    await insert_rows(conn, table, last, conflict=f"ON CONFLICT ({_quote(key)}) {action}")


class UpsertStore:
    """The store of a stage that keeps one row per key (enrichment's enrichments, scoring's scores):
    ``save`` upserts, a later row for a key replacing the stored one."""

    def __init__(self, session: AsyncSession, table: sa.Table, key: str = "lead_id") -> None:
        self._session, self._table, self._key = session, table, key

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        await upsert(self._session, self._table, rows, key=self._key)

    @classmethod
    def of(cls, table: sa.Table, key: str = "lead_id") -> Callable[[AsyncSession], UpsertStore]:
        """What a service declares as its ``store``: builds the store on each unit of work's session."""
        return lambda session: cls(session, table, key)


def erased_leads_table(metadata: sa.MetaData) -> sa.Table:
    """The leads whose person was erased (``lead.erased``), in ``metadata``'s schema: kept whether the service held
    the lead or not, so that a redriven or late event of one is dropped (``migrations.create_erased_leads``)."""
    return sa.Table(
        "erased_leads",
        metadata,
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        # When capture erased the person (the event's ``at``).
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def inbox_table(metadata: sa.MetaData, *, digests: bool = False) -> sa.Table:
    """The inbox table in ``metadata``'s schema; each service declares its own.

    ``outputs`` is ``json``, not ``jsonb``: it is never queried inside, and
    only ``json`` accepts the ``\u0000`` a dead letter's original bytes may hold.
    ``lead_id`` is the lead its outputs are about (their key), so an erasure finds
    the copies of the lead they hold (``Inbox.erase``); NULL for an event with no
    output, or recorded before the column was added (``migrations.add_inbox_lead_id``).
    ``digests``: it has a ``digest`` column too (``record_digest`` of the record each event came in, for events
    read from a topic written outside leadpipe; NULL for the others), as a service reading such a topic needs.
    """
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("lead_id", UUID(as_uuid=True)),
        *((sa.Column("digest", sa.LargeBinary),) if digests else ()),
        sa.Index("inbox_by_lead", "lead_id", postgresql_where=sa.text("lead_id IS NOT NULL")),
    )


def record_digest(value: bytes | None) -> bytes:
    """A record's JSON value, digested for the inbox: 16 bytes of BLAKE2b of it written out in one form (keys
    sorted, no spacing, numbers as read). Of the record as its producer wrote it, not of the event leadpipe reads
    from it: a leadpipe version that adds a field with a default, or a pydantic that writes a value otherwise, must
    still take a redelivery (or a redrive) written before it for one. And in one form, so a producer writing the same
    report again with its keys in another order or other spacing sends the same one; another report under its id
    almost surely digests otherwise. A value that is no JSON (decoding refuses it first) is digested as it is."""
    try:
        canonical = json.dumps(json.loads(value or b""), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = value or b""
    return hashlib.blake2b(canonical, digest_size=16).digest()


def redelivered(kept: bytes | None, digest: bytes | None) -> bool:
    """Whether a record whose id the inbox holds is a copy of the one it applied: ``kept`` the digest stored with
    the id, ``digest`` the record's. Without either (a row recorded with none, a record from an internal topic)
    the id alone decides, as it always did."""
    return kept is None or digest is None or kept == digest


class Kept(NamedTuple):
    """What the inbox holds for an event id: the outputs it produced, and the digest of the record it came in
    (``None`` when none was kept)."""

    outputs: list[Message]
    digest: bytes | None


def outputs_lead(outputs: Sequence[Message]) -> uuid.UUID | None:
    """The lead an event's outputs are about: their first key that is a lead's id (every output of one event is
    keyed by its lead; a dead letter by the record's key, which may be anything a sales tool wrote)."""
    for message in outputs:
        try:
            return uuid.UUID((message.key or b"").decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return None


@functools.cache
def _seen_query(table: sa.Table) -> sa.Select[Any]:
    # The digest only where the table has one: the other services' inboxes read what they always did.
    digest = (table.c.digest,) if "digest" in table.c else ()
    return sa.select(table.c.event_id, table.c.outputs, *digest).where(among(table.c.event_id, "ids"))


class Inbox:
    def __init__(self, table: sa.Table) -> None:
        self._table = table

    async def seen(self, session: AsyncSession, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Kept]:
        """What is kept for those of ``event_ids`` already applied."""
        ids = list(event_ids)
        if not ids:
            return {}
        rows = await session.execute(_seen_query(self._table), {"ids": ids})
        return {row.event_id: Kept([Message.from_json(m) for m in row.outputs], row._mapping.get("digest"))
                for row in rows}

    async def record(self, session: AsyncSession, applied: Sequence[tuple[uuid.UUID, str, list[Message]]],
                     digests: Mapping[uuid.UUID, bytes] | None = None) -> None:
        """Record ``applied``, with the ``digests`` of those read from a topic written outside leadpipe (an inbox
        without digests refuses them); an event another transaction recorded first fails this one (a unique
        violation).

        ``seen`` cannot see what another process applies at the same moment (two owners of a partition across a
        rebalance, one of them slow): both may hand an event to their handlers. The inbox's key then lets only
        the first commit; the other's whole transaction rolls back, and its retry answers the event from the
        inbox, with the first's outputs. (``ON CONFLICT DO NOTHING`` here let both commit their writes.)
        """
        keeps = "digest" in self._table.c
        if digests and not keeps:
            raise RuntimeError(f"{self._table.fullname} keeps no digests: declare it with inbox_table(.., "
                               "digests=True) to read a topic written outside leadpipe")
        digests = digests or {}
        await insert_rows(session, self._table, [
            {"event_id": eid, "event_type": etype, "outputs": [m.to_json() for m in outputs],
             "lead_id": outputs_lead(outputs), **({"digest": digests.get(eid)} if keeps else {})}
            for eid, etype, outputs in applied
        ])

    async def erase(self, session: AsyncSession, lead_ids: Sequence[uuid.UUID]) -> int:
        """Clear the person from the outputs stored for ``lead_ids`` (``erasure.erased_message``): a redelivered input
        then re-emits them cleared, under the same ids. How many rows it cleared."""
        rows = (await session.execute(
            sa.select(self._table.c.event_id, self._table.c.outputs).where(among(self._table.c.lead_id, "leads"))
            .order_by(self._table.c.event_id).with_for_update(), {"leads": list(lead_ids)})).all()
        for row in rows:
            cleared = [erased_message(Message.from_json(m)).to_json() for m in row.outputs]
            await session.execute(self._table.update().where(self._table.c.event_id == row.event_id)
                                  .values(outputs=cleared))
        return len(rows)
