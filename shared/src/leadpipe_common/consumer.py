"""The consumer runner: how every stage reads its input topic.

Guarantees, in the order they happen for each batch:
1. Records are fetched in batches (``getmany``); offsets are never committed
   automatically.
2. Each record is decoded. Bytes that are not a CloudEvent, or data that
   violates its schema (or anything else decoding raises: it would raise
   again on every retry), become a dead letter: the original key, value and
   headers on ``leads.deadletter`` plus ``dlq.*`` headers naming the error,
   the source topic, partition and offset, and the stage. A letter that
   would be over the produce limit goes without the original's value (then
   its headers, then its key), saying so in ``dlq.value.dropped`` (and
   ``dlq.headers.dropped``, ``dlq.key.dropped``); one the broker refuses as
   too large all the same (a topic's limit may be lower) is sent smaller so,
   and one it refuses even then is passed over, logged and counted
   (``leadpipe_consumer_deadletters_refused_total``). A dead letter from
   a stage's input (``topology.STAGE_INPUTS``) is also announced on the
   lifecycle as the lead's ``deadlettered`` step.
3. In one unit of work (``leadpipe_common.uow``: one database transaction):
   input ids already in the service's inbox are looked up, only new events
   reach the handlers, and each new event's outputs are stored in the inbox.
   A record from a topic written outside leadpipe (``topology.EXTERNAL_INPUTS``,
   whose producers may give one id to two records) is a redelivery only if its
   value's digest (``db.record_digest``: its JSON in one form) is the one the
   inbox keeps with its id, or, for an id the inbox lacks, the batch's first
   record's under it (or none is kept: ``db.redelivered``); another record
   under that id is not applied: it becomes a dead letter
   (kind ``reused_id``, final: redrive would only bring it back) naming the
   id, and is not recorded (the id is taken). No other topic's record is
   digested.
   An event the handler rejects becomes a dead letter (kind ``rejected``). A
   final rejection (``Rejected.final``: the verdict followed from the state
   the handler read, which later events change) is stored with its dead
   letter as its outputs, so a redelivered copy is answered with that same
   letter and never applied out of its place in the log (the letter says
   ``dlq.final``, and redrive leaves it); any other
   rejection is not stored, so that a redriven copy is applied once its cause
   is fixed. An event with an output too large to produce (over the
   producer's ``MAX_REQUEST_SIZE``, measured on the bytes its handler
   encoded) is such a rejection too, its reason the output's type and size:
   the unit of work is left uncommitted, which undoes its handler's writes,
   and done again without it, so a redriven copy is applied afresh once
   its output fits (the handler or the data fixed). Then it commits. A service without an inbox hands every event
   to its handlers, which must then be idempotent by construction: they return no outputs,
   and what they publish through their outbox carries ids derived from the
   event, so a redelivery publishes the same ids again (capture's merges).
   This step is :class:`BatchApplier`, which knows nothing of Kafka.
4. Every output of the batch (including the stored outputs of redelivered
   events) is produced and acknowledged by the broker. One refused as too
   large all the same (a topic's limit may be lower than the producer's;
   the batch is sent again in parts to find it) fails the batch, and the
   retry answers its input with such a rejection's letter instead of what it
   stored: its writes were committed with that output, so the inbox keeps
   both, and a redrive once the limit is raised sends it.
5. Only then may the offsets be committed, per partition, last offset + 1:
   at most every ``commit_interval_ms`` (a commit and its log-end check are
   two broker round trips; per batch they cost more than the batch at
   moderate load), and at ``stop``. What a crash or a rebalance leaves
   uncommitted is read again (by this process or the partition's next
   owner) and absorbed by the inbox, as after a crash between steps 4 and 5.

Once a backlog is worked off, the freed heap is handed back to the system
(``malloc_trim``): a process's memory after a burst is what it holds, not
what the burst once needed.

How long a fetch may wait is paced (:class:`FetchPacer`): while records
keep coming, paced to ``fetch_batch_target`` (on the embedded broker a
batch holds about half of it); while they trickle, ``fetch_max_wait_ms``;
once they stop, ``fetch_idle_wait_ms``. Pacing changes when batches are
cut, never what is applied or committed.

A partition assigned at a position beyond its log end (a broker that lost its
log, like the embedded one restarting, while a commit to it was in flight)
is read from its beginning instead, as Kafka's out-of-range reset would: the
embedded Tansu answers such fetches with nothing, for as long as the log is
shorter, and the records written since would wait unread. Beyond by any
margin: every commit (this runner's, redrive's) is clamped to the log end
the broker reports at the time, so a log that lost nothing never leaves a
position past it. The inbox absorbs what is read twice.

A failure in 3 or 4 (database or broker away; a CancelledError a library raises inside the batch, which is no
cancellation of the runner) is retried with capped
exponential backoff and jitter (``leadpipe_common.retry``); the batch is never skipped and no offset moves past an
unprocessed record; ``ready`` is false meanwhile (what an attempt says of its records, a rejection or a dead letter,
and the redeliveries it counts are said once its outputs are sent, by the attempt that got through: ``Notes``); so is a batch whose handler raises ``NotNow`` (it waits for
something outside it). A batch that fails ``POISON_AFTER`` times in a row with an error that may be about a
record (the database's word on a value: SQLSTATE classes 22 and 23; or an error of the handler's own code) is
then applied a record at a time, in log order: a record that fails alone so is dead-lettered (kind ``handler``,
not recorded in the inbox, so a redrive after the fix applies it), and the others are applied as ever. Any other
database error (a read-only standby, a missing table, no privilege) is retried however long. Errors are logged and
dead-lettered without the values bound to their statements or quoted back by Postgres (its DETAIL, a bad value in
its message: ``db.error_text``). A record the Kafka client cannot
read at all (a bad CRC, a codec, a header name that is not UTF-8) fails every fetch of every partition; after
``UNREADABLE_AFTER`` such fetches it is looked for partition by partition and passed over, the records before it
applied, with a dead letter (kind ``unreadable``) naming its topic, partition and offset and holding no bytes.
aiokafka reads a record batch whole, so the records after such a record in its batch cannot be read either: each
gets a letter of its own. On partition revocation the
runner finishes the batch in hand before giving partitions up, and commits
what it applied of them since its last commit (clamped to the log end as
in step 5): within ``REVOKE_COMMIT_S`` (2 s), a failure ignored, for the
rebalance waits for it; what it leaves is read again by the next owner. On
``stop`` it stops fetching (a poll waiting for records is cut short, and
none starts after a stop that came during a rewind, a check or a search),
finishes and commits the current batch, and leaves the group, each step
bounded in time (a wedged client after a broker loss must not hold up the
exit: 7 s for the batch, 2 s to leave the group).
An offset commit that takes longer than the session timeout is abandoned;
the batch is then redelivered and absorbed by the inbox. A CancelledError a
client library raises of its own (no cancellation of the runner) inside a
fetch, an offset commit or a rewind fails that step as the library's other
errors do (a fetch or a rewind is tried again, a commit abandoned): only
``stop`` ends the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (CommitFailedError, CorruptRecordException, IllegalStateError, InvalidMessageError,
                             KafkaError, MessageSizeTooLargeError, UnsupportedCodecError)
from sqlalchemy.exc import DBAPIError
from prometheus_client import Counter, Gauge, Histogram

from leadpipe_common import topics, topology
from leadpipe_common.db import error_text, is_unavailable, record_digest, redelivered, sqlstate
from leadpipe_common.envelope import DecodeError, Envelope, Message, child_traceparent, decode, encode
from leadpipe_common.events import Attribution, LeadStageChanged
from leadpipe_common.kafka import client_options
from leadpipe_common.logging import each
from leadpipe_common.pacing import Rate
from leadpipe_common.producer import MAX_REQUEST_SIZE, Producer, message_size
from leadpipe_common.retry import backoff
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.uow import Applied, UnitOfWork

log = structlog.get_logger(__name__)

RECORDS = Counter("leadpipe_consumer_records_total", "Records read from input topics", ["topic"])
REDELIVERED = Counter(
    "leadpipe_consumer_redelivered_total", "Input events already applied (answered from the inbox)"
)
DEADLETTERED = Counter("leadpipe_consumer_deadlettered_total", "Records sent to the dead-letter topic", ["kind"])
LETTERS_REFUSED = Counter(
    "leadpipe_consumer_deadletters_refused_total",
    "Dead letters the broker refused as too large even without the original's value, headers and key: the record "
    "is passed over, named only in the log", ["kind"],
)
OUTPUTS = Counter("leadpipe_consumer_outputs_total", "Messages produced by the runner")
RETRIES = Counter("leadpipe_consumer_retries_total", "Batches retried after a transient failure")
BATCH_SECONDS = Histogram("leadpipe_consumer_batch_seconds", "Time to apply and commit one batch")
CLAMPED = Counter(
    "leadpipe_consumer_commits_clamped_total",
    "Partition commits lowered to the broker's reported log end (data loss, or Tansu's short answer)",
)
COMMIT_FAILURES = Counter(
    "leadpipe_consumer_commit_failures_total",
    "Offset commits that did not happen (why: timeout, cancelled inside the client, refused by the group or the "
    "broker): what they covered is read again and absorbed by the inbox; many mean the lag gauge, which counts what "
    "was processed, not committed, understates what a restart reads again",
    ["why"],
)
FETCH_WAIT = Gauge("leadpipe_consumer_fetch_wait_ms", "How long the next fetch may wait (paced to the load)")
ASSIGNED = Gauge("leadpipe_consumer_assigned_partitions", "Partitions assigned to this process")
LAG = Gauge("leadpipe_consumer_lag_records",
            "Records of an assigned input partition not yet processed here (log end less the next offset)",
            ["topic", "partition"])
OLDEST = Gauge("leadpipe_consumer_oldest_unprocessed_age_seconds",
               "Age of the oldest record fetched and not yet committed (0 when caught up): how far behind")


@dataclass(frozen=True)
class Rejected:
    """A handler's verdict that an event can never be applied (goes to the dead-letter topic).

    ``final``: the verdict follows from the state the handler read (an illegal move for where the lead is
    now), not from a cause someone fixes (a bug, missing reference data). Later events move that state on, and
    a copy handled again might then pass: so the verdict is stored in the inbox with its dead letter, and a
    redelivery gets that letter again, byte for byte, as any event gets its stored outputs.
    """

    reason: str
    final: bool = False


class NotNow(Exception):
    """Raised by a handler: the batch must wait for something outside it (a setting, a key), so it is retried,
    however long, with the stage unready, and never taken for a poison record."""


Outcome = list[Message] | Rejected
#: A batch handler as the runner calls it: the unit of work in hand and the new events of one type in,
#: one outcome per event id out (an event left out is applied with no output).
BatchHandler = Callable[[UnitOfWork[Any], Sequence[Envelope]], Awaitable[Mapping[uuid.UUID, Outcome]]]


class Record(Protocol):
    """What the runner needs of a fetched record (aiokafka's ``ConsumerRecord`` is one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def dead_letter(
    *, record_topic: str, partition: int | None, offset: int | None, key: bytes | None, value: bytes | None,
    headers: Sequence[tuple[str, bytes]], kind: str, error: str, stage: str, at: datetime, final: bool = False,
    outbox: str | None = None,
) -> list[Message]:
    """The dead letter, and its lifecycle announcement when the key names a lead stalled by it.

    Only a dead letter from a pipeline stage's input stalls its lead; a refused
    sales disposition (``leads.feedback``) leaves the lead where it was. A
    ``final`` rejection's letter says so (``dlq.final``): redrive leaves it.
    A message an outbox relay can never send (``outbox``: the service whose
    outbox holds it) has no partition or offset: its letter names the outbox
    (``dlq.source.outbox``), and its announcement's id derives from its event id.
    """
    place = ((("dlq.source.partition", str(partition)), ("dlq.source.offset", str(offset))) if outbox is None
             else (("dlq.source.outbox", outbox),))
    extra = (
        *((("dlq.final", "true"),) if final else ()),
        ("dlq.error.kind", kind),
        ("dlq.error.message", error[:2000]),
        ("dlq.source.topic", record_topic),
        *place,
        ("dlq.stage", stage),
        ("dlq.at", at.isoformat()),
    )
    kept = tuple((k, v) for k, v in headers if not k.startswith("dlq."))
    whole = Message(topic=topics.DEADLETTER, key=key, value=value or b"",
                    headers=(*kept, *((k, v.encode()) for k, v in extra)))
    # A record the broker took may be too big to take again with the dlq.* headers added: a letter that can
    # never be produced would hold its batch (and partition) for ever.
    forms = (whole, *smaller_letters(whole))
    letter = next((form for form in forms if message_size(form) <= MAX_REQUEST_SIZE), forms[-1])
    if record_topic not in topology.STAGE_INPUTS:
        return [letter]
    try:
        lead_id = uuid.UUID((key or b"").decode())
    except (ValueError, UnicodeDecodeError):
        return [letter]
    # The record may have no usable id of its own: its position names it, so a redelivered poison record announces
    # itself with the same id; with its lead and its own id, when it has one: a log that starts again at offset 0
    # (make run's broker after a restart, Postgres kept) put another lead's record at the same position, whose
    # step reporting then took for the first's and dropped. An outbox's message has no position, but always an
    # id of its own (derived from its cause, so the same every time it is set aside).
    announcement_id = uuid.uuid5(_DLQ_NAMESPACE,
                                 f"{record_topic}/{partition}/{offset}/{lead_id}/{_header(kept, 'ce_id') or ''}"
                                 if outbox is None else f"{outbox}/{record_topic}/{_header(kept, 'ce_id')}")
    changed = LeadStageChanged(
        lead_id=lead_id, from_stage=None, to_stage="deadlettered", at=at, by=stage,
        reason=f"{kind}: {error[:500]}", attribution=Attribution(),
    )
    # The announcement continues the poison record's trace, when it carries one.
    trace = child_traceparent(_header(kept, "traceparent"))
    return [letter, encode(topics.LIFECYCLE, changed, event_id=announcement_id, source=f"leadpipe/{stage}", time=at,
                           traceparent=trace)]


def smaller_letters(letter: Message) -> list[Message]:
    """``letter``'s smaller forms, in the order they are tried: without the original's value, then without its
    headers too, then without its key too, each saying what went and how much (``dlq.value.dropped``: bytes,
    ``dlq.headers.dropped``: headers, ``dlq.key.dropped``: bytes). What a form has already dropped is not
    dropped again. The record stays on its source topic, whose coordinates every form names; redrive sends
    back no letter without its value (``redrive.DeadLetter.whole``).

    A key is the lead's id as we write it, but the topics sales tools write to take any key: a ~1 MB one
    left a letter too big even without value and headers, and its batch was retried for ever."""
    def note(name: str, value: int) -> tuple[str, bytes]:
        return name, str(value).encode()

    key, value, headers = letter.key, letter.value, tuple(letter.headers)
    dropped = {k for k, _ in headers if k.startswith("dlq.") and k.endswith(".dropped")}
    forms: list[Message] = []
    if "dlq.value.dropped" not in dropped:
        value, headers = b"", (*headers, note("dlq.value.dropped", len(letter.value or b"")))
        forms.append(Message(topic=letter.topic, key=key, value=value, headers=headers))
    if "dlq.headers.dropped" not in dropped:
        own = sum(1 for k, _ in headers if not k.startswith("dlq."))
        headers = (*((k, v) for k, v in headers if k.startswith("dlq.")), note("dlq.headers.dropped", own))
        forms.append(Message(topic=letter.topic, key=key, value=value, headers=headers))
    if key is not None and "dlq.key.dropped" not in dropped:
        key, headers = None, (*headers, note("dlq.key.dropped", len(key)))
        forms.append(Message(topic=letter.topic, key=key, value=value, headers=headers))
    return forms


_DLQ_NAMESPACE = uuid.UUID("6f1c8a9e-3b7d-4e52-9a0c-1d2e3f405162")


#: Attempts at a batch failing with errors no outage explains before its records are tried one by one.
POISON_AFTER = 5
#: The database errors that are about a value, not about the database: a data exception (22: a time out of
#: range, text that is no number) or a broken constraint (23). Any other error the database gives (a read-only
#: standby, a missing table, no privilege, an I/O error) fails every record alike: dead-lettering them would
#: empty the stage's input into the dead-letter topic, so such a batch is retried, the stage unready, however
#: long.
_DATA_CLASSES = frozenset({"22", "23"})


#: Fetches in a row failing on a record aiokafka cannot read before the record is looked for and passed over.
UNREADABLE_AFTER = 3


def _unreadable(exc: BaseException) -> bool:
    """Whether a failed fetch failed on a record's bytes (a bad CRC, a codec, a header name that is not UTF-8),
    not on the broker."""
    return isinstance(exc, Exception) and (not isinstance(exc, KafkaError) or isinstance(
        exc, (CorruptRecordException, InvalidMessageError, UnsupportedCodecError)))


def _transient(exc: BaseException) -> bool:
    """The broker or the database away, or a handler's ``NotNow``: retrying cures it."""
    return isinstance(exc, (KafkaError, NotNow)) or is_unavailable(exc)


def _may_be_poison(exc: BaseException) -> bool:
    """Whether ``exc`` may be about the record applied (see ``_DATA_CLASSES``); an outage never is."""
    if _transient(exc):
        return False
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in _DATA_CLASSES
    return not isinstance(exc, (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError))


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancellation of the task it is raised in (``stop``'s), which must end that task. A
    CancelledError a client library raises of its own inside a call (its internal timeout; nothing cancelled the
    runner) is not: it fails that call like the library's other errors, for ending the loop would leave the stage
    consuming nothing, for good, with /healthz still fine."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _count_letters(sent: Sequence[Message]) -> None:
    """The dead letters among messages produced, by kind: counted once sent, not as each attempt at their batch
    made them (a batch retried through an outage counted its one letter at every attempt)."""
    for kind, count in collections.Counter(_header(m.headers, "dlq.error.kind") or "unknown" for m in sent
                                           if m.topic == topics.DEADLETTER).items():
        DEADLETTERED.labels(kind).inc(count)


def _shown(text: str | None) -> str | None:
    """A producer's text as a log line names it: its first 500 characters. A 200 KB ce_id made one line of 400 KB,
    which log shippers cut or drop (the line saying why a record was dead-lettered)."""
    return text if text is None or len(text) <= 500 else text[:500] + "…"


def _lead_id(key: bytes | None) -> str:
    # A lead's id is 36 characters; a key sales tools wrote may be a megabyte, too much for one log line.
    return (key or b"")[:100].decode(errors="replace")


def _header(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    # Kafka allows a header without a value (aiokafka gives None; Java and librdkafka clients send them): absent.
    return next((v.decode(errors="replace") for k, v in headers if k == name and v is not None), None)


class OutputsRefused(MessageSizeTooLargeError):
    """Outputs of a batch refused alone as too large (by the producer's check or the broker): stored in the inbox,
    they would be refused on every retry. The batch is retried, and the retry answers their inputs with a dead
    letter (``BatchApplier.apply``'s ``refused``). A KafkaError, so never taken for a poison record."""

    def __init__(self, outputs: list[Message]) -> None:
        super().__init__(f"{len(outputs)} output(s) refused as too large: " + ", ".join(
            f"{m.header('ce_type') or m.topic} of {message_size(m)} bytes for {m.topic}" for m in outputs[:5]))
        self.outputs = outputs


def _too_large(output: Message, size: int) -> str:
    """Why the input of ``output`` (``size`` bytes, over the producer's limit or refused by the broker) is
    dead-lettered."""
    what = f"output {output.header('ce_type') or output.topic} of {size} bytes"
    if size > MAX_REQUEST_SIZE:
        return f"{what} is over the produce limit of {MAX_REQUEST_SIZE} bytes"
    return f"{what} is over {output.topic}'s limit: the broker refused it as too large"


def _unproducible(outputs: Sequence[Message], refused: Collection[Message]) -> str | None:
    """Why ``outputs`` cannot be produced (one is over the producer's limit, or was refused alone), or None."""
    for m in outputs:
        if (size := message_size(m)) > MAX_REQUEST_SIZE or (refused and m in refused):
            return _too_large(m, size)
    return None


class FetchPacer:
    """How long the next fetch may wait, from the rate records arrive at and a batch ``target``.

    The embedded Tansu answers a fetch late, data or not: a record waits about a quarter of the wait
    (measured alone, one partition, 2 KB records at 300/s: wait 80 / 166 / 250 / 500 ms -> records waited
    22 / 43 / 65 / 127 ms at p50, batches of 7 / 12 / 18 / 26; ``fetch_min_bytes`` changed the batches, not
    the waits, and in the stack neither), so there the wait is a stage's latency, while each fetch costs the
    broker ~1 ms of CPU. The pacing assumed half, so a batch holds about half of ``target``: the target is a
    knob, not a count. A fixed wait is either slow under load or costly when idle; this one follows the load:
    at 100 records/s and a target of 18, 360 ms; at 300/s, 120 ms; while records trickle, the ceiling; once
    they stop (under ``IDLE_RATE``), ``idle_ms``, so an idle stack asks the broker half as often (make run,
    idle 30 s: 0.092 -> 0.080 cores, the broker 0.035 -> 0.027) and the first record after a quiet spell
    waits a part of it (about a quarter, as above). (Kafka answers as soon as data arrives, so there it only
    bounds the wait.)
    """

    #: Time constant of the rate's moving average: a change of load is followed within a second or two.
    TAU_S = 1.0
    #: Below this many records a second a consumer counts as idle.
    IDLE_RATE = 1.0

    def __init__(self, target: int, floor_ms: int, ceiling_ms: int, idle_ms: int | None = None) -> None:
        self._target = target
        self._floor = min(floor_ms, ceiling_ms)
        self._ceiling = ceiling_ms
        self._idle = max(ceiling_ms, idle_ms or 0)
        self._rate = Rate(self.TAU_S)

    def observe(self, records: int, now: float) -> int:
        """Note a poll that brought ``records`` at ``now`` (monotonic seconds); returns the wait for the next fetch."""
        self._rate.observe(records, now)
        return self.wait_ms

    @property
    def wait_ms(self) -> int:
        if self._target <= 0:
            return self._ceiling
        rate = self._rate.per_s
        if rate < self.IDLE_RATE:
            return self._idle
        # Tansu answers after half the wait: a batch of `target` gathers over half of it.
        return int(min(self._ceiling, max(self._floor, 2000 * self._target / rate)))


def _trimmer() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or nothing where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


#: How long the commit of revoked partitions' applied offsets may take: the rebalance waits for it, every member
#: of the group with it, and what it leaves uncommitted is only read again by the next owner.
REVOKE_COMMIT_S = 2.0

#: Records worked through since the last trim that make one worth it (it takes a few ms; memory grows
#: only with batches of hundreds, a backlog).
TRIM_AFTER_RECORDS = 5000


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Waiting for the batch lock lets the batch in hand be applied and produced before another process gets
        # these partitions.
        async with self._runner._batch_lock:
            # What was applied of them since the last commit (up to commit_interval_ms of records, on every
            # partition: aiokafka's eager protocol revokes them all at each rebalance) is committed now, or their
            # next owner, often this process, reads it again and sends its stored outputs again (sales tools
            # reading leads.routed saw each twice). Briefly, a failure ignored: inside a rebalance a commit (and its
            # log-end check) may wait on the very coordinator that is rebalancing, and the inbox absorbs a reread.
            await self._runner._commit_revoked(revoked)
        self._runner._forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        ASSIGNED.set(len(self._runner.assignment()))
        log.info("partitions assigned", count=len(assigned))
        # Checked by the loop, not here: a position is known only once the group's commits are fetched,
        # which may wait on this very callback.
        self._runner._unchecked |= assigned


class ConsumerRunner:
    def __init__(
        self,
        *,
        settings: ConsumerSettings,
        service: str,
        input_topics: Sequence[str],
        applier: BatchApplier,
        producer: Producer,
    ) -> None:
        self._settings = settings
        self._service = service
        self._topics = list(input_topics)
        self._applier = applier
        self._producer = producer
        self._consumer: AIOKafkaConsumer | None = None
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._polling = False  # in getmany, holding no batch: what stop may cancel
        self._task: asyncio.Task[None] | None = None
        self.healthy = False
        #: Per partition, the next offset this process has yet to process (known after its first batch).
        self._done: dict[TopicPartition, int] = {}
        #: Broker timestamp (ms) of the oldest record fetched and not yet committed.
        self._pending_since_ms: int | None = None
        #: Offsets applied and produced but not committed yet, and when the last commit was.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        #: Partitions assigned whose position is yet to be compared with the log end.
        self._unchecked: set[TopicPartition] = set()
        #: Partitions to seek back to their first record not applied before the next fetch (a fetch failed).
        self._rewind: set[TopicPartition] = set()
        self._trim = _trimmer()
        self._since_trim = 0
        self._pacer = FetchPacer(settings.fetch_batch_target, settings.fetch_min_wait_ms, settings.fetch_max_wait_ms,
                                 settings.fetch_idle_wait_ms)
        OLDEST.set_function(self._oldest_age)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._consumer = self._make_consumer()
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self._service}-consumer")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # Only a stop ends the loop; anything else it did not foresee would leave the service consuming
        # nothing with no word of why (``ready`` turns false; this says what happened).
        if task.cancelled():
            # A CancelledError that ended the loop leaves the task cancelled, as a stop does: said unless it was one.
            if not self._stopping.is_set():
                log.error("the consumer loop was cancelled; nothing is consumed until the service restarts")
        elif (exc := task.exception()) is not None:
            log.error("the consumer loop ended; nothing is consumed until the service restarts",
                      error=error_text(exc), exc_info=exc)

    def _make_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=self._service,
            client_id=self._service,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # What one fetch may bring home bounds what a process holds while it
            # catches up on a backlog (aiokafka's defaults: 1 MiB a partition,
            # 50 MiB a fetch); 1 MiB is some 500 records, a full batch.
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            fetch_min_bytes=self._settings.fetch_min_bytes,
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._polling and self._task is not None:
            self._task.cancel()  # a poll holds no batch: cut it short instead of waiting out its timeout
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=7)
            except TimeoutError:
                log.warning("consumer did not finish its batch in time; it will be redelivered")
                self._task.cancel()
            except Exception:  # noqa: BLE001
                pass  # logged when the loop ended (``_ended``); the rest of the stop must still run
        if self._consumer is not None:
            try:
                # Leaving the group moves our partitions at once; a client wedged
                # by a broker that went away must not hold up the exit, though:
                # the group then drops us after the session timeout instead.
                await asyncio.wait_for(self._consumer.stop(), timeout=2)
            except TimeoutError:
                log.warning("consumer did not leave its group in time; the session timeout will end its membership")
            except Exception as exc:
                # Seen in a SIGTERM test: aiokafka's metadata task wrote to the connection its close had just
                # shut (RuntimeError from uvloop). Nothing is lost by it; the exit must still be clean.
                log.warning("consumer did not leave its group cleanly; the session timeout will end its membership",
                            error=repr(exc))
        self.healthy = False

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    @property
    def ready(self) -> bool:
        return self.healthy and self._task is not None and not self._task.done()

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        self.healthy = True
        fetch_failures = unreadable = 0
        while not self._stopping.is_set():
            if self._rewind:
                self._rewind = await self._rewind_to_applied(self._rewind & self.assignment())
                if self._rewind:  # no fetch before every partition is back where it must be read from
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=backoff(fetch_failures, base=0.5, cap=5))
                    continue
            # After the rewind: a partition it sent back to its committed offset is checked against its log end
            # again (a broker that lost its log), as when it was assigned.
            if self._unchecked:
                unchecked, self._unchecked = self._unchecked & self.assignment(), set()
                await self._rewind_beyond_end(unchecked)
            if unreadable >= UNREADABLE_AFTER:
                # Every partition is fetched again after each failure, so one record aiokafka cannot read would
                # hold them all: it is looked for, partition by partition, and passed over.
                unreadable = 0
                try:
                    await self._pass_over_unreadable()
                except (Exception, asyncio.CancelledError) as exc:  # the broker away meanwhile, say
                    if _cancelled(exc):
                        raise
                    log.warning("could not look for the record that cannot be read", error=repr(exc))
                    self._rewind = set(self.assignment())
                    continue
            if self._stopping.is_set():
                # A stop that came during a rewind, a check or a search above found no poll to cut short: none may
                # start now (it would wait out its timeout, and a batch it brought would be applied).
                break
            self._polling = True
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=self._settings.batch_timeout_ms,
                    max_records=self._settings.batch_max_records,
                )
            except (Exception, asyncio.CancelledError) as exc:
                if _cancelled(exc):
                    if not self._stopping.is_set():
                        raise
                    # stop() cut the poll short; records it had just taken are not committed, so read again later.
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    break
                # A KafkaError: the broker away, or a record batch aiokafka cannot read (a codec it lacks, a bad
                # CRC). Anything else came out of aiokafka reading what it fetched too (a header name that is not
                # UTF-8 raises UnicodeDecodeError there), or is its own CancelledError: ending the loop would leave
                # the stage consuming nothing with /healthz still fine, so it is retried like an outage, unready,
                # logged as the error it is, from where each partition must be read (``_rewind_to_applied``).
                self._polling = False  # a back-off is no poll: stop must not cancel it, it ends the wait instead
                self.healthy = False
                delay = backoff(fetch_failures, base=0.5, cap=5)
                fetch_failures += 1
                (log.warning if isinstance(exc, KafkaError) else log.error)(
                    "fetch failed; retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
                self._rewind = set(self.assignment())
                unreadable = unreadable + 1 if _unreadable(exc) else 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            finally:
                self._polling = False
            # The broker answers again: an idle stage is ready without waiting for a record to apply.
            self.healthy = True
            fetch_failures = unreadable = 0
            fetched = sum(len(records) for records in batch.values())
            self._since_trim += fetched
            self._pace(self._pacer.observe(fetched, time.monotonic()))
            if not batch:
                if self._since_trim >= TRIM_AFTER_RECORDS:
                    # Caught up after 5,000 records or more: their buffers are free but still held. (No
                    # gc.collect: it took ~80 ms a call, and those buffers are freed by reference count.)
                    self._trim()
                    self._since_trim = 0
                self._note_progress(batch)
                if self._uncommitted and self._commit_due():
                    async with self._batch_lock:
                        await self._commit_pending()
                continue
            self._pending_since_ms = min(records[0].timestamp for records in batch.values() if records)
            async with self._batch_lock:
                attempts = await self._apply_with_retry(batch)
                if attempts:
                    self._uncommitted.update({tp: records[-1].offset + 1 for tp, records in batch.items() if records})
                    if self._commit_due():
                        await self._commit_pending()
                    self._note_progress(batch)
        async with self._batch_lock:
            await self._commit_pending()  # stopping: what was applied is not read again

    async def _rewind_to_applied(self, partitions: set[TopicPartition]) -> set[TopicPartition]:
        """``partitions`` back to their first record not applied; returns those it could not rewind yet (the
        broker away), to be rewound before the next fetch.

        aiokafka drains the partitions it fetched one after another, moving each one's position as it goes: an
        error reading a later one (an outage's, or a record it cannot read) loses the records it had drained of
        the others, which the next fetch would pass over, and the next commit commit past."""
        assert self._consumer is not None
        left: set[TopicPartition] = set()
        for tp in partitions:
            try:
                position = self._done.get(tp)
                if position is None:  # nothing applied of it in this process: where it was assigned at
                    async with asyncio.timeout(min(5.0, self._settings.session_timeout_ms / 1000)):
                        position = await self._consumer.committed(tp)
                if position is None:
                    await self._consumer.seek_to_beginning(tp)  # auto_offset_reset's start, as when it was assigned
                else:
                    self._consumer.seek(tp, position)
                if tp not in self._done:  # where it was assigned at: past its log end, it is read from the start
                    self._unchecked.add(tp)
            except IllegalStateError:
                pass  # given away meanwhile: its next owner reads it from what was committed
            except (KafkaError, TimeoutError, asyncio.CancelledError) as exc:
                if _cancelled(exc):
                    raise
                log.warning("could not rewind a partition after a failed fetch; trying again before the next one",
                            partition=f"{tp.topic}/{tp.partition}", error=repr(exc))
                left.add(tp)
        return left

    async def _pass_over_unreadable(self) -> None:
        """Find the record aiokafka cannot read, each partition read alone a record at a time from where it must be
        read, and move past it: the records before it on its partition are applied as any batch, and it and the
        records after it that cannot be read either (``_unreadable_from``) get a dead letter each (kind
        ``unreadable``) naming its topic, partition and offset; their bytes could not be read, so the letters
        hold none. Partitions that read well are sought back for the regular fetch.

        Every fetch here is made outside ``_batch_lock``: a fetch during a rebalance waits for it to end, and the
        rebalance waits for that lock (``on_partitions_revoked``)."""
        assert self._consumer is not None
        for tp in sorted(self.assignment(), key=lambda t: (t.topic, t.partition)):
            if self._stopping.is_set():
                return  # looked for again after the restart, from what was committed
            start = await self._consumer.position(tp)
            read: list[Record] = []
            try:
                # It lies within one batch's reach of the position: a regular fetch would have got past it else.
                while len(read) <= self._settings.batch_max_records and not self._stopping.is_set():
                    got = await self._consumer.getmany(tp, timeout_ms=self._settings.batch_timeout_ms, max_records=1)
                    if not got.get(tp):
                        break
                    read += got[tp]
            except Exception as exc:
                if not _unreadable(exc):
                    raise
                found, resume = await self._unreadable_from(tp, exc)
                async with self._batch_lock:
                    if tp not in self.assignment():
                        return  # given away meanwhile: its next owner finds the record again
                    if read:
                        if not await self._apply_with_retry({tp: read}):
                            return  # stopping: read again later
                        self._uncommitted[tp] = self._done[tp] = read[-1].offset + 1
                    log.error("passing over records that cannot be read", topic=tp.topic, partition=tp.partition,
                              offsets=f"{found[0][0]}-{found[-1][0]}", count=len(found), error=found[0][1])
                    now = datetime.now(UTC)
                    OUTPUTS.inc(await self._send([
                        letter for offset, error in found for letter in dead_letter(
                            record_topic=tp.topic, partition=tp.partition, offset=offset, key=None, value=None,
                            headers=(), kind="unreadable", error=error, stage=self._service, at=now)]))
                    self._consumer.seek(tp, resume)
                    self._uncommitted[tp] = self._done[tp] = found[-1][0] + 1
                return
            self._consumer.seek(tp, start)

    async def _unreadable_from(self, tp: TopicPartition, exc: BaseException) -> tuple[list[tuple[int, str]], int]:
        """The records from ``tp``'s position on that cannot be read, the first for ``exc``, each with its error;
        and where the partition reads again. aiokafka decodes a record batch whole before it skips to the
        position, so the rest of a bad record's batch fails alike: each is tried in turn until one reads, the
        partition has no more, or the runner stops."""
        assert self._consumer is not None
        first = await self._consumer.position(tp)
        found = [(first, f"aiokafka cannot read it: {type(exc).__name__}: {exc}"[:2000])]
        while not self._stopping.is_set():
            after = found[-1][0] + 1
            self._consumer.seek(tp, after)
            try:
                got = await self._consumer.getmany(tp, timeout_ms=self._settings.batch_timeout_ms, max_records=1)
            except Exception as again:
                if not _unreadable(again):
                    raise
                found.append((await self._consumer.position(tp), f"aiokafka cannot read it (or the record at offset "
                              f"{first} in its record batch): {type(again).__name__}: {again}"[:2000]))
                continue
            return found, (got[tp][0].offset if got.get(tp) else after)
        return found, found[-1][0] + 1

    async def _rewind_beyond_end(self, assigned: set[TopicPartition]) -> None:
        """Partitions committed past their log end are read from the beginning (see the module)."""
        if not assigned:
            return
        assert self._consumer is not None
        # The check and the rewind together are bounded well inside stop's 7 s, so a wedged broker cannot cost
        # the final commit.
        deadline = asyncio.get_running_loop().time() + min(5.0, self._settings.session_timeout_ms / 1000)
        try:
            async with asyncio.timeout_at(deadline):
                ends = await self._consumer.end_offsets(list(assigned))
                committed = {tp: await self._consumer.committed(tp) for tp in assigned}
        except (KafkaError, TimeoutError, asyncio.CancelledError) as exc:
            if _cancelled(exc):
                raise
            # Fetching goes on meanwhile; the check is tried again before the next poll.
            log.warning("could not compare assigned positions with the log ends", error=repr(exc))
            self._unchecked |= assigned
            return
        # Past the reported end by any margin: every commit of ours (the runner's, redrive's) is clamped to the end
        # the broker reported then, which never goes down on a log that lost nothing (Tansu's short answer, its
        # last record batch's base offset + 1, included), so only a lost log leaves a position past it. A margin
        # (there was one of 200) left the first records written after such a loss unread for good, as many as the
        # position was past the new end (150 committed, say: the new log's first 150). A position another tool
        # committed past Tansu's short answer is read from the start again: a cost the inbox absorbs, no loss.
        beyond = {tp: (offset, ends[tp]) for tp, offset in committed.items()
                  if offset is not None and tp in ends and offset > ends[tp]}
        if beyond:
            log.warning("committed past the log end (the broker lost data): reading those partitions from the start",
                        partitions={f"{tp.topic}/{tp.partition}": f"{off}>{end}" for tp, (off, end) in beyond.items()})
            try:
                # The reset is requested at once, and aiokafka's fetcher carries it out in the background before it
                # fetches those partitions again; only the wait for it (aiokafka's: up to its request timeout,
                # 40 s) is cut short.
                async with asyncio.timeout_at(deadline):
                    await self._consumer.seek_to_beginning(*beyond)
            except TimeoutError:
                pass
            except (KafkaError, asyncio.CancelledError) as exc:  # given away meanwhile, say: its next owner checks
                if _cancelled(exc):
                    raise
                log.warning("could not rewind partitions no longer ours", error=repr(exc))

    def _pace(self, wait_ms: int) -> None:
        # aiokafka has no public setter; its fetcher reads this attribute for every fetch request it builds
        # (shared/tests/test_fetch_pacer.py pins that), so the wait applies from the next request built.
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
            fetcher._fetch_max_wait_ms = wait_ms
            FETCH_WAIT.set(wait_ms)

    # -- what is left to do, for /metrics ----------------------------------------------

    def _note_progress(self, done: Mapping[TopicPartition, Sequence]) -> None:
        """After a committed batch or an empty fetch: lag per assigned partition, from the fetch's log end."""
        assert self._consumer is not None
        for tp, records in done.items():
            if records:
                self._done[tp] = records[-1].offset + 1
        behind = 0
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            # A partition that fetched nothing since it was assigned is caught up.
            lag = max(0, highwater - self._done.get(tp, highwater))
            LAG.labels(tp.topic, str(tp.partition)).set(lag)
            behind += lag
        if behind == 0:
            self._pending_since_ms = None

    def _forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._done.pop(tp, None)
            self._uncommitted.pop(tp, None)
            try:
                LAG.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass

    def _oldest_age(self) -> float:
        since = self._pending_since_ms
        return 0.0 if since is None else max(0.0, time.time() - since / 1000)

    async def _apply_with_retry(self, batch: Mapping[TopicPartition, Sequence]) -> int:
        """The number of attempts it took, or 0 if it was abandoned because we are stopping."""
        records = [r for records in batch.values() for r in records]
        # Counted once a batch, not once an attempt (an hour's outage retried it ~120 times: as many "records" read),
        # and once a topic: a labelled child's lookup per record was ~3 % of a lifecycle follower's CPU, most of
        # whose records (other services' steps) it passes over unread.
        for topic, count in collections.Counter(record.topic for record in records).items():
            RECORDS.labels(topic).inc(count)
        attempt = 0
        #: Failures in a row that neither an outage nor a broken stage explains: a record may be poison.
        unexplained = 0
        #: Outputs refused alone as too large in an earlier attempt: their inputs get a dead letter instead.
        refused: set[Message] = set()
        #: Events the earlier attempts recorded in the inbox: answered from it now, they are no redeliveries.
        recorded: set[uuid.UUID] = set()
        #: What the earlier attempts that committed had to say: of what they recorded, no later attempt says it.
        said_before: list[tuple[str, str, dict[str, Any]]] = []
        while True:
            started = time.perf_counter()
            try:
                if unexplained >= POISON_AFTER:
                    await self._apply_around_poison(records, refused, recorded, said_before)
                else:
                    notes, earlier = Notes(), set(recorded)
                    try:
                        outputs = await self._applier.apply(records, refused, notes)
                    finally:
                        recorded |= notes.recorded
                        if notes.recorded:
                            said_before += notes.lines
                    OUTPUTS.inc(await self._send(outputs))
                    notes.tell(earlier, said_before)
                BATCH_SECONDS.observe(time.perf_counter() - started)
                self.healthy = True
                return attempt + 1
            except (Exception, asyncio.CancelledError) as exc:
                if _cancelled(exc):
                    raise  # this loop is being cancelled (stop's last resort)
                # Any other CancelledError was raised inside the batch (a client library's own, no word on a record).
                if isinstance(exc, OutputsRefused):
                    refused.update(exc.outputs)
                unexplained = unexplained + 1 if isinstance(exc, Exception) and _may_be_poison(exc) else 0
                self.healthy = False
                RETRIES.inc()
                delay = backoff(attempt, cap=self._settings.retry_backoff_max_s)
                log.warning("batch failed; will retry", error=error_text(exc), attempt=attempt,
                            retry_in_s=round(delay, 2), events=len(records))
                attempt += 1
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    return 0  # stopping: leave it uncommitted for redelivery
                except TimeoutError:
                    continue

    async def _apply_around_poison(self, records: Sequence[Record], refused: Collection[Message],
                                   recorded: set[uuid.UUID],
                                   said_before: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> None:
        """Each record alone, in log order, once the batch kept failing with an error that may be about a record:
        a record that fails alone so is dead-lettered (kind ``handler``), the others are applied. Any other error
        meanwhile raises, and the batch is retried as before (what was applied is in the inbox).

        A release whose handler fails on every record dead-letters them all, one batch after another, as the
        poison they look like from here (a batch alone cannot tell a bug from two bad records, and holding the
        stage on two bad records is what this is for): after the fix, ``leadpipe-redrive --kind handler``."""
        poison: list[tuple[Record, Exception]] = []
        for record in records:
            notes, earlier = Notes(), set(recorded)
            try:
                outputs = await self._applier.apply([record], refused, notes)
            except Exception as exc:
                if not _may_be_poison(exc):
                    raise
                poison.append((record, exc))
                continue
            finally:
                recorded |= notes.recorded
            OUTPUTS.inc(await self._send(outputs))
            notes.tell(earlier)
        letters: list[Message] = []
        said = Notes()
        for record, exc in poison:
            error = error_text(exc)[:2000]
            said.error("dead-lettering a record its handler fails on", error=error, topic=record.topic,
                       partition=record.partition, offset=record.offset,
                       lead_id=_lead_id(record.key), event_id=_shown(_header(record.headers, "ce_id")))
            letters += self._applier.dead_letter(record, "handler", error)
        if letters:
            OUTPUTS.inc(await self._send(letters))
            said.tell()
        # What the batch's earlier attempts that committed had to say: their events are answered from the inbox.
        Notes().tell(said_before=said_before)

    async def _send(self, messages: list[Message]) -> int:
        """``send_all``, but a batch refused as too large is sent again in parts, so that a refusal names its message.
        A dead letter refused so (a topic's limit may be below the producer's, which ``dead_letter`` sizes letters
        by) is sent smaller (``smaller_letters``), and one refused even without the original's value, headers and
        key is passed over, logged and counted: it would be refused on every retry, and its batch (the partition,
        the stage) held for ever. Any other message refused alone (an output over its topic's limit, or one stored
        before outputs were held to the producer's) raises ``OutputsRefused`` once the others are sent: stored in
        the inbox, it would be refused on every retry too, so the retry answers its input with a dead letter
        (``BatchApplier.apply``)."""
        try:
            sent = await self._producer.send_all(messages)
        except MessageSizeTooLargeError:
            pass
        else:
            _count_letters(messages)
            return sent
        # Some of the batch may be in already: sent again, absorbed as any redelivery. The other messages keep
        # their order among themselves; each letter goes alone, so a refusal names it.
        outputs = [m for m in messages if m.topic != topics.DEADLETTER]
        sent = await self._send_outputs(outputs, together=len(outputs) < len(messages))
        for letter in (m for m in messages if m.topic == topics.DEADLETTER):
            for form in (letter, *smaller_letters(letter)):
                try:
                    sent += await self._producer.send_all([form])
                    _count_letters([letter])
                    break
                except MessageSizeTooLargeError as exc:
                    refused = exc
            else:
                kind = _header(letter.headers, "dlq.error.kind") or "unknown"
                LETTERS_REFUSED.labels(kind).inc()
                log.error("the broker refuses even the smallest dead letter; the record is passed over", kind=kind,
                          topic=_header(letter.headers, "dlq.source.topic"),
                          partition=_header(letter.headers, "dlq.source.partition"),
                          offset=_header(letter.headers, "dlq.source.offset"),
                          error=_header(letter.headers, "dlq.error.message"), refusal=repr(refused))
        return sent

    async def _send_outputs(self, outputs: list[Message], *, together: bool) -> int:
        """What of a batch refused as too large is no dead letter: ``together`` first (the refusal may have been a
        letter's), else each alone, in order; raises ``OutputsRefused`` naming those refused alone, once the
        others are in."""
        if together:
            with contextlib.suppress(MessageSizeTooLargeError):
                return await self._producer.send_all(outputs)
        sent, refused = 0, []
        for m in outputs:
            try:
                sent += await self._producer.send_all([m])
            except MessageSizeTooLargeError:
                refused.append(m)
        if refused:
            raise OutputsRefused(refused)
        return sent

    def _commit_due(self) -> bool:
        return time.monotonic() - self._committed_at >= self._settings.commit_interval_ms / 1000

    async def _commit_pending(self) -> None:
        """Commit what was applied and produced so far (partitions still ours only)."""
        mine = self.assignment()
        offsets = {tp: off for tp, off in self._uncommitted.items() if tp in mine}
        self._uncommitted.clear()
        self._committed_at = time.monotonic()
        if offsets:
            await self._commit(offsets)

    async def _commit_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what was applied of ``revoked`` and not yet committed, within ``REVOKE_COMMIT_S``."""
        offsets = {tp: off for tp, off in self._uncommitted.items() if tp in revoked}
        if offsets:
            await self._commit(offsets, timeout_s=REVOKE_COMMIT_S)

    async def _commit(self, offsets: Mapping[TopicPartition, int], timeout_s: float | None = None) -> None:
        # Bounded: after the embedded broker restarted, a ListOffsets or an
        # offset commit was seen waiting 25 s and more for a coordinator,
        # stalling the runner and its shutdown. A commit that does not happen
        # only means the batch is read again, which the inbox absorbs.
        limit = self._settings.session_timeout_ms / 1000
        try:
            await asyncio.wait_for(self._commit_once(dict(offsets)), timeout=min(limit, timeout_s or limit))
        except TimeoutError:
            COMMIT_FAILURES.labels("timeout").inc()
            log.warning("offset commit timed out; the batch will be redelivered")
        except asyncio.CancelledError as exc:
            if _cancelled(exc):
                raise
            COMMIT_FAILURES.labels("cancelled").inc()
            log.warning("offset commit cancelled inside the client; the batch will be redelivered", error=repr(exc))

    async def _commit_once(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            # A broker that lost data (the embedded one restarting, an
            # unreplicated partition) has a log shorter than our batch.
            # Committing our offset there would skip the records it receives
            # next, up to that offset, so the commit is clamped to the log end
            # the broker reports. Checked on every batch: narrowing it to
            # batches that saw a failure or a rebalance let a fault test fail.
            # The embedded Tansu also reports too small an end whenever the
            # partition's last record batch held several records (it answers
            # the batch's base offset + 1); the clamp then merely makes a
            # later restart redeliver those few records, which the inbox
            # absorbs. The two cannot be told apart here, hence no alarm.
            ends = await self._consumer.end_offsets(list(offsets))
            shrunk = {tp: ends[tp] for tp, off in offsets.items() if ends.get(tp, off) < off}
            if shrunk:
                CLAMPED.inc(len(shrunk))
                log.info("committing the broker's reported log end, which is below the batch just applied",
                         partitions={f"{tp.topic}/{tp.partition}": f"{ends[tp]}<{offsets[tp]}" for tp in shrunk})
                offsets.update(shrunk)
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced while we worked (or the broker went away);
            # the records are read again and the inbox makes that harmless.
            COMMIT_FAILURES.labels("refused").inc()
            log.warning("offset commit failed; the batch will be redelivered", error=str(exc))


class _Copy(NamedTuple):
    """A record of a topic written outside leadpipe, judged once the inbox was read: a copy of the record its id
    stands for, or another under a used id."""

    event_id: uuid.UUID
    record: Record
    digest: bytes


class Notes:
    """What an attempt at a batch has to say (its log lines) and count (its redeliveries), said once the batch is
    through (``tell``): a batch retried through an outage said each rejection, and counted its redeliveries, at
    every attempt (an hour's outage: ~120 times), and counted as redelivered the events its own earlier attempt had
    recorded. A line says which record or event it is about itself: no event is in hand when it is said."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        #: Events answered from the inbox as copies of what it recorded (``db.redelivered``).
        self.answered: set[uuid.UUID] = set()
        #: Events this attempt recorded in the inbox, once committed.
        self.recorded: set[uuid.UUID] = set()

    def warning(self, event: str, **values: Any) -> None:
        self.lines.append(("warning", event, values))

    def error(self, event: str, **values: Any) -> None:
        self.lines.append(("error", event, values))

    def add(self, other: Notes) -> None:
        self.lines += other.lines
        self.answered |= other.answered
        self.recorded |= other.recorded

    def tell(self, recorded_before: Collection[uuid.UUID] = (),
             said_before: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> None:
        """Say the lines and count the redeliveries; not as redelivered what ``recorded_before`` (the batch's earlier
        attempts) recorded. ``said_before``: the lines of earlier attempts that committed, said first, each line
        once: an event such an attempt recorded (a final rejection) is answered from the inbox by every attempt
        after it, which says nothing of it."""
        said: set[tuple[str, str, str]] = set()
        for level, event, values in [*said_before, *self.lines]:
            line = (level, event, repr(sorted(values.items())))
            if line not in said:
                said.add(line)
                getattr(log, level)(event, **values)
        if redeliveries := len(self.answered.difference(recorded_before)):
            REDELIVERED.inc(redeliveries)


class BatchApplier:
    """Steps 2 and 3 above, with no Kafka in sight: fetched records in, the messages to produce out.

    Records keep their order: outputs come out in the order of the records
    that caused them, and an event twice in one batch is applied and emitted
    once (from a topic written outside leadpipe, only a copy with the same
    value: another is a reused id's dead letter). Events are handed to their
    handlers in log order, one call for each run of events going to the same
    handler (a handler declared for several types gets them together), all in
    one unit of work that commits before ``apply`` returns (done again
    without an event whose outputs cannot be produced, once for each such
    event it finds).
    """

    def __init__(
        self,
        *,
        service: str,
        handlers: Mapping[str, BatchHandler],
        unit_of_work: Callable[[], UnitOfWork[Any]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        select: Callable[[Sequence[tuple[str, bytes]]], bool] | None = None,
    ) -> None:
        """``handlers`` maps event types to handlers; events of other types are applied with no output.
        ``select`` looks at a record's headers only; records it declines are passed over (their
        offsets still advance) without being decoded or dead-lettered."""
        self._service = service
        self._handlers = dict(handlers)
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._select = select

    async def apply(self, records: Sequence[Record], refused: Collection[Message] = (),
                    notes: Notes | None = None) -> list[Message]:
        """The messages to produce for ``records``. ``refused``: outputs refused alone as too large in an earlier
        attempt at this batch (a topic's limit below the producer's); an event whose outputs (stored or new) hold
        one is answered with a dead letter instead, as one whose new outputs are over the producer's limit.
        ``notes``: where its log lines and redeliveries go, for the caller to tell once the outputs are sent (None:
        told here, as it returns)."""
        told_here, notes = notes is None, notes if notes is not None else Notes()
        now = self._clock()
        per_record: list[list[Message] | uuid.UUID | _Copy] = []
        envelopes: dict[uuid.UUID, tuple[Envelope, Record]] = {}
        #: The digests of the batch's records from topics written outside leadpipe, by event id (the first copy's).
        digests: dict[uuid.UUID, bytes] = {}
        for record in records:
            if self._select is not None and not self._select(record.headers):
                continue
            try:
                env = decode(record.headers, record.key, record.value)
            except Exception as exc:  # noqa: BLE001
                # decode is pure: whatever it raises is about this record's bytes, and retrying the batch would
                # raise it again for ever. One it did not foresee is logged as an error, to be made a DecodeError.
                kind, detail = (exc.kind, exc.detail) if isinstance(exc, DecodeError) else (
                    "undecodable", f"{type(exc).__name__} while decoding: {exc}"[:500])
                # Cut in the line, whole in the letter (dead_letter keeps 2,000 characters): a detail quotes what
                # the producer wrote (a header whole), a line of hundreds of KB.
                (notes.warning if isinstance(exc, DecodeError) else notes.error)(
                    "dead-lettering a record", kind=kind, error=_shown(detail),
                    topic=record.topic, partition=record.partition, offset=record.offset,
                    lead_id=_lead_id(record.key), event_id=_shown(_header(record.headers, "ce_id")))
                per_record.append(self._dead_letter(record, kind, detail, now))
                continue
            envelopes.setdefault(env.id, (env, record))
            if record.topic not in topology.EXTERNAL_INPUTS:
                # leadpipe derives its own events' ids from their cause: an internal id is the record.
                per_record.append(env.id)
                continue
            # Judged once the inbox was read: whichever record the id was first applied for is the id's, and a
            # copy of it (the inbox's, or the batch's first when the inbox has none) is a redelivery.
            digest = record_digest(record.value)
            digests.setdefault(env.id, digest)
            per_record.append(_Copy(env.id, record, digest))

        results: dict[uuid.UUID, list[Message]] = {}
        #: The digest of the record each id of an outside topic stands for: the inbox's, or the batch's first.
        applied_as: dict[uuid.UUID, bytes | None] = {}
        #: New events whose outputs cannot be produced, with why: the unit of work is done again without them.
        unproducible: dict[uuid.UUID, str] = {}
        while envelopes:
            # A unit of work done again (an output too large) says only what its last pass did.
            unit_notes = Notes()
            if await self._apply_envelopes(envelopes, digests, results, applied_as, now, refused, unproducible,
                                           unit_notes):
                notes.add(unit_notes)
                break
            results.clear()
        outputs: list[Message] = []
        emitted: set[uuid.UUID] = set()
        for item in per_record:
            if isinstance(item, _Copy):
                if not redelivered(applied_as.get(item.event_id, digests[item.event_id]), item.digest):
                    outputs.extend(self._reused(item.record, item.event_id, now, notes))
                    continue
                item = item.event_id
            if isinstance(item, uuid.UUID):
                if item in emitted:  # the same event twice in one batch
                    continue
                emitted.add(item)
                outputs.extend(results[item])
            else:
                outputs.extend(item)
        if told_here:
            notes.tell()
        return outputs

    async def _apply_envelopes(
        self, envelopes: dict[uuid.UUID, tuple[Envelope, Record]], digests: Mapping[uuid.UUID, bytes],
        results: dict[uuid.UUID, list[Message]], applied_as: dict[uuid.UUID, bytes | None], now: datetime,
        refused: Collection[Message], unproducible: dict[uuid.UUID, str], notes: Notes,
    ) -> bool:
        """One unit of work: answer redeliveries from the inbox, hand new events to their handlers. False, with
        nothing committed, at the first new event whose outputs cannot be produced: it is added to
        ``unproducible``, whose events are dead-lettered, not handed to their handlers, on the next call."""
        async with self._unit_of_work() as uow:
            stored = await uow.seen(envelopes)
            notes.answered.update(eid for eid, kept in stored.items() if redelivered(kept.digest, digests.get(eid)))
            repeats = {eid: kept.outputs for eid, kept in stored.items()}
            results.update(repeats)
            applied_as.update((eid, kept.digest) for eid, kept in stored.items() if eid in digests)
            for eid, outputs in repeats.items():
                if refused and (why := _unproducible(outputs, refused)) is not None:
                    # Its writes are committed with those outputs: the inbox keeps them, and a redrive after the
                    # limit is raised sends them.
                    record = envelopes[eid][1]
                    notes.warning("a stored output is refused as too large; its input is rejected", reason=why,
                                  lead_id=_lead_id(record.key), event_id=str(eid))
                    results[eid] = self._dead_letter(record, "rejected", why, now)
            for eid, why in unproducible.items():
                if eid not in stored:
                    record = envelopes[eid][1]
                    notes.warning("an output is too large to produce; its input is rejected", reason=why,
                                  lead_id=_lead_id(record.key), event_id=str(eid))
                    results[eid] = self._dead_letter(record, "rejected", why, now)
            fresh = [env for eid, (env, _) in envelopes.items() if eid not in stored and eid not in unproducible]
            # Handlers are called in log order: one call for each run of events going to the same handler. A
            # handler declared for several types (delivery's, reporting's) gets them together, in their order
            # (delivery queues each lead's webhooks in it); a lead's merge between two of its scorings is
            # applied between them, as if the batch had been cut there.
            applied: list[Applied] = []
            for handler, run in itertools.groupby(fresh, key=lambda env: self._handlers.get(env.type)):
                group = list(run)
                outcomes = await handler(uow, group) if handler else {}
                for env in each(group):
                    # Events of types this stage does not handle are someone
                    # else's business; they are recorded as applied with no output.
                    outcome = outcomes.get(env.id, [])
                    if isinstance(outcome, Rejected):
                        notes.warning("handler rejected an event", reason=outcome.reason, final=outcome.final,
                                      lead_id=str(env.data.lead_id), event_id=str(env.id))
                        letter = self._dead_letter(envelopes[env.id][1], "rejected", outcome.reason, now,
                                                   final=outcome.final)
                        results[env.id] = letter
                        if outcome.final:
                            # Its outcome for good: a copy read again after later events moved the state on
                            # must get this letter, not an application out of its place in the log.
                            applied.append((env.id, env.type, letter))
                        # Else not recorded in the inbox: once the cause is fixed, a
                        # redriven copy of this event must be applied afresh.
                        continue
                    if (why := _unproducible(outcome, refused)) is not None:
                        unproducible[env.id] = why  # said as the next pass dead-letters it
                        # Left uncommitted, the unit's writes are undone: its handler's for this event, which a
                        # redrive applies afresh once its output fits, and the others', done again without
                        # it (the events after it may have read what it wrote).
                        return False
                    results[env.id] = outcome
                    applied.append((env.id, env.type, outcome))
            await uow.record(applied, digests)
            await uow.commit()
            notes.recorded.update(eid for eid, _, _ in applied)
            return True

    def _reused(self, record: Record, event_id: uuid.UUID, now: datetime, notes: Notes) -> list[Message]:
        """The letter of a record under an id the inbox (or the batch) has for another record."""
        notes.warning("a record reuses the id of another; it is not applied", topic=record.topic,
                      partition=record.partition, offset=record.offset, event_id=str(event_id),
                      lead_id=_lead_id(record.key))
        return self._dead_letter(record, "reused_id", f"ce_id {event_id} was used before for a different record: "
                                 "give every record a new ce_id, the same one only to send that very record again",
                                 now, final=True)

    def dead_letter(self, record: Record, kind: str, error: str) -> list[Message]:
        """``record``'s dead letter (and its lead's announcement), written now; not recorded in the inbox."""
        return self._dead_letter(record, kind, error, self._clock())

    def _dead_letter(self, record: Record, kind: str, error: str, now: datetime, final: bool = False) -> list[Message]:
        return dead_letter(
            record_topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, headers=record.headers,
            kind=kind, error=error, stage=self._service, at=now, final=final,
        )
