"""Purges: the background loops that delete, or clear, what a service keeps only for a while.

Guarantees: a round purges at most ``round_max`` rows, in a unit of work of
its own; rounds follow each other while each finds a full one, then the
purge waits ``every_s``, so a first purge of a long history never holds many
rows locked at once (each service's statement passes over rows another
transaction holds, so several processes purge side by side). A stop ends the
purge after the round under way: the rest waits for the next start. A
failing round is retried, logged and counted, as any background loop's; it
does not fail ``/readyz``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from leadpipe_common.outbox import BackgroundLoop

T = TypeVar("T")

#: Rows a round purges at most: each round's transaction stays short, however much a first purge has to do.
ROUND_MAX = 2000
#: How often to look for what has aged past its retention once a round found less than a full one: a retention is
#: days long, so a few minutes late is nothing, and an idle round costs one index lookup.
EVERY_S = 600.0


class Purge(BackgroundLoop, Generic[T]):
    """A service's purge gives what its rounds purge by (``cutoff``), a round (``round``) and what it tells of one
    (``purged``)."""

    # Housekeeping: while rounds fail (a statement timeout, a lock) the service still does its work and answers its
    # API, so the pod stays in service; the failure is in the log and leadpipe_background_failures_total.
    essential = False

    def __init__(self, unit_of_work: Callable[[], Any], round_max: int = ROUND_MAX, every_s: float = EVERY_S) -> None:
        super().__init__(batch_max=round_max, idle_s=every_s)
        self._uow, self._round_max = unit_of_work, round_max

    def cutoff(self) -> T | None:
        """What a round purges by (how long rows are kept, or since when); None: nothing is purged."""
        raise NotImplementedError

    async def round(self, store: Any, cutoff: T, limit: int) -> int:
        """Purge at most ``limit`` rows by ``cutoff``, the oldest first; how many."""
        raise NotImplementedError

    def purged(self, count: int) -> None:
        """Count and log a round that purged ``count`` rows."""
        raise NotImplementedError

    async def step(self) -> int:
        cutoff = self.cutoff()
        if self.stopping or cutoff is None:  # a stop runs rounds until one does nothing: a long purge held it up
            return 0
        async with self._uow() as uow:
            done = await self.round(uow.store, cutoff, self._round_max)
            await uow.commit()
        if done:
            self.purged(done)
        return done
