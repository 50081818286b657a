"""The dispatcher: sends due deliveries, each in a task of its own, and records what became of them.

Guarantees: at least once, in order per subscription and lead (``store``'s
claim), each delivery signed by every secret of its subscription with the
Standard Webhooks scheme, its ``webhook-id`` the event's id on every retry.
An attempt is bounded by the connect and total timeouts; a slow or failing
receiver holds at most ``per_subscription`` of the ``max_in_flight`` slots,
so it never delays the others. Targets are called through the client's
transport, which connects only to public addresses it resolved itself
(``delivery.network``). After an attempt: 2xx delivered; ``410``
switches the subscription off (its deliveries wait until it is redriven);
``429``/``503`` with ``Retry-After`` waits that long, an hour at most; a refusal (a ``4xx``
but ``408``/``409``/``425``/``429``, or a redirect, which is never followed:
``domain.refused``) is dead once its
receiver has refused ``refused_attempts`` attempts in a row (counted with the
delivery, in the statement that records each attempt), so the lead's later
deliveries go; anything else backs off exponentially with jitter, until the
retry window (counted from the delivery's first attempt) ends and the delivery
is dead, with its last response kept. Those times are Postgres's, as claims judge them, whatever
this host's clock says (``_postgres_clock``), and so is a switch-off's, which
the store dates: the dispatcher reads no wall clock of its host's. What the
attempts that ended since the last round got is recorded by the next round,
all in one transaction: the dispatcher takes one pooled connection at a time,
however many attempts end together, so its recordings do not queue behind
each other for the pool (leases cover the attempt and a few seconds of
recording). A result recorded
after its lease all the same (the pool busy elsewhere, Postgres slow) records
nothing over the claim that took its delivery since: that delivery was sent
twice, which receivers drop by its ``webhook-id``. A stop claims nothing more:
the attempts under way finish (within their total timeout) and are recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from prometheus_client import Counter, Gauge, Histogram
from standardwebhooks.webhooks import Webhook

from leadpipe_common.db import error_text, is_unavailable
from leadpipe_common.outbox import BackgroundLoop

from delivery.domain import Subscription, after_attempt, redirected, retry_after_s, switched_off
from delivery.network import NotPublic
from delivery.store import Attempted, Claimed

log = structlog.get_logger(__name__)

ATTEMPTS = Counter("delivery_attempts_total", "Delivery attempts by subscription and result",
                   ["subscription", "result"])
LATENCY = Histogram("delivery_attempt_seconds", "Time one delivery attempt took", ["subscription"],
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
#: An attempt whose result was not recorded: sent again at its lease's end (``error``: Postgres refused the row;
#: ``lease``: the delivery was claimed again meanwhile). A rate that does not fall is a delivery sent for ever.
UNRECORDED = Counter("delivery_attempts_unrecorded_total", "Attempts whose result could not be recorded",
                     ["subscription", "why"])
#: Deliveries given up because their receiver refused them (``domain.refused``), by the status it answered: a
#: receiver that refuses everything (a wrong secret, a wrong path) shows here, its deliveries dead within seconds.
REFUSED = Counter("delivery_refused_total",
                  "Deliveries given up because their receiver refused them (a 4xx or a redirect)",
                  ["subscription", "status"])
OLDEST = Gauge("delivery_oldest_waiting_seconds", "Age of the oldest delivery not yet delivered, per subscription",
               ["subscription"])

#: What a lease holds a delivery for beyond the attempt's total timeout: the claim's commit, and the recording
#: of the attempt's result by the round after it ends.
RECORD_MARGIN_S = 5


def _postgres_clock(d: Claimed, asked: float) -> datetime:
    """Postgres's clock now, as this host reckons it: its reading when ``d`` was claimed plus the monotonic time
    since the claim was ``asked`` for, which takes in the claim's round trip, so the reckoning is never behind.
    Claims judge a retry due by that clock, so an attempt is dated, and its retry and window reckoned, by it too.
    By this host's clock, ahead of Postgres's, every backoff was longer by the difference; behind it, shorter,
    and a receiver's ``Retry-After`` was not waited out; two hosts' clocks apart disagreed on when a delivery's
    retry window ended."""
    return d.claimed_at + timedelta(seconds=time.monotonic() - asked)


class Dispatcher(BackgroundLoop):
    name = "delivery-dispatcher"

    def __init__(self, *, unit_of_work: Callable[[], Any], client: httpx.AsyncClient,
                 subscriptions: Mapping[str, Subscription], from_file: Mapping[str, Subscription],
                 retry_window: timedelta, retry_base_s: float, refused_attempts: int,
                 connect_timeout_s: float, timeout_s: float, max_in_flight: int, per_subscription: int,
                 idle_s: float) -> None:
        super().__init__(batch_max=max_in_flight, idle_s=idle_s)
        self._uow = unit_of_work
        self._client = client
        self._subs = subscriptions
        #: Those of them from the subscriptions file: one switched off by a 410 from a url it has left is on.
        self._from_file = from_file
        self._window = retry_window
        self._base_s = retry_base_s
        self._refused_attempts = refused_attempts
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._total_s = timeout_s
        self._max = max_in_flight
        self._per_sub = per_subscription
        # Subscriptions change (the admin API, a rotation): signers are made per set of secrets, and kept.
        self._signers: dict[tuple[str, ...], list[Webhook]] = {}
        self._in_flight: Tally[str] = Tally()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Attempts ended since the last round, each with the reason to switch its subscription off (a 410).
        self._finished: list[tuple[Attempted, str | None]] = []
        self._gauged_at = float("-inf")
        #: The subscriptions whose oldest waiting delivery this dispatcher last reported.
        self._gauged: set[str] = set()

    async def step(self) -> int:
        if self._finished:
            await self._record_finished()
        if self.stopping:  # what is under way finishes (stop waits for it); nothing new starts
            return 0
        room = self._max - sum(self._in_flight.values())
        if room <= 0 or not self._subs:
            return 0
        async with self._uow() as uow:
            # A gauge, not a decision: refreshed every few seconds, not on every round.
            waiting = await uow.store.oldest_waiting() if time.monotonic() >= self._gauged_at + 5 else None
            disabled = switched_off(await uow.store.disabled_urls(), self._from_file)
            free = {sub: self._per_sub - self._in_flight[sub] for sub in set(self._subs) - disabled}
            # The lease outlives the attempt and its recording, so no other dispatcher takes it meanwhile. Counted
            # by Postgres's clock when the claim runs, not by this host's: every dispatcher judges it by the same
            # clock, and a wait before the claim (a busy pool, the gauge over a backlog) does not shorten it.
            # Counted from before it is asked for, so that what this host counts since is never less than what
            # Postgres's clock has run since the claim's reading (``_postgres_clock``).
            asked = time.monotonic()
            claimed = await uow.store.claim(free, room, lease=timedelta(seconds=self._total_s + RECORD_MARGIN_S))
            await uow.commit()
        if waiting is not None:
            self._gauged_at = time.monotonic()
            in_force = set(self._subs)
            # A subscription deleted since would keep its last age for ever, as if its deliveries still waited.
            for sub_id in self._gauged - in_force:
                OLDEST.remove(sub_id)
            for sub_id in in_force:
                OLDEST.labels(sub_id).set(waiting.get(sub_id, 0.0))
            self._gauged = in_force
        for delivery in claimed:
            self._in_flight[delivery.subscription_id] += 1
            task = asyncio.create_task(self._attempt(delivery, asked), name=f"delivery-{delivery.seq}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def stop(self) -> None:
        await super().stop()
        # Attempts under way finish (bounded by the total timeout); an unfinished one is sent again later.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._total_s + 1)
        if self._finished:  # ended after the last round: unrecorded, they would be sent again
            try:
                await self._record_finished()
            except Exception as exc:
                log.warning("could not record the last delivery attempts", attempts=len(self._finished),
                            error=error_text(exc))

    async def _record_finished(self) -> None:
        """Records the attempts ended since the last round, in one transaction."""
        finished, self._finished = self._finished, []
        try:
            await self._record(finished)
        except asyncio.CancelledError:  # a stop that ran out of patience: stop() records them after all
            self._finished[:0] = finished
            raise
        except Exception as exc:
            if is_unavailable(exc):
                # Kept for the next round, which claims nothing more meanwhile; a lease that lapses meanwhile
                # is checked when they are recorded.
                self._finished[:0] = finished
                raise
            # Not Postgres but something in a row: each alone, so one that cannot be recorded holds up no other.
            for one in finished:
                try:
                    await self._record([one])
                except Exception as exc:  # its lease expires and the delivery is sent again: at least once
                    UNRECORDED.labels(one[0].claimed.subscription_id, "error").inc()
                    log.warning("could not record a delivery attempt", subscription=one[0].claimed.subscription_id,
                                error=error_text(exc))

    async def _record(self, finished: list[tuple[Attempted, str | None]]) -> None:
        """Each attempt, with the url that answered it 410 Gone, if one did."""
        async with self._uow() as uow:
            # The switch-offs first: each locks its subscription's row, which a deletion locks before the
            # deliveries ``record`` updates (after them, the two could each wait for the other: a deadlock). In
            # subscription order, as every dispatcher takes them: two rounds with 410s from the same two receivers
            # would otherwise each hold one switch-off row and wait for the other's.
            for attempted, gone_from in sorted(finished, key=lambda f: f[0].claimed.subscription_id):
                sub_id = attempted.claimed.subscription_id
                # Deleted since it was sent: nothing to switch off, and a row would switch off whoever takes its id.
                if gone_from is None or sub_id not in self._subs:
                    continue
                # A 410 switches off the subscription only if it still sends where the 410 came from: one whose
                # url was changed meanwhile (an attempt under way, another process's book not yet reloaded) must
                # not be switched off by the receiver it left; the delivery goes to the new url after its lease.
                # The store decides: a change commits before any book (this one too) is reloaded.
                if await uow.store.disable(sub_id, f"410 Gone from {gone_from}", url=gone_from):
                    log.warning("receiver answered 410 Gone: subscription switched off", subscription=sub_id)
                else:
                    log.info("a url the subscription has left since answered 410 Gone: it stays on",
                             subscription=sub_id)
            recorded = await uow.store.record([attempted for attempted, _ in finished])
            await uow.commit()
        for attempted, _ in finished:
            if attempted.claimed.seq not in recorded:
                # Claimed again since (and sent twice: receivers drop the repeat by its webhook-id), or dropped.
                UNRECORDED.labels(attempted.claimed.subscription_id, "lease").inc()
                log.warning("a delivery attempt outlived its lease: not recorded",
                            subscription=attempted.claimed.subscription_id, event_id=str(attempted.claimed.event_id),
                            status=attempted.status, error=attempted.error)

    async def _attempt(self, d: Claimed, asked: float) -> None:
        sub = self._subs.get(d.subscription_id)
        if sub is None:  # deleted since the claim: its deliveries are dead already, and the lease lapses
            self._in_flight[d.subscription_id] -= 1
            return
        # Signed with it too: one time per attempt, the one its log shows the receiver was given.
        started, at = time.perf_counter(), _postgres_clock(d, asked)
        status: int | None = None
        error: str | None = None
        response: str | None = None
        retry_after: float | None = None
        refused_here = False
        try:
            # The client's transport (``delivery.network``) refuses what resolves to a non-public address.
            async with asyncio.timeout(self._total_s), self._client.stream(
                    "POST", sub.url, content=d.body, headers=self._headers(d, sub, at), timeout=self._timeout
            ) as reply:
                status = reply.status_code
                retry_after = retry_after_s(reply.headers.get("retry-after"), at)
                response = await head_of(reply)
                if (error := redirected(status, reply.headers.get("location"))) is not None:
                    # The whole Location with the answer, which admin keys alone are shown: the error says its origin.
                    response = f"Location: {reply.headers.get('location', '')}\n\n{response}"[:RESPONSE_BYTES]
        except Exception as exc:  # noqa: BLE001
            # Not only the network's errors: whatever keeps an attempt from being made (a URL httpx refuses, a
            # port out of range at connect) is a failed attempt, recorded and retried in its window; one that
            # escaped here was never recorded, and was claimed again at every lease, for ever.
            # A timeout says nothing of itself ("TimeoutError: " was the whole last error an operator read).
            said = str(exc) or (f"no whole answer within DELIVERY_TIMEOUT_S ({self._total_s:g} s)"
                                if isinstance(exc, TimeoutError) else "")
            error = (f"{type(exc).__name__}: {said}" if said else type(exc).__name__)[:500]
            refused_here = cannot_be_sent(exc)
        finally:
            self._in_flight[d.subscription_id] -= 1
        elapsed = time.perf_counter() - started
        now = _postgres_clock(d, asked)
        window = timedelta(hours=sub.retry_hours) if sub.retry_hours else self._window
        # From its first attempt, not from when it was queued: it may have waited most of a window behind its
        # lead's earlier delivery. This attempt opens it, as its recording stores (``store._RECORD``).
        first_at = d.first_attempt_at or at
        verdict = after_attempt(status, retry_after, attempts=d.attempts + 1, refused_before=d.refused_in_a_row,
                                first_at=first_at, now=now, window=window, jitter=random.random(),
                                base_s=self._base_s, refused_attempts=self._refused_attempts,
                                refused_here=refused_here)
        LATENCY.labels(sub.id).observe(elapsed)
        ATTEMPTS.labels(sub.id, verdict.outcome).inc()
        # Recorded by the next round, with every other attempt that ended by then: one connection for all.
        # A refusal's reason is its delivery's last error: a dead delivery with no error read as one whose window ran
        # out, and its receiver's answer, when it was an error page, did not say it was given up early.
        # A given-up redirect keeps both: that it was refused, and where the receiver pointed.
        error = "; ".join(filter(None, (verdict.reason, error))) or None
        self._finished.append((Attempted(d, at=at, status=status, error=error, response=response,
                                         duration_ms=int(elapsed * 1000), outcome=verdict.outcome,
                                         next_at=verdict.next_at, refused_in_a_row=verdict.refused_in_a_row),
                               sub.url if verdict.outcome == "gone" else None))
        if verdict.reason is not None:
            REFUSED.labels(sub.id, str(status) if status is not None else "none").inc()
            log.warning("delivery refused by its receiver: given up", subscription=sub.id, event_id=str(d.event_id),
                        status=status, attempts=d.attempts + 1, refused_in_a_row=verdict.refused_in_a_row)
        elif verdict.outcome == "dead":
            log.warning("delivery given up after the retry window", subscription=sub.id, event_id=str(d.event_id),
                        status=status, error=error)
        self.wake()  # to record it; the lead's next delivery may be due then

    def _headers(self, d: Claimed, sub: Subscription, at: datetime) -> dict[str, str]:
        body = d.body.decode()
        msg_id = str(d.event_id)
        signers = self._signers.get(sub.secrets)
        if signers is None:
            signers = self._signers[sub.secrets] = [Webhook(s) for s in sub.secrets]
        signatures = " ".join(signer.sign(msg_id, at, body) for signer in signers)
        return {"content-type": "application/cloudevents+json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signatures,
                "user-agent": "leadpipe-delivery/1", "accept-encoding": "identity"}


def cannot_be_sent(exc: BaseException) -> bool:
    """Whether ``exc`` says the attempt could not be made to its url at all, whatever the receiver's state: its
    name resolves to an address deliveries are not sent to (``network.NotPublic``), or httpx cannot send to it
    (a host IDNA cannot encode, a scheme or port it refuses). Retried as an outage, such a delivery held its
    lead's later ones back for the whole retry window."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NotPublic | httpx.InvalidURL | httpx.UnsupportedProtocol | UnicodeError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


#: How much of a receiver's answer is read and kept for the delivery log: its first bytes, as they came (never
#: decompressed, whatever the receiver says they are), never the whole of it.
RESPONSE_BYTES = 2000


async def head_of(reply: httpx.Response) -> str:
    """The first ``RESPONSE_BYTES`` of ``reply``'s body, read no further: a receiver's endless or compressed
    answer (a few KB of gzip can unpack to gigabytes) costs the dispatcher nothing beyond them. What is no
    text shows as U+FFFD, and so does a NUL byte (gzip's header has several): Postgres refuses one in text,
    and the attempt could never be recorded."""
    kept = bytearray()
    async for chunk in reply.aiter_raw():
        kept += chunk
        if len(kept) >= RESPONSE_BYTES:
            break
    return bytes(kept[:RESPONSE_BYTES]).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
