"""What the outbox relay does with a message it can never send, with no broker and no Postgres: a producer in
memory, the relay's round from its claim on (``OutboxRelay.publish``)."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import REGISTRY

from leadpipe_common import topics
from leadpipe_common.envelope import Message, decode, unvalidated
from leadpipe_common.outbox import OutboxRelay, Unbuildable, Unsendable
from leadpipe_common.producer import MAX_REQUEST_SIZE, message_size
from leadpipe_common.redrive import DeadLetter
from leadpipe_common.testing import factories

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


class Broker:
    """A producer refusing, before sending anything of a call, a message over ``MAX_REQUEST_SIZE`` (as ``Producer``
    does), or one over ``limits[topic]`` (as a broker whose topic's ``max.message.bytes`` is lower); keeps, in order,
    what it took."""

    def __init__(self, **limits: int) -> None:
        self.limits = {topic.replace("_", "."): limit for topic, limit in limits.items()}
        self.messages: list[Message] = []

    async def send_all(self, messages: list[Message]) -> int:
        for m in messages:
            if message_size(m) > min(MAX_REQUEST_SIZE, self.limits.get(m.topic, MAX_REQUEST_SIZE)):
                raise MessageSizeTooLargeError(f"a message for {m.topic} is {message_size(m)} bytes")
        self.messages += messages
        return len(messages)

    def to(self, topic: str) -> list[Message]:
        return [m for m in self.messages if m.topic == topic]


def relay(broker: Broker, *, keeps: bool) -> OutboxRelay:
    return OutboxRelay(None, broker, None, name="capture" if keeps else "scoring", keeps=keeps,  # type: ignore[arg-type]
                       clock=lambda: AT)


def captured(who: str, size: int = 0) -> Message:
    """A lead.captured as capture's relay sends it, its value padded to ``size`` bytes."""
    m = factories.message(topics.CAPTURED, factories.captured(f"{who}@example.com"))
    return dataclasses.replace(m, value=m.value.ljust(size))


def set_aside(kind: str, outbox: str) -> float:
    return REGISTRY.get_sample_value("leadpipe_outbox_set_aside_total", {"outbox": outbox, "kind": kind}) or 0.0


async def test_a_message_over_the_produce_limit_is_set_aside_and_the_rest_of_the_claim_is_sent_in_order():
    """The producer refused the whole round before sending anything of it; the claim rolled back, and the next round
    claimed the same oldest rows: every lead behind that one waited for good, their senders answered 202."""
    ada, big, bo = captured("ada"), captured("big", MAX_REQUEST_SIZE), captured("bo")
    broker = Broker()
    before = set_aside("rejected", "capture")
    assert await relay(broker, keeps=True).publish([ada, big, bo]) == 2
    assert broker.to(topics.CAPTURED) == [ada, bo]
    [letter] = broker.to(topics.DEADLETTER)
    assert (letter.key, letter.header("dlq.error.kind"), letter.header("dlq.source.topic"),
            letter.header("dlq.source.outbox"), letter.header("dlq.stage")) == (
        big.key, "rejected", topics.CAPTURED, "capture", "capture")
    assert letter.header("dlq.error.message") == (
        f"lead.captured of {message_size(big)} bytes is over the produce limit of {MAX_REQUEST_SIZE} bytes")
    # Too big to carry whole: capture's row keeps the event (marked published), and the letter says what went.
    assert letter.header("dlq.value.dropped") == str(len(big.value))
    [step] = [decode(m.headers, m.key, m.value).data for m in broker.to(topics.LIFECYCLE)]
    assert (str(step.lead_id).encode(), step.to_stage, step.by) == (big.key, "deadlettered", "capture")
    assert set_aside("rejected", "capture") == before + 1


async def test_a_message_a_topic_refuses_as_too_large_goes_whole_to_the_dead_letter_topic_for_a_redrive():
    """A topic whose limit is below the producer's refused it on every try: now its letter carries it whole, and a
    redrive once the limit is raised sends it to its topic as it was."""
    ada, big, bo = captured("ada"), captured("big", 5_000), captured("bo")
    broker = Broker(leads_captured=4_000)
    assert await relay(broker, keeps=False).publish([ada, big, bo]) == 2
    assert broker.to(topics.CAPTURED) == [ada, bo]
    [letter] = broker.to(topics.DEADLETTER)
    assert letter.header("dlq.error.message").endswith("is over leads.captured's limit: the broker refused it as too "
                                                       "large")
    assert DeadLetter(0, 0, letter.key, letter.value, letter.headers).original() == big


async def test_a_letter_the_dead_letter_topic_refuses_whole_goes_smaller_only_where_the_row_keeps_the_message():
    """An outbox table's row is deleted with the claim: set aside with a letter that lost its value, the message
    would be lost. Its round fails instead, until the dead-letter topic takes the letter whole."""
    big = captured("big", 5_000)
    kept = Broker(leads_captured=4_000, leads_deadletter=4_000)
    assert await relay(kept, keeps=True).publish([big]) == 0
    [letter] = kept.to(topics.DEADLETTER)
    assert letter.header("dlq.value.dropped") == str(len(big.value))

    deleted = Broker(leads_captured=4_000, leads_deadletter=4_000)
    with pytest.raises(Unsendable, match="stays in scoring's outbox"):
        await relay(deleted, keeps=False).publish([captured("ada"), big])
    assert deleted.to(topics.DEADLETTER) == []


async def test_a_deleted_row_over_the_produce_limit_fails_its_round_before_anything_of_it_is_sent():
    """Of an outbox table (rows deleted with the claim) no letter of it fits the producer's limit either: the round
    sent the rest of the claim, failed on the letter, rolled back, and sent the rest again every retry."""
    broker = Broker()
    with pytest.raises(Unsendable, match="stays in scoring's outbox"):
        await relay(broker, keeps=False).publish([captured("ada"), captured("big", MAX_REQUEST_SIZE), captured("bo")])
    assert broker.messages == []


async def test_a_row_no_message_can_be_built_from_is_set_aside_as_a_schema_letter_and_the_rest_sent():
    """A stored lead that stopped validating after a model change failed capture's claim every round."""
    ada, bo = captured("ada"), captured("bo")
    lead_id = uuid.uuid4()
    stored = unvalidated(topics.CAPTURED, b'{"lead_id": "%s"}' % str(lead_id).encode(), event_type="lead.captured",
                         lead_id=lead_id, event_id=uuid.uuid4(), source="leadpipe/capture", time=AT)
    broker = Broker()
    before = set_aside("schema", "capture")
    error = "stored lead.captured violates its schema: contact: Field required"
    assert await relay(broker, keeps=True).publish([ada, Unbuildable(stored, error), bo]) == 2
    assert broker.to(topics.CAPTURED) == [ada, bo]
    [letter] = broker.to(topics.DEADLETTER)
    assert (letter.header("dlq.error.kind"), letter.header("dlq.error.message")) == ("schema", error)
    assert DeadLetter(0, 0, letter.key, letter.value, letter.headers).original() == stored
    assert set_aside("schema", "capture") == before + 1


async def test_a_round_with_nothing_it_cannot_send_goes_in_one_call():
    """The refusal path sends a message at a time; a round that needs none of it must not pay for it."""
    calls = []

    class Counting(Broker):
        async def send_all(self, messages: list[Message]) -> int:
            calls.append(len(messages))
            return await super().send_all(messages)

    await relay(Counting(), keeps=True).publish([captured("ada"), captured("bo"), captured("cy")])
    assert calls == [3]


def test_the_unsent_messages_of_erased_leads_are_deleted_by_their_record_key_in_one_statement():
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from leadpipe_common.outbox import outbox_table, unsent_of_leads

    statement = unsent_of_leads(outbox_table(sa.MetaData(schema="s")), "leads.routed")
    sql = str(statement.compile(dialect=postgresql.dialect()))
    assert sql.startswith("DELETE FROM s.outbox WHERE") and "s.outbox.message ->>" in sql
    assert "= ANY (%(keys)s::TEXT[])" in sql
    # Only the messages holding the whole lead: its lifecycle events (a won deal, a merge) are sales' record, to send.
    assert statement.compile(dialect=postgresql.dialect()).params["param_1"] == "leads.routed"
