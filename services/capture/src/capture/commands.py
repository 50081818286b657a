"""``leadpipe-capture erase``: a person's leads erased (GDPR art. 17) from the command line, as the admin API's
``POST /v1/people/erase`` erases them."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common.cli import database_errors, load_settings
from leadpipe_common.db import make_engine, make_sessionmaker
from leadpipe_common.logging import run_command
from leadpipe_common.page_urls import holds_address
from leadpipe_common.uow import SqlUnitOfWork

from capture import erasure
from capture.app import load_identity
from capture.settings import CaptureSettings
from capture.store import CaptureStore, outbox


def unit_of_work(engine: AsyncEngine) -> SqlUnitOfWork[CaptureStore]:
    """The command's unit of work: capture's store and outbox, which the running service's relay sends from."""
    return SqlUnitOfWork(make_sessionmaker(engine), CaptureStore, outbox=outbox)


def add_commands(cli: typer.Typer) -> None:
    @cli.command("erase")
    def erase_command(
        email: str | None = typer.Option(None, help="an address of the person: every lead of theirs is erased, "
                                                    "whichever spelling of it (plus tag, dots, case) it came with"),
        lead: str | None = typer.Option(None, help="one lead, by its id"),
        by: str | None = typer.Option(None, help="who asks, kept on each lead.erased and in the log (default: "
                                                 "cli:<your login>); never the address"),
        dry_run: bool = typer.Option(False, "--dry-run", help="say what would be erased, and erase and send "
                                                              "nothing (the same statements, rolled back)"),
    ) -> None:
        """Erase a person's leads (GDPR art. 17), as POST /v1/people/erase does.

        capture clears its own rows (contact, landing pages' queries, quarantined submissions, the person's record)
        and sends lead.erased down the pipeline for each lead: every stage clears its copies, delivery gives up what
        it has not sent. Erasing a lead id again prints it and sends nothing; an address again finds nobody (nothing
        kept leads from it to the erased leads), or only the person's leads since. A running capture's relay
        sends the events. README: "Erasing a person" says what is not erased."""
        if email is None and lead is None:
            raise typer.BadParameter("give an address (--email), a lead id (--lead), or both", param_hint="--email")
        if email is not None and not email.strip():
            # `--email "$EMAIL"` with the variable unset: said, not read as no address.
            raise typer.BadParameter("'' is empty: give the person's address", param_hint="--email")
        if by is not None and holds_address(by):
            # It goes on each lead.erased, on leads.lifecycle, kept for ever: "request from jane@x.com" would keep
            # there the very address being erased.
            raise typer.BadParameter("holds an e-mail address, and is kept for ever on leads.lifecycle: name who "
                                     "asks without one (a ticket, a login)", param_hint="--by")
        try:
            lead_id = uuid.UUID(lead) if lead is not None else None
        except ValueError:
            raise typer.BadParameter(f"{lead!r} is not a lead id (a UUID)", param_hint="--lead") from None
        settings = load_settings(CaptureSettings)
        try:
            rules = load_identity(settings.identity_file)
        except (ValueError, OSError) as exc:
            typer.secho(f"capture cannot read its identity rules: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        who = by or f"cli:{getpass.getuser()}"

        async def run() -> erasure.Erased:
            engine = make_engine(settings)
            try:
                async with unit_of_work(engine) as uow:
                    return await erasure.erase(uow, rules, email=email, lead_id=lead_id, at=datetime.now(UTC), by=who,
                                               dry_run=dry_run)
            finally:
                await engine.dispose()

        try:
            with database_errors():
                done = run_command(run())
        except erasure.NothingToErase as exc:
            typer.secho(f"nothing erased: {exc.field}: {exc.reason}", err=True, fg="red")
            raise typer.Exit(1) from None
        except erasure.StillSubmitting as exc:
            typer.secho(f"nothing erased: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        except ValueError as exc:  # an address that is none; the message does not repeat it
            raise typer.BadParameter(str(exc), param_hint="--email") from None
        leads = ", ".join(map(str, done.lead_ids))
        if dry_run:
            typer.echo("a dry run: nothing was erased or sent; a real run would do this:")
        would = "would be " if dry_run else ""
        if done.fresh:
            typer.echo(f"{len(done.fresh)} lead(s) {would}erased now, lead.erased {would}sent for each; the person's "
                       f"leads: {leads}")
        elif done.lead_ids:
            typer.echo(f"already erased, nothing {would}sent: {leads}")
        else:
            typer.echo(f"no lead of the person: their record and quarantined submissions {would}erased, nothing sent")
        if done.touched_leads:
            typer.echo(f"their touches {would}cleared on another person's lead(s), not erased: "
                       + ", ".join(map(str, done.touched_leads)))
        if done.merged_leads:
            typer.echo("merged into an erased lead, not erased (--lead each one that is the person's): "
                       + ", ".join(map(str, done.merged_leads)))
        if done.others_touches:
            typer.echo(f"another person's touches on an erased lead, {would}erased with it (their next submission "
                       "opens a new lead): " + ", ".join(map(str, done.others_touches)))
