"""The runner's batch logic (decode, dead letters, inbox, grouping, order) with no broker and no Postgres."""

import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from leadpipe_common import topics
from leadpipe_common.consumer import BatchApplier, Rejected
from leadpipe_common.db import record_digest, redelivered
from leadpipe_common.envelope import Message, decode, encode
from leadpipe_common.events import Attribution, LeadDispositioned, LeadStageChanged
from leadpipe_common.producer import MAX_REQUEST_SIZE, message_size
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def records(*messages: Message, topic: str = topics.CAPTURED) -> list:
    return [factories.consumed(m, i, topic=topic) for i, m in enumerate(messages)]


def out(env, tag: str) -> Message:
    return encode("test.out", env.data, event_id=uuid.uuid5(env.id, tag), source="t", time=NOW)


class Handlers:
    """Handlers that note what they were given and answer one output per event."""

    def __init__(self, reject: bool = False, final: bool = False) -> None:
        self.calls: list[list[uuid.UUID]] = []
        self.reject, self.final = reject, final

    async def captured(self, uow, batch):
        self.calls.append([env.id for env in batch])
        if self.reject:
            return {env.id: Rejected("not yet", final=self.final) for env in batch}
        return {env.id: [out(env, "captured")] for env in batch}

    async def changed(self, uow, batch):
        self.calls.append([env.id for env in batch])
        return {env.id: [out(env, "changed")] for env in batch}


def applier(handlers: Handlers, uow: MemoryUnitOfWork, select=None) -> BatchApplier:
    return BatchApplier(service="scoring", handlers={"lead.captured": handlers.captured,
                                                     "lead.stage_changed": handlers.changed},
                        unit_of_work=lambda: uow, clock=lambda: NOW, select=select)


def captured() -> Message:
    return factories.message(topics.CAPTURED, factories.captured())


def changed() -> Message:
    lead = factories.captured()
    step = LeadStageChanged(lead_id=lead.lead_id, from_stage=None, to_stage="captured", at=NOW, by="t", reason="r",
                            attribution=Attribution())
    return factories.message(topics.CAPTURED, step)


async def test_undecodable_bytes_are_dead_lettered_in_place_and_the_rest_applied():
    good = captured()
    poison = Message(topics.CAPTURED, good.key, b"{not json", good.headers)
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    produced = await applier(handlers, uow).apply(records(good, poison))
    assert [m.topic for m in produced] == ["test.out", topics.DEADLETTER, topics.LIFECYCLE]
    assert produced[1].header("dlq.error.kind") == "undecodable" and produced[1].header("dlq.source.offset") == "1"
    assert len(uow.inbox) == 1 and uow.commits == 1


async def test_a_redelivered_event_is_answered_from_the_inbox_without_its_handler():
    msg = captured()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    first = await applier(handlers, uow).apply(records(msg))
    again = await applier(handlers, uow).apply(records(msg))
    assert again == first and len(handlers.calls) == 1


async def test_the_same_event_twice_in_one_batch_is_applied_and_emitted_once():
    msg = captured()
    handlers = Handlers()
    produced = await applier(handlers, MemoryUnitOfWork(None)).apply(records(msg, msg))
    assert len(produced) == 1 and handlers.calls == [[uuid.UUID(msg.header("ce_id"))]]


async def test_handlers_are_called_in_log_order_and_outputs_keep_the_order_of_their_records():
    """A lead merged between two of its scorings is merged between them, as if the batch had been cut there."""
    batch = [captured(), captured(), changed(), captured()]
    handlers = Handlers()
    produced = await applier(handlers, MemoryUnitOfWork(None)).apply(records(*batch))
    assert [m.key for m in produced] == [m.key for m in batch]
    ids = [uuid.UUID(m.header("ce_id")) for m in batch]
    assert handlers.calls == [[ids[0], ids[1]], [ids[2]], [ids[3]]]


async def test_a_handler_declared_for_several_types_gets_them_in_one_call_in_log_order():
    """What such a handler writes keeps the log's order: delivery queues each lead's webhooks in it."""
    batch = [changed(), captured(), changed(), captured()]
    handlers = Handlers()
    both = BatchApplier(service="delivery", handlers={"lead.captured": handlers.changed,
                                                      "lead.stage_changed": handlers.changed},
                        unit_of_work=lambda: MemoryUnitOfWork(None), clock=lambda: NOW)
    await both.apply(records(*batch))
    assert handlers.calls == [[uuid.UUID(m.header("ce_id")) for m in batch]]


async def test_a_record_too_deeply_nested_to_decode_is_dead_lettered_not_retried_for_ever():
    """An older version is upcast from json.loads, which recurses per level; RecursionError is no ValueError."""
    good = captured()
    old = [(k, v) for k, v in good.headers if k != "ce_dataschema"]  # no version named: version 1, upcast
    poison = Message(topics.CAPTURED, good.key, b'{"a":' + b"[" * 5000, tuple(old))
    produced = await applier(Handlers(), MemoryUnitOfWork(None)).apply(records(poison, good))
    assert [m.topic for m in produced][:2] == [topics.DEADLETTER, topics.LIFECYCLE]
    assert produced[0].header("dlq.error.kind") == "undecodable" and produced[-1].topic == "test.out"


async def test_whatever_else_decoding_raises_dead_letters_the_record(monkeypatch):
    from leadpipe_common import consumer

    def broken(headers, key, value):  # noqa: ANN001, ANN202
        raise ZeroDivisionError("a decoder bug")

    monkeypatch.setattr(consumer, "decode", broken)
    [letter, _] = await applier(Handlers(), MemoryUnitOfWork(None)).apply(records(captured()))
    assert letter.topic == topics.DEADLETTER and "ZeroDivisionError" in letter.header("dlq.error.message")


async def test_a_rejected_event_is_dead_lettered_and_not_remembered_so_a_redrive_applies_it():
    msg = captured()
    uow = MemoryUnitOfWork(None)
    produced = await applier(Handlers(reject=True), uow).apply(records(msg))
    assert [m.topic for m in produced] == [topics.DEADLETTER, topics.LIFECYCLE]
    assert produced[0].header("dlq.error.message") == "not yet" and uow.inbox == {}
    fixed = await applier(Handlers(), uow).apply(records(msg))
    assert [m.topic for m in fixed] == ["test.out"]


async def test_a_final_rejection_is_remembered_with_its_dead_letter_so_a_copy_read_again_gets_that_letter():
    """Final: the state that refused it may have moved on by the time a copy is read again; it is not applied."""
    msg = captured()
    uow = MemoryUnitOfWork(None)
    produced = await applier(Handlers(reject=True, final=True), uow).apply(records(msg))
    assert [m.topic for m in produced] == [topics.DEADLETTER, topics.LIFECYCLE]
    assert uow.inbox == {uuid.UUID(msg.header("ce_id")): produced}
    willing = Handlers()
    assert await applier(willing, uow).apply(records(msg)) == produced and willing.calls == []


class Bloating(Handlers):
    """Writes a row to the outbox for each event (kept or undone with its unit of work), and answers the events in
    ``bloated`` with an output too large to produce."""

    def __init__(self, bloated: set[uuid.UUID]) -> None:
        super().__init__()
        self.bloated = bloated

    async def captured(self, uow, batch):
        uow.publish([out(env, "written") for env in batch])
        answers = await super().captured(uow, batch)
        return {eid: [bloat(m) for m in outputs] if eid in self.bloated else outputs for eid, outputs in answers.items()}


def bloat(m: Message) -> Message:
    """``m`` with a value too large to produce."""
    return dataclasses.replace(m, value=b" " * MAX_REQUEST_SIZE)


async def test_an_event_whose_output_is_too_large_to_produce_is_dead_lettered_its_writes_undone_and_not_remembered():
    """Stored with its output, the event was answered from the inbox with that output on every retry of its batch,
    which the producer refused every time: the partition was held for ever."""
    big, small = captured(), captured()
    big_id, small_id = (uuid.UUID(m.header("ce_id")) for m in (big, small))
    handlers, uow = Bloating({big_id}), MemoryUnitOfWork(None)
    produced = await applier(handlers, uow).apply(records(big, small))

    assert [m.topic for m in produced] == [topics.DEADLETTER, topics.LIFECYCLE, "test.out"]
    letter = produced[0]
    size = message_size(bloat(out(decode(big.headers, big.key, big.value), "captured")))
    assert letter.header("dlq.error.kind") == "rejected" and letter.header("dlq.final") is None
    assert letter.header("dlq.error.message") == (
        f"output lead.captured of {size} bytes is over the produce limit of {MAX_REQUEST_SIZE} bytes")
    assert letter.value == big.value and produced[2].key == small.key
    assert handlers.calls == [[big_id, small_id], [small_id]]  # the unit done again without it
    assert [m.key for m in uow.published] == [small.key] and list(uow.inbox) == [small_id]

    handlers.bloated = set()  # the limit raised, or the output mended: what a redrive then sends is applied
    assert [m.topic for m in await applier(handlers, uow).apply(records(big))] == ["test.out"]
    assert set(uow.inbox) == {big_id, small_id}


async def test_an_event_of_a_type_nobody_handles_is_applied_with_no_output():
    msg = factories.message(topics.CAPTURED, factories.enriched())
    uow = MemoryUnitOfWork(None)
    assert await applier(Handlers(), uow).apply(records(msg)) == []
    assert uow.inbox == {uuid.UUID(msg.header("ce_id")): []}


async def test_records_the_selector_declines_are_passed_over_unread():
    handlers = Handlers()
    junk = Message(topics.CAPTURED, b"k", b"not even a cloudevent", ())
    produced = await applier(handlers, MemoryUnitOfWork(None), select=lambda headers: bool(headers)).apply(
        records(captured(), junk))
    assert [m.topic for m in produced] == ["test.out"]


async def test_nothing_is_remembered_when_a_handler_fails():
    class Broken(Handlers):
        async def captured(self, uow, batch):
            raise ConnectionError("database away")

    uow = MemoryUnitOfWork(None)
    with pytest.raises(ConnectionError):
        await applier(Broken(), uow).apply(records(captured()))
    assert uow.inbox == {} and uow.commits == 0


async def test_the_memory_inbox_refuses_an_event_recorded_twice_as_the_postgres_one_does():
    uow = MemoryUnitOfWork(store=None)
    event_id = uuid.uuid4()
    async with uow:
        await uow.record([(event_id, "lead.captured", [])])
        await uow.commit()
    async with uow:
        await uow.record([(event_id, "lead.captured", [])])
        with pytest.raises(RuntimeError, match="already in the inbox"):
            await uow.commit()
    assert uow.commits == 1 and list(uow.inbox) == [event_id]


@pytest.mark.parametrize(("kept", "digest", "repeat"), [
    (b"a" * 16, b"a" * 16, True),  # the same record again: a redelivery, a redrive
    (b"a" * 16, b"b" * 16, False),  # another record under the id
    (None, b"b" * 16, True),  # a row kept before digests were: taken as before
    (b"a" * 16, None, True),  # a record of a topic leadpipe writes: its id is the record
])
def test_a_record_whose_id_the_inbox_holds_is_a_redelivery_unless_both_digests_are_known_and_differ(
        kept, digest, repeat):
    assert redelivered(kept, digest) is repeat


def report(event_id: uuid.UUID, outcome: str = "accepted") -> Message:
    return factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=event_id, outcome=outcome, rep_id="ana"),
                             event_id=event_id)


def feedback_applier(handlers: Handlers, uow: MemoryUnitOfWork) -> BatchApplier:
    return BatchApplier(service="routing", handlers={"lead.dispositioned": handlers.captured},
                        unit_of_work=lambda: uow, clock=lambda: NOW)




async def test_another_report_under_a_used_id_is_dead_lettered_for_good_naming_the_id_and_not_applied():
    """A sales tool giving the lead's own id to each of its reports: the later one was answered as the first."""
    event_id = uuid.uuid4()
    accepted, won = report(event_id), report(event_id, "contacted")
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    first = await feedback_applier(handlers, uow).apply(records(accepted, topic=topics.FEEDBACK))

    [letter] = await feedback_applier(handlers, uow).apply(records(won, topic=topics.FEEDBACK))

    assert (letter.topic, letter.header("dlq.error.kind"), letter.header("dlq.final")) == (
        topics.DEADLETTER, "reused_id", "true")
    assert letter.header("dlq.error.message").startswith(f"ce_id {event_id} was used before for a different record")
    assert letter.value == won.value and handlers.calls == [[event_id]]
    assert uow.inbox == {event_id: first}


async def test_a_report_read_again_with_the_same_bytes_is_answered_from_the_inbox():
    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    first = await feedback_applier(handlers, uow).apply(records(report(event_id), topic=topics.FEEDBACK))
    again = await feedback_applier(handlers, uow).apply(records(report(event_id), topic=topics.FEEDBACK))
    assert again == first and handlers.calls == [[event_id]]


async def test_the_same_report_written_anew_in_another_key_order_is_answered_from_the_inbox():
    """A tool sending its report again serialises it again: the event is the same, the bytes are not."""
    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    sent = report(event_id)
    first = await feedback_applier(handlers, uow).apply(records(sent, topic=topics.FEEDBACK))
    rewritten = json.dumps(dict(reversed(json.loads(sent.value).items())), indent=2).encode()
    assert rewritten != sent.value
    again = await feedback_applier(handlers, uow).apply(
        records(Message(sent.topic, sent.key, rewritten, sent.headers), topic=topics.FEEDBACK))
    assert again == first and handlers.calls == [[event_id]]


def test_a_records_digest_is_of_what_its_producer_wrote_in_one_form_whatever_model_reads_it():
    """Stored digests outlive a version: one computed from the model leadpipe reads would change when a field is
    added with a default, and a redelivery written before the upgrade would be dead-lettered as a reuse."""
    sent = b'{"lead_id": "0b2f0d0e-0000-4000-8000-000000000001", "outcome": "won", "amount": 1.50, "rep_id": "ana"}'
    assert record_digest(sent) == record_digest(
        b'{"rep_id":"ana","amount":1.5,"outcome":"won","lead_id":"0b2f0d0e-0000-4000-8000-000000000001"}')
    # The form itself, spelled out: digests kept by an earlier version must still match.
    assert record_digest(sent) == hashlib.blake2b(
        b'{"amount":1.5,"lead_id":"0b2f0d0e-0000-4000-8000-000000000001","outcome":"won","rep_id":"ana"}',
        digest_size=16).digest()
    assert record_digest(sent) != record_digest(sent.replace(b'"won"', b'"lost"'))


async def test_a_redelivery_beside_another_record_under_its_id_is_answered_and_only_the_other_dead_lettered():
    """The inbox holds the contacted report; a batch reads the accepted one under its id, then the contacted again."""
    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    first = await feedback_applier(handlers, uow).apply(records(report(event_id, "contacted"), topic=topics.FEEDBACK))
    produced = await feedback_applier(handlers, uow).apply(
        records(report(event_id), report(event_id, "contacted"), topic=topics.FEEDBACK))
    letter, *answered = produced
    assert letter.header("dlq.error.kind") == "reused_id" and answered == first
    assert handlers.calls == [[event_id]]


async def test_a_report_whose_id_was_kept_before_digests_were_is_answered_from_the_inbox_whatever_it_says():
    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    await feedback_applier(handlers, uow).apply(records(report(event_id), topic=topics.FEEDBACK))
    uow.digests.clear()  # as a row recorded before the upgrade
    again = await feedback_applier(handlers, uow).apply(records(report(event_id, "contacted"), topic=topics.FEEDBACK))
    assert again == uow.inbox[event_id] and handlers.calls == [[event_id]]


async def test_two_reports_under_one_id_in_one_batch_apply_the_first_and_dead_letter_the_second():
    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    produced = await feedback_applier(handlers, uow).apply(
        records(report(event_id), report(event_id), report(event_id, "contacted"), topic=topics.FEEDBACK))
    assert [(m.topic, m.header("dlq.error.kind")) for m in produced] == [
        ("test.out", None), (topics.DEADLETTER, "reused_id")]
    assert handlers.calls == [[event_id]] and list(uow.inbox) == [event_id]


async def test_a_record_of_a_topic_leadpipe_writes_is_not_digested_and_its_id_alone_makes_it_a_redelivery(
        monkeypatch):
    """Its id derives from its cause: the other services' inboxes pay nothing for the sales tools'."""
    from leadpipe_common import consumer

    def digested(value):  # noqa: ANN001, ANN202
        raise AssertionError("an internal record was digested")

    monkeypatch.setattr(consumer, "record_digest", digested)
    msg = captured()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    first = await applier(handlers, uow).apply(records(msg))
    other = Message(msg.topic, msg.key, msg.value + b" ", msg.headers)
    assert await applier(handlers, uow).apply(records(other)) == first and uow.digests == {}


class FlakyProducer:
    """A producer that fails its first ``failures`` sends (the broker away), then sends."""

    def __init__(self, failures: int) -> None:
        self.failures, self.sent = failures, []

    async def send_all(self, messages):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is away")
        self.sent += messages
        return len(messages)


async def test_a_dead_letter_and_the_records_are_counted_once_however_often_their_batch_is_retried(monkeypatch):
    """Counted as each attempt made them, one undecodable record in a batch retried through an outage was ten
    dead letters in the metric, and its batch read ten times over, while one letter was ever sent."""
    from aiokafka import TopicPartition

    from leadpipe_common import consumer
    from leadpipe_common.consumer import ConsumerRunner
    from leadpipe_common.settings import ConsumerSettings

    monkeypatch.setattr(consumer, "backoff", lambda attempt, cap: 0.0)
    garbled = dataclasses.replace(captured(), value=b"{not json")
    batch = {TopicPartition(topics.CAPTURED, 0): records(garbled, captured())}
    producer = FlakyProducer(failures=3)
    runner = ConsumerRunner(settings=ConsumerSettings(), service="scoring", input_topics=[topics.CAPTURED],
                            applier=applier(Handlers(), MemoryUnitOfWork(None)), producer=producer)

    def counted(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    letters = counted("leadpipe_consumer_deadlettered_total", {"kind": "undecodable"})
    read = counted("leadpipe_consumer_records_total", {"topic": topics.CAPTURED})
    assert await runner._apply_with_retry(batch) == 4
    assert [m.topic for m in producer.sent].count(topics.DEADLETTER) == 1
    assert counted("leadpipe_consumer_deadlettered_total", {"kind": "undecodable"}) == letters + 1
    assert counted("leadpipe_consumer_records_total", {"topic": topics.CAPTURED}) == read + 2


async def test_a_report_under_a_used_id_is_counted_as_a_reused_id_letter_once_sent():
    """Operators watch deadlettered_total{kind="reused_id"} on routing (docs/upgrading.md): counted as the runner
    sends the letter."""
    from aiokafka import TopicPartition

    from leadpipe_common.consumer import ConsumerRunner
    from leadpipe_common.settings import ConsumerSettings

    event_id = uuid.uuid4()
    handlers, uow = Handlers(), MemoryUnitOfWork(None)
    await feedback_applier(handlers, uow).apply(records(report(event_id), topic=topics.FEEDBACK))
    producer = FlakyProducer(failures=0)
    runner = ConsumerRunner(settings=ConsumerSettings(), service="routing", input_topics=[topics.FEEDBACK],
                            applier=feedback_applier(handlers, uow), producer=producer)
    before = REGISTRY.get_sample_value("leadpipe_consumer_deadlettered_total", {"kind": "reused_id"}) or 0.0
    batch = {TopicPartition(topics.FEEDBACK, 0): records(report(event_id, "contacted"), topic=topics.FEEDBACK)}
    assert await runner._apply_with_retry(batch) == 1
    assert [m.header("dlq.error.kind") for m in producer.sent] == ["reused_id"]
    assert REGISTRY.get_sample_value("leadpipe_consumer_deadlettered_total", {"kind": "reused_id"}) == before + 1


@pytest.mark.parametrize("final", [False, True], ids=["rejected for now", "rejected for good"])
async def test_a_batch_retried_through_an_outage_says_its_rejection_once_and_counts_only_true_redeliveries(
        monkeypatch, final):
    """Said at every attempt, a rejection was logged ~120 times in an hour's outage of the broker; and the events
    the first attempt recorded were counted as redelivered by every retry, answered from the inbox as they were.
    A rejection for good is recorded with its letter by the first attempt, and every later one answers it from the
    inbox: what that first attempt said of it is said once the batch is through."""
    from aiokafka import TopicPartition
    from structlog.testing import capture_logs

    from leadpipe_common import consumer
    from leadpipe_common.consumer import ConsumerRunner
    from leadpipe_common.settings import ConsumerSettings

    monkeypatch.setattr(consumer, "backoff", lambda attempt, cap: 0.0)
    uow = MemoryUnitOfWork(None)
    seen_before = captured()
    await applier(Handlers(), uow).apply(records(seen_before))  # an earlier batch recorded it
    rejected, new = changed(), captured()

    class RejectingChanges(Handlers):
        async def changed(self, uow, batch):
            return {env.id: Rejected("not yet", final=final) for env in batch}

    handlers = RejectingChanges()
    runner = ConsumerRunner(settings=ConsumerSettings(), service="scoring", input_topics=[topics.CAPTURED],
                            applier=BatchApplier(service="scoring", handlers={"lead.captured": handlers.captured,
                                                                             "lead.stage_changed": handlers.changed},
                                                 unit_of_work=lambda: uow, clock=lambda: NOW),
                            producer=FlakyProducer(failures=3))
    batch = {TopicPartition(topics.CAPTURED, 0): records(seen_before, rejected, new)}
    redelivered_before = REGISTRY.get_sample_value("leadpipe_consumer_redelivered_total") or 0.0
    with capture_logs() as lines:
        assert await runner._apply_with_retry(batch) == 4
    said = [line for line in lines if line["event"] == "handler rejected an event"]
    assert len(said) == 1, len(said)
    assert [(line["event_id"], line["lead_id"]) for line in said] == [
        (str(decode(rejected.headers, rejected.key, rejected.value).id), rejected.key.decode())]
    assert (REGISTRY.get_sample_value("leadpipe_consumer_redelivered_total") or 0.0) == redelivered_before + 1
