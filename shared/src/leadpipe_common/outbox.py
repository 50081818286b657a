"""The transactional outbox, for events born outside the consumer runner (HTTP calls, timers).

Guarantees:
- ``add`` writes messages in the caller's transaction: they exist exactly
  when the state change that caused them is committed.
- The relay claims rows with ``FOR UPDATE SKIP LOCKED`` (several processes
  never publish the same row at once), produces them in ``seq`` order and
  deletes them in the same transaction only after the broker acknowledged
  every one. A service whose own table is its outbox (capture's leads) gives
  the relay its own ``Claim`` with the same promise. A crash in between publishes them again: consumers de-duplicate
  by event id, which is why callers derive ids from the cause.
- Order holds within one relay batch; two processes relaying at once may
  interleave, so consumers must not rely on order across an outbox.
- A failing broker or database is retried with capped backoff and jitter;
  nothing is dropped. A CancelledError raised inside a round (not a
  cancellation of the loop itself) is retried like a failure, never the
  end of the loop without a word. Every background loop's failing round is
  logged and counted in ``leadpipe_background_failures_total{loop}``, and
  fails the service's ``/readyz`` only if the loop is ``essential``.
- ``wake`` cuts the idle wait so an HTTP caller's event leaves at once, or
  after the relay's linger (``<SERVICE>_OUTBOX_LINGER_MS``), which lets one round carry every
  write of those few milliseconds. With ``<SERVICE>_OUTBOX_ROUND_TARGET`` the linger is paced to the
  load: about as long as that many messages take to arrive at the recent rate, never longer than the
  linger, so a round's fixed cost is spread over about as many messages whatever the rate, and the
  faster they come the sooner each leaves; when not one more is expected within the linger, none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg
import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from leadpipe_common.db import error_text, insert_rows, json_value, raw_transaction, table_name
from leadpipe_common.envelope import Message
from leadpipe_common.pacing import Linger
from leadpipe_common.producer import Producer
from leadpipe_common.retry import backoff

log = structlog.get_logger(__name__)

RELAYED = Counter("leadpipe_outbox_relayed_total", "Messages published from an outbox", ["outbox"])
FAILURES = Counter("leadpipe_outbox_failures_total", "Outbox relay rounds that failed and will be retried", ["outbox"])
LOOP_FAILURES = Counter("leadpipe_background_failures_total", "Background loop rounds that failed and will be retried",
                        ["loop"])


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


async def add(session: AsyncSession, table: sa.Table, messages: Iterable[Message]) -> None:
    """``messages`` into the outbox in ``session``'s transaction, their ``seq`` in the order given."""
    await insert_rows(session, table, [{"message": m.to_json()} for m in messages])


class BackgroundLoop:
    """Runs ``step`` until stopped: again at once while it has a full batch, else after ``idle_s``.

    A failing step is retried with capped exponential backoff and jitter, and
    logged and counted; a ``wake()`` cuts the idle wait short.
    """

    name = "loop"
    #: Whether the service cannot do its work while this loop fails, so its ``/readyz`` fails with it. False for
    #: housekeeping (clearing what has aged out): while it fails the service still does its work, and taking it
    #: out of service would stop that too, so the failure shows only in the log and the counter.
    essential = True

    def __init__(self, *, batch_max: int, idle_s: float, wake: asyncio.Event | None = None,
                 linger_s: float = 0.0, round_target: int = 0) -> None:
        """``wake``: an event other components set to cut the idle wait (one is made if not given);
        ``linger_s``: once woken, how long to wait at most for more work to do in the same round;
        ``round_target``: items a round should hold, the linger paced to them (0: always ``linger_s``)."""
        self._batch_max = batch_max
        self._idle_s = idle_s
        self._linger = Linger(linger_s, round_target)
        self._wake = wake or asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    async def step(self) -> int:
        """Do one round of work; the number of items handled."""
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """``stop`` was called: the loop runs rounds until one does nothing, then returns."""
        return self._stopping.is_set()

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
                if self._linger.target:
                    self.note_round(done, time.monotonic())
                failures = 0
                self.failing = False
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # this loop is being cancelled (stop's last resort)
                    # Otherwise raised inside the round (a client library's own cancellation): letting it
                    # end the loop would leave its work undone without a word.
                failures += 1
                self.failing = True
                LOOP_FAILURES.labels(self.name).inc()
                delay = backoff(failures - 1, cap=10.0)
                log.warning(f"{self.name} failed; will retry", error=error_text(exc), retry_in_s=round(delay, 2))
                self.on_failure()
                if self._stopping.is_set():
                    return
                # Only a stop cuts a failure's wait short: a wake (every capture write round wakes its relay)
                # would otherwise retry a broker or database that is away once per request.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                if self._stopping.is_set():
                    return
                continue
            if self._stopping.is_set() and done == 0:
                return
            if self._stopping.is_set():
                continue  # no waiting: one more round takes what is left, then it returns
            if done < self._batch_max and await self._sleep(self._idle_s) and (linger := self.linger_s()):
                await asyncio.sleep(linger)
                # What woke it during the linger is in the coming round: no second round for it.
                self._wake.clear()

    def note_round(self, done: int, now: float) -> None:
        """A round handled ``done`` items at ``now`` (monotonic seconds): the rate its linger is paced to."""
        self._linger.note(done, now)

    def linger_s(self) -> float:
        """How long a woken round waits for more (``pacing.Linger``)."""
        return self._linger.seconds()

    def on_failure(self) -> None:
        pass

    async def _sleep(self, seconds: float) -> bool:
        """Whether a ``wake()`` (rather than the time running out) ended the wait."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
            woken = not self._stopping.is_set()
        except TimeoutError:
            woken = False
        self._wake.clear()
        return woken


#: Claims up to ``limit`` messages to publish, in the caller's transaction on its asyncpg connection (locked,
#: or already marked): they count as sent only if that transaction commits, which the relay does after every
#: ack. A claim is one statement where it can be: at moderate load a round carries a few messages, and each
#: statement through SQLAlchemy cost ~0.3 ms of Python.
Claim = Callable[[asyncpg.Connection, int], Awaitable[list[Message]]]


def claim_sql(table: sa.Table) -> str:
    """The statement that claims (deletes on commit) up to ``$1`` of the oldest rows of an outbox table made by
    :func:`outbox_table`, returning ``seq`` and ``message``; rows another relay holds are skipped."""
    name = table_name(table)
    return (f"DELETE FROM {name} WHERE seq IN (SELECT seq FROM {name} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) "
            "RETURNING seq, message")


def table_claim(table: sa.Table) -> Claim:
    """The claim of an outbox table made by :func:`outbox_table`: oldest rows first, deleted on commit."""
    sql = claim_sql(table)

    async def claim(conn: asyncpg.Connection, limit: int) -> list[Message]:
        rows = sorted(await conn.fetch(sql, limit), key=lambda r: r["seq"])
        return [Message.from_json(json_value(r["message"])) for r in rows]

    return claim


class OutboxRelay(BackgroundLoop):
    """Publishes what ``claim`` hands it and commits the claim only after the broker acknowledged all of it."""

    def __init__(self, engine: AsyncEngine, producer: Producer, claim: Claim, *, name: str,
                 batch_max: int = 500, idle_s: float = 1.0, linger_s: float = 0.0, round_target: int = 0) -> None:
        super().__init__(batch_max=batch_max, idle_s=idle_s, linger_s=linger_s, round_target=round_target)
        self.name = f"{name}-outbox-relay"
        self._outbox = name
        self._engine = engine
        self._producer = producer
        self._claim = claim

    def on_failure(self) -> None:
        FAILURES.labels(self._outbox).inc()

    async def step(self) -> int:
        if not self._producer.started:
            await self._producer.start()
        async with raw_transaction(self._engine) as conn:
            messages = await self._claim(conn, self._batch_max)
            # The claim commits only after every message is acknowledged.
            await self._producer.send_all(messages)
        RELAYED.labels(self._outbox).inc(len(messages))
        return len(messages)
