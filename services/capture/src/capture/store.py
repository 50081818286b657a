"""capture's tables, the group-commit writer and the outbox relay.

A lead is durable when its row and its outbox rows are committed together;
only then does the HTTP request get its 202. The relay publishes outbox rows
and deletes them in the same transaction, after the broker acknowledged them:
a crash in between re-publishes (same event ids, absorbed downstream), never
loses. While the broker is away rows wait in the outbox and capture keeps
accepting.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadpipe_common.envelope import Message
from leadpipe_common.producer import Producer

log = structlog.get_logger(__name__)

SCHEMA = "capture"
metadata = sa.MetaData(schema=SCHEMA)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", JSONB, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("message", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

WRITE_BATCH = Histogram("capture_write_batch_size", "Leads committed per transaction",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
RELAYED = Counter("capture_outbox_relayed_total", "Outbox messages published and removed")
RELAY_FAILURES = Counter("capture_outbox_relay_failures_total", "Relay rounds that failed and will retry")


@dataclass(frozen=True)
class NewLead:
    lead_id: uuid.UUID
    event_id: uuid.UUID
    email: str
    form_id: str | None
    captured_at: datetime
    data: dict[str, Any]  # the lead.captured JSON, kept to re-drive the very same event
    messages: tuple[Message, ...]


class LeadWriter:
    """Commits leads in groups: one transaction for every request waiting at that moment."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_batch: int, committed: asyncio.Event) -> None:
        self._sessionmaker = sessionmaker
        self._max_batch = max_batch
        self._committed = committed
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
                await self._commit([lead for lead, _ in batch])
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
                self._committed.set()
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[NewLead]) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                leads.insert(),
                [
                    {"lead_id": n.lead_id, "event_id": n.event_id, "email": n.email, "form_id": n.form_id,
                     "captured_at": n.captured_at, "data": n.data}
                    for n in batch
                ],
            )
            await session.execute(outbox.insert(), [{"message": m.to_json()} for n in batch for m in n.messages])


_CLAIM = sa.text(
    f"""
    DELETE FROM {SCHEMA}.outbox
    WHERE id IN (SELECT id FROM {SCHEMA}.outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, message
    """
)


class OutboxRelay:
    """Publishes the outbox in commit order; several relays (workers) share it via SKIP LOCKED."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], producer: Producer,
                 batch_max: int, idle_s: float, wake: asyncio.Event) -> None:
        self._sessionmaker = sessionmaker
        self._producer = producer
        self._batch_max = batch_max
        self._idle_s = idle_s
        self._wake = wake
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.broker_ok = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="capture-outbox-relay")

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
                if not self._producer.started:
                    await self._producer.start()
                relayed = await self.relay_once()
                self.broker_ok = True
                failures = 0
            except Exception as exc:
                self.broker_ok = False
                RELAY_FAILURES.inc()
                failures += 1
                delay = min(10.0, 0.1 * 2**failures)
                log.warning("outbox relay failed; leads wait in the outbox", error=repr(exc), retry_in_s=delay)
                await self._sleep(delay)
                continue
            if self._stopping.is_set() and relayed == 0:
                return
            if relayed < self._batch_max:
                await self._sleep(self._idle_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def relay_once(self) -> int:
        async with self._sessionmaker() as session, session.begin():
            rows = (await session.execute(_CLAIM, {"limit": self._batch_max})).all()
            rows.sort(key=lambda r: r.id)
            # The delete commits only after every message is acknowledged.
            await self._producer.send_all(Message.from_json(r.message) for r in rows)
        RELAYED.inc(len(rows))
        return len(rows)
