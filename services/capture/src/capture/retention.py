"""The quarantine's purge: what a submission taken for a bot's said is kept only as long as an admin may still
review and release it (``CAPTURE_QUARANTINE_KEEP_DAYS``).

Guarantees: a quarantined submission received longer ago than the
retention, by this process's clock (which dated it), is deleted, released
or not; the spam report, built from ``leads.quarantined``, still counts it.
Its rounds are ``leadpipe_common.purge``'s, the oldest received first; a
release under way holds its submission, which the round passes over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common import purge

from capture.domain import quarantine_kept_since

log = structlog.get_logger(__name__)

PURGED = Counter("capture_quarantine_purged_total", "Quarantined submissions deleted after "
                 "CAPTURE_QUARANTINE_KEEP_DAYS")


class QuarantinePurge(purge.Purge[datetime]):
    name = "capture-quarantine-purge"

    def __init__(self, unit_of_work: Callable[[], Any], clock: Callable[[], datetime], keep_days: float,
                 round_max: int = purge.ROUND_MAX) -> None:
        super().__init__(unit_of_work, round_max)
        self._clock, self._keep_days = clock, keep_days

    def cutoff(self) -> datetime | None:
        return quarantine_kept_since(self._clock(), self._keep_days)

    async def round(self, store: Any, cutoff: datetime, limit: int) -> int:
        return await store.purge_quarantine(cutoff, limit)

    def purged(self, count: int) -> None:
        PURGED.inc(count)
        log.info("quarantined submissions purged", submissions=count, received_days_ago=self._keep_days)
