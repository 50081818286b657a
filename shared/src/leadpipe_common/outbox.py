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
- A message the relay can never send (over the producer's
  ``MAX_REQUEST_SIZE``, refused by the broker as too large for a topic whose
  limit is lower, or one its claim cannot build from what its row stores:
  ``Unbuildable``, a stored lead that no longer validates) is set aside, not
  claimed again every round with every row behind it waiting: once the rest
  of the claim is sent it goes to ``leads.deadletter`` as the consumer
  runner's letters do (``consumer.dead_letter``: its key, value and headers,
  ``dlq.error.kind`` ``rejected``, or ``schema`` for one not built,
  ``dlq.source.topic`` where it was going, ``dlq.source.outbox`` the
  service; a lead's ``deadlettered`` step announced), is logged and counted
  (``leadpipe_outbox_set_aside_total{outbox,kind}``), and its row goes with
  the claim once the letter is acknowledged. ``leadpipe-redrive`` sends it on
  once the cause is fixed. A letter goes without the message's value (as the
  runner's do when too big) only where what it was built from is kept
  (``keeps``): capture's leads and touches are marked published, not
  deleted, and keep their event; its quarantine table keeps each submission
  its outbox announces (for ``CAPTURE_QUARANTINE_KEEP_DAYS``). A row the
  claim deletes is not set aside so, for it would be lost: its round fails (``Unsendable``, logged) until ``leads.deadletter``
  takes the letter whole (a topic's lower limit raised), or, for a message
  over the producer's own limit, which no letter of it fits either, before
  anything of the round is sent, until the limit is raised or the code that
  wrote it is fixed.
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from leadpipe_common import topics
from leadpipe_common.db import error_text, insert_rows, json_value, raw_transaction, table_name
from leadpipe_common.envelope import Message
from leadpipe_common.pacing import Linger
from leadpipe_common.producer import MAX_REQUEST_SIZE, Producer, message_size
from leadpipe_common.retry import backoff

log = structlog.get_logger(__name__)

RELAYED = Counter("leadpipe_outbox_relayed_total", "Messages published from an outbox", ["outbox"])
FAILURES = Counter("leadpipe_outbox_failures_total", "Outbox relay rounds that failed and will be retried", ["outbox"])
SET_ASIDE = Counter("leadpipe_outbox_set_aside_total",
                    "Messages an outbox relay can never send, put on the dead-letter topic in their place",
                    ["outbox", "kind"])
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


def unsent_of_leads(table: sa.Table, topic: str) -> sa.Delete:
    """The DELETE of ``table``'s unsent messages to ``topic`` keyed by the leads in ``:keys`` (their ids as text, the
    record key every lead's event carries), in one statement. An erasure runs it in its transaction for the topic
    whose messages hold the whole lead (a reassignment's ``lead.routed``, a re-score's ``lead.scored``): the relay, a
    path apart from the consumer's, could send one after the lead's ``lead.erased``. The lead's lifecycle events
    (a disposition, a won amount, a merge) hold no one and are sales' record: they stay, to be sent. A row the relay
    has claimed is locked: the erasure waits for it to be sent and deleted."""
    return table.delete().where(
        table.c.message["topic"].as_string() == topic,
        table.c.message["key"].as_string() == sa.any_(sa.bindparam("keys", type_=postgresql.ARRAY(sa.Text))))


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


@dataclass(frozen=True)
class Unbuildable:
    """A claimed row no message can be built from (what it stores no longer validates against the model, say):
    the relay sets it aside as a dead letter of kind ``schema`` holding ``stored``, the message it was to be as far
    as the row tells (its value the row's bytes as stored), with ``error``, why it cannot be built."""

    stored: Message
    error: str


#: Claims up to ``limit`` rows to publish, in the caller's transaction on its asyncpg connection (locked, or
#: already marked), and hands out their messages (or, for a row none can be built from, an ``Unbuildable``): they
#: count as sent only if that transaction commits, which the relay does after every ack. A claim is one statement
#: where it can be: at moderate load a round carries a few messages, and each statement through SQLAlchemy cost
#: ~0.3 ms of Python.
Claim = Callable[[asyncpg.Connection, int], Awaitable[list[Message | Unbuildable]]]


def claim_sql(table: sa.Table) -> str:
    """The statement that claims (deletes on commit) up to ``$1`` of the oldest rows of an outbox table made by
    :func:`outbox_table`, returning ``seq`` and ``message``; rows another relay holds are skipped."""
    name = table_name(table)
    return (f"DELETE FROM {name} WHERE seq IN (SELECT seq FROM {name} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) "
            "RETURNING seq, message")


def table_claim(table: sa.Table) -> Claim:
    """The claim of an outbox table made by :func:`outbox_table`: oldest rows first, deleted on commit."""
    sql = claim_sql(table)

    async def claim(conn: asyncpg.Connection, limit: int) -> list[Message | Unbuildable]:
        rows = sorted(await conn.fetch(sql, limit), key=lambda r: r["seq"])
        return [Message.from_json(json_value(r["message"])) for r in rows]

    return claim


class Unsendable(Exception):
    """A message the relay can never send, whose dead letter cannot carry it whole either, from an outbox whose
    rows go with the claim: set aside, it would be lost, so its round fails until the dead-letter topic takes it."""


def _too_large(message: Message, size: int) -> str:
    what = f"{message.header('ce_type') or 'a message'} of {size} bytes"
    if size > MAX_REQUEST_SIZE:
        return f"{what} is over the produce limit of {MAX_REQUEST_SIZE} bytes"
    return f"{what} is over {message.topic}'s limit: the broker refused it as too large"


class OutboxRelay(BackgroundLoop):
    """Publishes what ``claim`` hands it and commits the claim only after the broker acknowledged all of it, or a
    dead letter in place of each message it can never send.

    ``keeps``: the claim's rows outlive it (capture's leads and touches are marked published, not deleted, and
    keep their event), so a message may be set aside with a letter that cannot carry it whole."""

    def __init__(self, engine: AsyncEngine, producer: Producer, claim: Claim, *, name: str,
                 batch_max: int = 500, idle_s: float = 1.0, linger_s: float = 0.0, round_target: int = 0,
                 keeps: bool = False, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(batch_max=batch_max, idle_s=idle_s, linger_s=linger_s, round_target=round_target)
        self.name = f"{name}-outbox-relay"
        self._outbox = name
        self._engine = engine
        self._producer = producer
        self._claim = claim
        self._keeps = keeps
        self._clock = clock

    def on_failure(self) -> None:
        FAILURES.labels(self._outbox).inc()

    async def step(self) -> int:
        if not self._producer.started:
            await self._producer.start()
        async with raw_transaction(self._engine) as conn:
            claimed = await self._claim(conn, self._batch_max)
            # The claim commits only after every message (or its letter) is acknowledged.
            sent = await self.publish(claimed)
        RELAYED.labels(self._outbox).inc(sent)
        return len(claimed)

    async def publish(self, claimed: Sequence[Message | Unbuildable]) -> int:
        """Send ``claimed`` in its order, each message acknowledged, or set aside: one over the producer's limit,
        one the broker refuses as too large (a topic's limit below the producer's), and one that cannot be built
        would stop the relay for good, its claim rolled back and the same oldest rows claimed again every round,
        every row behind them waiting. Each goes to the dead-letter topic (``set_aside``) once the others are
        sent. Returns how many went to their topics."""
        messages = [c for c in claimed if isinstance(c, Message)]
        aside = [(c.stored, "schema", c.error) for c in claimed if isinstance(c, Unbuildable)]
        try:
            sent = await self._producer.send_all(messages)
        except MessageSizeTooLargeError:
            sent, refused = await self._send_apart(messages)
            aside += refused
        for message, kind, why in aside:
            await self.set_aside(message, kind, why)
        return sent

    async def _send_apart(self, messages: list[Message]) -> tuple[int, list[tuple[Message, str, str]]]:
        """After a round refused as too large: those over the producer's limit are set aside and the others sent
        together; refused again (a topic's lower limit), each alone, in order, and those refused alone set aside.
        What went in before a refusal goes again: absorbed downstream as any re-publication."""
        refused: list[tuple[Message, str, str]] = []
        fitting: list[Message] = []
        for m in messages:
            if (size := message_size(m)) > MAX_REQUEST_SIZE:
                refused.append((m, "rejected", _too_large(m, size)))
            else:
                fitting.append(m)
        if refused and not self._keeps:
            # Its letter, the message and more, is over the same limit: it can never be set aside whole, and a
            # row the claim deletes must not go without it. Failed before anything is sent, the round does not
            # send the rest again every time it is retried.
            message, _, why = refused[0]
            raise Unsendable(f"{message.header('ce_type')} {message.header('ce_id')} for {message.topic}: {why}, "
                             f"and so is any letter of it; it stays in {self._outbox}'s outbox, the rows behind it "
                             "waiting, until the producer's limit is raised or the code that wrote it is fixed")
        if refused:
            with contextlib.suppress(MessageSizeTooLargeError):
                return await self._producer.send_all(fitting), refused
        sent = 0
        for m in fitting:
            try:
                sent += await self._producer.send_all([m])
            except MessageSizeTooLargeError:
                refused.append((m, "rejected", _too_large(m, message_size(m))))
        return sent, refused

    async def set_aside(self, message: Message, kind: str, why: str) -> None:
        """``message`` on the dead-letter topic in place of its own (see ``consumer.dead_letter``): its key, value
        and headers, the ``dlq.*`` headers naming this outbox, the kind and ``why``; a lead's letter announced on
        the lifecycle as its ``deadlettered`` step. A letter the broker refuses as too large goes smaller
        (``consumer.smaller_letters``), if the claim's rows keep the message (``keeps``); else ``Unsendable``."""
        # Imported here: the runner imports the unit of work, which imports this module.
        from leadpipe_common.consumer import dead_letter, smaller_letters

        letter, *announcement = dead_letter(
            record_topic=message.topic, partition=None, offset=None, key=message.key, value=message.value,
            headers=message.headers, kind=kind, error=why, stage=self._outbox, at=self._clock(), outbox=self._outbox)
        for form in (letter, *smaller_letters(letter)):
            whole = form.header("dlq.value.dropped") is None
            if not whole and not self._keeps:
                break
            try:
                await self._producer.send_all([form, *announcement])
            except MessageSizeTooLargeError:
                continue
            SET_ASIDE.labels(self._outbox, kind).inc()
            log.error("a message the outbox relay can never send is set aside on the dead-letter topic",
                      outbox=self._outbox, kind=kind, reason=why, topic=message.topic,
                      event_type=message.header("ce_type"), event_id=message.header("ce_id"),
                      lead_id=(message.key or b"")[:100].decode(errors="replace"), whole=whole)
            return
        raise Unsendable(f"{message.header('ce_type')} {message.header('ce_id')} for {message.topic}: {why}; and "
                         f"{topics.DEADLETTER} takes no letter of it that keeps it (its limit is lower, or the "
                         f"producer's is), so it stays in {self._outbox}'s outbox, the rows behind it waiting")
