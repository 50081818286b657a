"""The command line every service shares: ``serve`` and ``migrate``.

Guarantees: bad settings, or a reference file the service cannot use, end
with a one-line message naming the variable (and the file) and the reason, exit
code 2, never a traceback; ``serve`` runs the service's app factory under
uvicorn, which turns SIGTERM/SIGINT into a clean lifespan shutdown (stop
fetching, finish and commit the batch, leave the group); it serves at most
``<SERVICE>_MAX_CONNECTIONS`` open connections, and of them at most
``<SERVICE>_MAX_CONNECTIONS_PER_ADDRESS`` from one client address (the named
proxies' not counted), bounds what a request's head
holds and how long it takes (``connections.BoundedHeads``) and closes an
idle kept-alive connection after ``<SERVICE>_KEEP_ALIVE_S``. A
single-process server wakes once a second for uvicorn's housekeeping (the
Date header, the exit check) instead of ten times, and at once on a signal. ``migrate`` only upgrades: a revision
the service's history does not have, or one older than the revision in
place, is refused (exit code 2); what it prints is the revision in place
once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import asyncpg
import typer
import uvicorn
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from leadpipe_common import logging as lp_logging
from leadpipe_common.cli_help import Group
from leadpipe_common.connections import BoundedHeads
from leadpipe_common.db import ConnectTimeout
from leadpipe_common.moments import parse_moment, parse_scan_moment
from leadpipe_common.settings import ServiceSettings
from leadpipe_common.throttle import parse_networks


S = TypeVar("S", bound=ServiceSettings)

#: What a command meets when the database is away or refuses it (a wrong password, a missing database).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                                                    DBAPIError)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Around a command's use of the database: a failure is one line naming DATABASE_URL and why, exit code 1."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        if isinstance(cause, ConnectTimeout):
            cause = f"it did not answer within {cause.seconds:g} s"
        elif isinstance(cause, TimeoutError) and not str(cause):
            # Once connected: asyncpg's own, for a statement past DATABASE_URL's command_timeout (most likely).
            cause = "it timed out after connecting (a statement outlasting DATABASE_URL's command_timeout, say)"
        typer.secho(f"cannot use the database at DATABASE_URL: {cause}", err=True, fg="red")
        raise typer.Exit(1) from None


@contextlib.contextmanager
def migration_errors(schema: str, revision: str = "head") -> Iterator[None]:
    """Around a command's migration of ``schema`` (a service's own, or the shared ``auth``): what the database
    says as ``database_errors`` does; a revision the history does not have (a typo, or a schema a newer release
    migrated) or one older than in place, one line and exit code 2; a table held by another transaction past
    the lock timeout, one line and exit code 1 (running it again later will do). Never a traceback."""
    # Imported here, not at the top: alembic (with mako) is ~10 MB of every serving process's memory.
    from alembic.util import CommandError

    from leadpipe_common.migrations import TableBusy

    try:
        with database_errors():
            yield
    except CommandError as exc:
        typer.secho(f"{schema}: cannot migrate to {revision!r}: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    except TableBusy as exc:
        typer.secho(f"{schema}: cannot migrate now: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None


#: What every command's help says of a moment ``moment_option`` reads (``--since``, ``--until``, ``--at``).
MOMENT = "an ISO date or date-time; UTC unless zoned"


def moment_option(value: str | None, option: str, *, end: bool = False, scan: bool = False) -> datetime | None:
    """A command's moment (``--since``, ``--until``, ``--at``) as ``moments.parse_moment`` reads it, or with
    ``scan`` (it selects records of the topics) ``parse_scan_moment``; a bad one is refused naming the option,
    before anything is read. Given empty (``--since="$SINCE"``, the variable unset), it is refused: read as left
    out, a replay would rebuild from the start, a re-score would score as of now."""
    if value == "":
        raise typer.BadParameter("'' is empty: give a moment, or leave the option out", param_hint=option)
    try:
        return (parse_scan_moment if scan else parse_moment)(value, end=end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def load_settings(factory: Callable[[], S]) -> S:
    try:
        return factory()
    except ValidationError as exc:
        for err in exc.errors():
            # A check across settings (TLS files, SASL credentials) names its variables in its message.
            where = f"setting {_env_name(factory, err['loc'])}" if err["loc"] else "settings"
            # pydantic prefixes a validator's own message ("Value error, ..."): the message is what the user reads.
            message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            typer.secho(f"invalid {where}: {message}", err=True, fg="red")
        raise typer.Exit(2) from None


def _env_name(factory: Callable[[], ServiceSettings], loc: tuple) -> str:
    """The environment variable a validation error is about, as the user would set it."""
    if not loc or not isinstance(factory, type):
        return "settings"
    if str(loc[0]) not in factory.model_fields:
        return str(loc[0])  # pydantic reports an aliased field (DATABASE_URL) by its alias
    return f"{factory.model_config.get('env_prefix', '')}{loc[0]}".upper()


def service_cli(
    *,
    name: str,
    app_factory: str,
    settings_factory: Callable[[], ServiceSettings],
    migrations_dir: Path,
    check: Callable[[Any], object] = lambda settings: None,
) -> typer.Typer:
    """``check(settings)`` loads the service's reference data; ValueError or OSError stops ``serve``."""
    cli = typer.Typer(help=f"leadpipe {name} service", no_args_is_help=True, add_completion=False, cls=Group)

    @cli.callback()
    def commands_log_to_stderr(ctx: typer.Context) -> None:
        # A command's log lines (an erasure's "person erased ... by=", which its --by promises is kept) went
        # through structlog's default printer to stdout, among what the command prints, and into no log.
        # ``serve`` configures its own, from its settings.
        if ctx.invoked_subcommand != "serve":
            lp_logging.configure_command(name)

    @cli.command()
    def serve(
        workers: int | None = typer.Option(None, min=1, help=f"uvicorn worker processes (default: "
                                                             f"{name.upper()}_WORKERS, else 1)"),
    ) -> None:
        """Run the service (HTTP API and, for consumers, the consumer runner)."""
        settings = load_settings(settings_factory)
        # Before the app is built: what it warns of then (routing's sample team, capture's unguarded forms) went to
        # stdout as console text without the service's name; the lifespan configures it again, for good.
        lp_logging.configure(name, settings.log_level, settings.log_json, cache=False)
        try:
            check(settings)
        except (ValueError, OSError) as exc:
            typer.secho(f"{name} cannot start: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        options = server_options(settings, workers)
        if options["workers"] > 1:
            uvicorn.run(app_factory, **options)  # its supervisor builds each worker's server itself
            return
        server = QuietServer(uvicorn.Config(app_factory, **options))
        with contextlib.suppress(KeyboardInterrupt):  # a SIGINT is raised again once the server is down
            server.run()
        if not server.started:
            raise typer.Exit(3)  # uvicorn's own code for a failed start

    @cli.command()
    def migrate(revision: str = typer.Argument("head", help="target revision")) -> None:
        """Create or upgrade this service's tables (its own schema).

        It never goes back: a revision older than the one in place is refused."""
        # Imported here, not at the top: alembic (with mako) is ~10 MB of every serving process's memory,
        # and a serving process never migrates.
        from leadpipe_common import migrations

        settings = load_settings(settings_factory)
        with migration_errors(name, revision):
            before, after = migrations.upgrade_service(
                migrations_dir, settings.database_url, schema=name, revision=revision,
                connect_timeout_s=settings.database_connect_timeout_s,
                lock_timeout_s=settings.database_migration_lock_timeout_s)
        # What is in place, not what was asked: "head" names no revision, and an upgrade may find nothing to do.
        now = ", ".join(after) or "no revision"
        if before == after:
            typer.echo(f"{name}: already at {now}; nothing to do")
        else:
            typer.echo(f"{name}: migrated to {now} (from {', '.join(before) or 'no tables'})")

    return cli


def server_options(settings: ServiceSettings, workers: int | None = None) -> dict[str, Any]:
    """uvicorn's options for a service's app factory (``workers``: the command line's, over its setting)."""
    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": workers or settings.workers,
        "log_config": None,
        "access_log": False,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 and hand the app the forwarded address, so any
        # local process could pose as any client; the services decide whom to believe (CAPTURE_TRUSTED_PROXIES).
        "proxy_headers": False,
        "timeout_graceful_shutdown": 9,
        # Its httptools protocol, bounding what a request's head holds, and for how long.
        "http": functools.partial(BoundedHeads, max_head_bytes=settings.max_header_bytes,
                                  head_deadline_s=settings.header_deadline_s,
                                  max_per_address=settings.max_connections_per_address,
                                  not_counted=parse_networks(settings.trusted_proxies,
                                                             settings.variable("trusted_proxies"))),
        # BoundedHeads closes a connection accepted once the open ones (itself among them) reach the limit, and
        # uvicorn answers 503 a request that comes while as many are in progress: one more, so that
        # MAX_CONNECTIONS are served.
        "limit_concurrency": settings.max_connections + 1,
        # A longer queue of connections not yet accepted would only hold clients to be refused.
        "backlog": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
        # No service takes a WebSocket: an upgrade handed the connection to a protocol no deadline above holds.
        "ws": "none",
    }


class QuietServer(uvicorn.Server):
    """uvicorn's server with its housekeeping loop ticking once a second instead of every 100 ms.

    The loop only refreshes the Date header (to the second) and looks for an exit; ten wake-ups a second of
    every idle service process are CPU spent on nothing (a cold process's wake-up costs ~0.2 ms). A signal
    wakes it at once, so a stop takes no longer than before.
    """

    TICK_S = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = asyncio.Event()

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        ticks = 0
        # uvicorn counts 100 ms ticks and refreshes the Date header every tenth: ten at a time, every tick does.
        while not await self.on_tick(ticks):
            ticks = (ticks + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), self.TICK_S)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # called from a signal handler: only the thread-safe call may touch the loop
            self._loop.call_soon_threadsafe(self._exit.set)
