"""capture's table, the group-commit writer, the relay's claim and the re-driver.

The ``leads`` table is its own transactional outbox: a lead is durable once
its row is committed, and only then does the HTTP request get its 202. A row
with ``published_at`` unset is a lead whose events (``lead.captured`` and its
first lifecycle step) are not yet acknowledged by the broker. The shared
outbox relay claims such rows (``claim_unpublished``: ``FOR UPDATE SKIP
LOCKED``, so several relays share the work), publishes, and commits
``published_at`` only after every ack: a crash in between re-publishes the
same event ids (absorbed downstream), never loses.
While the broker is away rows simply wait and capture keeps accepting.
Re-driving a lead is clearing its ``published_at``: the ``Redriver`` does so
for every lead that has no terminal outcome (learnt from ``leads.lifecycle``)
some time after it was published, which recovers leads a broker lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from leadpipe_common.outbox import BackgroundLoop

log = structlog.get_logger(__name__)

SCHEMA = "capture"
metadata = sa.MetaData(schema=SCHEMA)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    # The cause of the lead's events (the accepted request); their ids derive from it.
    sa.Column("request_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("traceparent", sa.Text, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    # Learnt from leads.lifecycle: where the pipeline's part ended for this lead.
    sa.Column("terminal_stage", sa.Text),
    sa.Column("terminal_at", sa.DateTime(timezone=True)),
    sa.Column("redrives", sa.Integer, nullable=False, server_default="0"),
)

WRITE_BATCH = Histogram("capture_write_batch_size", "Leads committed per transaction",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
REDRIVEN = Counter("capture_leads_redriven_total", "Leads re-published because no terminal outcome arrived in time")
STUCK = Gauge("capture_leads_stuck", "Leads past the re-drive deadline without a terminal outcome, at the last check")
REDRIVE_BATCH = 1000
GIVEN_UP = Gauge("capture_leads_redrive_exhausted", "Stuck leads re-driven the maximum number of times")


@dataclass(frozen=True)
class NewLead:
    lead_id: uuid.UUID
    request_id: uuid.UUID
    email: str
    form_id: str | None
    captured_at: datetime
    traceparent: str
    event: bytes  # the lead.captured JSON, from which the relay builds the very same events every time


class LeadWriter:
    """Commits leads in groups: one transaction for every request waiting at that moment.

    A failed commit fails its requests (they answer 503); it does not make capture unready.
    """

    name = "capture-writer"
    failing = False

    def __init__(self, engine: AsyncEngine, max_batch: int, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[NewLead, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="capture-writer")

    async def stop(self) -> None:
        # Requests already queued were promised an answer: finish them first.
        await self._queue.join()
        if self._task:
            self._task.cancel()

    async def write(self, lead: NewLead) -> None:
        """Return once ``lead`` is committed; raise if it could not be."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((lead, done))
        await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(leads.insert(), [vars(new) for new, _ in batch])
            except Exception as exc:
                log.warning("lead write failed", error=repr(exc), leads=len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                WRITE_BATCH.observe(len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
                self._on_commit()
            finally:
                for _ in batch:
                    self._queue.task_done()


_CLAIM = sa.text(
    f"""
    UPDATE {SCHEMA}.leads SET published_at = now()
    WHERE lead_id IN (
        SELECT lead_id FROM {SCHEMA}.leads WHERE published_at IS NULL
        ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING seq, request_id, captured_at, traceparent, event
    """
)


@dataclass(frozen=True)
class Unpublished:
    seq: int
    request_id: uuid.UUID
    captured_at: datetime
    traceparent: str
    event: bytes


async def claim_unpublished(conn: AsyncConnection, limit: int) -> list[Unpublished]:
    """Leads whose events are not yet acknowledged, oldest first, marked published in ``conn``'s transaction."""
    rows = (await conn.execute(_CLAIM, {"limit": limit})).all()
    return [Unpublished(*r) for r in sorted(rows, key=lambda r: r.seq)]


class CaptureStore:
    """What capture's lifecycle follower writes, on one unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record_outcomes(self, outcomes: Sequence[dict[str, Any]]) -> None:
        await record_outcomes(self._session, outcomes)


async def record_outcomes(conn: AsyncConnection | AsyncSession, outcomes: Sequence[dict[str, Any]]) -> None:
    """Note each lead's terminal stage. A real outcome replaces ``deadlettered`` (the record was
    redriven after a fix); nothing replaces a real outcome."""
    if not outcomes:
        return
    await conn.execute(
        leads.update()
        .where(leads.c.lead_id == sa.bindparam("b_lead_id"))
        .where(sa.or_(
            leads.c.terminal_stage.is_(None),
            sa.and_(leads.c.terminal_stage == "deadlettered", sa.bindparam("b_stage") != "deadlettered"),
        ))
        .values(terminal_stage=sa.bindparam("b_stage"), terminal_at=sa.bindparam("b_at")),
        list(outcomes),
    )


_REDRIVE = sa.text(
    f"""
    UPDATE {SCHEMA}.leads SET published_at = NULL, redrives = redrives + 1
    WHERE lead_id IN (
        SELECT lead_id FROM {SCHEMA}.leads
        WHERE terminal_stage IS NULL AND redrives < :max_redrives
          -- each further try waits twice as long (capped at an hour), so a long
          -- outage does not use up a lead's tries while nothing can succeed
          AND published_at < now() - make_interval(secs => least(:after * power(:backoff, redrives), 3600))
        ORDER BY seq LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    RETURNING lead_id
    """
)
_STUCK = sa.text(
    f"""
    SELECT count(*) AS stuck, count(*) FILTER (WHERE redrives >= :max_redrives) AS exhausted
    FROM {SCHEMA}.leads
    WHERE terminal_stage IS NULL AND published_at < now() - make_interval(secs => :after)
    """
)


class Redriver(BackgroundLoop):
    """Re-publishes leads that reached no terminal outcome within ``after_s`` of being published.

    The n-th re-drive of a lead waits ``after_s * backoff**n`` (at most an hour).

    Safe because every stage is idempotent and re-emits the outputs it stored:
    a lead that was merely slow is applied nowhere twice. A lead re-driven
    ``max_redrives`` times is left alone and counted, for a human to look at.
    """

    name = "capture-redriver"

    def __init__(self, engine: AsyncEngine, *, after_s: float, every_s: float, max_redrives: int,
                 on_redrive: Callable[[], None], backoff: float = 2.0) -> None:
        super().__init__(batch_max=REDRIVE_BATCH, idle_s=every_s)
        self._engine = engine
        self._after_s = after_s
        self._max = max_redrives
        self._backoff = backoff
        self._on_redrive = on_redrive

    async def step(self) -> int:
        params = {"after": self._after_s, "max_redrives": self._max}
        async with self._engine.begin() as conn:
            redriven = (await conn.execute(_REDRIVE, {**params, "backoff": self._backoff, "batch": REDRIVE_BATCH})).all()
            counts = (await conn.execute(_STUCK, params)).one()
        STUCK.set(counts.stuck)
        GIVEN_UP.set(counts.exhausted)
        if redriven:
            REDRIVEN.inc(len(redriven))
            log.warning("re-driving leads with no terminal outcome", leads=len(redriven), after_s=self._after_s)
            self._on_redrive()
        return len(redriven)
