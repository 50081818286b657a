"""A record its handler always fails on, in the runner's retry loop, with no broker and no Postgres: a producer and
an inbox in memory, the runner never started."""

import asyncio
import contextlib
import dataclasses
import uuid
from types import SimpleNamespace

import asyncpg
import pytest
import sqlalchemy.exc
from prometheus_client import REGISTRY
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, UnsupportedCodecError

from leadpipe_common import consumer as consumer_module, topics
from leadpipe_common.consumer import POISON_AFTER, BatchApplier, ConsumerRunner, NotNow, _Listener
from leadpipe_common.envelope import Message, decode, encode
from leadpipe_common.producer import MAX_REQUEST_SIZE, message_size
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork


class Sent:
    """A producer that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send_all(self, messages: list[Message]) -> int:
        self.messages += messages
        return len(messages)


class Handler:
    """Answers one output per lead, and raises ``error`` for the leads in ``fails_on``."""

    def __init__(self, error: Exception, fails_on: set[uuid.UUID]) -> None:
        self.error, self.fails_on = error, fails_on
        self.calls = 0

    async def __call__(self, uow, batch):  # noqa: ANN001, ANN204
        self.calls += 1
        if any(env.data.lead_id in self.fails_on for env in batch):
            raise self.error
        return {env.id: [encode("test.out", env.data, event_id=uuid.uuid5(env.id, "out"), source="t", time=env.time)]
                for env in batch}


def runner(handler: Handler, uow: MemoryUnitOfWork | None = None) -> tuple[ConsumerRunner, Sent]:
    """A runner of ``handler``, its inbox ``uow``'s (kept from one unit of work to the next) or none."""
    sent = Sent()
    applier = BatchApplier(service="scoring", handlers={"lead.enriched": handler},
                           unit_of_work=(lambda: uow) if uow is not None else lambda: MemoryUnitOfWork(object()))
    settings = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql+asyncpg://x@127.0.0.1:1/x",
                                retry_backoff_max_s=0.01)
    return ConsumerRunner(settings=settings, service="scoring", input_topics=[topics.ENRICHED], applier=applier,
                          producer=sent), sent  # type: ignore[arg-type]


def batch_of(*leads) -> dict[TopicPartition, list]:  # noqa: ANN002
    return {TopicPartition(topics.ENRICHED, 0): [
        factories.consumed(factories.message(topics.ENRICHED, lead), offset) for offset, lead in enumerate(leads)]}


async def test_a_record_its_handler_always_fails_on_is_dead_lettered_and_the_rest_of_its_batch_applied():
    """A value no database could take (a year-0 time, say) failed its batch on every retry: the partition, then
    the stage, stopped for good."""
    good, poison, later = (factories.enriched(f"{who}@example.com") for who in ("ada", "bo", "cy"))
    stage, sent = runner(Handler(OverflowError("date value out of range"), {poison.lead_id}))

    assert await stage._apply_with_retry(batch_of(good, poison, later)) == POISON_AFTER + 1

    outputs = [m for m in sent.messages if m.topic == "test.out"]
    assert sorted(m.key for m in outputs) == sorted(str(lead.lead_id).encode() for lead in (good, later))
    [letter] = [m for m in sent.messages if m.topic == topics.DEADLETTER]
    assert letter.key == str(poison.lead_id).encode() and letter.header("dlq.error.kind") == "handler"
    assert letter.header("dlq.error.message") == "OverflowError: date value out of range"
    assert letter.header("dlq.final") is None  # a redrive after the fix applies it
    [stalled] = [m for m in sent.messages if m.topic == topics.LIFECYCLE]
    assert stalled.key == letter.key  # the lead is seen to stop at this stage


async def stopped_after(stage: ConsumerRunner, handler: Handler, calls: int, batch) -> int:  # noqa: ANN001
    attempts = asyncio.create_task(stage._apply_with_retry(batch))
    async with asyncio.timeout(10):
        while handler.calls < calls:
            await asyncio.sleep(0.001)
    stage._stopping.set()
    return await attempts


async def test_an_outage_is_waited_out_however_long_never_taken_for_a_poison_record():
    lead = factories.enriched()
    down = sqlalchemy.exc.OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
    handler = Handler(down, {lead.lead_id})
    stage, sent = runner(handler)
    assert await stopped_after(stage, handler, 4 * POISON_AFTER, batch_of(lead)) == 0  # left for redelivery
    assert sent.messages == []


async def test_a_stage_missing_its_table_dead_letters_nothing_it_waits_to_be_mended():
    """Every record would fail alone: dead-lettering them all would empty the stage's input into the dead-letter
    topic over a deployment mistake."""
    missing = sqlalchemy.exc.ProgrammingError("INSERT", {}, asyncpg.UndefinedTableError('relation "scores" does not exist'))
    good, other = factories.enriched("ada@example.com"), factories.enriched("bo@example.com")
    handler = Handler(missing, {good.lead_id, other.lead_id})
    stage, sent = runner(handler)
    assert await stopped_after(stage, handler, 4 * POISON_AFTER, batch_of(good, other)) == 0
    assert sent.messages == []


async def test_a_batch_its_handler_says_must_wait_waits_however_long_and_is_never_dead_lettered():
    """delivery holds its input while a stored subscription cannot be opened (its key is missing)."""
    lead = factories.enriched()
    handler = Handler(NotNow("a subscription cannot be opened"), {lead.lead_id})
    stage, sent = runner(handler)
    assert await stopped_after(stage, handler, 4 * POISON_AFTER, batch_of(lead)) == 0
    assert sent.messages == []


class Fetches:
    """aiokafka's consumer as the loop polls it: the first poll raises what aiokafka's record reader raised on a
    header name that is not UTF-8 (having moved on the positions of the partitions it drained before that one), the
    later ones bring nothing."""

    def __init__(self, stage: ConsumerRunner, error: Exception) -> None:
        self.stage, self.polls, self.error = stage, 0, error
        self.applied, self.committed_only = TopicPartition(topics.SCORED, 0), TopicPartition(topics.FEEDBACK, 0)
        self.sought: dict[TopicPartition, int] = {}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.polls += 1
        if self.polls == 1:
            raise self.error
        if self.polls == 3:
            self.stage._stopping.set()
        return {}

    def assignment(self) -> set:
        return {self.applied, self.committed_only}

    async def committed(self, tp: TopicPartition) -> int:
        return 3

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    def highwater(self, tp: TopicPartition) -> None:
        return None

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: 10_000 for tp in partitions}


@pytest.mark.parametrize("error", [UnicodeDecodeError("utf-8", b"\xff\xfe", 0, 1, "invalid start byte"),
                                   UnsupportedCodecError("Libraries for lz4 compression codec not found")],
                         ids=["header-name-not-utf-8", "lz4-batch"])
async def test_a_fetch_aiokafka_cannot_read_is_retried_from_what_was_applied_not_the_end_of_the_loop(error):
    """Ending the loop left the stage consuming nothing with /healthz fine; retrying from where aiokafka had moved
    the positions would pass over (and commit past) the records it drained of other partitions before failing."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = fetches = Fetches(stage, error)  # type: ignore[assignment]
    stage._done[fetches.applied] = 7  # applied up to offset 6
    async with asyncio.timeout(10):
        await stage._run()  # returns only because the third poll asked it to stop
    assert fetches.polls == 3
    assert fetches.sought == {fetches.applied: 7, fetches.committed_only: 3}
    assert stage.healthy  # ready again once fetches answer, with no record to apply


async def test_a_database_gone_read_only_is_waited_out_never_taken_for_poison():
    """A failover lands the connections on a standby (or a managed Postgres near full turns read-only): every
    record fails alike, and dead-lettering them emptied the stage's input into the dead-letter topic."""
    leads = [factories.enriched(f"{who}@example.com") for who in ("ada", "bo", "cy")]
    read_only = sqlalchemy.exc.InternalError("INSERT", {}, asyncpg.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"))
    handler = Handler(read_only, {lead.lead_id for lead in leads})
    stage, sent = runner(handler)
    assert await stopped_after(stage, handler, 4 * POISON_AFTER, batch_of(*leads)) == 0
    assert sent.messages == []


async def test_two_bad_records_alone_in_a_batch_are_both_dead_lettered_not_held_for_ever():
    """What a redrive of several letters before the fix sends back: the stage must not stall on them."""
    leads = [factories.enriched(f"{who}@example.com") for who in ("ada", "bo")]
    stage, sent = runner(Handler(OverflowError("date value out of range"), {lead.lead_id for lead in leads}))
    assert await stage._apply_with_retry(batch_of(*leads)) == POISON_AFTER + 1
    assert [m.key for m in sent.messages if m.topic == topics.DEADLETTER] == [str(lead.lead_id).encode()
                                                                              for lead in leads]


class LostLog(Fetches):
    """The broker lost its log (the embedded one restarting): the committed offset lies past the log's end."""

    async def committed(self, tp: TopicPartition) -> int:
        return 5000

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: 0 for tp in partitions}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.sought[tp] = 0


async def test_a_failed_fetch_does_not_undo_reading_a_partition_whose_log_was_lost_from_its_start():
    """The rewind sent a partition nothing was applied of back to its committed offset, past the new log's end:
    the records written since waited unread, then were committed past."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = fetches = LostLog(stage, UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))  # type: ignore[assignment]
    stage._done[fetches.applied] = 7
    async with asyncio.timeout(10):
        await stage._run()
    assert fetches.sought == {fetches.applied: 7, fetches.committed_only: 0}


class OneUnreadable:
    """Two partitions as aiokafka reads them: a regular fetch drains ``good`` (moving its position), then fails on
    ``bad``'s second record, which it cannot read; a fetch of one partition gives a record at a time."""

    def __init__(self, stage: ConsumerRunner) -> None:
        self.stage = stage
        self.good, self.bad = TopicPartition(topics.ENRICHED, 0), TopicPartition(topics.ENRICHED, 1)
        leads = {tp: [factories.enriched(f"{tp.partition}.{i}@example.com") for i in range(3)]
                 for tp in (self.good, self.bad)}
        self.log = {tp: [factories.consumed(factories.message(topics.ENRICHED, lead), i, partition=tp.partition)
                         for i, lead in enumerate(leads[tp])] for tp in leads}
        for records in self.log.values():
            for record in records:
                record.timestamp = 0  # ms since the epoch, as aiokafka's records carry it
        self.unreadable = (self.bad, 1)
        self.positions = {self.good: 0, self.bad: 0}
        self.quiet = 0
        #: Fetches made holding the batch lock: during a rebalance, such a fetch would wait for the rebalance,
        #: which waits for the lock.
        self.fetched_locked = 0

    def _read(self, tp: TopicPartition, most: int) -> list:
        out = []
        while len(out) < most and self.positions[tp] < len(self.log[tp]):
            if (tp, self.positions[tp]) == self.unreadable:
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            out.append(self.log[tp][self.positions[tp]])
            self.positions[tp] += 1
        return out

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int, max_records: int) -> dict:
        self.fetched_locked += self.stage._batch_lock.locked()
        got = {}
        for tp in partitions or (self.good, self.bad):
            if records := self._read(tp, max_records - sum(map(len, got.values()))):
                got[tp] = records
        if not got and not partitions:
            self.quiet += 1
            if self.quiet == 2:
                self.stage._stopping.set()
        return got

    def assignment(self) -> set:
        return {self.good, self.bad}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def committed(self, tp: TopicPartition) -> int:
        return 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def highwater(self, tp: TopicPartition) -> None:
        return None

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: len(self.log[tp]) for tp in partitions}

    async def commit(self, offsets: dict) -> None:
        self.committed_at = dict(offsets)


async def test_a_record_aiokafka_cannot_read_is_passed_over_with_a_letter_naming_where_it_is_not_a_stalled_stage():
    """Every partition is fetched again after a failed fetch: one unreadable record held them all for ever."""
    stage, sent = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = log = OneUnreadable(stage)  # type: ignore[assignment]
    async with asyncio.timeout(30):
        await stage._run()
    applied = sorted(m.key for m in sent.messages if m.topic == "test.out")
    everyone_else = [r for tp in (log.good, log.bad) for i, r in enumerate(log.log[tp]) if (tp, i) != log.unreadable]
    assert applied == sorted(r.key for r in everyone_else)
    [letter] = [m for m in sent.messages if m.topic == topics.DEADLETTER]
    assert (letter.header("dlq.error.kind"), letter.header("dlq.source.partition"), letter.header("dlq.source.offset"),
            letter.value) == ("unreadable", "1", "1", b"")
    assert log.committed_at == {log.good: 3, log.bad: 3}  # past it, once the stage stops
    assert log.fetched_locked == 0


class Waiting:
    """A consumer whose poll waits a minute for records that never come."""

    def __init__(self) -> None:
        self.polling = asyncio.Event()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.polling.set()
        await asyncio.sleep(60)
        return {}

    def assignment(self) -> set:
        return set()

    async def stop(self) -> None:
        pass


async def test_a_stop_cuts_a_waiting_poll_short_rather_than_wait_out_its_timeout():
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = waiting = Waiting()  # type: ignore[assignment]
    stage._task = asyncio.create_task(stage._run())
    await waiting.polling.wait()
    async with asyncio.timeout(5):  # the poll alone would take 60 s
        await stage.stop()
    assert stage._task.done()


class SlowCheck(Waiting):
    """A consumer whose poll waits a minute, and whose check of an assigned partition against its log end waits
    until ``answer`` is set (a broker slow to answer ListOffsets)."""

    def __init__(self) -> None:
        super().__init__()
        self.checking, self.answer = asyncio.Event(), asyncio.Event()
        self.tp = TopicPartition(topics.ENRICHED, 0)

    def assignment(self) -> set:
        return {self.tp}

    async def end_offsets(self, partitions: list) -> dict:
        self.checking.set()
        await self.answer.wait()
        return {tp: 10 for tp in partitions}

    async def committed(self, tp: TopicPartition) -> int:
        return 0


async def test_a_stop_during_the_check_of_a_new_assignment_starts_no_poll_after_it():
    """A stop that came while the loop was not polling (the check after an assignment, a rewind, the search for a
    record that cannot be read: up to 5 s each) found no poll to cut short; the poll that followed waited its
    timeout, and a batch it brought was applied, before the loop saw the stop."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = slow = SlowCheck()  # type: ignore[assignment]
    stage._unchecked = {slow.tp}
    stage._task = asyncio.create_task(stage._run())
    await asyncio.wait_for(slow.checking.wait(), timeout=5)
    stopping = asyncio.create_task(stage.stop())
    await asyncio.sleep(0)
    slow.answer.set()
    async with asyncio.timeout(5):  # the stop alone would give the loop 7 s, then cancel it
        await stopping
    assert not slow.polling.is_set() and stage._task.done() and not stage._task.cancelled()


async def test_a_stop_during_the_search_for_a_record_that_cannot_be_read_fetches_no_more_of_it():
    """The search reads each partition a record a poll, each poll up to a second: a stop waited for all of them."""
    stage, sent = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = log = OneUnreadable(stage)  # type: ignore[assignment]
    stage._stopping.set()
    await stage._pass_over_unreadable()
    assert log.positions == {log.good: 0, log.bad: 0} and sent.messages == []


class Group:
    """aiokafka's consumer as a rebalance finds it: three partitions and the log end the broker reports of each;
    keeps each offset commit, or waits for ever in it (``hangs``), as on a coordinator busy rebalancing."""

    def __init__(self, ends: dict[TopicPartition, int], hangs: bool = False) -> None:
        self.ends, self.hangs, self.commits = ends, hangs, []

    def assignment(self) -> set:
        return set(self.ends)

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: self.ends[tp] for tp in partitions}

    async def commit(self, offsets: dict) -> None:
        if self.hangs:
            await asyncio.Event().wait()
        self.commits.append(dict(offsets))


def three_partitions() -> tuple[TopicPartition, TopicPartition, TopicPartition]:
    return tuple(TopicPartition(topics.ENRICHED, p) for p in range(3))  # type: ignore[return-value]


async def test_a_rebalance_commits_what_was_applied_of_the_partitions_it_takes_away():
    """They were forgotten uncommitted: every rebalance (aiokafka's eager protocol revokes every partition) read up to
    5 s of records again on each, and sent their stored outputs again, which sales tools reading leads.routed saw
    twice."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    a, b, kept = three_partitions()
    stage._consumer = group = Group({a: 100, b: 10, kept: 100})  # type: ignore[assignment]
    stage._uncommitted = {a: 7, b: 12, kept: 5}
    await _Listener(stage).on_partitions_revoked({a, b})
    assert group.commits == [{a: 7, b: 10}]  # b's clamped to its reported log end, as every commit is
    assert stage._uncommitted == {kept: 5}


async def test_a_rebalance_whose_commit_does_not_come_back_goes_on_without_it(monkeypatch):
    """The whole group waits for the revocation: a commit waiting on the coordinator that is rebalancing is given up
    well before the session timeout that bounds other commits (10 s), and its records are read again by their next
    owner, absorbed by its inbox."""
    monkeypatch.setattr(consumer_module, "REVOKE_COMMIT_S", 0.1)
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    a, b, kept = three_partitions()
    stage._consumer = Group({a: 100, b: 100, kept: 100}, hangs=True)  # type: ignore[assignment]
    stage._uncommitted = {a: 7, b: 12, kept: 5}
    async with asyncio.timeout(5):
        await _Listener(stage).on_partitions_revoked({a, b})
    assert stage._uncommitted == {kept: 5}


class SizedBroker:
    """A producer refusing a message over ``MAX_REQUEST_SIZE`` bytes, as ``Producer`` does before sending, or a dead
    letter over ``letters`` bytes or another message over ``outputs``, as a broker does whose topic's
    ``max.message.bytes`` is lower; keeps what it took."""

    def __init__(self, letters: int = MAX_REQUEST_SIZE, outputs: int = MAX_REQUEST_SIZE) -> None:
        self.letters, self.outputs, self.messages = letters, outputs, []

    async def send_all(self, messages: list[Message]) -> int:
        for m in messages:
            if message_size(m) > min(MAX_REQUEST_SIZE, self.letters if m.topic == topics.DEADLETTER else self.outputs):
                raise MessageSizeTooLargeError(f"a message for {m.topic} is {message_size(m)} bytes")
        self.messages += messages
        return len(messages)


def sales_record(key: bytes, value: bytes = b'{"x": 1}', offset: int = 7) -> SimpleNamespace:
    """A record a sales tool wrote to leads.feedback that is no CloudEvent: it can only be dead-lettered."""
    return SimpleNamespace(topic=topics.FEEDBACK, partition=0, offset=offset, key=key, value=value, headers=[],
                           timestamp=0)


async def test_a_record_whose_key_is_as_big_as_the_broker_takes_is_dead_lettered_not_retried_for_ever():
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._producer = broker = SizedBroker()  # type: ignore[assignment]
    record = sales_record(b"k" * (MAX_REQUEST_SIZE - 150))
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry({TopicPartition(topics.FEEDBACK, 0): [record]}) == 1
    [letter] = broker.messages
    assert letter.header("dlq.key.dropped") == str(len(record.key)) and letter.header("dlq.source.offset") == "7"


async def test_a_dead_letter_the_broker_refuses_goes_smaller_and_one_refused_even_so_is_passed_over_and_counted():
    """A broker whose limit is below the producer's refused letters dead_letter had sized to fit: the batch was
    retried for ever."""
    refused = lambda: REGISTRY.get_sample_value("leadpipe_consumer_deadletters_refused_total",  # noqa: E731
                                                {"kind": "undecodable"}) or 0.0
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    lead = factories.enriched()
    good = factories.consumed(factories.message(topics.ENRICHED, lead), 3)
    bad = sales_record(str(lead.lead_id).encode(), b"x" * 5_000)
    batch = {TopicPartition(topics.ENRICHED, 0): [good], TopicPartition(topics.FEEDBACK, 0): [bad]}

    stage._producer = roomy = SizedBroker(4_000)  # type: ignore[assignment]
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch) == 1
    [letter] = [m for m in roomy.messages if m.topic == topics.DEADLETTER]
    assert letter.value == b"" and letter.header("dlq.value.dropped") == "5000" and letter.key == bad.key
    assert [m.topic for m in roomy.messages if m.topic != topics.DEADLETTER] == ["test.out"]

    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._producer = tiny = SizedBroker(100)  # type: ignore[assignment]
    before = refused()
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch) == 1
    assert [m.topic for m in tiny.messages] == ["test.out"]
    assert refused() == before + 1


class Bloating(Handler):
    """Answers one output per lead, padded to ``sizes[lead]`` bytes of value for the leads it names."""

    def __init__(self, sizes: dict[uuid.UUID, int]) -> None:
        super().__init__(RuntimeError("unused"), set())
        self.sizes = sizes

    async def __call__(self, uow, batch):  # noqa: ANN001, ANN204
        answers = await super().__call__(uow, batch)
        return {env.id: [dataclasses.replace(m, value=m.value.ljust(self.sizes.get(env.data.lead_id, 0)))
                         for m in answers[env.id]] for env in batch}


async def test_an_output_over_the_produce_limit_dead_letters_its_input_at_once_not_its_batch_for_ever():
    """A lead whose fields made its output over 1 MiB: stored, refused by the producer on every send and answered from
    the inbox on every retry, it held its partition, and the stage with it, for good."""
    big, small = factories.enriched("ada@example.com"), factories.enriched("bo@example.com")
    stage, _ = runner(Bloating({big.lead_id: MAX_REQUEST_SIZE}), MemoryUnitOfWork(object()))
    stage._producer = broker = SizedBroker()  # type: ignore[assignment]
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch_of(big, small)) == 1
    assert [(m.topic, m.key) for m in broker.messages] == [
        (topics.DEADLETTER, str(big.lead_id).encode()), (topics.LIFECYCLE, str(big.lead_id).encode()),
        ("test.out", str(small.lead_id).encode())]
    assert "over the produce limit of 1048576 bytes" in broker.messages[0].header("dlq.error.message")


async def test_an_output_the_broker_refuses_as_too_large_dead_letters_its_input_on_the_retry_and_a_redrive_sends_it():
    """A topic whose limit is below the producer's: the output passed the producer's check and was stored, then
    the broker refused it on every send. Its input's letter comes on the retry; the inbox keeps what it stored, so a
    redrive once the topic's limit is raised sends that output."""
    big, small = factories.enriched("ada@example.com"), factories.enriched("bo@example.com")
    uow = MemoryUnitOfWork(object())
    stage, _ = runner(Bloating({big.lead_id: 5_000}), uow)
    stage._producer = strict = SizedBroker(outputs=4_000)  # type: ignore[assignment]
    batch = batch_of(big, small)
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch) == 2
    [letter] = [m for m in strict.messages if m.topic == topics.DEADLETTER]
    assert letter.key == str(big.lead_id).encode() and letter.header("dlq.error.kind") == "rejected"
    assert letter.header("dlq.error.message").endswith("is over test.out's limit: the broker refused it as too large")
    assert {m.key for m in strict.messages if m.topic == "test.out"} == {str(small.lead_id).encode()}
    [stored] = next(outputs for outputs in uow.inbox.values() if outputs and outputs[0].key == letter.key)

    stage._producer = raised = SizedBroker()  # type: ignore[assignment]
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry({tp: records[:1] for tp, records in batch.items()}) == 1  # a redrive
    assert raised.messages == [stored]


async def test_an_output_stored_too_large_by_an_earlier_release_dead_letters_its_input_on_the_retry():
    """Partitions already held by such an output (stored before outputs were measured) move on after the upgrade."""
    lead = factories.enriched()
    uow = MemoryUnitOfWork(object())
    batch = batch_of(lead)
    [record] = batch[TopicPartition(topics.ENRICHED, 0)]
    huge = dataclasses.replace(factories.message("test.out", lead), value=b" " * MAX_REQUEST_SIZE)
    uow.inbox[uuid.UUID(dict(record.headers)["ce_id"].decode())] = [huge]
    stage, _ = runner(Handler(RuntimeError("unused"), set()), uow)
    stage._producer = broker = SizedBroker()  # type: ignore[assignment]
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch) == 2
    assert [m.topic for m in broker.messages] == [topics.DEADLETTER, topics.LIFECYCLE]
    assert broker.messages[0].header("dlq.error.message") == (
        f"output lead.enriched of {message_size(huge)} bytes is over the produce limit of {MAX_REQUEST_SIZE} bytes")


async def test_a_record_dead_lettered_for_a_row_postgres_refuses_carries_no_value_of_that_row():
    """Postgres's DETAIL quotes the failing row: the lead's address and phone went into the letter's
    dlq.error.message, the log and the deadlettered step's reason that reporting keeps."""
    lead = factories.enriched("ada.lovelace@stripe.com")
    refused = asyncpg.exceptions.NotNullViolationError.new({
        "S": "ERROR", "C": "23502", "s": "scoring", "t": "scores", "c": "grade",
        "M": 'null value in column "grade" of relation "scores" violates not-null constraint',
        "D": f"Failing row contains ({lead.lead_id}, ada.lovelace@stripe.com, Ada, +44 20 7946 0958, null)."})
    stage, sent = runner(Handler(sqlalchemy.exc.IntegrityError("INSERT INTO scoring.scores ...", None, refused),
                                 {lead.lead_id}))
    assert await stage._apply_with_retry(batch_of(lead)) == POISON_AFTER + 1
    [letter] = [m for m in sent.messages if m.topic == topics.DEADLETTER]
    [step] = [decode(list(m.headers), m.key, m.value) for m in sent.messages if m.topic == topics.LIFECYCLE]
    for text in (letter.header("dlq.error.message"), step.data.reason):
        assert "grade" in text and "23502" in text
        assert "ada" not in text and "7946" not in text


class Assigned:
    """One partition as the check after an assignment sees it: the group's committed offset and the log end the
    broker reports."""

    def __init__(self, committed: int, end: int) -> None:
        self._committed, self._end = committed, end
        self.rewound: set[TopicPartition] = set()

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: self._end for tp in partitions}

    async def committed(self, tp: TopicPartition) -> int:
        return self._committed

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.rewound |= set(partitions)


@pytest.mark.parametrize("committed, end, rewound", [(150, 0, True), (1, 0, True), (12, 12, False), (5, 12, False)])
async def test_a_partition_assigned_past_its_reported_log_end_by_any_margin_is_read_from_its_start(committed, end,
                                                                                                    rewound):
    """A margin of 200 left a log lost under a commit of 150 unread until it grew past 150: its first 150 records,
    written after the loss, were never read. Every commit of ours is clamped to the reported end, so at or below it
    is where a log that lost nothing leaves a partition."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = partition = Assigned(committed, end)  # type: ignore[assignment]
    tp = TopicPartition(topics.ENRICHED, 0)
    await stage._rewind_beyond_end({tp})
    assert partition.rewound == ({tp} if rewound else set())


class CancelledOnce(Handler):
    """A handler whose client library raises a CancelledError of its own once (as a wedged driver may)."""

    async def __call__(self, uow, batch):  # noqa: ANN001, ANN204
        if self.calls == 0:
            self.calls += 1
            raise asyncio.CancelledError("the driver's own timeout")
        return await super().__call__(uow, batch)


async def test_a_batch_cancelled_from_inside_is_retried_not_the_end_of_the_consumer_loop():
    """It ended the loop for good: the stage consumed nothing more, its /healthz still fine."""
    lead = factories.enriched()
    stage, sent = runner(CancelledOnce(RuntimeError("unused"), set()))
    async with asyncio.timeout(10):
        assert await stage._apply_with_retry(batch_of(lead)) == 2
    assert [m.key for m in sent.messages] == [str(lead.lead_id).encode()]


class Blocking(Handler):
    """A handler that waits on something the test controls."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("unused"), set())
        self.inside = asyncio.Event()

    async def __call__(self, uow, batch):  # noqa: ANN001, ANN204
        self.inside.set()
        await asyncio.Event().wait()


async def test_a_consumer_cancelled_from_outside_during_a_batch_still_ends():
    """stop's last resort, when the batch does not finish in time."""
    handler = Blocking()
    stage, _ = runner(handler)
    task = asyncio.create_task(stage._apply_with_retry(batch_of(factories.enriched())))
    await asyncio.wait_for(handler.inside.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert task.cancelled()


class CancelledInside(Fetches):
    """``Fetches``, whose client raises a CancelledError of its own once (its internal timeout; nothing cancelled the
    runner): in the first poll, in the rewind after a first poll that failed (``committed``), or in the check of the
    partition that rewind sent back to its committed offset (``end_offsets``)."""

    def __init__(self, stage: ConsumerRunner, where: str) -> None:
        own = asyncio.CancelledError("the client's own")
        super().__init__(stage, own if where == "getmany" else KafkaConnectionError("broker away"))
        self.where, self.raised = where, where == "getmany"

    def _once(self, where: str) -> None:
        if where == self.where and not self.raised:
            self.raised = True
            raise asyncio.CancelledError("the client's own")

    async def committed(self, tp: TopicPartition) -> int:
        self._once("committed")
        return await super().committed(tp)

    async def end_offsets(self, partitions: list) -> dict:
        self._once("end_offsets")
        return await super().end_offsets(partitions)


@pytest.mark.parametrize("where", ["getmany", "committed", "end_offsets"],
                         ids=["in-a-poll", "in-a-rewind", "in-the-check-of-a-rewound-partition"])
async def test_a_cancelled_error_the_client_raises_of_its_own_is_retried_not_the_end_of_the_consumer_loop(where):
    """It ended the loop for good, the task cancelled as by a stop, so not even the loop's end was logged: the stage
    consumed nothing more."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._consumer = fetches = CancelledInside(stage, where)  # type: ignore[assignment]
    stage._done[fetches.applied] = 7
    loop = asyncio.create_task(stage._run())
    await asyncio.wait([loop], timeout=10)
    assert fetches.raised and loop.done() and not loop.cancelled()  # it returned: the third poll asked it to stop
    assert fetches.polls == 3 and fetches.sought == {fetches.applied: 7, fetches.committed_only: 3}


class Committing:
    """aiokafka's consumer as the loop uses it: one partition bringing a record a poll until ``records`` are all
    read, then asking the loop to stop; its first offset commit raises a CancelledError of its own."""

    def __init__(self, stage: ConsumerRunner, records: list) -> None:
        self.stage, self.records, self.polls = stage, records, 0
        self.tp = TopicPartition(topics.ENRICHED, 0)
        self.commits: list[dict] = []
        self.committing = asyncio.Event()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.polls += 1
        if self.polls > len(self.records):
            self.stage._stopping.set()
            return {}
        return {self.tp: [self.records[self.polls - 1]]}

    def assignment(self) -> set:
        return {self.tp}

    def highwater(self, tp: TopicPartition) -> None:
        return None

    async def end_offsets(self, partitions: list) -> dict:
        return {tp: 10_000 for tp in partitions}

    async def commit(self, offsets: dict) -> None:
        self.commits.append(dict(offsets))
        self.committing.set()
        if len(self.commits) == 1:
            raise asyncio.CancelledError("the client's own")


def committing_after_each_batch(leads: list) -> tuple[ConsumerRunner, Sent, list]:
    stage, sent = runner(Handler(RuntimeError("unused"), set()))
    stage._settings = stage._settings.model_copy(update={"commit_interval_ms": 0})
    [records] = batch_of(*leads).values()
    for record in records:
        record.timestamp = 0  # ms since the epoch, as aiokafka's records carry it
    return stage, sent, records


async def test_a_cancelled_error_the_client_raises_in_an_offset_commit_is_a_commit_not_made_not_the_end_of_the_loop():
    leads = [factories.enriched(f"{who}@example.com") for who in ("ada", "bo")]
    stage, sent, records = committing_after_each_batch(leads)
    stage._consumer = consumer = Committing(stage, records)  # type: ignore[assignment]
    loop = asyncio.create_task(stage._run())
    await asyncio.wait([loop], timeout=10)
    assert loop.done() and not loop.cancelled()
    assert consumer.commits == [{consumer.tp: 1}, {consumer.tp: 2}]  # the second covers what the first did not
    assert [m.key for m in sent.messages] == [str(lead.lead_id).encode() for lead in leads]


class CommitHangs(Committing):
    async def commit(self, offsets: dict) -> None:
        self.committing.set()
        await asyncio.Event().wait()


async def test_a_consumer_cancelled_from_outside_during_an_offset_commit_still_ends():
    """stop's last resort, when the commit does not finish in time."""
    stage, _, records = committing_after_each_batch([factories.enriched()])
    stage._consumer = consumer = CommitHangs(stage, records)  # type: ignore[assignment]
    loop = asyncio.create_task(stage._run())
    await asyncio.wait_for(consumer.committing.wait(), timeout=5)
    loop.cancel()
    await asyncio.wait([loop], timeout=5)
    assert loop.cancelled()


class SlowReset(Assigned):
    """A broker that lost the partition's log and is slow to carry out the reset: aiokafka's seek_to_beginning
    requests it at once, then waits for it up to its request timeout (40 s)."""

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.rewound |= set(partitions)
        await asyncio.sleep(40)


async def test_the_check_after_an_assignment_does_not_wait_out_a_slow_rewind_so_a_stop_still_commits():
    """Only the check was bounded (5 s, inside stop's 7 s); the rewind's wait could hold the loop 40 s more, and a
    stop meanwhile gave up the final commit."""
    stage, _ = runner(Handler(RuntimeError("unused"), set()))
    stage._settings = stage._settings.model_copy(update={"session_timeout_ms": 100})  # bounds the check: 0.1 s
    stage._consumer = partition = SlowReset(committed=5000, end=0)  # type: ignore[assignment]
    tp = TopicPartition(topics.ENRICHED, 0)
    async with asyncio.timeout(5):
        await stage._rewind_beyond_end({tp})
    assert partition.rewound == {tp}
