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


class Fetcher:
    """A consumer reading one partition: ``fetches`` are what its fetches answer in turn (the records' count and
    the high watermark, or None: nothing and no answer, as while the broker is away), then nothing for ever;
    ``reset_to``: where aiokafka's reset to the earliest offset moves its position after the fetches (a log that
    lost its records); ``reachable``: whether ListOffsets gets an answer."""

    def __init__(self, fetches: list[tuple[int, int] | None], reset_to: int | None = None,
                 reachable: bool = True) -> None:
        self.fetches, self.reset_to, self.reachable = list(fetches), reset_to, reachable
        self.at, self._highwater, self.asked_ends = 0, None, 0

    async def position(self, tp) -> int:
        return self.at

    async def getmany(self, *partitions, timeout_ms: int, max_records: int):
        if not self.fetches:
            if self.reset_to is not None:
                self.at = self.reset_to
            return {}
        answer = self.fetches.pop(0)
        if answer is None:
            return {}
        count, self._highwater = answer
        records = list(range(self.at, self.at + count))
        self.at += count
        return {WHOLE: records} if records else {}

    def highwater(self, tp):
        return self._highwater

    async def end_offsets(self, partitions):
        self.asked_ends += 1
        if not self.reachable:
            from aiokafka.errors import KafkaTimeoutError
            raise KafkaTimeoutError("no broker answered")
        return dict.fromkeys(partitions, self._highwater or 0)


def scan_over(fetcher: Fetcher, end: int, stall_s: float = 0.0, went_back_s: float = 0.0) -> TopicScan:
    scan = TopicScan(KafkaSettings(), "leads.lifecycle", stall_s=stall_s, went_back_s=went_back_s)
    scan._consumer = fetcher
    scan.partitions, scan.starts, scan.ends, scan._unfetched = [WHOLE], {WHOLE: 0}, {WHOLE: end}, {WHOLE}
    return scan


async def read(scan: TopicScan) -> list:
    return [r async for batch in scan.batches() for r in batch]


async def test_a_scan_whose_broker_goes_away_fails_instead_of_waiting_for_ever():
    """aiokafka's fetcher retries quietly for ever, and a replay or an export sat at a frozen progress bar."""
    from aiokafka.errors import KafkaTimeoutError

    fetcher = Fetcher([(3, 10)], reachable=False)
    with pytest.raises(KafkaTimeoutError):
        await read(scan_over(fetcher, end=10))
    assert fetcher.at == 3 and fetcher.asked_ends == 1


async def test_a_scan_waits_on_a_broker_that_answers_however_slow():
    fetcher = Fetcher([(3, 10), None, None, (7, 10)])
    assert await read(scan_over(fetcher, end=10)) == list(range(10))
    assert fetcher.asked_ends == 2  # asked each time nothing came, and read on


@pytest.mark.parametrize("fetcher", [Fetcher([(3, 10)], reset_to=0), Fetcher([(3, 10), (0, 2)])],
                         ids=["reset to the earliest offset", "a fetch past a shorter log"])
async def test_a_log_that_loses_its_records_while_it_is_read_fails_the_scan(fetcher):
    """The embedded broker restarting mid-scan: its log starts again from nothing, and the scan waited for offsets
    that would never come."""
    from leadpipe_common.scan import LogWentBack

    with pytest.raises(LogWentBack) as failed:
        await read(scan_over(fetcher, end=10, stall_s=3600))
    assert "went back from offset 3" in str(failed.value) and "run the command again" in str(failed.value)


async def test_a_log_end_behind_the_position_for_a_moment_is_waited_out():
    """A cluster's leader just elected may report a high watermark behind its predecessor's: no log went back."""
    fetcher = Fetcher([(3, 10), (0, 2), (7, 10)])
    assert await read(scan_over(fetcher, end=10, stall_s=3600, went_back_s=3600)) == list(range(10))


async def test_a_scan_since_before_1970_asks_from_1970_not_a_time_the_client_refuses():
    """An export --since 1970-01-01 seeks five minutes earlier (clocks): aiokafka refused the negative time with a
    ValueError, a traceback where the README advises that very moment."""
    class Asked(Broker):
        async def offsets_for_times(self, wanted):
            assert all(ms >= 0 for ms in wanted.values()), wanted
            return await super().offsets_for_times(wanted)

    scan = TopicScan(KafkaSettings(), "leads.lifecycle", since=datetime(1969, 12, 31, 23, 55, tzinfo=UTC))
    scan._consumer = Asked()
    async with scan:
        assert scan.starts[WHOLE] == 0


async def test_a_log_end_that_stays_behind_the_position_fails_the_scan_only_once_it_has_stayed_so(monkeypatch):
    from leadpipe_common import scan as scan_module
    from leadpipe_common.scan import LogWentBack

    clock = iter(range(0, 10_000))  # a second each time the scan looks
    monkeypatch.setattr(scan_module.time, "monotonic", lambda: float(next(clock)))
    fetches = []

    class Counted(Fetcher):
        async def getmany(self, *partitions, timeout_ms: int, max_records: int):
            fetches.append(self.at)
            return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)

    with pytest.raises(LogWentBack):
        await read(scan_over(Counted([(3, 10), (0, 2)]), end=10, stall_s=3600, went_back_s=10))
    assert len(fetches) > 3  # fetched on while the end was behind for less than went_back_s
