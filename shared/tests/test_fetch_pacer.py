"""The fetch pacer: how long a fetch may wait follows the rate records arrive at (no IO)."""

import inspect

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher

from leadpipe_common.consumer import FetchPacer


_clock = [1000.0]


def _steady(pacer: FetchPacer, rate: float, seconds: float, poll_s: float = 0.05) -> int:
    """Polls every ``poll_s`` bringing what ``rate`` records/s would; the wait after the last one."""
    now, wait, owed = _clock[0], pacer.wait_ms, 0.0
    for _ in range(int(seconds / poll_s)):
        now += poll_s
        owed += rate * poll_s
        records = int(owed)
        owed -= records
        wait = pacer.observe(records, now)
    _clock[0] = now
    return wait


def test_an_idle_consumer_waits_the_idle_wait():
    pacer = FetchPacer(target=25, floor_ms=20, ceiling_ms=500, idle_ms=1000)
    assert pacer.wait_ms == 1000
    assert _steady(pacer, rate=0, seconds=5) == 1000


def test_records_that_trickle_wait_the_ceiling_not_the_idle_wait():
    assert _steady(FetchPacer(target=25, floor_ms=20, ceiling_ms=500, idle_ms=1000), rate=5, seconds=10) == 500


def test_an_idle_wait_below_the_ceiling_is_the_ceiling():
    assert FetchPacer(target=25, floor_ms=20, ceiling_ms=500, idle_ms=100).wait_ms == 500


def test_the_wait_shortens_as_records_come_faster():
    slow = _steady(FetchPacer(target=25, floor_ms=20, ceiling_ms=1000), rate=100, seconds=10)
    fast = _steady(FetchPacer(target=25, floor_ms=20, ceiling_ms=1000), rate=300, seconds=10)
    # Half the wait gathers a batch on Tansu: 25 records at 100/s take 250 ms, at 300/s 83 ms.
    assert 450 <= slow <= 550
    assert 150 <= fast <= 185


def test_the_wait_never_goes_below_the_floor_or_above_the_ceiling():
    assert _steady(FetchPacer(target=25, floor_ms=20, ceiling_ms=500), rate=50_000, seconds=5) == 20
    assert _steady(FetchPacer(target=25, floor_ms=20, ceiling_ms=500), rate=10, seconds=5) == 500


def test_the_wait_returns_to_the_idle_wait_once_records_stop():
    pacer = FetchPacer(target=25, floor_ms=20, ceiling_ms=500, idle_ms=1000)
    assert _steady(pacer, rate=1000, seconds=5) < 100
    assert _steady(pacer, rate=0, seconds=10) == 1000


def test_a_target_of_zero_always_waits_the_ceiling():
    assert _steady(FetchPacer(target=0, floor_ms=20, ceiling_ms=500), rate=1000, seconds=5) == 500


def test_aiokafka_still_reads_the_wait_for_every_fetch_it_builds():
    # The runner paces fetches through this attribute (aiokafka has no public setter): an upgrade that
    # renames it would silently end the pacing.
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetcher = Fetcher(" in inspect.getsource(AIOKafkaConsumer.start)
