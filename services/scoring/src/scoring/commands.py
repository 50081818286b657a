"""``leadpipe-scoring rescore``: re-score open leads under the current rules, or say what that would change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from aiokafka.errors import KafkaError

from leadpipe_common import topics
from leadpipe_common.cli import MOMENT, database_errors, load_settings, moment_option
from leadpipe_common.kafka import quiet_client_logs
from leadpipe_common.logging import run_command

from scoring.app import load_rules
from scoring.domain import APPLIED, RescoreSummary, check_rescore_at, rules_digest, rules_disagreement, unbumped_rules
from scoring.rescore import Interrupted, LifecycleCut, closed_leads, newest_rules, rescore
from scoring.settings import ScoringSettings

#: Scoring never reads sales' answers: its MQLs include leads sales holds or has rejected since (those sales won
#: or lost are read from the lifecycle and left out), so what befalls an MQL is counted, never applied.
_KEPT = "kept: only sales sends back or closes; some may be with sales by now"
#: Each move's line, as a dry run and as the real run print it.
MOVES = {"to_mql": ("would move to MQL", "moved to MQL", "(recycled to sales)"),
         "knocked_out": ("would disqualify", "disqualified", "nurture leads a disqualify rule now holds for (closed)"),
         "below_nurture": ("would disqualify", "disqualified", "nurture leads under the nurture bar now (closed)"),
         "below_bar": ("would leave", "left", f"MQLs below the MQL bar ({_KEPT})"),
         "mql_below_nurture": ("would leave", "left", f"MQLs under the nurture bar, not disqualified ({_KEPT})"),
         "mql_knocked_out": ("would leave", "left", f"MQLs a disqualify rule now holds for, not disqualified "
                                                    f"({_KEPT})")}

def add_commands(cli: typer.Typer) -> None:
    @cli.command("rescore")
    def rescore_command(
        dry_run: bool = typer.Option(False, "--dry-run", help="print what would change; write nothing"),
        at: str | None = typer.Option(None, help=f"score as of this moment ({MOMENT}; "
                                                 "default: now): intent decays to it, and a lead moved (to "
                                                 "MQL, disqualified) steps at it; at most a day from now, "
                                                 "and never after now but for a dry run"),
        force: bool = typer.Option(False, "--force", help=f"re-score even when {topics.LIFECYCLE} no longer "
                                                          "holds its first events (leads closed before them are "
                                                          "then taken for open), or the rules file changed under "
                                                          "the version the newest score was given under"),
    ) -> None:
        """Re-score every open lead (nurture, MQL) under the rules file as it is now.

        A nurture lead that now reaches the MQL bar is recycled: routing routes it. One a disqualify rule now
        holds for, or under the nurture bar now, is disqualified (closed). An MQL is never moved (sales may hold
        it): each way it falls is counted. A lead the lifecycle has closed since (won, lost, merged away) is left
        out and counted apart. Run with --dry-run first: the real run then does exactly what it printed (at the
        same --at), but for leads closed in between, and those scored after --at (a touch since), whose newer
        score stands. An --at more than a day before or after now is refused, and
        one after now but for a dry run (the real run stamps its scores with it, and until then they would be the
        newest the comparison of rules reads): a past one leaves intent undecayed since and dates the steps
        to MQL then, perhaps before their leads were captured (a typo in the year does that). A lifecycle that
        no longer holds its first events (its retention, or a truncated log) is refused: the leads it closed
        before would be taken for open and perhaps recycled to sales. So are rules whose contents changed under the
        version the newest score was given under (the re-score's event ids derive from the version); rules of
        another version are re-scored with a note to restart scoring if it has not been."""
        now = _moment(at, dry_run=dry_run)
        settings = load_settings(ScoringSettings)
        try:
            rules = load_rules(settings.rules_file)
        except ValueError as exc:
            typer.secho(str(exc), err=True, fg="red")
            raise typer.Exit(2) from None
        with database_errors():
            scored = run_command(newest_rules(settings))
        unbumped = unbumped_rules(rules.version, rules_digest(rules), scored)
        if unbumped and not force:
            typer.secho(f"not re-scored: {unbumped}; re-score anyway with --force", err=True, fg="red")
            raise typer.Exit(1)
        if unbumped:
            typer.secho(f"re-scoring anyway (--force): {unbumped}", err=True, fg="yellow")
        if (behind := rules_disagreement(rules.version, scored)) is not None:
            typer.secho(f"note: {behind}", err=True, fg="yellow")
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        # Progress on stderr, gone when done: stdout is the report, the same for a dry run and the real one.
        # The lifecycle is kept for ever: on a long-lived stack this read takes a while, so it says how far it is.
        with Progress(TextColumn(f"reading which leads are closed from {topics.LIFECYCLE}..."), BarColumn(),
                      TextColumn("{task.completed:,} events"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("closed", total=None)
            try:
                with quiet_client_logs():  # the one-line error below says it
                    closed = run_command(closed_leads(settings, lambda done, total: bar.update(
                        task, completed=done, total=total), force=force))
            except LifecycleCut as exc:
                typer.secho(f"not re-scored: {exc}", err=True, fg="red")
                raise typer.Exit(1) from None
            except (KafkaError, OSError, LookupError) as exc:
                typer.secho(f"cannot read {topics.LIFECYCLE} at KAFKA_BOOTSTRAP_SERVERS "
                            f"({settings.kafka_bootstrap_servers}): {exc}", err=True, fg="red")
                raise typer.Exit(1) from None
        with Progress(SpinnerColumn(), TextColumn("re-scoring... {task.completed:,} leads"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("rescore", total=None)
            with database_errors():
                try:
                    summary = run_command(rescore(settings, rules, now, closed=closed, dry_run=dry_run,
                                                  progress=lambda done: bar.update(task, completed=done)))
                except Interrupted as stopped:
                    bar.stop()
                    _report(stopped.summary, dry_run, now)
                    typer.secho(f"stopped part way, after {stopped.summary.leads:,} leads: "
                                + ("the report above is what those would do" if dry_run else
                                   "the moves above are made and their events on their way; run the same "
                                   "re-score again to do the rest (what is done is not done twice)"),
                                err=True, fg="red")
                    if isinstance(stopped.__cause__, asyncio.CancelledError | KeyboardInterrupt):
                        raise typer.Exit(130) from None
                    raise stopped.__cause__ from None  # told as any failure of the database
        _report(summary, dry_run, now)


def _moment(value: str | None, *, dry_run: bool) -> datetime:
    now = datetime.now(UTC)
    moment = moment_option(value, "--at")
    if moment is None:
        return now
    try:
        check_rescore_at(moment, now, dry_run=dry_run)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--at") from None
    return moment


def _report(summary: RescoreSummary, dry_run: bool, now: datetime) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    # The rules' version and utm_source (free text from anonymous posts) are never markup: a source "[/b]" would
    # end the report in a MarkupError after a real run had written its moves.
    console = Console(soft_wrap=True)
    console.print(escape(f"{'dry run: ' if dry_run else ''}re-scored {summary.leads:,} open leads under rules "
                         f"{summary.rules_version} as of {now.isoformat()}; {summary.changed_scores:,} scores or "
                         f"decisions {'would change' if dry_run else 'changed'}")
                  + (f"; {summary.skipped:,} scored before leads were kept, skipped" if summary.skipped else "")
                  + (f"; {summary.unreadable:,} whose stored lead this version cannot read, left as they are "
                     f"({', '.join(map(str, summary.unreadable_leads))}"
                     f"{', ...' if summary.unreadable > len(summary.unreadable_leads) else ''})"
                     if summary.unreadable else ""))
    for move, (would, did, label) in MOVES.items():
        console.print(f"{would if dry_run else did} {label}: {summary.count(move):,}")
        by_rule = {rule: n for (knocked, rule), n in sorted(summary.knockouts.items()) if knocked == move}
        for rule, n in by_rule.items():
            console.print(Text(f"  {rule}: {n:,}"))  # a rule's name is the rules file's text, never markup
        if sum(by_rule.values()) > summary.count(move):
            console.print("  (a lead several of these rules hold for is counted under each)")
    console.print(f"left out as closed since scored (won, lost or merged away): {summary.closed:,}")
    if summary.newer:
        console.print(f"left out as scored after {now.isoformat()} (a touch or a new lead since; its newer score "
                      f"stands): {summary.newer:,}")
    if summary.moves:
        table = Table("move", "grade", "source", "leads")
        for (move, grade, source), n in sorted(summary.moves.items()):
            table.add_row(Text(move), Text(grade), Text(source), f"{n:,}")
        console.print(table)
    if dry_run:
        console.print("nothing was written; run without --dry-run (and the same --at) to apply")
    elif moved := sum(summary.count(move) for move in APPLIED):
        # The outbox is the running service's to publish: stopped, nothing goes until it starts.
        console.print(f"the {moved:,} moved leads' events are in scoring's outbox: the running scoring service "
                      "publishes them (none goes out while it is stopped)")
