"""``leadpipe-reporting replay`` and ``export``: progress bars, one-line errors, times in UTC unless zoned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from aiokafka.errors import KafkaError

from leadpipe_common import topics
from leadpipe_common.cli import MOMENT, database_errors, load_settings, moment_option
from leadpipe_common.kafka import quiet_client_logs
from leadpipe_common.logging import run_command

from reporting.export import OutputError, export
from reporting.replay import CatchUpFailed, Progress, ReplayRefused, replay
from reporting.settings import ReportingSettings


#: The export formats by the file names that say them.
_NAMED = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def _export_format(output: Path, fmt: str | None) -> str:
    """--format, in any case, or else the file name's; a name of the other kind is refused rather than either
    winning: an analyst would open a .parquet file holding JSON Lines with a Parquet reader."""
    named = _NAMED.get(output.suffix.lower())
    if fmt is None:
        if named is None:
            raise typer.BadParameter(f"{output.name}: name a .jsonl or .parquet file, or give --format",
                                     param_hint="OUTPUT")
        return named
    chosen = fmt.lower()
    if chosen not in ("jsonl", "parquet"):
        raise typer.BadParameter(f"{fmt!r}: use jsonl or parquet", param_hint="--format")
    if named is not None and named != chosen:
        raise typer.BadParameter(f"{output.name} is named as {named} but --format is {chosen}: name a file of "
                                 "that kind, or leave --format out", param_hint="--format")
    return chosen


def _progress_bar(label: str):  # noqa: ANN202
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # On stderr: on stdout, redirected, its last frame was a line of box-drawing characters among the output.
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>10} events/s"), TimeElapsedColumn(), console=Console(stderr=True))


def _run_with_progress(label: str, work: Callable[[Progress], Any]) -> Any:
    with quiet_client_logs(), _progress_bar(label) as bar:
        task = bar.add_task(label, total=None, rate="")
        started = time.perf_counter()

        def update(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            bar.update(task, completed=done, total=max(total, done), rate=f"{done / elapsed:,.0f}" if elapsed else "")

        return run_command(work(update))


def _warn_truncated(truncated: dict[str, datetime | None], since: datetime, lost: str) -> None:
    """One line on stderr when the stream no longer holds all it recorded since --since: told, not refused (the
    exit code stays), as what was read is still right as far as it goes; but it would otherwise look whole.
    ``lost``: what that leaves out of this command's result."""
    if not truncated:
        return
    held = ", ".join(f"{topic} only from {at.isoformat(timespec='milliseconds')}" if at is not None
                     else f"{topic} nothing since --since in a partition that lost every record it had"
                     for topic, at in truncated.items())
    typer.secho(f"warning: the stream no longer holds all it recorded since --since {since.isoformat()} "
                f"(retention, or a truncated log): it holds {held}; {lost}", err=True, fg="yellow")


def add_commands(cli: typer.Typer) -> None:
    @cli.command("replay")
    def replay_command(
        since: str | None = typer.Option(
            None, help=f"re-apply only the events since this moment ({MOMENT}; 1970 or later) on top of the "
                       "live tables; default: rebuild from the whole stream"),
        force: bool = typer.Option(
            False, "--force", help="rebuild even when the stream no longer starts at its first event (retention, "
                                   "a truncated log), or lacks leads the live tables hold (a broker that lost its "
                                   "log): every lead of the events it lost is lost from the reports"),
    ) -> None:
        """Rebuild reporting's tables from leads.lifecycle and swap them in.

        The tables are built afresh beside the live ones, which they then replace; a stream that no longer starts
        at its first event, or tables rebuilt without leads the live ones hold, are refused unless --force. With --since, re-apply the events since that moment over the
        live tables instead: nothing captured before it is lost. A --since before the first events the stream still
        holds (retention, or a truncated log) re-applies what it holds, under a warning naming from when."""
        settings = load_settings(ReportingSettings)
        start = moment_option(since, "--since", scan=True)
        try:
            with database_errors():
                try:
                    stats = _run_with_progress("replaying", lambda update: replay(settings, since=start, force=force,
                                                                                  progress=update))
                except CatchUpFailed as exc:
                    typer.secho(str(exc), err=True, fg="red")
                    if isinstance(exc.__cause__, asyncio.CancelledError):
                        raise typer.Exit(130) from None  # interrupted (Ctrl-C): nothing else to tell
                    raise exc.__cause__ from None  # told below as any failure of the broker or the database
        except ReplayRefused as exc:
            typer.secho(f"replay refused: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        except (KafkaError, LookupError) as exc:
            typer.secho(f"cannot read {topics.LIFECYCLE} at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        done = (f"re-applied over the live tables since {start.isoformat()}" if start else
                f"swapped in; {stats.caught_up:,} that arrived meanwhile applied")
        typer.echo(f"replayed {stats.events:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f} events/s); {done}"
                   + (f"; {stats.skipped:,} undecodable skipped" if stats.skipped else ""))
        if start is not None:
            # A later --since would re-apply less, not more: no moment is offered.
            _warn_truncated(stats.truncated, start,
                            "the events it recorded since --since and no longer holds were not re-applied: the "
                            "tables keep what the live service applied of them, and lack any it never did")

    @cli.command("export")
    def export_command(
        output: Path = typer.Argument(..., help="file to write, named .jsonl, .json (both JSON Lines) or .parquet, "
                                                "in any case; another name needs --format"),
        fmt: str | None = typer.Option(None, "--format", help="jsonl or parquet (default: from the file name; "
                                                               "a name of the other kind is refused)"),
        since: str | None = typer.Option(None, help=f"only events at or after this moment ({MOMENT}; 1970 or "
                                                    "later)"),
        until: str | None = typer.Option(None, help=f"only events before this moment ({MOMENT}; a bare date "
                                                    "includes that day; 1970 or later; after --since)"),
    ) -> None:
        """Export leads.lifecycle (or a time slice) for analysts, one row per event.

        A --since before the first events the stream still holds (retention, or a truncated log) exports what it
        holds, under a warning naming from when."""
        # Everything is checked before the stream is read: a failure at the end of a long read wastes it, and
        # a mistake that reads fine (an empty slice) would replace the previous export with nothing.
        if output.is_dir():
            raise typer.BadParameter(f"{output} is a directory: name the file to write", param_hint="OUTPUT")
        chosen = _export_format(output, fmt)
        if not output.parent.is_dir():
            raise typer.BadParameter(f"{output.parent} is not a directory", param_hint="OUTPUT")
        start = moment_option(since, "--since", scan=True)
        end = moment_option(until, "--until", end=True, scan=True)
        if start is not None and end is not None and end <= start:
            raise typer.BadParameter(f"{until!r} is not after --since {since!r}: the slice would hold no event",
                                     param_hint="--until")
        settings = load_settings(ReportingSettings)
        try:
            n, skipped, truncated, cut = _run_with_progress("exporting", lambda update: export(
                settings, output, chosen, since=start, until=end, progress=update))
        except OutputError as exc:
            typer.secho(str(exc), err=True, fg="red")
            raise typer.Exit(1) from None
        except (KafkaError, LookupError, OSError) as exc:  # OSError: the Kafka client's TLS files, a socket
            typer.secho(f"cannot read {topics.LIFECYCLE} at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        typer.echo(f"wrote {n:,} events to {output} ({chosen})"
                   + (f"; {skipped:,} undecodable left out (the live service dead-letters them)" if skipped else ""))
        if cut is not None:
            typer.secho(f"warning: the stream no longer starts at its first event (retention, or a truncated log): "
                        f"it holds {cut}; the export lacks every event before those, so it is not the whole "
                        "history", err=True, fg="yellow")
        if start is not None and truncated:
            dated = [at for at in truncated.values() if at is not None]
            _warn_truncated(truncated, start, "the events it recorded since --since and no longer holds are not in "
                            "the export, so it may be short; "
                            + (f"a --since of {max(dated).isoformat(timespec='milliseconds')} or later exports a "
                               "slice it holds whole" if len(dated) == len(truncated) else
                               "a partition that holds nothing has no record left to tell when it last recorded "
                               "one, so no --since is known to export a slice it holds whole"))
