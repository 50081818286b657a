"""Rebuilding the reports from the log.

``replay`` rebuilds every reporting table from the whole of the topics the
service consumes (``leads.lifecycle``, and ``leads.quarantined`` for the spam
counts) into fresh tables in the schema ``reporting_replay``,
swaps them in for the live ones in one transaction, then applies what
arrived during the rebuild. The live service keeps consuming throughout: the
projection is idempotent and order-independent, so events it applies to the
new tables after the swap change nothing that the replay did not already
write, and the reports after a replay equal the live ones.

A full rebuild needs the whole stream: a topic whose retention dropped its
oldest events (``TOPIC_RETENTION``), or a cluster that truncated it, starts
above offset 0, and tables built from what is left would lose every lead
captured before. Such a rebuild is refused (``TruncatedStream``) before
anything is written, unless ``force``: the operator means to lose them. A
log that lost its events and started again from offset 0 (the embedded
broker keeps its log in memory: a restart empties it, while reporting's
tables persist) is told only after the rebuild: before the swap, every lead
of the live tables with an event recorded before the scan began must be in
the rebuilt ones, or the swap is refused (``LostHistory``), the live tables
left as they were, unless ``force``.

``replay(since=T)`` never builds fresh tables: tables built from the events
since T alone would lose every lead captured before T. It re-applies the
events since T on top of the live tables instead, which the same
idempotence makes safe (what was applied already changes nothing). It
re-applies what the stream still holds: where retention (or a truncated
log) deleted events recorded since T, ``ReplayStats.truncated`` names the
topics (``scan.truncated_since``) for the command to say so; nothing is
refused, as the live tables lose nothing by it.

A failure after the swap (the broker gone while catching up) leaves the
new tables without what the live service applied to the old ones between
the scan and the swap: ``CatchUpFailed`` names the ``--since`` that
re-applies it.

One full replay at a time, and none while reporting's schema is migrated: a
full replay holds the advisory lock ``migrate`` takes (``migrations.run_env``)
from before it makes its shadow schema to the end of its catch-up, and one
that finds it held is refused (``ReplayBusy``) before anything is written (a
second replay dropped the first's shadow tables under it; a migrate could
change the live tables' columns under a rebuild of the old ones). A migrate
with work to do started meanwhile waits for the replay. The lock's connection
is checked every ``LOCK_CHECK_S`` while it rebuilds and before the swap: one a
server's timeout or a proxy closed let the lock go, and the rebuild is then
dropped (``LockLost``).

The swap waits for reporting's tables a tenth of a second at a time (queued,
its lock holds every reader and the live consumer behind it) and tries again
while they stay held, or while a transaction locking them in another order
makes a deadlock of it, for ``SWAP_PATIENCE_S``; then it is refused
(``SwapBusy``), the rebuilt tables dropped, the live ones left as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadpipe_common import topology
from leadpipe_common.db import make_engine, sqlstate
from leadpipe_common.envelope import DecodeError, Envelope, decode
from leadpipe_common.scan import TopicScan, cut_from_start, truncated_since
from leadpipe_common.settings import ServiceSettings

from reporting.domain import project
from reporting.store import SCHEMA, TABLES, ReportingStore, metadata

SHADOW = "reporting_replay"
#: What the reports are built from: what the live service consumes, no more.
SOURCES = topology.inputs_of("reporting")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayStats:
    events: int
    skipped: int
    caught_up: int
    seconds: float
    #: Of a replay since a moment, each topic that no longer holds all it recorded since, with the moment from
    #: which it does (None: a partition of it holds nothing): what it lost was not re-applied.
    truncated: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class ReplayRefused(Exception):
    """A replay refused, the live tables left as they were: the message says why and what to do."""


class TruncatedStream(ReplayRefused):
    """A full rebuild refused: the stream no longer holds its first events."""


#: The advisory lock's key: ``migrate``'s for reporting's schema (``migrations.run_env``).
LOCK_KEY = f"leadpipe-migrate:{SCHEMA}"


class ReplayBusy(ReplayRefused):
    def __init__(self) -> None:
        super().__init__("another full replay, or a migrate of reporting's schema, is running (it holds the "
                         f"advisory lock {LOCK_KEY!r}): wait for it to end, then run this again; nothing was written")


#: How long the swap waits for reporting's tables at once (its queued lock holds their readers behind it), and
#: how long it keeps trying, between tries leaving them free for a second or so.
SWAP_LOCK_WAIT_MS = 100
SWAP_PATIENCE_S = 120.0


class SwapBusy(ReplayRefused):
    def __init__(self) -> None:
        super().__init__(f"reporting's tables stayed held by other transactions for {SWAP_PATIENCE_S:g} s, so the "
                         "rebuilt ones could not be swapped in: they were dropped, the live ones left as they were. "
                         "pg_stat_activity shows who holds them (a session 'idle in transaction', a long report); "
                         "run the replay again once they are free")


def refuse_truncated(starts: Mapping[Any, int]) -> None:
    """Refuse a full rebuild from partitions (``TopicPartition``: their first offset held) of which any starts
    above offset 0: the events before it are gone, and the leads they made would be gone from the rebuilt tables
    with them, silently (the reports would just be smaller)."""
    held = cut_from_start(starts)
    if held is not None:
        raise TruncatedStream(
            f"the stream no longer starts at its first event: it holds {held} (retention, or a truncated log); "
            "tables rebuilt from it would lose every lead of the events before. Re-apply what it holds over the "
            "live tables with --since 1970-01-01, or rebuild from it anyway with --force")


class LostHistory(TruncatedStream):
    """A full rebuild refused before its swap: the live tables hold leads the rebuilt ones lack."""

    def __init__(self, lost: int, earliest: datetime) -> None:
        super().__init__(
            f"the rebuilt tables lack {lost:,} leads the live tables have, of events recorded before the replay began "
            f"(the earliest {earliest.astimezone(UTC):%Y-%m-%d %H:%M} UTC): the stream no longer holds them (the "
            "embedded broker keeps its log in memory, so a restart empties it; or retention, or a truncated log). "
            "The live tables are left as they were. Re-apply what the stream holds over them with --since "
            "1970-01-01, or rebuild from it anyway with --force")


async def missing_from(conn: AsyncConnection, live: str, rebuilt: str, before: datetime) -> tuple[int, datetime | None]:
    """How many leads the tables in schema ``live`` hold that those in ``rebuilt`` lack, of events recorded before
    ``before``; and the earliest such event's time. By when their events were recorded on the stream, not when
    the leads were captured: a submission released from quarantine while the rebuild ran is a lead captured
    days ago whose events came after the scan (the catch-up after the swap applies them). A step from before
    0005, with no recorded time, counts by its own."""
    row = (await conn.execute(sa.text(
        f'SELECT count(*), min(m.first) FROM (SELECT (SELECT min(coalesce(s.recorded_at, s.at)) FROM "{live}".steps s '
        f'WHERE s.lead_id = l.lead_id) AS first FROM "{live}".leads l '
        f'WHERE NOT EXISTS (SELECT 1 FROM "{rebuilt}".leads r WHERE r.lead_id = l.lead_id)) m WHERE m.first < :before'),
        {"before": before})).one()
    return row[0], row[1]


#: How much earlier than the scan a catch-up re-applies from: a record is stamped by its producer's clock, maybe
#: before the scan looked for the log's end (in flight then, or sent again), and re-applying more changes nothing.
CLOCK_MARGIN = timedelta(minutes=5)


class CatchUpFailed(Exception):
    """The rebuilt tables are swapped in, but what arrived during the rebuild could not be applied to them (the
    cause is chained): ``since`` is the moment a ``replay --since`` re-applies it from."""

    def __init__(self, since: datetime) -> None:
        self.since = since
        super().__init__(f"the rebuilt tables are swapped in, but what the live service applied to the old ones "
                         f"during the rebuild is not in them: once the cause below is fixed, run "
                         f"`leadpipe-reporting replay --since {since.isoformat()}`")


def decoded(records: list[Any]) -> tuple[list[tuple[Any, Envelope]], int]:
    """(record, envelope) for each decodable record, and how many were not."""
    out, skipped = [], 0
    for r in records:
        try:
            out.append((r, decode(r.headers, r.key, r.value)))
        except DecodeError:
            skipped += 1  # the live consumer dead-letters it; the reports never saw it either
    return out, skipped


#: How often a rebuild checks that the connection holding its lock is still there (and keeps it from looking idle).
LOCK_CHECK_S = 30.0


async def _apply_scan(engine: AsyncEngine, scan: TopicScan, schema: str, progress: Progress, done: int,
                      held: AsyncConnection | None = None) -> tuple[int, int]:
    """``held``: the connection whose transaction holds the replay's lock, checked every ``LOCK_CHECK_S``."""
    skipped = 0
    checked_at = time.monotonic()
    # A replay since a time before 0005 meets steps applied without their recorded time, as live does (see
    # handlers.Reporting); fresh tables hold none, nor will.
    legacy: bool | None = None
    async for records in scan.batches():
        events, bad = decoded(records)
        skipped += bad
        async with engine.begin() as conn:
            conn = await conn.execution_options(schema_translate_map={SCHEMA: schema})
            store = ReportingStore(conn)
            if legacy is None:
                legacy = await store.any_unrecorded()
            unrecorded = await store.unrecorded([env.id for _, env in events]) if legacy else frozenset()
            await store.save(project([(env.id, env.time, env.data) for _, env in events], unrecorded))
        done += len(records)
        progress(done, scan.total)
        if held is not None and time.monotonic() - checked_at >= LOCK_CHECK_S:
            await _still_held(held)
            checked_at = time.monotonic()
    return done, skipped


class LockLost(ReplayRefused):
    def __init__(self) -> None:
        super().__init__("the connection holding the replay's lock was closed while it rebuilt (a server's "
                         "idle_in_transaction_session_timeout, a proxy dropping it, a failover): another replay or "
                         "a migrate may have begun since, so the rebuilt tables were dropped, the live ones left as "
                         "they were; run the replay again (with such a timeout, above the checks' 30 s)")


async def _still_held(held: AsyncConnection) -> None:
    try:
        await held.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError:
        raise LockLost() from None


async def _drop_shadow(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{SHADOW}" CASCADE'))


async def _create_shadow(conn: AsyncConnection) -> None:
    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SHADOW}" CASCADE'))
    await conn.execute(sa.text(f'CREATE SCHEMA "{SHADOW}"'))
    shadow = await conn.execution_options(schema_translate_map={SCHEMA: SHADOW})
    await shadow.run_sync(lambda sync: metadata.create_all(sync, tables=list(TABLES)))


async def _swap(conn: AsyncConnection) -> None:
    names = ", ".join(f'"{SCHEMA}"."{t.name}"' for t in TABLES)
    # The live consumer waits on this lock for the moment of the swap; its
    # next statement resolves the names to the new tables. A tenth of a
    # second for each table at most (``_swap_when_free`` tries again):
    # queued, the lock holds every reader of them up.
    await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT_MS}ms'"))
    await conn.execute(sa.text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
    await conn.execute(sa.text(f"DROP TABLE {names}"))
    for t in TABLES:
        await conn.execute(sa.text(f'ALTER TABLE "{SHADOW}"."{t.name}" SET SCHEMA "{SCHEMA}"'))
    await conn.execute(sa.text(f'DROP SCHEMA "{SHADOW}"'))


async def _swap_when_free(engine: AsyncEngine) -> None:
    """``_swap``, tried again while reporting's tables are held (55P03) or a deadlock chose it (40P01), for
    ``SWAP_PATIENCE_S``; then ``SwapBusy``, the shadow schema dropped."""
    deadline = time.monotonic() + SWAP_PATIENCE_S
    while True:
        try:
            async with engine.begin() as conn:
                await _swap(conn)
            return
        except sa.exc.DBAPIError as exc:
            if sqlstate(exc) not in ("55P03", "40P01"):
                raise
            if time.monotonic() >= deadline:
                await _drop_shadow(engine)
                raise SwapBusy() from None
        await asyncio.sleep(random.uniform(0.5, 1.5))  # apart from whatever else retries on the same beat


async def replay(settings: ServiceSettings, *, since: datetime | None = None, force: bool = False,
                 progress: Progress = lambda done, total: None) -> ReplayStats:
    """``force``: rebuild even from a stream that no longer starts at its first event (``refuse_truncated``), or
    that lacks leads the live tables hold (``LostHistory``)."""
    started = time.perf_counter()
    engine = make_engine(settings)
    try:
        if since is not None:
            async with TopicScan(settings, SOURCES, since=since) as scan:
                done, skipped = await _apply_scan(engine, scan, SCHEMA, progress, 0)
            cut = truncated_since(since, [(tp.topic, at) for tp, at in scan.first_held.items()])
            return ReplayStats(done, skipped, 0, time.perf_counter() - started, cut)
        # A transaction's lock, held open for the whole rebuild, not a session's: behind a pooler in transaction
        # mode (PgBouncer) a session's lock stays with whichever server connection took it, and its unlock may
        # run on another. Under READ COMMITTED the open transaction holds no snapshot while it waits.
        async with engine.connect() as held:
            locked = (await held.execute(sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
                                         {"key": LOCK_KEY})).scalar_one()
            try:
                if not locked:
                    raise ReplayBusy()
                return await _rebuild(engine, settings, force, progress, started, held)
            finally:
                # Ending the transaction lets the lock go; a connection lost meanwhile took it with it, and the
                # error that ended the replay is the one to tell.
                with contextlib.suppress(Exception):
                    await held.rollback()
    finally:
        await engine.dispose()


async def _rebuild(engine: AsyncEngine, settings: ServiceSettings, force: bool, progress: Progress,
                   started: float, held: AsyncConnection) -> ReplayStats:
    """The full replay, the advisory lock held by ``held``'s open transaction."""
    # Before the scan looks for the log's end: all the live service applies after it, the catch-up applies.
    scanned_at = datetime.now(UTC).replace(microsecond=0)
    async with TopicScan(settings, SOURCES, since=None) as scan:
        if not force:
            refuse_truncated(scan.starts)
        async with engine.begin() as conn:
            await _create_shadow(conn)
        try:
            done, skipped = await _apply_scan(engine, scan, SHADOW, progress, 0, held)
        except LockLost:
            await _drop_shadow(engine)
            raise
        if not force:
            async with engine.connect() as conn:
                lost, earliest = await missing_from(conn, SCHEMA, SHADOW, scanned_at - CLOCK_MARGIN)
            if lost:
                await _drop_shadow(engine)
                raise LostHistory(lost, earliest or scanned_at)
        try:
            await _still_held(held)  # a lock lost while it rebuilt: another replay or a migrate may be under way
        except LockLost:
            await _drop_shadow(engine)
            raise
        await _swap_when_free(engine)
        try:
            # What the live service applied to the old tables while we rebuilt.
            caught_up = await scan.extend()
            done, more = await _apply_scan(engine, scan, SCHEMA, progress, done)
        except (Exception, asyncio.CancelledError) as exc:  # Ctrl-C too: the --since to run is to be said
            raise CatchUpFailed(scanned_at - CLOCK_MARGIN) from exc
    return ReplayStats(done - caught_up, skipped + more, caught_up, time.perf_counter() - started)
