"""The dead letter a runner writes for a record it can never apply: pure, no broker."""

import uuid
from datetime import UTC, datetime

from leadpipe_common import topics
from leadpipe_common.consumer import dead_letter
from leadpipe_common.envelope import decode

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEAD = uuid.UUID(int=42)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def letter(topic=topics.ENRICHED, headers=(("traceparent", TRACE.encode()),)):
    return dead_letter(record_topic=topic, partition=3, offset=17, key=str(LEAD).encode(), value=b"{oops",
                       headers=headers, kind="undecodable", error="value is not JSON", stage="scoring", at=AT)


def test_a_stalled_lead_is_announced_on_the_lifecycle_within_its_own_trace():
    dlq, announcement = letter()
    assert dlq.topic == topics.DEADLETTER and dlq.header("dlq.source.offset") == "17"
    assert announcement.topic == topics.LIFECYCLE
    trace = announcement.header("traceparent")
    assert trace is not None and trace.split("-")[1] == TRACE.split("-")[1] and trace != TRACE
    event = decode(announcement.headers, announcement.key, announcement.value)
    assert (event.data.lead_id, event.data.to_stage) == (LEAD, "deadlettered")


def test_an_announcement_without_a_trace_to_continue_starts_one():
    _, announcement = letter(headers=())
    assert announcement.header("traceparent") is not None


def test_a_poison_record_announces_itself_with_the_same_id_every_time():
    assert letter()[1].header("ce_id") == letter()[1].header("ce_id")


def test_a_message_an_outbox_could_never_send_names_the_outbox_and_announces_itself_by_its_event_id():
    """It never had a place on a topic; set aside again (a round rolled back after its letter went), it must
    announce its lead's step with the same id, and another message of the same lead with another."""
    def set_aside(event_id: uuid.UUID) -> list:
        return dead_letter(record_topic=topics.CAPTURED, partition=None, offset=None, key=str(LEAD).encode(),
                           value=b"{}", headers=(("ce_id", str(event_id).encode()),), kind="rejected", error="big",
                           stage="capture", at=AT, outbox="capture")

    first, second = uuid.uuid4(), uuid.uuid4()
    dlq, announcement = set_aside(first)
    assert dlq.header("dlq.source.outbox") == "capture" and dlq.header("dlq.source.topic") == topics.CAPTURED
    assert dlq.header("dlq.source.partition") is None and dlq.header("dlq.source.offset") is None
    assert announcement.header("ce_id") == set_aside(first)[1].header("ce_id") != set_aside(second)[1].header("ce_id")


def test_a_refused_sales_report_does_not_stall_the_lead():
    assert [m.topic for m in letter(topics.FEEDBACK)] == [topics.DEADLETTER]


def test_a_letter_of_a_record_as_big_as_the_broker_takes_can_still_be_produced():
    """Its value goes (then its own headers): the record stays on its source topic, named by the letter."""
    from leadpipe_common.producer import MAX_REQUEST_SIZE, message_size

    for value, headers in ((b"x" * (MAX_REQUEST_SIZE - 1_500), ()),
                           (b"x" * 10, (("big", b"y" * (MAX_REQUEST_SIZE - 1_500)),))):
        [dlq, _] = dead_letter(record_topic=topics.ENRICHED, partition=0, offset=1, key=str(LEAD).encode(),
                               value=value, headers=headers, kind="rejected", error="e" * 5000, stage="scoring",
                               at=AT)
        assert message_size(dlq) <= MAX_REQUEST_SIZE
        assert dlq.header("dlq.value.dropped") == str(len(value)) and dlq.header("dlq.source.offset") == "1"
    small = letter()[0]
    assert small.value == b"{oops" and small.header("dlq.value.dropped") is None


def test_a_letter_sent_back_is_the_original_record_and_one_without_its_value_is_not_sent_back_empty():
    from leadpipe_common.producer import MAX_REQUEST_SIZE
    from leadpipe_common.redrive import DeadLetter

    def read_back(dlq):  # noqa: ANN001, ANN202
        return DeadLetter(0, 5, dlq.key, dlq.value, tuple(dlq.headers))

    small = read_back(letter()[0]).original()
    assert (small.topic, small.value, small.headers) == (topics.ENRICHED, b"{oops", (("traceparent", TRACE.encode()),))
    [big, _] = dead_letter(record_topic=topics.ENRICHED, partition=0, offset=1, key=str(LEAD).encode(),
                           value=b"x" * MAX_REQUEST_SIZE, headers=(), kind="rejected", error="e", stage="scoring",
                           at=AT)
    assert read_back(big).original() is None and not read_back(big).whole
    # A record aiokafka could not read has no bytes to send back: an empty record would be a new poison one.
    [unreadable] = dead_letter(record_topic=topics.ENRICHED, partition=1, offset=7, key=None, value=None, headers=(),
                               kind="unreadable", error="UnicodeDecodeError", stage="scoring", at=AT)
    assert read_back(unreadable).original() is None and not read_back(unreadable).whole


def test_headers_without_a_value_are_as_if_absent_in_a_letter_and_in_the_inbox_copy_of_it():
    """Kafka allows a header with no value (Java and librdkafka clients send them; aiokafka reads None): reading
    one raised, inside the dead-lettering itself or storing a final rejection, and failed the batch for ever."""
    from leadpipe_common.envelope import Message

    dlq, announcement = letter(headers=(("traceparent", None), ("x-correlation-id", None)))
    assert announcement.header("traceparent") is not None  # a trace of its own, none to continue
    assert dlq.header("x-correlation-id") is None
    assert Message.from_json(dlq.to_json()) == dlq


async def test_a_record_whose_id_header_has_no_value_is_dead_lettered_not_retried_for_ever():
    from dataclasses import dataclass

    from leadpipe_common.consumer import BatchApplier
    from leadpipe_common.envelope import encode
    from leadpipe_common.events import LeadDispositioned
    from leadpipe_common.uow import MemoryUnitOfWork

    @dataclass
    class Record:
        topic: str
        partition: int
        offset: int
        key: bytes | None
        value: bytes | None
        headers: list

    report = encode(topics.FEEDBACK, LeadDispositioned(lead_id=LEAD, outcome="accepted", rep_id="ana"),
                    event_id=uuid.uuid4(), source="crm", time=AT)
    blank_id = [(k, None if k == "ce_id" else v) for k, v in report.headers]
    applier = BatchApplier(service="routing", handlers={}, unit_of_work=lambda: MemoryUnitOfWork(object()))
    [dlq] = await applier.apply([Record(topics.FEEDBACK, 0, 7, report.key, report.value, blank_id)])
    assert dlq.topic == topics.DEADLETTER and "ce_id is missing" in (dlq.header("dlq.error.message") or "")


def test_a_letter_of_a_record_whose_key_is_as_big_as_the_broker_takes_goes_without_the_key_too():
    """Sales tools write leads.feedback with any key: one of ~1 MB left a letter too big even without its value
    and headers, and the stage retried its batch for ever."""
    from leadpipe_common.producer import MAX_REQUEST_SIZE, message_size

    key = b"k" * (MAX_REQUEST_SIZE - 150)
    [dlq] = dead_letter(record_topic=topics.FEEDBACK, partition=0, offset=7, key=key, value=b'{"x": 1}',
                        headers=(("h", b"v"),), kind="undecodable", error="not a CloudEvent", stage="routing", at=AT)
    assert message_size(dlq) <= MAX_REQUEST_SIZE
    assert dlq.key is None and dlq.value == b""
    assert (dlq.header("dlq.key.dropped"), dlq.header("dlq.value.dropped"), dlq.header("dlq.headers.dropped"),
            dlq.header("dlq.source.offset")) == (str(len(key)), "8", "1", "7")
    assert letter()[0].header("dlq.key.dropped") is None  # a lead's id stays


def test_two_leads_records_at_one_position_of_a_log_started_again_are_announced_under_ids_of_their_own():
    """make run's broker keeps its log in memory: after a restart, with Postgres kept, another lead's record sits at
    the offset of one dead-lettered before, and reporting took its deadlettered step for the first's and dropped
    it (steps are kept once per event id). The same record redelivered keeps its id."""
    def announced(lead: uuid.UUID) -> str:
        [_, announcement] = dead_letter(record_topic=topics.CAPTURED, partition=0, offset=5, key=str(lead).encode(),
                                        value=b"{oops", headers=(), kind="undecodable", error="not JSON",
                                        stage="enrichment", at=datetime.now(UTC))
        return announcement.header("ce_id")

    first, second = uuid.uuid4(), uuid.uuid4()
    assert announced(first) != announced(second) and announced(first) == announced(first)
