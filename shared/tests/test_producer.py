"""The producer on a real broker: record batches it builds land where aiokafka's own send puts them."""

import uuid

import pytest

from leadpipe_common.envelope import Message
from leadpipe_common.producer import Producer
from leadpipe_common.settings import ServiceSettings
from leadpipe_common.testing.kafka import create_topics, produce, read_all

pytestmark = pytest.mark.asyncio


def _messages(topics: tuple[str, str]) -> list[Message]:
    """Ten keys over two topics of different partition counts, interleaved, numbered; then three values big
    enough (3 x 120 KB against 256 KB a batch) that one partition needs a second record batch."""
    keys = [str(uuid.uuid4()).encode() for _ in range(10)]
    small = [Message(topic=topics[i % 2], key=keys[i % 10], value=b'{"n": %d}' % i,
                     headers=(("ce_id", str(i).encode()), ("traceparent", b"00-x")))
             for i in range(60)]
    big = [Message(topic=topics[0], key=keys[0], value=b'{"n": %d, "pad": "%s"}' % (60 + i, b"x" * 120_000),
                   headers=()) for i in range(3)]
    return small + big


async def _by_key(bootstrap: str, topic: str, n: int) -> dict[bytes, tuple[int, list[bytes]]]:
    """Each key's partition and its values in the order the partition holds them."""
    records = []
    for _ in range(100):
        records = await read_all(bootstrap, topic)
        if len(records) >= n:
            break
    assert len(records) == n
    seen: dict[bytes, tuple[int, list[bytes]]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        partition, values = seen.setdefault(r.key, (r.partition, []))
        assert partition == r.partition, "one key, one partition"
        values.append(r.value)
    return seen


async def test_a_batch_lands_on_the_partitions_aiokafka_gives_its_keys_in_the_order_sent(stack, bootstrap):
    name = uuid.uuid4().hex[:8]
    ours, theirs = (f"test.p{name}.a", f"test.p{name}.b"), (f"test.p{name}.ra", f"test.p{name}.rb")
    await create_topics(bootstrap, [ours[0], theirs[0]], partitions=4)
    await create_topics(bootstrap, [ours[1], theirs[1]], partitions=3)
    messages = _messages(ours)
    producer = Producer(ServiceSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url),
                        client_id=name)
    await producer.start()
    try:
        assert await producer.send_all(messages) == len(messages)
    finally:
        await producer.stop()
    # The same messages through aiokafka's send, one by one, as every other producer of a topic would.
    await produce(bootstrap, [Message(topic=theirs[ours.index(m.topic)], key=m.key, value=m.value,
                                      headers=m.headers) for m in messages])

    for mine, reference in zip(ours, theirs, strict=True):
        sent = [m for m in messages if m.topic == mine]
        got, expected = await _by_key(bootstrap, mine, len(sent)), await _by_key(bootstrap, reference, len(sent))
        assert got == expected
        for key, (_, values) in got.items():
            assert values == [m.value for m in sent if m.key == key]
    records = {r.value: r for r in await read_all(bootstrap, ours[0])}
    first = messages[0]
    assert records[first.value].headers == {"ce_id": "0", "traceparent": "00-x"}
