"""``leadpipe-delivery redrive``: dead deliveries back in the queue, from the command line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import typer

from leadpipe_common.cli import database_errors, load_settings
from leadpipe_common.db import make_engine

from delivery.settings import DeliverySettings
from delivery.store import DeliveryStore


def add_commands(cli: typer.Typer) -> None:
    @cli.command("redrive")
    def redrive_command(
        subscription: str | None = typer.Option(None, help="only this subscription's dead deliveries"),
        lead: str | None = typer.Option(None, help="only this lead's (its id)"),
    ) -> None:
        """Send deliveries that were given up after the retry window again; their window starts anew."""
        settings = load_settings(DeliverySettings)
        try:
            lead_id = uuid.UUID(lead) if lead else None
        except ValueError:
            raise typer.BadParameter(f"{lead!r} is not a lead id (a UUID)", param_hint="--lead") from None

        async def run() -> int:
            engine = make_engine(settings)
            try:
                async with engine.begin() as conn:
                    return await DeliveryStore(conn).redrive(datetime.now(UTC), subscription, lead_id)
            finally:
                await engine.dispose()

        with database_errors():
            n = asyncio.run(run())
        typer.echo(f"{n:,} dead deliveries queued again" + (f" for {subscription}" if subscription else ""))
