"""The transactional outbox, for events born outside the consumer runner (HTTP calls, timers).

Guarantees:
- ``add`` writes messages in the caller's transaction: they exist exactly
  when the state change that caused them is committed.
- The relay claims rows with ``FOR UPDATE SKIP LOCKED`` (several processes
  never publish the same row at once), produces them in ``seq`` order and
  deletes them in the same transaction only after the broker acknowledged
  every one. A crash in between publishes them again: consumers de-duplicate
  by event id, which is why callers derive ids from the cause.
- Order holds within one relay batch; two processes relaying at once may
  interleave, so consumers must not rely on order across an outbox.
- A failing broker or database is retried with capped backoff and jitter;
  nothing is dropped. ``wake`` cuts the idle wait so an HTTP caller's event leaves at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from leadpipe_common.envelope import Message
from leadpipe_common.producer import Producer
from leadpipe_common.retry import backoff

log = structlog.get_logger(__name__)

RELAYED = Counter("leadpipe_outbox_relayed_total", "Messages published from an outbox", ["outbox"])
FAILURES = Counter("leadpipe_outbox_failures_total", "Outbox relay rounds that failed and will be retried", ["outbox"])


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


async def add(session: AsyncSession, table: sa.Table, messages: Iterable[Message]) -> None:
    rows = [{"message": m.to_json()} for m in messages]
    if rows:
        await session.execute(table.insert(), rows)


class BackgroundLoop:
    """Runs ``step`` until stopped: again at once while it has a full batch, else after ``idle_s``.

    A failing step is retried with capped exponential backoff and jitter, and
    logged; a ``wake()`` cuts the idle wait short.
    """

    name = "loop"

    def __init__(self, *, batch_max: int, idle_s: float, wake: asyncio.Event | None = None) -> None:
        """``wake``: an event other components set to cut the idle wait (one is made if not given)."""
        self._batch_max = batch_max
        self._idle_s = idle_s
        self._wake = wake or asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    async def step(self) -> int:
        """Do one round of work; the number of items handled."""
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout=8)
            except TimeoutError:
                self._task.cancel()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                done = await self.step()
                failures = 0
                self.failing = False
            except Exception as exc:
                failures += 1
                self.failing = True
                delay = backoff(failures - 1, cap=10.0)
                log.warning(f"{self.name} failed; will retry", error=repr(exc), retry_in_s=round(delay, 2))
                self.on_failure()
                if self._stopping.is_set():
                    return
                await self._sleep(delay)
                continue
            if self._stopping.is_set() and done == 0:
                return
            if done < self._batch_max:
                await self._sleep(self._idle_s)

    def on_failure(self) -> None:
        pass

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()


class OutboxRelay(BackgroundLoop):
    def __init__(self, engine: AsyncEngine, producer: Producer, table: sa.Table, *,
                 batch_max: int = 500, idle_s: float = 1.0) -> None:
        super().__init__(batch_max=batch_max, idle_s=idle_s)
        self.name = f"{table.schema}-outbox-relay"
        self._engine = engine
        self._producer = producer
        self._table = table
        claimed = sa.select(table.c.seq).order_by(table.c.seq).limit(sa.bindparam("limit")).with_for_update(
            skip_locked=True
        )
        self._claim = table.delete().where(table.c.seq.in_(claimed.scalar_subquery())).returning(
            table.c.seq, table.c.message
        )

    def on_failure(self) -> None:
        FAILURES.labels(self._table.schema).inc()

    async def step(self) -> int:
        if not self._producer.started:
            await self._producer.start()
        async with self._engine.begin() as conn:
            rows = sorted((await conn.execute(self._claim, {"limit": self._batch_max})).all(), key=lambda r: r.seq)
            # The delete commits only after every message is acknowledged.
            await self._producer.send_all(Message.from_json(r.message) for r in rows)
        RELAYED.labels(self._table.schema).inc(len(rows))
        return len(rows)
