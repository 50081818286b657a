"""``leadpipe-routing what-if``: past MQLs routed again under candidate routing files."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import typer
from aiokafka.errors import KafkaError

from leadpipe_common.cli import MOMENT, load_settings, moment_option
from leadpipe_common.kafka import quiet_client_logs
from leadpipe_common.logging import run_command
from leadpipe_common.scan import truncated_since

from routing.domain import WhatIf, what_if
from routing.reference import RoutingFiles
from routing.settings import RoutingSettings
from routing.whatif import read_history


def add_commands(cli: typer.Typer) -> None:
    @cli.command("what-if", help=(
        "Route past MQLs again under candidate routing files, against what was routed.\n\n"
        "The candidates are reps, territories, accounts and reasons files; the rules are the live ones. Prints, "
        "per team and rep, how many leads each would have got against what they did get, and every "
        "real assignment that breaks the candidate's working hours, holidays or capacity. To try a rep leaving, "
        "give --reps without them and --accounts with their accounts owned by others. A recycle after a rejection "
        "whose code --reasons says does not recycle is not made, nor any later routing of that lead; a code it "
        "lets recycle that did not then is not tried on past touches (the topics record no touch routing kept in "
        "nurture). Reads the topics; writes nothing. A --since before the first records a topic still holds "
        "(retention, or a truncated log) is answered from what it holds, under a warning naming from when (or "
        "that a partition holds nothing at all)."))
    def what_if_command(
        since: str = typer.Option(..., help=f"route again the MQLs scored since this moment ({MOMENT}; 1970 or "
                                            "later)"),
        reps: Path | None = typer.Option(None, help="candidate reps file (default: ROUTING_REPS_FILE)",
                                         exists=True, dir_okay=False),
        territories: Path | None = typer.Option(None, help="candidate territories file (default: "
                                                           "ROUTING_TERRITORIES_FILE)", exists=True, dir_okay=False),
        accounts: Path | None = typer.Option(None, help="candidate accounts file (default: "
                                                        "ROUTING_ACCOUNTS_FILE)", exists=True, dir_okay=False),
        reasons: Path | None = typer.Option(None, help="candidate reasons file (default: ROUTING_REASONS_FILE): "
                                                       "which rejection codes recycle a lead",
                                            exists=True, dir_okay=False),
    ) -> None:
        moment = moment_option(since, "--since", scan=True)
        settings = load_settings(RoutingSettings)
        files = settings.files
        given = {"reps": reps, "territories": territories, "accounts": accounts, "reasons": reasons}
        candidate = replace(files, **{name: path or getattr(files, name) for name, path in given.items()},
                            names={**files.names, **{name: f"--{name}" for name, path in given.items() if path}})
        try:
            reference = candidate.load()
        except ValueError as exc:
            typer.secho(str(exc), err=True, fg="red")
            raise typer.Exit(2) from None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        with Progress(TextColumn("reading the history..."), BarColumn(), TextColumn("{task.completed:,} events"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("scan", total=None)
            try:
                with quiet_client_logs():  # the one-line error below says it
                    history = run_command(read_history(settings, moment, lambda done, total: bar.update(
                        task, completed=done, total=total)))
            except (KafkaError, OSError, LookupError) as exc:
                typer.secho(f"cannot read the topics at KAFKA_BOOTSTRAP_SERVERS ({settings.kafka_bootstrap_servers}):"
                            f" {exc}", err=True, fg="red")
                raise typer.Exit(1) from None
        _report(what_if(history.leads, reference.data), moment, reference.version, candidate, history.skipped,
                candidate_reasons=reasons is not None, truncated=truncated_since(moment, history.first_held))


def _report(result: WhatIf, since: datetime, version: str, files: RoutingFiles, skipped: int, *,
            candidate_reasons: bool = False, truncated: dict[str, datetime | None] | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    # Paths, ids, teams and reasons are the operator's or the topics' text, never markup: a file reps[draft].yaml
    # read as markup is said to be reps.yaml, and a team "[/b]" ends the report in a MarkupError.
    console = Console(soft_wrap=True)
    console.print(escape(f"what-if: {result.leads:,} MQLs since {since.isoformat()} routed again under routing "
                         f"data {version} (reps {files.reps}, territories {files.territories}, accounts "
                         f"{files.accounts}, reasons {files.reasons}); nothing was written")
                  + (f"; {skipped:,} undecodable records passed over" if skipped else ""))
    if truncated:
        # Told, not refused as a full replay is: what-if writes nothing, and a plan may still be made from what is
        # held; but the counts below would otherwise look complete.
        held = ", ".join(f"{topic} only from {at.isoformat(timespec='milliseconds')}" if at is not None
                         else f"{topic} nothing since --since in a partition that lost every record it had"
                         for topic, at in truncated.items())
        dated = [at for at in truncated.values() if at is not None]
        if len(dated) == len(truncated):
            lost = ("The MQLs, routings and answers recorded between --since and then are left out, so the counts "
                    "below may be short; a --since of "
                    f"{max(dated).isoformat(timespec='milliseconds')} or later reads a history they hold whole")
        else:
            # A partition emptied has no record left to date its cut by: its last records may be from before
            # --since, or from yesterday.
            lost = ("The MQLs, routings and answers recorded since --since that they no longer hold are left out, "
                    "so the counts below may be short; a partition that holds nothing has no record left to tell "
                    "when it last recorded one, so no --since is known to read a history they hold whole")
        console.print(Text(f"warning: the topics no longer hold all they recorded since --since {since.isoformat()} "
                           f"(retention, or a truncated log): they hold {held}. {lost}", style="yellow"))
    table = Table("team", "rep", "would get", "did get", "change")
    totals = result.team_totals()
    last_team = None
    for team, owner, would, did in result.rows():
        if team != last_team:
            w, d = totals[team]
            table.add_row(Text(team, style="bold"), "(team)", f"{w:,}", f"{d:,}", f"{w - d:+,}")
            last_team = team
        table.add_row("", Text(owner), f"{would:,}", f"{did:,}", f"{would - did:+,}")
    console.print(table)
    queued = sum(n for (_, owner), n in result.would.items() if owner.startswith("queue:"))
    console.print(f"{result.overflowed:,} would overflow to another team; {queued:,} would wait in a team's queue "
                  "(out-of-office periods are not simulated)")
    if result.kept_in_nurture:
        console.print(escape(f"{result.kept_in_nurture:,} routings would not happen: the lead would stay in "
                             "nurture, recycled after a rejection whose reason does not recycle under reasons "
                             f"{files.reasons}"))
    if candidate_reasons:
        # The operator asking "what if competitor rejections recycled" would otherwise read no change as the answer.
        console.print("a code these reasons let recycle is not tried on past touches that did not recycle a lead: "
                      "the topics record no touch routing kept in nurture")
    console.print(f"{len(result.violations):,} real assignments break the candidate data"
                  + (":" if result.violations else ""))
    if result.violations:
        violations = Table("routed at", "lead", "rep", "team", "why")
        for v in result.violations:
            violations.add_row(v.at.isoformat(timespec="seconds"), str(v.lead_id), Text(v.owner_id), Text(v.team),
                               Text(v.why))
        console.print(violations)
