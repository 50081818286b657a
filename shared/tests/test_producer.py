"""The producer on a real broker: record batches it builds land where aiokafka's own send puts them."""

import random
import uuid

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2 as aiokafka_murmur2

from leadpipe_common.envelope import Message
from leadpipe_common.producer import MAX_REQUEST_SIZE, Producer, murmur2, partition_for
from leadpipe_common.settings import ServiceSettings
from leadpipe_common.testing.kafka import create_topics, produce, read_all


def test_murmur2_is_kafkas_for_every_length_and_byte():
    rng = random.Random(12)
    samples = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(20)]
    samples += [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(200)]
    assert [murmur2(b) for b in samples] == [aiokafka_murmur2(b) for b in samples]


def test_a_key_gets_the_partition_aiokafkas_partitioner_gives_it_with_or_without_remembered_hashes():
    keys = [str(uuid.uuid4()).encode() for _ in range(300)]
    hashes: dict[bytes, int] = {}
    for partitions in ([0, 1, 2, 3], list(range(12)), [0, 2, 5]):
        expected = [DefaultPartitioner()(k, partitions, partitions) for k in keys]
        assert [partition_for(k, partitions) for k in keys] == expected
        assert [partition_for(k, partitions, hashes) for k in keys] == expected  # hashes kept across topics


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


async def _by_partition(bootstrap: str, topic: str, n: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """Each partition's (key, value) pairs in the order it holds them."""
    records = []
    for _ in range(100):
        records = await read_all(bootstrap, topic)
        if len(records) >= n:
            break
    assert len(records) == n
    held: dict[int, list[tuple[bytes, bytes]]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        held.setdefault(r.partition, []).append((r.key, r.value))
    return held


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
        batches = await producer._record_batches(messages)
        assert len(batches) > len({(topic, partition) for topic, partition, _ in batches}), "one partition overflowed"
    finally:
        await producer.stop()
    # The same messages through aiokafka's send, one by one, as every other producer of a topic would.
    await produce(bootstrap, [Message(topic=theirs[ours.index(m.topic)], key=m.key, value=m.value,
                                      headers=m.headers) for m in messages])

    for mine, reference in zip(ours, theirs, strict=True):
        n = sum(m.topic == mine for m in messages)
        assert await _by_partition(bootstrap, mine, n) == await _by_partition(bootstrap, reference, n)
    records = {r.value: r for r in await read_all(bootstrap, ours[0])}
    assert records[messages[0].value].headers == {"ce_id": "0", "traceparent": "00-x"}


async def test_a_message_too_big_for_a_request_fails_the_call_before_anything_of_it_is_sent(stack, bootstrap):
    topic = f"test.p{uuid.uuid4().hex[:8]}.big"
    await create_topics(bootstrap, [topic], partitions=1)
    small = Message(topic=topic, key=b"k", value=b'{"n": 1}', headers=())
    big = Message(topic=topic, key=b"k", value=b"x" * MAX_REQUEST_SIZE, headers=())
    producer = Producer(ServiceSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url),
                        client_id="big")
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_all([small, big])
        assert await producer.send_all([small]) == 1
    finally:
        await producer.stop()
    assert [r.value for r in await read_all(bootstrap, topic)] == [small.value]
