"""The purge: what a finished delivery sent, and what its receiver answered, are kept only as long as a redrive
may still need them (``DELIVERY_KEEP_BODIES_DAYS``).

Guarantees: only delivered and dead deliveries lose their body and last
answer, once they finished longer ago than the retention by Postgres's clock,
which dated their finish, whatever this host's says (a pending one keeps its
body however old: it is still to be sent); the row stays, with its ids,
status, times and attempts. A round clears at most ``ROUND_MAX`` rows in a
transaction of its own, the longest finished first; rounds follow each other
while each finds a full one, then the purge waits ``EVERY_S``, so a first
purge of a long history never holds many rows locked at once. Several
processes purge side by side, each skipping the rows another holds. A stop
ends the purge after the round under way: the rest waits for the next start.
A failing round is retried, logged and counted; it does not fail ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common.outbox import BackgroundLoop

from delivery.domain import purge_after

log = structlog.get_logger(__name__)

PURGED = Counter("delivery_bodies_purged_total", "Finished deliveries whose body and receiver's last answer were "
                 "purged after DELIVERY_KEEP_BODIES_DAYS")

#: Rows a round clears at most: each round's transaction stays short, however much a first purge has to do.
ROUND_MAX = 2000
#: How often to look for what has aged past the retention once a round found less than a full one: a retention is
#: days long, so a few minutes late is nothing, and an idle round costs one index lookup.
EVERY_S = 600.0


class Purge(BackgroundLoop):
    name = "delivery-purge"
    # Housekeeping: while rounds fail (a statement timeout, a lock) deliveries are still sent and the API still
    # answers, so the pod stays in service; the failure is in the log and leadpipe_background_failures_total.
    essential = False

    def __init__(self, unit_of_work: Callable[[], Any], keep_days: float, round_max: int = ROUND_MAX,
                 every_s: float = EVERY_S) -> None:
        super().__init__(batch_max=round_max, idle_s=every_s)
        self._uow = unit_of_work
        self._keep_days, self._keep = keep_days, purge_after(keep_days)
        self._round_max = round_max

    async def step(self) -> int:
        if self.stopping:  # a stop runs rounds until one does nothing: a long purge would hold the stop up
            return 0
        if self._keep is None:
            return 0
        async with self._uow() as uow:
            purged = await uow.store.purge(self._keep, self._round_max)
            await uow.commit()
        if purged:
            PURGED.inc(purged)
            log.info("delivery bodies purged", deliveries=purged, finished_days_ago=self._keep_days)
        return purged
