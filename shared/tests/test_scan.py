"""What a scan since a moment says of partitions that lost their first records (the broker stood in for), and which
topics that leaves short of what they recorded since."""

from datetime import UTC, datetime, timedelta

import pytest

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from leadpipe_common.scan import TopicScan, truncated_since
from leadpipe_common.settings import KafkaSettings

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
HELD_FROM = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
WHOLE, CUT, EMPTIED = (TopicPartition("leads.lifecycle", p) for p in range(3))


class Broker:
    """A consumer's answers for three partitions: one whole, one cut that still holds records from HELD_FROM, one
    cut that holds none (its log starts where it ends)."""

    def __init__(self) -> None:
        self.log_starts = {WHOLE: 0, CUT: 40, EMPTIED: 25}
        self.ends = {WHOLE: 10, CUT: 50, EMPTIED: 25}
        self.records_from = {WHOLE: (0, SINCE), CUT: (40, HELD_FROM)}  # the first held: offset, broker time

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def assign(self, partitions) -> None:
        pass

    def seek(self, tp, offset) -> None:
        pass

    async def end_offsets(self, partitions):
        return {tp: self.ends[tp] for tp in partitions}

    async def beginning_offsets(self, partitions):
        return {tp: self.log_starts[tp] for tp in partitions}

    async def offsets_for_times(self, wanted):
        # The first record stamped at or after the time asked, None where the partition holds no such record.
        found = {}
        for tp, ms in wanted.items():
            offset, at = self.records_from.get(tp, (None, None))
            stamped = int(at.timestamp() * 1000) if at is not None else None
            found[tp] = OffsetAndTimestamp(offset, stamped) if stamped is not None and stamped >= ms else None
        return found


async def test_a_partition_that_lost_every_record_it_had_is_told_as_holding_none_beside_those_dated_by_their_first():
    """A partition whose log starts above 0 and holds nothing now answered no first record, and was left out as if
    whole: a quiet topic past its retention read as a history of nothing, with no word of what it lost."""
    scan = TopicScan(KafkaSettings(), "leads.lifecycle", since=SINCE)
    scan._consumer = Broker()
    async with scan:
        assert scan.first_held == {CUT: HELD_FROM, EMPTIED: None}
        assert scan.starts == {WHOLE: 0, CUT: 40, EMPTIED: 25}


def test_a_topic_whose_partition_holds_records_only_from_after_since_is_cut_from_the_latest_such_start():
    """30 days' retention and a --since 90 days back: a scan quietly read from the first record held, and what it
    counted came out short while looking complete."""
    first_held = [("leads.scored", SINCE + timedelta(days=1)), ("leads.scored", SINCE + timedelta(days=3)),
                  ("leads.routed", SINCE - timedelta(days=1)), ("leads.lifecycle", SINCE + timedelta(days=2))]
    assert truncated_since(SINCE, first_held) == {"leads.lifecycle": SINCE + timedelta(days=2),
                                                  "leads.scored": SINCE + timedelta(days=3)}


def test_partitions_cut_no_later_than_since_lose_nothing_of_what_was_recorded_since():
    """Retention took only records from before --since: what was recorded since is whole, and nothing is said."""
    assert truncated_since(SINCE, [("leads.scored", SINCE - timedelta(days=40)), ("leads.routed", SINCE)]) == {}
    assert truncated_since(SINCE, []) == {}


@pytest.mark.parametrize("first_held", [
    [("leads.lifecycle", None)],
    [("leads.lifecycle", SINCE + timedelta(days=2)), ("leads.lifecycle", None)],
    [("leads.lifecycle", None), ("leads.lifecycle", SINCE + timedelta(days=2)),
     ("leads.lifecycle", SINCE - timedelta(days=40))],
])
def test_a_topic_with_a_partition_that_holds_nothing_now_may_have_lost_any_of_what_was_recorded_since(first_held):
    """A quiet topic past its retention holds no record to date its cut by: it was left out, and what-if's zeros
    looked complete. No moment from which it is whole can be named, whatever its other partitions hold."""
    cut = truncated_since(SINCE, [*first_held, ("leads.scored", SINCE + timedelta(days=1))])
    assert cut == {"leads.lifecycle": None, "leads.scored": SINCE + timedelta(days=1)}
