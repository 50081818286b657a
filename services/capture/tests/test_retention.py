"""The quarantine's purge with the table stood in for: what it deletes, when, and what it counts."""

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from leadpipe_common.testing.fakes import unit_of_work_over

from capture.domain import quarantine_kept_since
from capture.retention import QuarantinePurge

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Quarantine:
    """capture's store as the purge reaches it: what each round was asked, and what it answers (rows deleted)."""

    def __init__(self, *deleted: int) -> None:
        self.deleted = list(deleted)
        self.asked: list[tuple[datetime, int]] = []

    async def purge_quarantine(self, received_before: datetime, limit: int) -> int:
        self.asked.append((received_before, limit))
        return self.deleted.pop(0)


def purged_so_far() -> float:
    return REGISTRY.get_sample_value("capture_quarantine_purged_total") or 0.0


async def test_each_round_deletes_what_was_received_before_the_retention_by_the_clock_and_counts_it():
    clock = iter([NOW, NOW + timedelta(minutes=10)])
    quarantine, before = Quarantine(2, 1), purged_so_far()
    uow = unit_of_work_over(quarantine)
    purge = QuarantinePurge(uow, clock=lambda: next(clock), keep_days=30, round_max=2)
    assert [await purge.step(), await purge.step()] == [2, 1]
    assert quarantine.asked == [(NOW - timedelta(days=30), 2), (NOW + timedelta(minutes=10) - timedelta(days=30), 2)]
    assert uow.commits == 2 and purged_so_far() - before == 3


@pytest.mark.parametrize("keep_days", [0, float("inf"), 10**9])
def test_a_retention_of_0_or_longer_than_any_submissions_age_deletes_none(keep_days):
    assert quarantine_kept_since(NOW, keep_days) is None


async def test_with_a_retention_of_0_the_table_is_never_asked():
    quarantine = Quarantine()
    assert await QuarantinePurge(unit_of_work_over(quarantine), clock=lambda: NOW, keep_days=0).step() == 0
    assert quarantine.asked == []
