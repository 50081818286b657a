"""Reading whole topics (or the part since a moment) once, outside any consumer group.

Guarantees: a scan reads every partition of its topics from its beginning, or from the
first record whose broker timestamp is at or after ``since``, until it has
caught up with the log end it sees (``ends``), and then stops; ``extend``
makes it look for the end again. Nothing is committed and no group is
joined, so a scan never disturbs the services consuming the same topic.
Within a partition records come in log order; across partitions and topics
there is no order.

A scan since a moment quietly starts at the first record still held where
retention (or a truncated log) deleted the ones before: ``first_held`` says
when each such partition's records now begin, or that it holds none at all,
and ``truncated_since`` (pure: it only compares those times with ``since``)
tells from them which topics may lack records since ``since``, for a command
to say so rather than pass off what it read as whole.

The end of a partition is the larger of ListOffsets' answer and the high
watermark of the scan's own fetches: the embedded Tansu broker answers
ListOffsets(latest) with the last record *batch*'s base offset + 1, short of
the true end whenever that batch held several records, so ListOffsets alone
would stop a scan early.

A scan never waits for ever: a partition whose position goes back, or whose
log end stays below it for ``went_back_s``, while it is read (a broker that
lost its log, like the embedded one restarting) fails it (``LogWentBack``; a
cluster's new leader may report a high watermark behind the old one's for a
moment); and once nothing has
come for ``stall_s`` while records are still due, the broker is asked for the
log ends, which fails the scan (``KafkaTimeoutError``) when it cannot be
reached, where aiokafka's fetcher would retry quietly for ever.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from leadpipe_common.kafka import client_options
from leadpipe_common.settings import KafkaSettings


def truncated_since(since: datetime,
                    first_held: Iterable[tuple[str, datetime | None]]) -> dict[str, datetime | None]:
    """The topics that may have lost records recorded since ``since``, each with the moment from which it holds all
    it recorded, or None where no such moment is known. ``first_held``: of each partition read that no longer
    starts at its first record (``TopicScan.first_held``), its topic and when the first record it still holds
    was recorded, None if it holds none. Where that is after ``since``, what came between may be gone, and what
    was read from ``since`` would be short while looking complete; where it is not, only records from before
    ``since`` are. A partition that holds nothing may have lost records of any time, since ``since`` too, and
    nothing tells from when it would be whole. Empty: nothing since is lost."""
    cut: dict[str, datetime | None] = {}
    for topic, at in first_held:
        if at is None:
            cut[topic] = None
        elif at > since and (topic not in cut or cut[topic] is not None):
            # A topic is whole from when its partition cut latest is.
            cut[topic] = max(at, cut.get(topic) or at)
    return dict(sorted(cut.items()))


def cut_from_start(starts: Mapping[TopicPartition, int]) -> str | None:
    """Of partitions read from their start (``TopicScan.starts``: the first offset each holds), those that no
    longer start at their first record (retention, or a truncated log), said as "<topic> partition <n> from
    offset <m>, ..."; None when every one does. A command that must read a topic whole (a rebuild, the closed
    leads) refuses with it."""
    cut = sorted((tp, offset) for tp, offset in starts.items() if offset > 0)
    if not cut:
        return None
    return ", ".join(f"{tp.topic} partition {tp.partition} from offset {offset:,}" for tp, offset in cut)


#: How long a scan waits for anything while records are still due before it asks the broker whether it is there.
STALL_S = 30.0
#: How long a partition's log end may stay below the scan's position before the log is taken to have gone back.
WENT_BACK_S = 10.0


class LogWentBack(KafkaError):
    """A partition's log lost records while a scan read it: what was read cannot be told whole."""

    def __init__(self, tp: TopicPartition, was: int, now: int) -> None:
        super().__init__(f"{tp.topic} partition {tp.partition} went back from offset {was:,} to {now:,} while it "
                         "was read: the broker lost records (the embedded broker keeps its log in memory, and a "
                         "restart empties it); nothing read can be taken as whole, run the command again")


class TopicScan:
    def __init__(self, settings: KafkaSettings, topics: str | Sequence[str], *, since: datetime | None = None,
                 max_records: int = 5000, stall_s: float = STALL_S, went_back_s: float = WENT_BACK_S) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        )
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._since = since
        self._max_records = max_records
        self._stall_s, self._went_back_s = stall_s, went_back_s
        self.partitions: list[TopicPartition] = []
        self.starts: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, int] = {}
        #: Of a scan since a moment, each partition that no longer starts at offset 0 (retention, or a truncated
        #: log): the broker time of the first record it still holds; None: it holds none, every record it had
        #: deleted, so nothing dates the cut.
        self.first_held: dict[TopicPartition, datetime | None] = {}
        self._unfetched: set[TopicPartition] = set()

    async def __aenter__(self) -> TopicScan:
        try:
            await self._consumer.start()
            for topic in self._topics:
                known = self._consumer.partitions_for_topic(topic)
                if not known:
                    await self._consumer.topics()  # forces a metadata refresh
                    known = self._consumer.partitions_for_topic(topic) or set()
                if not known:
                    raise LookupError(f"topic {topic} does not exist")
                self.partitions += [TopicPartition(topic, p) for p in sorted(known)]
            self._consumer.assign(self.partitions)
            self.ends = await self._consumer.end_offsets(self.partitions)
            if self._since is None:
                self.starts = await self._consumer.beginning_offsets(self.partitions)
            else:
                # Not before 1970: Kafka dates no record earlier, and aiokafka refuses a negative time (a
                # --since 1970-01-01 less a margin for clocks).
                found = await self._consumer.offsets_for_times(
                    {tp: max(0, int(self._since.timestamp() * 1000)) for tp in self.partitions})
                self.starts = {tp: (found[tp].offset if found.get(tp) else self.ends[tp]) for tp in self.partitions}
                # Cut as a full replay judges it (``reporting.replay.refuse_truncated``): the log starts above 0.
                log_starts = await self._consumer.beginning_offsets(self.partitions)
                cut = [tp for tp in self.partitions if log_starts[tp] > 0]
                if cut:
                    # Every record is stamped at or after 1970: the first at or after 0 is the first still held.
                    first = await self._consumer.offsets_for_times({tp: 0 for tp in cut})
                    # None for one that holds nothing: left out, a quiet topic past its retention read as a
                    # whole history of nothing.
                    self.first_held = {tp: (datetime.fromtimestamp(f.timestamp / 1000, UTC)
                                            if (f := first.get(tp)) is not None else None) for tp in cut}
            for tp, offset in self.starts.items():
                self._consumer.seek(tp, offset)
            self._unfetched = set(self.partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    @property
    def total(self) -> int:
        return sum(self.ends[tp] - self.starts[tp] for tp in self.partitions)

    async def extend(self) -> int:
        """Look for the log end again; the number of records that adds (as far as known yet)."""
        before = self.total
        latest = await self._consumer.end_offsets(self.partitions)
        self.ends = {tp: max(self.ends[tp], latest[tp]) for tp in self.partitions}
        self._unfetched = set(self.partitions)
        return self.total - before

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Batches of records (aiokafka ``ConsumerRecord``) until every partition reached its end."""
        #: Each partition's position as last seen, and when anything last moved.
        seen: dict[TopicPartition, int] = {}
        moved_at = time.monotonic()
        #: Since when each partition's log end has been below its position.
        behind_since: dict[TopicPartition, float] = {}
        while True:
            remaining = []
            for tp in self.partitions:
                position = await self._consumer.position(tp)
                if position < seen.get(tp, position):
                    # aiokafka's reset to the earliest offset after a fetch out of range: the log lost records.
                    raise LogWentBack(tp, seen[tp], position)
                if position != seen.get(tp):
                    seen[tp], moved_at = position, time.monotonic()
                if tp in self._unfetched or position < self.ends[tp]:
                    remaining.append(tp)
            if not remaining:
                return
            fetched = await self._consumer.getmany(*remaining, timeout_ms=500, max_records=self._max_records)
            for tp in remaining:
                highwater = self._consumer.highwater(tp)
                if highwater is not None:
                    if highwater < seen[tp]:
                        # The embedded Tansu answers a fetch past a shorter log with nothing but its new end, for
                        # good; a cluster's leader just elected may be behind for a moment.
                        since = behind_since.setdefault(tp, time.monotonic())
                        if time.monotonic() - since >= self._went_back_s:
                            raise LogWentBack(tp, seen[tp], highwater)
                    else:
                        behind_since.pop(tp, None)
                    if tp in self._unfetched or highwater > self.ends[tp]:
                        moved_at = time.monotonic()
                    self._unfetched.discard(tp)
                    self.ends[tp] = max(self.ends[tp], highwater)
            batch = [r for records in fetched.values() for r in records]
            if batch:
                yield batch
            elif time.monotonic() - moved_at >= self._stall_s:
                # Raises when the broker cannot be reached (its request timeout); a broker that answers is slow,
                # not gone: wait on.
                await self._consumer.end_offsets(remaining)
                moved_at = time.monotonic()
