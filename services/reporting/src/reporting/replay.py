"""Rebuilding the reports from the log, and handing the log to analysts.

``reporting replay`` rebuilds every reporting table from the whole of
``leads.lifecycle`` into fresh tables in the schema ``reporting_replay``,
swaps them in for the live ones in one transaction, then applies what
arrived during the rebuild. The live service keeps consuming throughout: the
projection is idempotent and order-independent, so events it applies to the
new tables after the swap change nothing that the replay did not already
write, and the reports after a replay equal the live ones.

``reporting replay --since T`` never builds fresh tables: tables built from
the events since T alone would lose every lead captured before T. It
re-applies the events since T on top of the live tables instead, which the
same idempotence makes safe (what was applied already changes nothing).

Times without a zone are UTC, here as in the report API.

``reporting export`` writes the lifecycle (or a time slice) as JSON Lines or
Parquet, one row per event, for analysts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadpipe_common import topics
from leadpipe_common.cli import load_settings
from leadpipe_common.db import make_engine
from leadpipe_common.envelope import DecodeError, Envelope, decode
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import ServiceSettings

from reporting.domain import parse_moment, project
from reporting.settings import ReportingSettings
from reporting.store import SCHEMA, TABLES, ReportingStore, metadata

SHADOW = "reporting_replay"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayStats:
    events: int
    skipped: int
    caught_up: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _decoded(records: list[Any]) -> tuple[list[tuple[Any, Envelope]], int]:
    """(record, envelope) for each decodable record, and how many were not."""
    out, skipped = [], 0
    for r in records:
        try:
            out.append((r, decode(r.headers, r.key, r.value)))
        except DecodeError:
            skipped += 1  # the live consumer dead-letters it; the reports never saw it either
    return out, skipped


async def _apply_scan(engine: AsyncEngine, scan: TopicScan, schema: str, progress: Progress, done: int) -> tuple[int, int]:
    skipped = 0
    async for records in scan.batches():
        decoded, bad = _decoded(records)
        skipped += bad
        async with engine.begin() as conn:
            conn = await conn.execution_options(schema_translate_map={SCHEMA: schema})
            await ReportingStore(conn).save(project((env.id, env.data) for _, env in decoded))
        done += len(records)
        progress(done, scan.total)
    return done, skipped


async def _create_shadow(conn: AsyncConnection) -> None:
    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SHADOW}" CASCADE'))
    await conn.execute(sa.text(f'CREATE SCHEMA "{SHADOW}"'))
    shadow = await conn.execution_options(schema_translate_map={SCHEMA: SHADOW})
    await shadow.run_sync(lambda sync: metadata.create_all(sync, tables=list(TABLES)))


async def _swap(conn: AsyncConnection) -> None:
    names = ", ".join(f'"{SCHEMA}"."{t.name}"' for t in TABLES)
    # The live consumer waits on this lock for the moment of the swap; its
    # next statement resolves the names to the new tables.
    await conn.execute(sa.text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
    await conn.execute(sa.text(f"DROP TABLE {names}"))
    for t in TABLES:
        await conn.execute(sa.text(f'ALTER TABLE "{SHADOW}"."{t.name}" SET SCHEMA "{SCHEMA}"'))
    await conn.execute(sa.text(f'DROP SCHEMA "{SHADOW}"'))


async def replay(settings: ServiceSettings, *, since: datetime | None = None,
                 progress: Progress = lambda done, total: None) -> ReplayStats:
    started = time.perf_counter()
    engine = make_engine(settings)
    try:
        if since is not None:
            async with TopicScan(settings.kafka_bootstrap_servers, topics.LIFECYCLE, since=since) as scan:
                done, skipped = await _apply_scan(engine, scan, SCHEMA, progress, 0)
            return ReplayStats(done, skipped, 0, time.perf_counter() - started)
        async with engine.begin() as conn:
            await _create_shadow(conn)
        async with TopicScan(settings.kafka_bootstrap_servers, topics.LIFECYCLE, since=since) as scan:
            done, skipped = await _apply_scan(engine, scan, SHADOW, progress, 0)
            async with engine.begin() as conn:
                await _swap(conn)
            # What the live service applied to the old tables while we rebuilt.
            caught_up = await scan.extend()
            done, more = await _apply_scan(engine, scan, SCHEMA, progress, done)
        return ReplayStats(done - caught_up, skipped + more, caught_up, time.perf_counter() - started)
    finally:
        await engine.dispose()


# -- export -----------------------------------------------------------------------------

EXPORT_COLUMNS = ("event_id", "type", "time", "lead_id", "from_stage", "to_stage", "at", "by", "reason",
                  "reason_code", "owner_id", "team", "grade", "amount", "currency", "utm_source", "utm_medium",
                  "utm_campaign", "utm_content", "form_id", "offer", "partition", "offset", "data")


def export_row(env: Envelope, partition: int, offset: int) -> dict[str, Any]:
    data = env.data.model_dump(mode="json")
    attribution = data.get("attribution") or {}
    return {
        "event_id": str(env.id), "type": env.type, "time": env.time.isoformat(), "lead_id": str(env.data.lead_id),
        "from_stage": data.get("from_stage"), "to_stage": data.get("to_stage", env.type.removeprefix("lead.")),
        "at": data.get("at") or data.get("breached_at"), "by": data.get("by"), "reason": data.get("reason"),
        "reason_code": data.get("reason_code"), "owner_id": data.get("owner_id"), "team": data.get("team"),
        "grade": data.get("grade"), "amount": data.get("amount"), "currency": data.get("currency"),
        **{k: attribution.get(k) for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "form_id", "offer")},
        "partition": partition, "offset": offset, "data": json.dumps(data, separators=(",", ":")),
    }


async def export(bootstrap: str, output: Path, fmt: str, *, since: datetime | None, until: datetime | None,
                 progress: Progress = lambda done, total: None) -> int:
    """Write the events as JSON Lines or Parquet, a fetched batch at a time (memory stays flat)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c in ("partition", "offset") else pa.string()) for c in EXPORT_COLUMNS])
    written, seen = 0, 0
    with ExitStack() as files:
        jsonl = files.enter_context(output.open("w", encoding="utf-8")) if fmt == "jsonl" else None
        parquet = None if jsonl else files.enter_context(pq.ParquetWriter(output, schema, compression="zstd"))
        async with TopicScan(bootstrap, topics.LIFECYCLE, since=since) as scan:
            async for records in scan.batches():
                rows = [export_row(env, r.partition, r.offset) for r, env in _decoded(records)[0]
                        if not (since and env.time < since) and not (until and env.time >= until)]
                if jsonl is not None:
                    jsonl.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
                elif rows:
                    parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
                written += len(rows)
                seen += len(records)
                progress(seen, scan.total)
    return written


# -- the commands -----------------------------------------------------------------------


def _moment(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    try:
        return parse_moment(value, end=end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def _progress_bar(label: str):  # noqa: ANN202
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>10} events/s"), TimeElapsedColumn())


def _run_with_progress(label: str, work: Callable[[Progress], Any]) -> Any:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with _progress_bar(label) as bar:
        task = bar.add_task(label, total=None, rate="")
        started = time.perf_counter()

        def update(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            bar.update(task, completed=done, total=max(total, done), rate=f"{done / elapsed:,.0f}" if elapsed else "")

        return asyncio.run(work(update))


def add_commands(cli: typer.Typer) -> None:
    @cli.command("replay")
    def replay_command(
        since: str | None = typer.Option(
            None, help="re-apply only the events since this moment (ISO date or date-time, UTC unless it names "
                       "a zone) on top of the live tables; default: rebuild from the whole stream"),
    ) -> None:
        """Rebuild reporting's tables from leads.lifecycle into fresh tables and swap them in.

        With --since, re-apply the events since that moment over the live tables instead: nothing
        captured before it is lost."""
        settings = load_settings(ReportingSettings)
        start = _moment(since, "--since")
        try:
            stats = _run_with_progress("replaying", lambda update: replay(settings, since=start, progress=update))
        except (KafkaError, LookupError) as exc:
            typer.secho(f"cannot read {topics.LIFECYCLE} at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        except OSError as exc:
            typer.secho(f"cannot reach the database at DATABASE_URL: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        done = (f"re-applied over the live tables since {start.isoformat()}" if start else
                f"swapped in; {stats.caught_up:,} that arrived meanwhile applied")
        typer.echo(f"replayed {stats.events:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f} events/s); {done}"
                   + (f"; {stats.skipped:,} undecodable skipped" if stats.skipped else ""))

    @cli.command("export")
    def export_command(
        output: Path = typer.Argument(..., help="file to write (.jsonl or .parquet)"),
        fmt: str | None = typer.Option(None, "--format", help="jsonl or parquet (default: from the file name)"),
        since: str | None = typer.Option(None, help="only events at or after this moment (ISO; UTC unless it names a zone)"),
        until: str | None = typer.Option(None, help="only events before this moment (ISO; a bare date includes that day)"),
    ) -> None:
        """Export leads.lifecycle (or a time slice) for analysts, one row per event."""
        chosen = fmt or ("parquet" if output.suffix == ".parquet" else "jsonl")
        if chosen not in ("jsonl", "parquet"):
            raise typer.BadParameter(f"{chosen!r}: use jsonl or parquet", param_hint="--format")
        settings = load_settings(ReportingSettings)
        start, end = _moment(since, "--since"), _moment(until, "--until", end=True)
        try:
            n = _run_with_progress("exporting", lambda update: export(
                settings.kafka_bootstrap_servers, output, chosen, since=start, until=end, progress=update))
        except (KafkaError, LookupError) as exc:
            typer.secho(f"cannot read {topics.LIFECYCLE} at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
            raise typer.Exit(1) from None
        typer.echo(f"wrote {n:,} events to {output} ({chosen})")
