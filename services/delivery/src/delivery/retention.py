"""The purge: what a finished delivery sent, and what its receiver answered, are kept only as long as a redrive
may still need them (``DELIVERY_KEEP_BODIES_DAYS``).

Guarantees: only delivered and dead deliveries lose their body and last
answer, once they finished longer ago than the retention by Postgres's clock,
which dated their finish, whatever this host's says (a pending one keeps its
body however old: it is still to be sent); the row stays, with its ids,
status, times and attempts. Its rounds are ``leadpipe_common.purge``'s, the
longest finished first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common import purge

from delivery.domain import purge_after

log = structlog.get_logger(__name__)

PURGED = Counter("delivery_bodies_purged_total", "Finished deliveries whose body and receiver's last answer were "
                 "purged after DELIVERY_KEEP_BODIES_DAYS")


class Purge(purge.Purge[timedelta]):
    name = "delivery-purge"

    def __init__(self, unit_of_work: Callable[[], Any], keep_days: float, round_max: int = purge.ROUND_MAX,
                 every_s: float = purge.EVERY_S) -> None:
        super().__init__(unit_of_work, round_max, every_s)
        self._keep_days, self._keep = keep_days, purge_after(keep_days)

    def cutoff(self) -> timedelta | None:
        return self._keep

    async def round(self, store: Any, cutoff: timedelta, limit: int) -> int:
        return await store.purge(cutoff, limit)

    def purged(self, count: int) -> None:
        PURGED.inc(count)
        log.info("delivery bodies purged", deliveries=count, finished_days_ago=self._keep_days)
