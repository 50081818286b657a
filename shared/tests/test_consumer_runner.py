"""The consumer runner on a real broker and Postgres: rejected events, a lost log, a stop mid-poll."""

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.exc import DBAPIError

from leadpipe_common.consumer import BatchApplier, ConsumerRunner, Rejected
from leadpipe_common.db import inbox_table, make_engine, make_sessionmaker
from leadpipe_common.envelope import encode
from leadpipe_common.producer import MAX_REQUEST_SIZE, Producer
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import create_topics, for_lead, produce, read_topic
from leadpipe_common.testing.plugin import QUICK_FAILOVER
from leadpipe_common.uow import MemoryUnitOfWork, SqlUnitOfWork

pytestmark = pytest.mark.asyncio


def topics_of(name: str) -> tuple[str, str]:
    """A test runner's input and output topics."""
    return f"test.{name}.in", f"test.{name}.out"


@contextlib.asynccontextmanager
async def consuming(stack, bootstrap: str, name: str, handle_lead_captured,  # noqa: ANN001
                    **settings: object) -> AsyncIterator[tuple[object, sa.Table]]:
    """A runner of ``handle_lead_captured`` on ``topics_of(name)``'s input, its inbox in a schema ``name`` of the
    stack's database (dropped afterwards); yields the engine and the inbox table."""
    source, output = topics_of(name)
    await create_topics(bootstrap, [source, output])
    config = ConsumerSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url,
                              **{**QUICK_FAILOVER, **settings})
    engine = make_engine(config)
    metadata = sa.MetaData(schema=name)
    table = inbox_table(metadata)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        await conn.run_sync(metadata.create_all)
    producer = Producer(config, client_id=name)
    applier = BatchApplier(service=name, handlers={"lead.captured": handle_lead_captured},
                           unit_of_work=lambda: SqlUnitOfWork(make_sessionmaker(engine), lambda session: None, table))
    runner = ConsumerRunner(settings=config, service=name, input_topics=[source], applier=applier, producer=producer)
    await producer.start()
    await runner.start()
    try:
        yield engine, table
    finally:
        await runner.stop()
        await producer.stop()
        await drop_schema(engine, name)


async def test_a_rejected_event_is_dead_lettered_and_applied_once_after_the_fix(stack, bootstrap):
    source, output = topics_of(name := f"runner_{uuid.uuid4().hex[:8]}")
    fixed = False
    calls = 0

    async def handle_lead_captured(uow, batch):
        nonlocal calls
        calls += len(batch)
        if not fixed:
            return {env.id: Rejected("no territory for this lead yet") for env in batch}
        return {env.id: [encode(output, env.data, event_id=uuid.uuid5(env.id, "out"), source="t", time=env.time)]
                for env in batch}

    async with consuming(stack, bootstrap, name, handle_lead_captured) as (engine, table):
        lead = factories.captured()
        msg = factories.message(source, lead)
        await produce(bootstrap, [msg])
        dead = await read_topic(bootstrap, "leads.deadletter", where=for_lead(lead.lead_id), until=bool)
        assert dead[0].headers["dlq.error.kind"] == "rejected"
        assert dead[0].headers["dlq.error.message"] == "no territory for this lead yet"
        assert dead[0].value == msg.value
        assert await _inbox_rows(engine, table) == 0  # so a redriven copy is applied afresh

        fixed = True
        await produce(bootstrap, [msg])  # what leadpipe-redrive sends
        out = await read_topic(bootstrap, output, where=for_lead(lead.lead_id), until=bool)
        await produce(bootstrap, [msg])  # and a plain redelivery after that
        both = await read_topic(bootstrap, output, where=for_lead(lead.lead_id), until=lambda f: len(f) >= 2)
        assert both[0].id == both[1].id == out[0].id
        assert calls == 2  # rejected once, applied once; the third copy came from the inbox
        assert await _inbox_rows(engine, table) == 1


async def test_an_event_whose_output_is_too_large_to_produce_is_dead_lettered_and_the_partition_moves_on(stack,
                                                                                                       bootstrap):
    """Stored with its writes, the output was refused on every send and answered from the inbox on every retry: the
    partition was held for ever. Now its input is rejected before anything of it is stored."""
    source, output = topics_of(name := f"runner_{uuid.uuid4().hex[:8]}")
    effects = sa.Table("effects", sa.MetaData(schema=name), sa.Column("event_id", sa.Uuid))
    raised = False

    async def handle_lead_captured(uow, batch):
        await uow.session.execute(effects.insert(), [{"event_id": env.id} for env in batch])
        answers = {}
        for env in batch:
            m = encode(output, env.data, event_id=uuid.uuid5(env.id, "out"), source="t", time=env.time)
            if env.data.contact.email.startswith("bloated") and not raised:
                m = dataclasses.replace(m, value=m.value.ljust(MAX_REQUEST_SIZE))
            answers[env.id] = [m]
        return answers

    async with consuming(stack, bootstrap, name, handle_lead_captured) as (engine, table):
        async with engine.begin() as conn:
            await conn.run_sync(effects.metadata.create_all)
        big, after = factories.captured("bloated@example.com"), factories.captured("after@example.com")
        sent = [factories.message(source, big), factories.message(source, after)]
        await produce(bootstrap, sent)
        dead = await read_topic(bootstrap, "leads.deadletter", where=for_lead(big.lead_id), until=bool)
        assert dead[0].headers["dlq.error.kind"] == "rejected" and dead[0].value == sent[0].value
        assert dead[0].headers["dlq.error.message"].endswith(f"is over the produce limit of {MAX_REQUEST_SIZE} bytes")
        assert await read_topic(bootstrap, output, where=for_lead(after.lead_id), until=bool)
        assert await _inbox_rows(engine, table) == 1  # only the record applied
        async with engine.connect() as conn:  # the rejected event's writes were undone with its unit of work
            assert (await conn.execute(sa.select(effects.c.event_id))).scalars().all() == [
                uuid.UUID(sent[1].header("ce_id"))]

        raised = True
        await produce(bootstrap, sent[:1])  # what leadpipe-redrive sends
        assert await read_topic(bootstrap, output, where=for_lead(big.lead_id), until=bool)


async def test_a_record_its_handler_fails_on_for_good_is_dead_lettered_and_the_partition_moves_on(stack, bootstrap):
    """Postgres refuses a value of one event (a data error, not an outage): retried as a batch, then each record
    alone; that one goes to the dead-letter topic (kind handler, not in the inbox) and the next is applied."""
    source, output = topics_of(name := f"runner_{uuid.uuid4().hex[:8]}")
    fixed = False

    async def handle_lead_captured(uow, batch):
        for env in batch:
            if env.data.contact.email.startswith("poison") and not fixed:
                await uow.session.execute(sa.text("SELECT CAST(:v AS integer)"), {"v": "not a number"})
        return {env.id: [encode(output, env.data, event_id=uuid.uuid5(env.id, "out"), source="t", time=env.time)]
                for env in batch}

    async with consuming(stack, bootstrap, name, handle_lead_captured, retry_backoff_max_s=0.2) as (engine, table):
        poison, after = factories.captured("poison@example.com"), factories.captured("after@example.com")
        sent = [factories.message(source, poison), factories.message(source, after)]
        await produce(bootstrap, sent)
        dead = await read_topic(bootstrap, "leads.deadletter", where=for_lead(poison.lead_id), until=bool)
        assert dead[0].headers["dlq.error.kind"] == "handler"
        assert "DataError" in dead[0].headers["dlq.error.message"]
        assert "not a number" not in dead[0].headers["dlq.error.message"]  # no statement's parameters
        assert dead[0].value == sent[0].value
        assert await read_topic(bootstrap, output, where=for_lead(after.lead_id), until=bool)
        assert await _inbox_rows(engine, table) == 1  # only the record applied

        fixed = True
        await produce(bootstrap, sent[:1])  # what leadpipe-redrive sends
        assert await read_topic(bootstrap, output, where=for_lead(poison.lead_id), until=bool)


class NotUtf8(str):
    """A header name whose bytes on the wire are not UTF-8 (another client's bug): aiokafka's encoder asks the
    name for its bytes, and gets these."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"ce_\xff"


async def produce_one_batch(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list]]) -> None:
    """``records`` (key, value, headers) in one record batch on ``topic``'s partition 0, as written by aiokafka's
    pure-Python encoder (the compiled one checks header names itself)."""
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        batch = producer.create_batch()
        batch._builder = _DefaultRecordBatchBuilderPy(2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1,
                                                     base_sequence=0, batch_size=1 << 20)
        for key, value, headers in records:
            assert batch.append(key=key, value=value, timestamp=None, headers=headers) is not None
        await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()


async def test_a_record_that_cannot_be_read_is_dead_lettered_by_place_and_the_partition_moves_on(stack, bootstrap):
    """One record of a batch has a header name that is not UTF-8: aiokafka fails every fetch of its partition,
    and reads none of the records after it in its batch either. The runner applies the record before it,
    dead-letters it and the rest of its batch by place (kind unreadable, no bytes), and applies the next batch."""
    source, output = topics_of(name := f"runner_{uuid.uuid4().hex[:8]}")
    seen: list[uuid.UUID] = []

    async def handle_lead_captured(uow, batch):
        seen.extend(env.data.lead_id for env in batch)
        return {}

    before, bad, after, later = (factories.captured(f"{n}@example.com") for n in ("before", "bad", "after", "later"))
    records = []
    for lead in (before, bad, after):
        m = factories.message(source, lead)
        records.append((m.key, m.value, [*m.headers, *([(NotUtf8("ce_x"), b"1")] if lead is bad else [])]))
    m = factories.message(source, later)
    async with consuming(stack, bootstrap, name, handle_lead_captured, retry_backoff_max_s=0.2):
        await produce_one_batch(bootstrap, source, records)
        await produce_one_batch(bootstrap, source, [(m.key, m.value, list(m.headers))])
        async with asyncio.timeout(60):
            while len(seen) < 2:
                await asyncio.sleep(0.1)
        dead = await read_topic(bootstrap, "leads.deadletter", until=lambda found: len(found) >= 2,
                                where=lambda r: r.headers.get("dlq.source.topic") == source)
    assert seen == [before.lead_id, later.lead_id]
    dead.sort(key=lambda d: int(d.headers["dlq.source.offset"]))  # keyless letters: any partition of the topic
    assert [(d.headers["dlq.error.kind"], d.headers["dlq.source.partition"], d.headers["dlq.source.offset"], d.value)
            for d in dead] == [("unreadable", "0", "1", b""), ("unreadable", "0", "2", b"")]
    assert "the record at offset 1 in its record batch" in dead[1].headers["dlq.error.message"]


@pytest.mark.parametrize("compression", ["lz4", "snappy", "zstd"])
async def test_records_another_client_compressed_are_read(stack, bootstrap, compression):
    """A sales tool may produce its feedback compressed: aiokafka without the codec failed every fetch of it."""
    name = f"runner_{uuid.uuid4().hex[:8]}"
    source = f"test.{name}.in"
    await create_topics(bootstrap, [source])
    settings = ConsumerSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url, **QUICK_FAILOVER)
    seen: list[uuid.UUID] = []

    async def handle_lead_captured(uow, batch):
        seen.extend(env.data.lead_id for env in batch)
        return {}

    producer = Producer(settings, client_id=name)
    applier = BatchApplier(service=name, handlers={"lead.captured": handle_lead_captured},
                           unit_of_work=lambda: MemoryUnitOfWork(object()))
    runner = ConsumerRunner(settings=settings, service=name, input_topics=[source], applier=applier,
                            producer=producer)
    await producer.start()
    await runner.start()
    try:
        leads = [factories.captured(f"{i}@example.com") for i in range(3)]
        await produce(bootstrap, [factories.message(source, lead) for lead in leads], compression=compression)
        async with asyncio.timeout(30):
            while len(seen) < 3:
                await asyncio.sleep(0.1)
        assert sorted(seen) == sorted(lead.lead_id for lead in leads)  # keys spread over partitions: any order
    finally:
        await runner.stop()
        await producer.stop()


async def drop_schema(engine, name: str) -> None:  # noqa: ANN001
    """A test's own schema goes with it: against a DATABASE_URL of the user's, nothing is left behind."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    await engine.dispose()


async def _inbox_rows(engine, table) -> int:
    # No waiting needed: the runner commits its inbox before it produces what we just read.
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()


async def test_a_partition_committed_past_its_log_end_is_read_from_its_start(stack, bootstrap):
    # What a broker that lost its log leaves behind when a commit to it was in flight: the group's
    # position is past the end, and the embedded Tansu answers fetches there with nothing at all.
    name = f"rewind_{uuid.uuid4().hex[:8]}"
    source, output = f"test.{name}.in", f"test.{name}.out"
    await create_topics(bootstrap, [source, output])
    leads = [factories.captured() for _ in range(3)]
    await produce(bootstrap, [factories.message(source, lead) for lead in leads])
    # Assigned, not subscribed: a member of the group would hold the runner's join up until its session expired.
    squatter = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=name, enable_auto_commit=False)
    await squatter.start()
    try:
        squatter.assign([TopicPartition(source, p) for p in squatter.partitions_for_topic(source) or ()])
        await squatter.commit({tp: 10_000 for tp in squatter.assignment()})
        assert [await squatter.committed(tp) for tp in squatter.assignment()] == [10_000, 10_000]
    finally:
        await squatter.stop()

    settings = ConsumerSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url, **QUICK_FAILOVER)
    async with forwarding(settings, name, source, output):
        keys = {str(lead.lead_id).encode() for lead in leads}
        out = await read_topic(bootstrap, output, where=lambda r: r.key in keys, until=lambda found: len(found) >= 3)
        assert {r.key for r in out} == keys


async def test_a_stop_cuts_a_waiting_poll_short_and_commits_what_was_applied(stack, bootstrap):
    # The poll waits a minute for records and offsets are committed only at stop: were the stop left to wait
    # out the poll, its 7 s bound would cancel the runner before that last commit.
    name = f"stop_{uuid.uuid4().hex[:8]}"
    source, output = f"test.{name}.in", f"test.{name}.out"
    await create_topics(bootstrap, [source, output])
    lead = factories.captured()
    await produce(bootstrap, [factories.message(source, lead)])

    settings = ConsumerSettings(kafka_bootstrap_servers=bootstrap, database_url=stack.database_url, **QUICK_FAILOVER,
                                batch_timeout_ms=60_000, commit_interval_ms=600_000)
    async with forwarding(settings, name, source, output):
        await read_topic(bootstrap, output, where=for_lead(lead.lead_id), until=bool)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=name, enable_auto_commit=False)
    await probe.start()
    try:
        partitions = [TopicPartition(source, p) for p in probe.partitions_for_topic(source) or ()]
        committed = {tp.partition: await probe.committed(tp) for tp in partitions}
    finally:
        await probe.stop()
    assert sum(offset or 0 for offset in committed.values()) == 1  # the one record, past it


@contextlib.asynccontextmanager
async def forwarding(settings: ConsumerSettings, name: str, source: str, output: str) -> AsyncIterator[ConsumerRunner]:
    """A running consumer ``name`` of ``source`` that forwards each lead.captured to ``output`` (no inbox)."""

    async def handle_lead_captured(uow, batch):
        return {env.id: [encode(output, env.data, event_id=uuid.uuid5(env.id, "out"), source="t", time=env.time)]
                for env in batch}

    producer = Producer(settings, client_id=name)
    applier = BatchApplier(service=name, handlers={"lead.captured": handle_lead_captured},
                           unit_of_work=lambda: MemoryUnitOfWork(None))
    runner = ConsumerRunner(settings=settings, service=name, input_topics=[source], applier=applier,
                            producer=producer)
    await producer.start()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
        await producer.stop()


async def test_an_event_two_processes_apply_at_once_is_committed_once_and_the_other_answers_from_the_inbox(stack):
    # Two owners of one partition across a rebalance, the first slow: neither's inbox lookup sees the other.
    name = f"twice_{uuid.uuid4().hex[:8]}"
    settings = ConsumerSettings(database_url=stack.database_url)
    engine = make_engine(settings)
    metadata = sa.MetaData(schema=name)
    table = inbox_table(metadata)
    effects = sa.Table("effects", metadata, sa.Column("event_id", sa.Uuid), sa.Column("by", sa.Text))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        await conn.run_sync(metadata.create_all)
    slow_inside, slow_may_go = asyncio.Event(), asyncio.Event()

    def applier(by: str) -> BatchApplier:
        async def handle_lead_captured(uow, batch):
            await uow.session.execute(effects.insert(), [{"event_id": env.id, "by": by} for env in batch])
            if by == "slow":
                slow_inside.set()
                await slow_may_go.wait()
            return {env.id: [encode("test.out", env.data, event_id=uuid.uuid5(env.id, by), source=by,
                                     time=env.time)] for env in batch}

        return BatchApplier(service=name, handlers={"lead.captured": handle_lead_captured},
                            unit_of_work=lambda: SqlUnitOfWork(make_sessionmaker(engine), lambda s: None, table))

    msg = factories.message("leads.captured", factories.captured())
    record = [SimpleNamespace(topic="leads.captured", partition=0, offset=7, key=msg.key, value=msg.value,
                              headers=list(msg.headers))]
    try:
        slow = asyncio.create_task(applier("slow").apply(record))
        await asyncio.wait_for(slow_inside.wait(), 10)
        fast_outputs = await applier("fast").apply(record)  # sees nothing of the slow one's uncommitted work
        slow_may_go.set()
        with pytest.raises(DBAPIError, match="inbox_pkey"):
            await slow
        again = await applier("slow").apply(record)  # its retry
        assert [m.header("ce_id") for m in again] == [m.header("ce_id") for m in fast_outputs]
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(effects.c.by))).scalars().all() == ["fast"]
    finally:
        slow_may_go.set()
        await drop_schema(engine, name)
