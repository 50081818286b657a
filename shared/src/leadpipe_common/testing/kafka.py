"""Reading topics the way an outside consumer would: a plain aiokafka client, no group, no leadpipe code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from leadpipe_common.envelope import Message
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import KafkaSettings


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def type(self) -> str | None:
        return self.headers.get("ce_type")

    @property
    def id(self) -> str | None:
        return self.headers.get("ce_id")

    def json(self) -> Any:
        return json.loads(self.value)


async def partitions_of(bootstrap: str, topic: str) -> set[int]:
    """The partition numbers ``topic`` has on the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return await producer.partitions_for(topic)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    where: Callable[[Record], bool] = lambda r: True,
    timeout: float = 30,
) -> list[Record]:
    """Every record of ``topic`` from the beginning matching ``where``, once ``until`` holds (or at timeout)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(found) and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                found += [rec for rec in map(_record, records) if where(rec)]
        return found
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, *, where: Callable[[Record], bool] = lambda r: True) -> list[Record]:
    """Every record of ``topic`` matching ``where``, up to the log end at the call.

    For "nothing more came" assertions: unlike :func:`read_topic` with an
    ``until`` that never holds, it reads the whole topic however long that
    takes on a loaded machine, and stops as soon as it has.
    """
    found: list[Record] = []
    async with TopicScan(KafkaSettings(kafka_bootstrap_servers=bootstrap), topic) as scan:
        async for batch in scan.batches():
            found += [rec for rec in map(_record, batch) if where(rec)]
    return found


def _record(r: Any) -> Record:
    """A test's view of an aiokafka ``ConsumerRecord``."""
    return Record(topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value,
                  headers={k: v.decode(errors="replace") for k, v in r.headers})


async def produce(bootstrap: str, messages: list[Message], compression: str | None = None) -> None:
    """``messages`` on the broker, as another client would send them (``compression``: lz4, snappy, zstd, gzip)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                compression_type=compression)
    await producer.start()
    try:
        futures = [
            await producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers)) for m in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def for_lead(lead_id: object) -> Callable[[Record], bool]:
    key = str(lead_id).encode()
    return lambda r: r.key == key


async def create_topics(bootstrap: str, names: list[str], partitions: int = 2) -> None:
    """Topics of a test's own (leadpipe's are made by the stack, as ``topology`` says)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()
