"""The purge's rounds with the queue stood in for: what it clears, when, and what it counts."""

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from leadpipe_common.service import loop_checks
from leadpipe_common.testing.fakes import unit_of_work_over

from delivery.domain import Subscription
from delivery.retention import Purge

#: Postgres's clock, by which the stood-in queue judges how long ago a delivery finished.
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Queue:
    """Finished deliveries still holding their body, each by when it finished, and subscriptions switched off by a
    410, with the deliveries waiting for them, as the purge sees them."""

    def __init__(self, finished: list[datetime], disabled: dict[str, str | None] | None = None,
                 waiting: dict[str, int] | None = None) -> None:
        self.finished = sorted(finished)
        #: The retention and limit of each purge asked for.
        self.asked: list[tuple[timedelta, int]] = []
        self.disabled = disabled or {}
        #: By subscription, its deliveries a give-up would take (the store judges their age and the switch-off's).
        self.waiting = dict(waiting or {})
        #: The subscriptions, retention and limit of each give-up asked for.
        self.given_up: list[tuple[set[str], timedelta, int]] = []

    async def purge(self, keep: timedelta, limit: int) -> int:
        self.asked.append((keep, limit))
        await asyncio.sleep(0)  # a round trip
        gone = [at for at in self.finished if at < NOW - keep][:limit]
        self.finished = self.finished[len(gone):]
        return len(gone)

    async def disabled_urls(self) -> dict[str, str | None]:
        return self.disabled

    async def give_up_off(self, subscription_ids: set[str], keep: timedelta, limit: int) -> dict[str, int]:
        self.given_up.append((set(subscription_ids), keep, limit))
        taken: dict[str, int] = {}
        for sub in sorted(subscription_ids):
            n = min(self.waiting.get(sub, 0), limit - sum(taken.values()))
            if n:
                taken[sub], self.waiting[sub] = n, self.waiting[sub] - n
        return taken


def purged_so_far() -> float:
    return REGISTRY.get_sample_value("delivery_bodies_purged_total") or 0.0


async def test_a_round_purges_what_finished_before_the_retention_at_most_a_round_at_a_time_and_counts_it():
    queue = Queue([NOW - timedelta(days=d) for d in (31, 32, 33, 29)])
    uow = unit_of_work_over(queue)
    purge = Purge(uow, keep_days=30, from_file={}, round_max=2)
    before = purged_so_far()
    rounds = [await purge.step() for _ in range(3)]
    assert rounds == [2, 1, 0]  # a full round is followed at once by another; a short one waits
    assert queue.asked == [(timedelta(days=30), 2)] * 3 and uow.commits == 3
    assert queue.finished == [NOW - timedelta(days=29)]
    assert purged_so_far() - before == 3


def given_up_so_far(subscription: str) -> float:
    return REGISTRY.get_sample_value("delivery_switched_off_given_up_total", {"subscription": subscription}) or 0.0


async def test_what_waits_for_a_subscription_switched_off_is_given_up_first_in_a_round_and_counted():
    """A receiver that answered 410 and was never switched back on: what waits for it holds leads' contacts that
    nothing will send. A file's subscription the file now sends elsewhere is on (its 410 came from the url it
    left), and what waits for it is left to be sent."""
    moved = Subscription(id="moved", url="https://new.example.com/hooks", secrets=(), events=frozenset({"lead.routed"}),
                         filter={})
    queue = Queue([NOW - timedelta(days=40)], disabled={"gone": None, "moved": "https://old.example.com/hooks"},
                  waiting={"gone": 5, "moved": 4})
    purge = Purge(unit_of_work_over(queue), keep_days=30, from_file={"moved": moved}, round_max=3)
    before, finished_before = given_up_so_far("gone"), purged_so_far()
    rounds = [await purge.step() for _ in range(3)]
    assert rounds == [3, 3, 0]  # three given up, then two and the one finished, then none
    assert [limit for *_, limit in queue.given_up] == [3, 3, 3]
    assert queue.asked == [(timedelta(days=30), 1), (timedelta(days=30), 3)]  # in the room the give-ups left
    assert {frozenset(subs) for subs, *_ in queue.given_up} == {frozenset({"gone"})}
    assert all(keep == timedelta(days=30) for _, keep, _ in queue.given_up)
    assert queue.waiting == {"gone": 0, "moved": 4}
    assert given_up_so_far("gone") - before == 5 and purged_so_far() - finished_before == 1


async def test_with_a_retention_of_0_nothing_is_ever_purged():
    queue = Queue([NOW - timedelta(days=3650)])
    assert await Purge(unit_of_work_over(queue), keep_days=0, from_file={}).step() == 0
    assert queue.asked == []


async def test_a_stop_is_not_held_up_by_a_long_first_purge():
    """A stop runs rounds until one does nothing: with a purge's backlog that took round after round."""
    queue = Queue([NOW - timedelta(days=40)] * 10)
    purge = Purge(unit_of_work_over(queue), keep_days=30, from_file={}, round_max=2)
    purge.start()
    await asyncio.sleep(0)  # its first round is under way
    await purge.stop()
    assert len(queue.asked) == 1 and len(queue.finished) == 8  # that round ends; no other starts


class TimingOut:
    """A queue whose purge always runs past the statement timeout, as a first one over a huge table may."""

    async def purge(self, keep: timedelta, limit: int) -> int:
        raise TimeoutError("canceling statement due to statement timeout")


async def test_a_failing_purge_leaves_delivery_ready_it_still_sends_and_answers():
    purge = Purge(unit_of_work_over(TimingOut()), keep_days=30, from_file={})
    purge.start()
    try:
        async with asyncio.timeout(5):
            while not purge.failing:
                await asyncio.sleep(0.001)
        assert loop_checks([purge]) == {}  # no readiness check for it: /readyz goes by the others
    finally:
        await purge.stop()
