"""``leadpipe-delivery redrive``: dead deliveries back in the queue, from the command line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import typer

from leadpipe_common.cli import database_errors, load_settings
from leadpipe_common.db import make_engine

from delivery.app import load_subscriptions
from delivery.settings import DeliverySettings
from delivery.store import DeliveryStore, Redrive


def add_commands(cli: typer.Typer) -> None:
    @cli.command("redrive")
    def redrive_command(
        subscription: str | None = typer.Option(None, help="only this subscription's dead deliveries"),
        lead: str | None = typer.Option(None, help="only this lead's (its id)"),
    ) -> None:
        """Send deliveries that were given up after the retry window again; their window starts anew. Those
        whose body was purged (DELIVERY_KEEP_BODIES_DAYS after they died) stay dead, counted."""
        settings = load_settings(DeliverySettings)
        try:
            lead_id = uuid.UUID(lead) if lead else None
        except ValueError:
            raise typer.BadParameter(f"{lead!r} is not a lead id (a UUID)", param_hint="--lead") from None

        try:  # read for a redrive of all too: only subscriptions in force get theirs back
            in_file = set(load_subscriptions(settings.subscriptions_file, allow_private=settings.allow_private_targets))
        except ValueError as exc:
            typer.secho(str(exc), err=True, fg="red")
            raise typer.Exit(2) from None

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
                    return await store.redrive(datetime.now(UTC), subscription, lead_id, in_file=in_file)
            finally:
                await engine.dispose()

        with database_errors():
            done = asyncio.run(run())
        if isinstance(done, list):
            # A misspelt id would match nothing and report "0 queued again": as if nothing were dead.
            raise typer.BadParameter(f"{subscription!r} is no subscription in force; one of "
                                     f"{', '.join(done) or '(none)'}", param_hint="--subscription")
        typer.echo(f"{done.queued:,} dead deliveries queued again" + (f" for {subscription}" if subscription else ""))
        if done.purged:
            # Said, not silently left out: they look like what was asked for, and will never be sent.
            typer.echo(f"{done.purged:,} left dead: their body was purged (DELIVERY_KEEP_BODIES_DAYS after they "
                       "died), so there is nothing to send")
