"""``leadpipe-delivery redrive``: dead deliveries back in the queue; ``leadpipe-delivery forget``: what waits for a
subscription removed from the file given up; ``leadpipe-delivery derived-key``: the sealing key a session secret
gives; from the command line."""

from __future__ import annotations

import getpass
import sys
import uuid

import typer

from leadpipe_common.cli import database_errors, load_settings
from leadpipe_common.db import make_engine
from leadpipe_common.logging import run_command

from delivery.app import load_subscriptions
from delivery.domain import Subscription
from delivery.settings import DeliverySettings
from delivery.store import DeliveryStore, Forgotten, Redrive
from delivery.subscriptions import derived_key


def _file_subscriptions(settings: DeliverySettings) -> dict[str, Subscription]:
    """DELIVERY_SUBSCRIPTIONS_FILE's subscriptions; a file that is wrong, or cannot be read, is a message, exit 2."""
    try:
        return load_subscriptions(settings.subscriptions_file, allow_private=settings.allow_private_targets)
    except ValueError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None


class _Undone(Exception):  # noqa: N818 - not an error: a dry run's result, carried out of its transaction
    def __init__(self, done: Redrive | Forgotten | None) -> None:
        super().__init__("a dry run")
        self.done = done


def add_commands(cli: typer.Typer) -> None:
    @cli.command("redrive")
    def redrive_command(
        subscription: str | None = typer.Option(None, help="only this subscription's dead deliveries"),
        lead: str | None = typer.Option(None, help="only this lead's (its id)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="say what would be queued again, and change nothing "
                                                              "(the same statements, rolled back)"),
    ) -> None:
        """Send dead deliveries again, with a fresh retry window and count of refusals.

        A dead delivery is one given up after its retry window, or refused by its receiver (a 4xx, DELIVERY_REFUSED_ATTEMPTS times in a row). Those whose body was purged (DELIVERY_KEEP_BODIES_DAYS after they died), and those of subscriptions not in force
        (deleted, or in neither DELIVERY_SUBSCRIPTIONS_FILE nor the API's), stay dead, counted.

        Dead deliveries are not dead letters: records a stage could not process wait on leads.deadletter, and
        `leadpipe-redrive` (make redrive) sends those back."""
        settings = load_settings(DeliverySettings)
        try:
            # `--lead "$LEAD"` with the variable unset is no filter: it would redrive every dead delivery.
            lead_id = uuid.UUID(lead) if lead is not None else None
        except ValueError:
            raise typer.BadParameter(f"{lead!r} is not a lead id (a UUID)", param_hint="--lead") from None

        in_file = set(_file_subscriptions(settings))  # for a redrive of all too: only those in force get theirs

        async def run() -> Redrive | list[str]:
            """How many were queued again; or, for a subscription that is not in force, those that are."""
            engine = make_engine(settings)
            try:
                async with engine.begin() as conn:
                    store = DeliveryStore(conn)
                    if subscription is not None:
                        known = sorted(in_file | {row["id"] for row in await store.api_subscriptions()})
                        if subscription not in known:
                            return known
                    done = await store.redrive(subscription, lead_id, in_file=in_file)
                    if dry_run:
                        raise _Undone(done)  # raised through the transaction: rolled back
                    return done
            except _Undone as undone:
                return undone.done
            finally:
                await engine.dispose()

        with database_errors():
            done = run_command(run())
        if isinstance(done, list):
            # A misspelt id would match nothing and report "0 queued again": as if nothing were dead.
            raise typer.BadParameter(f"{subscription!r} is no subscription in force; one of "
                                     f"{', '.join(done) or '(none)'}", param_hint="--subscription")
        typer.echo((f"would queue {done.queued:,} dead deliveries again" if dry_run else
                    f"{done.queued:,} dead deliveries queued again") + (f" for {subscription}" if subscription else "")
                   + (" (a dry run: nothing changed)" if dry_run else ""))
        if done.purged:
            # Said, not silently left out: they look like what was asked for, and will never be sent.
            typer.echo(f"{done.purged:,} left dead: their body was purged (DELIVERY_KEEP_BODIES_DAYS after they "
                       "died), so there is nothing to send")
        if done.not_in_force:
            # Read from another file than the service's (an admin box without DELIVERY_SUBSCRIPTIONS_FILE), a
            # redrive of all leaves out every subscription of the service's file: said, by subscription.
            by_subscription = ", ".join(f"{sub} {n:,}" for sub, n in sorted(done.not_in_force.items()))
            typer.echo(f"{sum(done.not_in_force.values()):,} left dead: their subscription is not in force (deleted, "
                       f"or in neither {settings.subscriptions_file} nor the API's): {by_subscription}")

    @cli.command("forget")
    def forget_command(
        subscription: str = typer.Option(..., help="the id of a subscription removed from the subscriptions file"),
        dry_run: bool = typer.Option(False, "--dry-run", help="say what would be given up, and change nothing (the "
                                                              "same statements, rolled back)"),
    ) -> None:
        """Give up what waits for a subscription no longer in the file.

        The subscription is one removed from the subscriptions file. Its waiting deliveries turn dead ("subscription removed from the subscriptions file"; a redrive leaves them until the id is in the file
        again) and its switch-off by a 410 is cleared. Run it once no delivery process has a file with the id any
        more (after the rollout): such a process would have sent them, and would send to a receiver that answered
        410 Gone again. An id in force here (in DELIVERY_SUBSCRIPTIONS_FILE, or made through the API) is refused.
        --dry-run says what it would give up first."""
        settings = load_settings(DeliverySettings)
        in_file = _file_subscriptions(settings)
        if subscription in in_file:
            typer.secho(f"{subscription!r} is in force: it is in {settings.subscriptions_file}; remove it from the "
                        "file (and roll that out) first", err=True, fg="red")
            raise typer.Exit(2)

        async def run() -> Forgotten | None:
            engine = make_engine(settings)
            try:
                async with engine.begin() as conn:
                    done = await DeliveryStore(conn).forget(subscription)
                    if dry_run:
                        raise _Undone(done)  # raised through the transaction: rolled back
                    return done
            except _Undone as undone:
                return undone.done  # type: ignore[return-value]
            finally:
                await engine.dispose()

        with database_errors():
            done = run_command(run())
        if done is None:
            # Its deliveries are its own: forgotten, they would never reach it.
            typer.secho(f"{subscription!r} is in force: it was made through the API; delete it there "
                        f"(DELETE /v1/subscriptions/{subscription}), which gives up what waits for it",
                        err=True, fg="red")
            raise typer.Exit(2)
        if not done.dropped and not done.was_disabled:
            # A misspelt id matches nothing: said, so that it does not read as done.
            typer.echo(f"nothing waited for {subscription} and it was not switched off: nothing to forget")
            return
        if dry_run:
            typer.echo(f"would give up {done.dropped:,} waiting deliveries of {subscription} (subscription removed "
                       "from the subscriptions file)" + ("; would clear its switch-off by a 410" if done.was_disabled
                                                          else "") + " (a dry run: nothing changed)")
            return
        typer.echo(f"{done.dropped:,} waiting deliveries of {subscription} are dead (subscription removed from the "
                   "subscriptions file)" + ("; its switch-off by a 410 is cleared" if done.was_disabled else ""))

    @cli.command("derived-key")
    def derived_key_command(
        stdin: bool = typer.Option(False, "--stdin", help="read the session secret from the input (a line) instead "
                                                          "of LEADPIPE_SESSION_SECRET"),
    ) -> None:
        """Print the sealing key a session secret gives (for DELIVERY_SECRETS_KEY).

        That key seals the webhook secrets of subscriptions made through the API while DELIVERY_SECRETS_KEY is
        unset: the one derived from LEADPIPE_SESSION_SECRET, or with --stdin from a session secret given on the
        input (a former one). Put in DELIVERY_SECRETS_KEY, it opens what was sealed under it
        whatever the session secret is. The secret is never taken as an argument: ps and shell histories show
        those."""
        if stdin:
            # Typed at a terminal, it is not echoed; piped in, one line is read.
            given = getpass.getpass("session secret: ") if sys.stdin.isatty() else sys.stdin.readline()
            session_secret = given.rstrip("\r\n")
        else:
            settings = load_settings(DeliverySettings)
            session_secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
        if not session_secret:
            typer.secho("no session secret: set LEADPIPE_SESSION_SECRET, or give one on the input with --stdin",
                        err=True, fg="red")
            raise typer.Exit(2)
        if len(session_secret) < 32:
            # No service takes one this short now: a line cut short, or a former secret from before 86b8d4c (any
            # length was taken, the shipped replace-me too), whose key is the one needed. Said, and printed.
            typer.secho(f"note: this session secret has {len(session_secret)} characters; no service takes one under "
                        "32 now: if it is not a former one, check it was given whole", err=True, fg="yellow")
        typer.echo(derived_key(session_secret))
