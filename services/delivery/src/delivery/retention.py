"""The purge: what a finished delivery sent, and what its receiver answered, are kept only as long as a redrive
may still need them (``DELIVERY_KEEP_BODIES_DAYS``).

Guarantees: only delivered and dead deliveries lose their body and last
answer, once they finished longer ago than the retention by Postgres's clock,
which dated their finish, whatever this host's says; the row stays, with its
ids, status, times and attempts. A pending one keeps its body however old (it
is still to be sent) but one whose subscription a receiver's 410 switched off:
switched off longer ago than the retention, what it queued longer ago than
that is given up (dead, ``store.SWITCHED_OFF``) and cleared in the same round,
as nothing will send it (a ``lead.erased`` stays: it holds no one). Its rounds
are ``leadpipe_common.purge``'s: those give-ups first, then, in what room the
round has left, the finished deliveries, the longest finished first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common import purge

from delivery.domain import Subscription, purge_after, switched_off

log = structlog.get_logger(__name__)

PURGED = Counter("delivery_bodies_purged_total", "Finished deliveries whose body and receiver's last answer were "
                 "purged after DELIVERY_KEEP_BODIES_DAYS")
GIVEN_UP = Counter("delivery_switched_off_given_up_total", "Deliveries given up, their body purged, after waiting "
                   "DELIVERY_KEEP_BODIES_DAYS for a subscription a receiver's 410 switched off as long",
                   ["subscription"])


class Purge(purge.Purge[timedelta]):
    name = "delivery-purge"

    def __init__(self, unit_of_work: Callable[[], Any], keep_days: float, from_file: Mapping[str, Subscription],
                 round_max: int = purge.ROUND_MAX, every_s: float = purge.EVERY_S) -> None:
        super().__init__(unit_of_work, round_max, every_s)
        self._keep_days, self._keep = keep_days, purge_after(keep_days)
        #: The file's subscriptions: one switched off by a 410 from a url it has left is on (``switched_off``).
        self._from_file = from_file
        #: The last round's finished deliveries purged, and its give-ups by subscription.
        self._last: tuple[int, dict[str, int]] = (0, {})

    def cutoff(self) -> timedelta | None:
        return self._keep

    async def round(self, store: Any, cutoff: timedelta, limit: int) -> int:
        # The give-ups first: they lock switch-offs, which come before any delivery (LOCK ORDER, store.py).
        off = switched_off(await store.disabled_urls(), self._from_file)
        given_up = await store.give_up_off(off, cutoff, limit) if off else {}
        room = limit - sum(given_up.values())
        finished = await store.purge(cutoff, room) if room else 0
        self._last = (finished, given_up)
        return finished + sum(given_up.values())

    def purged(self, count: int) -> None:
        finished, given_up = self._last
        if finished:
            PURGED.inc(finished)
            log.info("delivery bodies purged", deliveries=finished, finished_days_ago=self._keep_days)
        for subscription, n in sorted(given_up.items()):
            GIVEN_UP.labels(subscription).inc(n)
            log.warning("deliveries given up: their subscription stayed switched off by a 410",
                        subscription=subscription, deliveries=n, waited_days=self._keep_days,
                        hint="POST /v1/subscriptions/{id}/enable sends what waits for it; what is given up stays "
                             "dead, its body purged")
