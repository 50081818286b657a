"""The re-driver: leads a broker may have lost are published again.

A lead with no terminal outcome on ``leads.lifecycle`` some time after it was
published has its ``published_at`` cleared, and its touches' with it, so the
relay publishes the very same events again, the lead's before its touches'
(same ids: every stage absorbs a lead that was merely slow). A touch of a lead
that already has its outcome is not re-driven: nothing acknowledges a touch.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common.outbox import BackgroundLoop

from capture.store import SCHEMA

log = structlog.get_logger(__name__)

REDRIVEN = Counter("capture_leads_redriven_total", "Leads re-published because no terminal outcome arrived in time")
STUCK = Gauge("capture_leads_stuck", "Leads without a terminal outcome CAPTURE_REDRIVE_AFTER_S after they were first "
              "published (re-driven or not), at the last check")
REDRIVE_BATCH = 1000
GIVEN_UP = Gauge("capture_leads_redrive_exhausted", "Stuck leads re-driven the maximum number of times")


#: The longest a re-drive waits for a lead's outcome, however many times it was re-driven: unless
#: ``CAPTURE_REDRIVE_AFTER_S`` is longer, which every re-drive waits at least.
LONGEST_WAIT_S = 3600
#: Whether a lead is due for a re-drive: capped at LONGEST_WAIT_S alone, a first wait of
#: CAPTURE_REDRIVE_AFTER_S=7200 re-drove after an hour. Each further try waits ``backoff`` times longer, so a long
#: outage does not use up a lead's tries while nothing can succeed.
_PAST_DEADLINE = """terminal_stage IS NULL AND published_at < now() - make_interval(
    secs => greatest(:after, least(:after * power(:backoff, redrives), :longest)))"""
#: The lead's touches published so far go again with it (after it, in order, as the relay's claim sends them): a
#: broker that lost the lead's events lost theirs too, and a touch may lift the lead's score.
_REDRIVE = sa.text(
    f"""
    WITH redriven AS (
        UPDATE {SCHEMA}.leads SET published_at = NULL, redrives = redrives + 1
        WHERE lead_id IN (
            SELECT lead_id FROM {SCHEMA}.leads
            WHERE {_PAST_DEADLINE} AND redrives < :max_redrives
            ORDER BY seq LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING lead_id
    ), touches_again AS (
        UPDATE {SCHEMA}.touches SET published_at = NULL
        WHERE lead_id IN (SELECT lead_id FROM redriven) AND published_at IS NOT NULL
    )
    SELECT lead_id FROM redriven
    """
)
#: capture's pool cuts statements short for its requests (``CAPTURE_DB_STATEMENT_TIMEOUT_MS``); counting every stuck
#: lead may take longer after a long outage, just when re-driving matters, and no request waits for it. Its lock
#: timeout stays: the re-drive skips leads a relay holds and touches it is publishing (their committed
#: published_at is still NULL), so it waits on nobody's rows, and must not hold its own for ever.
_UNHURRIED = sa.text("SELECT set_config('statement_timeout', '0', true)")
#: Not by the re-drive's deadline: a re-drive starts a lead's wait again (published_at) and backs it off, so a lead
#: that never finishes was past it only at the check that re-drove it, and an alert on capture_leads_stuck > 0 for
#: some minutes never fired. A lead re-driven once was past CAPTURE_REDRIVE_AFTER_S without an outcome then, and
#: stays stuck until one comes.
_STUCK = sa.text(
    f"""
    SELECT count(*) AS stuck, count(*) FILTER (WHERE redrives >= :max_redrives) AS exhausted
    FROM {SCHEMA}.leads
    WHERE terminal_stage IS NULL AND (redrives > 0 OR published_at < now() - make_interval(secs => :after))
    """
)


class Redriver(BackgroundLoop):
    """Re-publishes leads that reached no terminal outcome within ``after_s`` of being published.

    The n-th re-drive of a lead waits ``after_s * backoff**n``, at most ``LONGEST_WAIT_S`` (an hour) unless that
    is less than ``after_s``, which every re-drive waits at least.

    Safe because every stage is idempotent and re-emits the outputs it stored:
    a lead that was merely slow is applied nowhere twice. A lead re-driven
    ``max_redrives`` times is left alone and counted, for a human to look at.
    """

    name = "capture-redriver"

    def __init__(self, engine: AsyncEngine, *, after_s: float, every_s: float, max_redrives: int,
                 on_redrive: Callable[[], None], backoff: float = 2.0) -> None:
        super().__init__(batch_max=REDRIVE_BATCH, idle_s=every_s)
        self._engine = engine
        self._after_s = after_s
        self._max = max_redrives
        self._backoff = backoff
        self._on_redrive = on_redrive

    async def step(self) -> int:
        params = {"after": self._after_s, "backoff": self._backoff, "longest": LONGEST_WAIT_S,
                  "max_redrives": self._max}
        async with self._engine.begin() as conn:
            await conn.execute(_UNHURRIED)  # for this transaction only
            counts = (await conn.execute(_STUCK, params)).one()
            redriven = (await conn.execute(_REDRIVE, {**params, "batch": REDRIVE_BATCH})).all()
        STUCK.set(counts.stuck)
        GIVEN_UP.set(counts.exhausted)
        if redriven:
            REDRIVEN.inc(len(redriven))
            log.warning("re-driving leads with no terminal outcome", leads=len(redriven), after_s=self._after_s)
            self._on_redrive()
        return len(redriven)
