"""``leadpipe-scoring rescore``: re-score open leads under the current rules, or say what that would change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from aiokafka.errors import KafkaError

from leadpipe_common import topics
from leadpipe_common.cli import database_errors, load_settings

from scoring.app import load_rules
from scoring.domain import RescoreSummary
from scoring.rescore import closed_leads, rescore
from scoring.settings import ScoringSettings

MOVES = {"to_mql": "to MQL (recycled to sales)",
         # Scoring never reads sales' answers: its MQLs include leads sales holds or has rejected since (those
         # sales won or lost are read from the lifecycle and left out).
         "below_bar": "below the MQL bar (kept: only sales sends back; some may be with sales by now)"}


def add_commands(cli: typer.Typer) -> None:
    @cli.command("rescore")
    def rescore_command(
        dry_run: bool = typer.Option(False, "--dry-run", help="print what would change; write nothing"),
        at: str | None = typer.Option(None, help="score as of this moment (ISO date-time, UTC unless zoned; "
                                                 "default: now): intent decays to it"),
    ) -> None:
        """Re-score every open lead (nurture, MQL) under the rules file as it is now.

        A nurture lead that now reaches the MQL bar is recycled: routing routes it. A lead the lifecycle has
        closed since (won, lost, merged away) is left out and counted apart. Run with --dry-run first: the real
        run then does exactly what it printed (at the same --at), but for leads closed in between."""
        settings = load_settings(ScoringSettings)
        try:
            rules = load_rules(settings.rules_file)
        except (OSError, ValueError) as exc:
            typer.secho(str(exc), err=True, fg="red")
            raise typer.Exit(2) from None
        now = _moment(at)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        # Progress on stderr, gone when done: stdout is the report, the same for a dry run and the real one.
        # The lifecycle is kept for ever: on a long-lived stack this read takes a while, so it says how far it is.
        with Progress(TextColumn(f"reading which leads are closed from {topics.LIFECYCLE}..."), BarColumn(),
                      TextColumn("{task.completed:,} events"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("closed", total=None)
            try:
                closed = asyncio.run(closed_leads(settings, lambda done, total: bar.update(
                    task, completed=done, total=total)))
            except (KafkaError, OSError, LookupError) as exc:
                typer.secho(f"cannot read {topics.LIFECYCLE} at KAFKA_BOOTSTRAP_SERVERS "
                            f"({settings.kafka_bootstrap_servers}): {exc}", err=True, fg="red")
                raise typer.Exit(1) from None
        with Progress(SpinnerColumn(), TextColumn("re-scoring... {task.completed:,} leads"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("rescore", total=None)
            with database_errors():
                summary = asyncio.run(rescore(settings, rules, now, closed=closed, dry_run=dry_run,
                                              progress=lambda done: bar.update(task, completed=done)))
        _report(summary, dry_run, now)


def _moment(value: str | None) -> datetime:
    if value is None:  # an empty --at (an unset variable) is refused below, not taken for now
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date-time (2026-11-23T09:00Z)", param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report(summary: RescoreSummary, dry_run: bool, now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    verb = "would move" if dry_run else "moved"
    console = Console(soft_wrap=True)
    console.print(f"{'dry run: ' if dry_run else ''}re-scored {summary.leads:,} open leads under rules "
                  f"{summary.rules_version} as of {now.isoformat()}; {summary.changed_scores:,} scores "
                  f"{'would change' if dry_run else 'changed'}"
                  + (f"; {summary.skipped:,} scored before leads were kept, skipped" if summary.skipped else ""))
    for move, label in MOVES.items():
        console.print(f"{verb} {label}: {summary.count(move):,}")
    console.print(f"left out as closed since scored (won, lost or merged away): {summary.closed:,}")
    if summary.moves:
        table = Table("move", "grade", "source", "leads")
        for (move, grade, source), n in sorted(summary.moves.items()):
            table.add_row(move, grade, source, f"{n:,}")
        console.print(table)
    if dry_run:
        console.print("nothing was written; run without --dry-run (and the same --at) to apply")
