"""``leadpipe-keys``: create, list and revoke API keys (``leadpipe_common.auth``) in the database of DATABASE_URL.

Guarantees: ``create`` prints the key once and stores only its digest;
``list`` never shows a secret; ``revoke`` takes effect on every service
within ``auth.CACHE_S`` seconds, without a restart. Errors are one line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import typer

from leadpipe_common import migrations
from leadpipe_common.auth import SCOPES, api_keys, is_key_id, new_key, split
from leadpipe_common.cli import database_errors, load_settings, migration_errors
from leadpipe_common.db import make_engine
from leadpipe_common.logging import configure_command, run_command
from leadpipe_common.settings import ServiceSettings
from leadpipe_common.throttle import parse_rate

cli = typer.Typer(help="Create, list and revoke leadpipe API keys.", no_args_is_help=True, add_completion=False)


async def create_key(settings: ServiceSettings, name: str, scopes: list[str],
                     rate_limit: str | None = None) -> tuple[str, str]:
    """(key id, the key): the key exists only in the caller's hands from here on."""
    key_id, key, secret_digest = new_key()
    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(api_keys.insert().values(key_id=key_id, name=name, secret_sha256=secret_digest,
                                                        scopes=sorted(set(scopes)), rate_limit=rate_limit))
    finally:
        await engine.dispose()
    return key_id, key


async def key_is_valid(settings: ServiceSettings, key_id: str) -> bool:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys.c.revoked_at).where(api_keys.c.key_id == key_id))).first()
    finally:
        await engine.dispose()
    return row is not None and row.revoked_at is None


async def _has_keys_table(settings: ServiceSettings) -> bool:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text("SELECT to_regclass('auth.api_keys') IS NOT NULL"))).scalar_one()
    finally:
        await engine.dispose()


def _settings(*, makes_keys: bool = False) -> ServiceSettings:
    """The settings, the auth schema brought up to date. Only ``create`` makes it: ``list`` or ``revoke`` pointed
    at a database the services do not use made it there and answered "no keys yet", and a key then made there
    was one no service reads (a 401 everywhere)."""
    settings = load_settings(ServiceSettings)
    if not makes_keys:
        with database_errors():
            found = run_command(_has_keys_table(settings))
        if not found:
            typer.secho("no API keys in the database at DATABASE_URL (it has no auth schema): is it the one the "
                        "services use? `leadpipe-keys create` makes the first", err=True, fg="red")
            raise typer.Exit(1)
    with migration_errors("auth"):
        migrations.upgrade(migrations.AUTH_MIGRATIONS, settings.database_url, schema="auth",
                           connect_timeout_s=settings.database_connect_timeout_s,
                           lock_timeout_s=settings.database_migration_lock_timeout_s)
    return settings


@cli.command()
def create(
    name: str = typer.Option(..., help="who or what uses the key (a CRM, a person, an importer)"),
    scope: list[str] = typer.Option(..., help=f"one of {', '.join(SCOPES)}; repeat for several"),
    rate_limit: str | None = typer.Option(None, help="what a capture:write key may submit, like 500/second "
                                                     "(default: CAPTURE_KEY_RATE_LIMIT)"),
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    if not name.strip():
        raise typer.BadParameter("give who or what uses the key (a CRM, a person, an importer)", param_hint="--name")
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope {', '.join(unknown)}; use {', '.join(SCOPES)}", param_hint="--scope")
    if rate_limit is not None:
        try:  # as capture counts a key's posts by it: a rate it could not count by is refused here, not there
            parse_rate(rate_limit, "--rate-limit")
        except ValueError as exc:  # typer names the option itself
            raise typer.BadParameter(str(exc).removeprefix("--rate-limit: "), param_hint="--rate-limit") from None
    settings = _settings(makes_keys=True)
    with database_errors():
        key_id, key = run_command(create_key(settings, name, scope, rate_limit))
    # The key alone on stdout: `leadpipe-keys create ... > key` is a file holding it alone, as Prometheus's
    # credentials_file and a Secret's value want it.
    typer.echo(f"created key {key_id} for {name} with {', '.join(sorted(set(scope)))}; it is shown only now:",
               err=True)
    typer.echo(key)


@cli.command("list")
def list_keys() -> None:
    """List keys: id, name, scopes, created, revoked, own rate limit (never a secret)."""
    async def rows() -> list[sa.Row]:
        engine = make_engine(settings)
        try:
            async with engine.connect() as conn:
                return list(await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)))
        finally:
            await engine.dispose()

    settings = _settings()
    with database_errors():
        found = run_command(rows())
    if not found:
        typer.echo("no keys yet: `leadpipe-keys create --name NAME --scope SCOPE`")
    for r in found:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        # Its own rate limit too: a key rotated without it falls back to CAPTURE_KEY_RATE_LIMIT without a word.
        rate = f"  rate limit {r.rate_limit}" if r.rate_limit else ""
        typer.echo(f"{r.key_id}  {r.name:<24} {','.join(r.scopes):<40} created {r.created_at:%Y-%m-%d %H:%M}  "
                   f"{state}{rate}")


def _key_id(given: str) -> str:
    """The key id ``given`` names: the id itself, or a whole key pasted (its id alone is used, never echoed)."""
    text = given.strip()
    if is_key_id(text):
        return text
    whole = split(text)
    if whole is not None:
        return whole[0]
    # Not said back: a whole key mistyped is still most of a secret.
    raise typer.BadParameter("not a key id: 12 hex digits, as `leadpipe-keys list` shows it (lpk_<id>_...)")


@cli.command()
def revoke(key_id: str = typer.Argument(..., help="the key's 12-hex-digit id (lpk_<id>_...), as `leadpipe-keys "
                                                    "list` shows it", callback=_key_id)) -> None:
    """Revoke a key: every service refuses it within seconds."""
    async def mark() -> int:
        engine = make_engine(settings)
        try:
            async with engine.begin() as conn:
                done = await conn.execute(api_keys.update().where(api_keys.c.key_id == key_id,
                                                                  api_keys.c.revoked_at.is_(None))
                                          .values(revoked_at=datetime.now(UTC)))
                return done.rowcount
        finally:
            await engine.dispose()

    settings = _settings()
    with database_errors():
        marked = run_command(mark())
    if marked == 0:
        typer.secho(f"no active key {key_id} (see `leadpipe-keys list`)", err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def run() -> None:
    configure_command("keys")
    cli()


if __name__ == "__main__":
    run()
