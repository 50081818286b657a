"""The producer every service uses.

Guarantees:
- ``acks="all"``: a send counts only once every in-sync replica has it.
- ``send_all`` returns only when every message of the batch is acknowledged,
  or raises; callers commit their input offsets (or delete outbox rows) only
  after it returns, so a crash in between re-sends rather than loses. It
  never waits longer than ``SEND_TIMEOUT_S`` for the acknowledgements: a
  caller (an outbox relay holding its claim's row locks, a stage's batch)
  then retries instead of waiting for ever on a client that lost its broker.
- Each partition's messages of a batch go as record batches built here, in
  the order given (aiokafka's ``send`` per message cost a future, a metadata
  wait and a partitioner call each); a key goes to the partition aiokafka's
  default partitioner gives it, as for any other producer of our topics. A
  message over ``MAX_REQUEST_SIZE`` fails the call before anything of it is
  sent (``MessageSizeTooLargeError``, as ``send`` raised).
- Idempotence is off by default because the embedded broker cannot grant a
  producer id; re-sends are absorbed by consumers' inboxes instead.
"""

from __future__ import annotations

import asyncio
import functools
import random
import struct
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from leadpipe_common.envelope import Message
from leadpipe_common.kafka import client_options
from leadpipe_common.settings import ServiceSettings


_M = 0x5BD1E995
_U32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's ``murmur2`` computes
    it, a test holds the two equal. Read a word at a time here (aiokafka reads a byte at a time and masks
    every step): 5.9 -> 2.8 us for a lead id; aiokafka's partitioner was ~4 % of capture's CPU under load."""
    length = len(data)
    words = length >> 2
    h = 0x9747B28C ^ length
    for k in _words(words)(data):
        k = (k * _M) & _U32
        h = ((h * _M) & _U32) ^ (((k ^ (k >> 24)) * _M) & _U32)
    tail = length & 3
    if tail:
        rest = data[words << 2:]
        if tail == 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h = ((h ^ rest[0]) * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    return h ^ (h >> 15)


@functools.lru_cache(maxsize=64)  # keys of a few lengths (lead ids: 36 bytes); bounded for any other
def _words(n: int):  # noqa: ANN202
    return struct.Struct(f"<{n}I").unpack_from


def partition_for(key: bytes | None, partitions: list[int], hashes: dict[bytes, int] | None = None) -> int:
    """The partition aiokafka's ``DefaultPartitioner`` gives ``key`` among ``partitions`` (every partition of
    the topic, by id): murmur2 of the key, or a random one for no key. ``hashes`` keeps the keys' hashes
    for the next call (a lead's event and its lifecycle step share the key)."""
    if key is None:
        return random.choice(partitions)
    if hashes is None:
        return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
    if (h := hashes.get(key)) is None:
        h = hashes[key] = murmur2(key) & 0x7FFFFFFF
    return partitions[h % len(partitions)]


#: aiokafka's default, given explicitly: the producer checks each message against it, as aiokafka's send did.
MAX_REQUEST_SIZE = 1_048_576


def message_size(m: Message) -> int:
    """The bytes ``m`` takes in a produce request, as its record batch counts them."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(m.key, m.value, list(m.headers))


#: aiokafka fails a batch after its request timeout (15 s); twice that, the wait is given up on all the same.
SEND_TIMEOUT_S = 30.0


class Producer:
    def __init__(self, settings: ServiceSettings, client_id: str) -> None:
        self._client = AIOKafkaProducer(
            **client_options(settings),
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_SIZE,
            request_timeout_ms=15_000,
        )
        self.started = False
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Connect; a no-op once connected. Safe to call from several tasks (a relay, a starter) at once."""
        async with self._starting:
            if not self.started:
                await self._client.start()
                self.started = True

    async def stop(self) -> None:
        if self.started:
            await self._client.stop()
            self.started = False

    async def send_all(self, messages: Iterable[Message]) -> int:
        batch = list(messages)
        try:
            # Both the sends (which wait for metadata and buffer room) and their acknowledgements.
            async with asyncio.timeout(SEND_TIMEOUT_S):
                futures = []
                for topic, partition, builder in await self._record_batches(batch):
                    builder.close()  # complete: sent at once, no lingering for more
                    futures.append(await self._client.send_batch(builder, topic, partition=partition))
                if futures:
                    await asyncio.gather(*futures)
        except TimeoutError:
            raise KafkaTimeoutError(f"{len(batch)} messages not acknowledged in {SEND_TIMEOUT_S:.0f} s") from None
        return len(batch)

    async def _record_batches(self, batch: list[Message]) -> list[tuple[str, int, BatchBuilder]]:
        """``batch`` as record batches, a partition's in its messages' order: every partition's first batch
        before any partition's second (one that overflowed), so that the first request carries them all."""
        partitions: dict[str, list[int]] = {}
        filling: dict[tuple[str, int], tuple[int, BatchBuilder]] = {}
        built: list[tuple[int, str, int, BatchBuilder]] = []
        hashes: dict[bytes, int] = {}
        for m in batch:
            headers = list(m.headers)
            if (size := message_size(m)) > MAX_REQUEST_SIZE:
                raise MessageSizeTooLargeError(f"a message for {m.topic} is {size} bytes, over the "
                                               f"{MAX_REQUEST_SIZE} a request may carry")
            if (every := partitions.get(m.topic)) is None:
                # As aiokafka hands them to its partitioner for a send: every partition of the topic, by id.
                every = partitions[m.topic] = sorted(await self._client.partitions_for(m.topic))
            partition = partition_for(m.key, every, hashes)
            generation, builder = filling.get((m.topic, partition), (-1, None))
            if builder is None or builder.append(timestamp=None, key=m.key, value=m.value, headers=headers) is None:
                generation, builder = generation + 1, self._client.create_batch()
                filling[(m.topic, partition)] = (generation, builder)
                built.append((generation, m.topic, partition, builder))
                builder.append(timestamp=None, key=m.key, value=m.value, headers=headers)  # the first fits
        built.sort(key=lambda b: b[0])  # stable: a partition's batches stay in order
        return [(topic, partition, builder) for _, topic, partition, builder in built]
