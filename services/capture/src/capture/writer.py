"""The group-commit writer: every request waiting at one moment shares one transaction.

Guarantees: ``write`` returns only once its lead's row is committed (the
request may then answer 2xx: the lead is durable), or raises, and nothing is
half-written; ``stop`` first finishes the requests already queued.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from capture.store import leads

log = structlog.get_logger(__name__)

WRITE_BATCH = Histogram("capture_write_batch_size", "Leads committed per transaction",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))


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
