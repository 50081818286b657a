"""delivery's queue on the real Postgres: what a dispatcher's round claims."""

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from leadpipe_common.testing.waits import kept_waiting

from delivery.domain import Mark
from delivery.store import SWITCHED_OFF, Attempted, Claimed, DeliveryStore, Forgotten, _ended

#: How long a claim leases a delivery for in these tests (a dispatcher's: its total timeout and the margin).
LEASE = timedelta(seconds=20)


def due(subscription: str, n: int, since: datetime) -> list[dict]:
    """``n`` due deliveries of ``subscription``, each to a lead of its own, the oldest first."""
    return [{"subscription_id": subscription, "lead_id": uuid.uuid4(), "event_id": uuid.uuid4(),
             "event_type": "lead.routed", "body": b"{}", "created_at": since, "next_at": since + timedelta(seconds=i)}
            for i in range(n)]


def attempted(claimed: Claimed, outcome: str, status: int | None, at: datetime, next_at: datetime | None = None,
              error: str | None = None, refused_in_a_row: int = 0) -> Attempted:
    return Attempted(claimed, at=at, status=status, error=error, response="" if status else None, duration_ms=7,
                     outcome=outcome, next_at=next_at, refused_in_a_row=refused_in_a_row)


async def died(store: DeliveryStore, subscription: str, at: datetime) -> Claimed:
    """``subscription``'s first due delivery, claimed and given up at ``at`` (500 at its window's end)."""
    [claimed] = await store.claim({subscription: 1}, 1, lease=LEASE)
    await store.record([attempted(claimed, "dead", 500, at)])
    return claimed


async def fall_due(conn, seq: int) -> None:
    """Delivery ``seq``'s next_at (a retry's time, or a lease's end) moved back to Postgres's clock now: as if that
    time had come, for the next claim to find it due (claims read no other clock)."""
    await conn.execute(sa.text("UPDATE delivery.deliveries SET next_at = statement_timestamp() WHERE seq = :seq"),
                       {"seq": seq})


async def postgres_clock(conn) -> datetime:
    """Postgres's clock as it reads when asked (not the transaction's start): what a later statement writes as its
    own start is not earlier."""
    return (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()


async def kept_since(conn, cutoff: datetime) -> timedelta:
    """The retention that, by Postgres's clock, purges what finished before ``cutoff`` (and a few milliseconds
    after it, by the time the purge runs)."""
    return await postgres_clock(conn) - cutoff


def api_subscription(subscription_id: str, url: str, at: datetime | None) -> dict:
    """A row of ``delivery.subscriptions``: one made through the admin API at ``at`` (None: as the API gives it,
    for Postgres's clock to date)."""
    return {"id": subscription_id, "url": url, "events": ["lead.routed"], "filter": {}, "secrets": [],
            "created_by": "test", **({"created_at": at, "updated_at": at} if at else {})}


async def test_a_slow_receivers_backlog_takes_only_its_own_slots_of_a_round(db):
    """The README's promise: one slow or failing receiver holds at most its share of the attempts under way."""
    run = uuid.uuid4().hex[:8]
    slow, other = f"slow-{run}", f"other-{run}"
    now = datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end: nothing is left in the stack's queue
        store = DeliveryStore(conn)
        await store.enqueue(due(slow, 10, now - timedelta(hours=1)) + due(other, 2, now - timedelta(minutes=1)))
        claimed = await store.claim({slow: 3, other: 3}, 5, lease=LEASE)
        again = await store.claim({slow: 0, other: 3}, 5, lease=LEASE)
        await conn.rollback()
    assert sorted(c.subscription_id for c in claimed) == [other] * 2 + [slow] * 3
    assert again == []  # the slow one's slots are taken; what was claimed is leased


async def test_a_claim_is_due_and_leased_by_postgres_clock_from_when_it_runs(db):
    """Each dispatcher took its host's clock: one a minute ahead of another judged the other's lease run out, and
    sent the delivery it still held. Postgres's clock is every dispatcher's; read when the claim runs, not when its
    transaction began: the round's gauge over a backlog (or a wait for the pool) must not shorten the lease."""
    sub = f"clock-{uuid.uuid4().hex[:8]}"
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        began = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
        # One due a minute ago, one due in a minute, by Postgres's clock.
        await store.enqueue(due(sub, 1, began - timedelta(minutes=1)) + due(sub, 1, began + timedelta(minutes=1)))
        await conn.execute(sa.text("SELECT pg_sleep(0.3)"))  # the round's slow first statement
        claimed = await store.claim({sub: 5}, 5, lease=LEASE)
        ended = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        again = await store.claim({sub: 5}, 5, lease=LEASE)
        await conn.rollback()
    [leased] = claimed
    assert began + timedelta(seconds=0.3) + LEASE <= leased.leased_until <= ended + LEASE
    # The reading it leased by, handed to the dispatcher, which dates the attempt and its retry from it.
    assert leased.claimed_at == leased.leased_until - LEASE
    assert again == []  # one leased, the other not yet due


async def test_a_delivery_queued_without_a_time_is_queued_and_due_at_once_by_postgres_clock(db):
    """The handler gave each new delivery its host's time: a delivery process ahead of Postgres held it back from
    every claim (by Postgres's clock) for the difference. It gives none now, and the store takes Postgres's."""
    sub = f"queued-{uuid.uuid4().hex[:8]}"
    [row] = due(sub, 1, datetime.now(UTC))
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        opened = await postgres_clock(conn)
        await store.enqueue([{k: v for k, v in row.items() if k not in ("created_at", "next_at")}])
        closed = await postgres_clock(conn)
        claimed = await store.claim({sub: 1}, 1, lease=LEASE)  # due when queued, by the claim's clock
        await conn.rollback()
    [at_once] = claimed
    assert opened <= at_once.created_at <= closed  # the backlog's gauge reads its age by Postgres's clock too


async def test_switching_a_receiver_back_on_goes_by_postgres_clock_for_what_is_under_way_and_what_waited(db):
    """The admin's host a minute ahead of Postgres: by its clock the lease of an attempt under way had run out, so
    the delivery was made due again, sent beside that attempt, and the attempt's result was never recorded; and
    what waited was made due at the host's time, so no claim (by Postgres's clock) took it for a minute. Switching
    back on takes no host's time: what waited is due at once, what is under way left to its attempt."""
    sub, now = f"ahead-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 2, now - timedelta(minutes=1)))
        [under_way] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.disable(sub, "410 Gone", url="https://gone.example.com/h")
        opened = await postgres_clock(conn)
        assert await store.enable(sub) is True
        closed = await postgres_clock(conn)
        waited = await store.claim({sub: 5}, 5, lease=LEASE)
        recorded = await store.record([attempted(under_way, "delivered", 204, now)])
        await conn.rollback()
    [sent_at_once] = waited
    assert sent_at_once.seq != under_way.seq and opened <= sent_at_once.created_at <= closed
    assert recorded == {under_way.seq}


async def test_a_receiver_switched_back_on_gets_what_waited_with_a_fresh_retry_window(db):
    """A 410 stops a subscription; what waited meanwhile must not die on its first failure after `enable`."""
    run = uuid.uuid4().hex[:8]
    gone, now = f"gone-{run}", datetime.now(UTC)
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(gone, 2, now - timedelta(days=5)))  # older than any retry window
        await store.disable(gone, "410 Gone", url="https://gone.example.com/h")
        opened = await postgres_clock(conn)
        assert await store.enable(gone) is True
        closed = await postgres_clock(conn)
        waiting = await store.claim({gone: 5}, 5, lease=LEASE)
        await conn.rollback()
    assert len(waiting) == 2 and {d.attempts for d in waiting} == {0}
    assert all(opened <= d.created_at <= closed for d in waiting)


async def test_switching_a_receiver_back_on_leaves_a_delivery_under_way_to_its_attempt(db):
    """Another of its deliveries got the 410 while this one was being sent: made due by `enable`, it was claimed
    and sent again beside its attempt (twice to the receiver), and that attempt's result was never recorded."""
    run = uuid.uuid4().hex[:8]
    sub, now = f"busy-{run}", datetime.now(UTC)
    later = now + timedelta(seconds=2)  # within the lease
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 2, now - timedelta(minutes=1)))
        [under_way] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.disable(sub, "410 Gone", url="https://gone.example.com/h")
        opened = await postgres_clock(conn)
        assert await store.enable(sub) is True
        claimed = await store.claim({sub: 5}, 5, lease=LEASE)
        recorded = await store.record([attempted(under_way, "delivered", 204, later)])
        await conn.rollback()
    assert under_way.seq not in {d.seq for d in claimed}
    [waited] = claimed
    assert opened <= waited.created_at and waited.attempts == 0  # what waited: at once, a fresh window
    assert recorded == {under_way.seq}


async def test_a_receiver_switched_back_on_gives_a_delivery_not_yet_due_a_fresh_retry_window_too(db):
    """Waiting for its retry (or for a last attempt at its window's end) when the receiver was switched back on,
    it kept its old window, and its first failure after killed it."""
    sub, now = f"later-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    days_ago, retry_at = now - timedelta(days=5), now + timedelta(minutes=10)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, days_ago))  # older than any retry window
        [failed] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(failed, "retry", 503, days_ago, next_at=retry_at)])
        await store.disable(sub, "410 Gone", url="https://gone.example.com/h")
        opened = await postgres_clock(conn)
        assert await store.enable(sub) is True
        closed = await postgres_clock(conn)
        before_its_time = await store.claim({sub: 1}, 1, lease=LEASE)
        await fall_due(conn, failed.seq)  # retry_at has come
        [retried] = await store.claim({sub: 1}, 1, lease=LEASE)
        await conn.rollback()
    assert before_its_time == []  # it keeps its time
    # A fresh window, opened by its next attempt; its backoff goes on.
    assert (retried.first_attempt_at, retried.attempts) == (None, 1) and opened <= retried.created_at <= closed


async def test_a_deliverys_retry_window_opens_at_its_first_attempt_however_long_it_was_queued_before(db):
    """A lead's later delivery waits behind its earlier one: counted from when it was queued, its window could be
    spent before it was ever sent. Its first attempt opens it, and its later attempts leave it where it is."""
    sub, now = f"queued-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    days_ago, first, second = now - timedelta(days=5), now - timedelta(minutes=2), now - timedelta(minutes=1)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, days_ago))  # older than any retry window
        [never_tried] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(never_tried, "retry", 500, first, next_at=second)])
        [tried_once] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(tried_once, "retry", 500, second, next_at=now)])
        [tried_twice] = await store.claim({sub: 1}, 1, lease=LEASE)
        await conn.rollback()
    assert never_tried.first_attempt_at is None
    assert tried_once.first_attempt_at == tried_twice.first_attempt_at == first


async def test_a_redriven_delivery_gets_a_retry_window_opened_by_its_next_attempt(db):
    """Given up at its window's end, it would be given up again at its first failure after a redrive."""
    sub, now = f"redriven-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    days_ago = now - timedelta(days=5)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, days_ago))
        await died(store, sub, days_ago)
        opened = await postgres_clock(conn)
        assert (await store.redrive(sub, in_file={sub})).queued == 1
        closed = await postgres_clock(conn)
        [again] = await store.claim({sub: 1}, 1, lease=LEASE)  # due at once by Postgres's clock
        await conn.rollback()
    assert (again.first_attempt_at, again.attempts) == (None, 0) and opened <= again.created_at <= closed


async def test_a_redrive_restarts_the_backoff_and_leaves_a_deleted_subscriptions_deliveries_dead(db):
    """A deleted subscription's id may be taken again by another receiver: what it left must not go there."""
    run = uuid.uuid4().hex[:8]
    dead, deleted, now = f"dead-{run}", f"deleted-{run}", datetime.now(UTC)
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(dead, 1, now) + due(deleted, 1, now))
        await conn.execute(sa.text(
            "UPDATE delivery.deliveries SET status = 'dead', attempts = 12, last_error = CASE subscription_id "
            "WHEN :deleted THEN 'subscription deleted' ELSE '500' END WHERE subscription_id IN (:dead, :deleted)"),
            {"dead": dead, "deleted": deleted})
        redriven = await store.redrive(in_file={dead, deleted})  # the deleted one's id taken by the file
        back = await store.claim({dead: 1, deleted: 1}, 5, lease=LEASE)
        await conn.rollback()
    assert redriven.queued == 1 and [(d.subscription_id, d.attempts) for d in back] == [(dead, 0)]


async def test_a_redrive_never_sends_a_deleted_subscriptions_dead_deliveries_to_a_new_one_under_its_id(db):
    """Deletion drops what waits; what was already dead kept its own error, and once a new receiver took the id
    through the API a redrive sent it the old leads' contact details."""
    crm, now = f"crm-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(crm, "https://old.example.com/h",
                                                             now - timedelta(hours=2)))
        await store.enqueue(due(crm, 2, hour_ago))
        await died(store, crm, hour_ago)
        assert await store.remove_subscription(crm) == 1  # the one still waiting
        assert await store.add_subscription(api_subscription(crm, "https://new.example.com/h",
                                                             now - timedelta(minutes=10)))
        await store.enqueue(due(crm, 1, now - timedelta(minutes=5)))
        own = await died(store, crm, now)

        redriven = await store.redrive(crm, in_file=set())
        pending = (await conn.execute(sa.text("SELECT seq FROM delivery.deliveries WHERE subscription_id = :id "
                                              "AND status = 'pending'"), {"id": crm})).scalars().all()
        await conn.rollback()
    assert redriven.queued == 1 and pending == [own.seq]  # the new receiver's own, nothing of the old one's


async def test_a_new_subscription_is_dated_by_postgres_clock_and_a_redrive_sends_its_first_deliveries(db):
    """The API dated a subscription by its host's clock: ahead of Postgres's, by which its deliveries are queued,
    those of its first moments looked older than it, an earlier holder's of its id, and once dead a redrive left
    them dead ("not in force"). The API gives no time now: the store takes Postgres's."""
    crm = f"new-{uuid.uuid4().hex[:8]}"
    [queued] = due(crm, 1, datetime.now(UTC))
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        opened = await postgres_clock(conn)
        assert await store.add_subscription(api_subscription(crm, "https://crm.example.com/h", None))
        closed = await postgres_clock(conn)
        row = await store.subscription_row(crm)
        # Queued at once, as the handler gives it: by Postgres's clock too.
        await store.enqueue([{k: v for k, v in queued.items() if k not in ("created_at", "next_at")}])
        await died(store, crm, datetime.now(UTC))
        redriven = await store.redrive(crm, in_file=set())
        await conn.rollback()
    assert opened <= row["created_at"] == row["updated_at"] <= closed
    assert (redriven.queued, dict(redriven.not_in_force)) == (1, {})


async def test_a_changed_subscription_keeps_its_dead_deliveries_for_a_redrive(db):
    """A change is no deletion: what died before it is still its own, and is sent again (to the new url)."""
    crm, now = f"crm-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(crm, "https://old.example.com/h",
                                                             now - timedelta(hours=2)))
        await store.enqueue(due(crm, 1, hour_ago))
        await died(store, crm, hour_ago)
        opened = await postgres_clock(conn)
        await store.change_subscription(crm, {"url": "https://new.example.com/h", "contact": ["email"]})
        closed = await postgres_clock(conn)
        row = await store.subscription_row(crm)
        redriven = await store.redrive(crm, in_file=set())
        await conn.rollback()
    assert (row["url"], row["contact"], row["events"]) == ("https://new.example.com/h", ["email"], ["lead.routed"])
    # Changed now by Postgres's clock, as it was made by it (here, a row given a time two hours ago).
    assert row["created_at"] == now - timedelta(hours=2) and opened <= row["updated_at"] <= closed
    assert redriven.queued == 1


async def test_a_redrive_counts_by_subscription_what_it_left_dead_because_their_subscription_is_not_in_force(db):
    """Run with another file than the service's (an admin box), a redrive of all left the file's subscriptions'
    dead deliveries out without a word. A purged one could not be sent anyway: it is not counted."""
    run = uuid.uuid4().hex[:8]
    absent, deleted, kept, now = f"absent-{run}", f"deleted-{run}", f"kept-{run}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(absent, 3, now) + due(deleted, 1, now) + due(kept, 1, now))
        await conn.execute(sa.text(
            "UPDATE delivery.deliveries SET status = 'dead', last_error = CASE subscription_id "
            "WHEN :deleted THEN 'subscription deleted' ELSE '500' END "
            "WHERE subscription_id IN (:absent, :deleted, :kept)"),
            {"absent": absent, "deleted": deleted, "kept": kept})
        await conn.execute(sa.text("UPDATE delivery.deliveries SET body = NULL WHERE seq = (SELECT min(seq) "
                                   "FROM delivery.deliveries WHERE subscription_id = :id)"), {"id": absent})
        of_each = [await store.redrive(sub, in_file={kept, deleted}) for sub in (absent, deleted, kept)]
        await conn.rollback()
    assert [(r.queued, r.purged, dict(r.not_in_force)) for r in of_each] == [
        (0, 0, {absent: 2}),
        (0, 0, {deleted: 1}),  # the file took the id of one deleted
        (1, 0, {}),
    ]


async def test_what_waits_for_a_subscription_in_neither_the_file_nor_the_api_is_counted_and_left_waiting(db):
    """A start with an older file than other processes' (a rolling deploy, a rollback) must not give up what
    waits for a subscription added since: it is only named, with how many wait."""
    run = uuid.uuid4().hex[:8]
    removed, in_the_file, made, now = f"removed-{run}", f"file-{run}", f"api-{run}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(made, "https://api.example.com/h", now))
        await store.enqueue(due(removed, 2, now) + due(in_the_file, 1, now) + due(made, 1, now))
        stranded = await store.stranded({in_the_file})
        pending = (await conn.execute(sa.text("SELECT count(*) FROM delivery.deliveries WHERE subscription_id = :id "
                                              "AND status = 'pending'"), {"id": removed})).scalar_one()
        await conn.rollback()
    assert stranded[removed] == 2 and not {in_the_file, made} & stranded.keys()
    assert pending == 2


async def test_a_forgotten_subscriptions_waiting_deliveries_end_dead_and_come_back_only_once_it_is_in_the_file(db):
    """Removed from the file, a subscription's waiting deliveries are claimed by nobody: pending for ever until an
    operator gives them up; a redrive of all must not queue them again, to wait for ever too."""
    run = uuid.uuid4().hex[:8]
    removed, made, now = f"removed-{run}", f"api-{run}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(made, "https://api.example.com/h", now))
        await store.enqueue(due(removed, 2, now) + due(made, 1, now))
        await died(store, removed, now)
        await store.disable(removed, "410 Gone", url="https://gone.example.com/h")
        await store.disable(made, "410 Gone", url="https://api.example.com/h")
        # The file has every other subscription the stack's queue knows: this one alone is no longer in force.
        in_file = set((await conn.execute(sa.text(
            "SELECT subscription_id FROM delivery.deliveries UNION SELECT subscription_id FROM delivery.disabled"
        ))).scalars()) - {removed, made}

        async def left(subscription_id: str) -> list[tuple]:
            rows = await conn.execute(sa.text("SELECT status, last_error FROM delivery.deliveries "
                                              "WHERE subscription_id = :id ORDER BY seq"), {"id": subscription_id})
            return [tuple(r) for r in rows]

        forgotten = await store.forget(removed)
        after_forget, switched_off = await left(removed), await store.disabled_urls()
        await store.redrive(in_file=in_file)
        after_redrive_of_all = await left(removed)
        back_in_the_file = await store.redrive(removed, in_file=in_file | {removed})
        api_made = await store.forget(made)
        made_left, made_still_off = await left(made), made in await store.disabled_urls()
        await conn.rollback()
    assert forgotten == Forgotten(dropped=1, was_disabled=True) and removed not in switched_off
    gone = ("dead", "subscription removed from the subscriptions file")
    assert after_forget == after_redrive_of_all == [("dead", None), gone]
    assert back_in_the_file.queued == 2  # forgotten too early, or with the wrong file read
    assert api_made is None and made_left == [("pending", None)] and made_still_off  # deleted, rather


async def test_what_a_deletion_or_a_forget_gives_up_is_dead_from_then_by_postgres_clock(db):
    """Given up at the API's (or the command's) host's time, a delivery's done_at was on another clock than every
    other delivery's, which the purge judges them all by: from a host behind Postgres, its body was purged early
    (a redrive of a forgotten one, back in the file, found nothing to send); from one ahead, kept too long."""
    run = uuid.uuid4().hex[:8]
    deleted, removed, now = f"deleted-{run}", f"removed-{run}", datetime.now(UTC)
    dead_at = now - timedelta(minutes=4)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(deleted, "https://api.example.com/h",
                                                             now - timedelta(hours=1)))
        await store.enqueue(due(deleted, 2, now - timedelta(minutes=5)) + due(removed, 1, now))
        await died(store, deleted, dead_at)  # dead before the deletion
        opened = await postgres_clock(conn)
        assert await store.remove_subscription(deleted) == 1
        assert await store.forget(removed) == Forgotten(dropped=1, was_disabled=False)
        closed = await postgres_clock(conn)
        rows = (await conn.execute(sa.text(
            "SELECT last_error, done_at, deleted_at FROM delivery.deliveries "
            "WHERE subscription_id IN (:deleted, :removed) ORDER BY seq"), {"deleted": deleted, "removed": removed}
        )).all()
        await conn.rollback()
    dead_before, dropped, forgotten = rows
    assert dead_before.done_at == dead_at and opened <= dead_before.deleted_at <= closed
    assert dropped.last_error == "subscription deleted" and opened <= dropped.done_at == dropped.deleted_at <= closed
    assert forgotten.last_error == "subscription removed from the subscriptions file"
    assert opened <= forgotten.done_at <= closed and forgotten.deleted_at is None


async def test_a_dead_deliverys_last_response_is_shown_with_it(db):
    """The README promises it kept; the lead's deliveries left it out, so nobody could read why they died."""
    sub, now = f"refused-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, now))
        [claimed] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([replace(attempted(claimed, "dead", 422, now), response='{"error": "unknown team"}')])
        [shown] = await store.of_lead(claimed.lead_id)
        await conn.rollback()
    assert (shown["status"], shown["last_status"], shown["last_response"]) == ("dead", 422, '{"error": "unknown team"}')


async def test_a_refused_delivery_given_up_lets_its_leads_next_one_go_and_a_redrive_gives_it_its_attempts_again(db):
    """A receiver refusing a lead's ``lead.routed`` held its ``lead.assigned`` back for the whole window. The
    refusals in a row each attempt recorded are what the next claim reads (``domain.after_attempt`` judges by
    them); given up at the second (as with DELIVERY_REFUSED_ATTEMPTS=2), the next delivery goes; the refusal is
    kept, saying so, and a redrive sends it again with its attempts and refusals counted from naught, so it gets
    its refused attempts anew."""
    sub, now, lead = f"refusing-{uuid.uuid4().hex[:8]}", datetime.now(UTC), uuid.uuid4()
    refusal = "refused: the receiver answered 422, refusing 2 attempts in a row"
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([{**d, "lead_id": lead} for d in due(sub, 2, now - timedelta(seconds=10))])
        [routed] = await store.claim({sub: 2}, 2, lease=LEASE)
        await store.record([attempted(routed, "retry", 422, now, next_at=now, refused_in_a_row=1)])
        await fall_due(conn, routed.seq)  # its retry's time has come
        [refused_once] = await store.claim({sub: 2}, 2, lease=LEASE)
        await store.record([attempted(refused_once, "dead", 422, now, error=refusal, refused_in_a_row=2)])
        [assigned] = await store.claim({sub: 2}, 2, lease=LEASE)
        await store.record([attempted(assigned, "delivered", 204, now)])
        shown = await store.of_lead(lead)
        redriven = await store.redrive(subscription_id=sub, in_file={sub})
        [again] = await store.claim({sub: 2}, 2, lease=LEASE)
        await conn.rollback()
    assert (routed.refused_in_a_row, refused_once.seq, refused_once.refused_in_a_row) == (0, routed.seq, 1)
    assert assigned.seq > routed.seq
    assert [(d["status"], d["last_status"], d["last_error"]) for d in shown] == [
        ("dead", 422, refusal), ("delivered", 204, None)]
    assert redriven.queued == 1 and (again.seq, again.attempts, again.refused_in_a_row) == (routed.seq, 0, 0)


async def test_a_delivery_redriven_while_a_later_one_of_its_lead_is_under_way_waits_for_that_one(db):
    """One delivery a lead at a time, in order: a lead's ``lead.routed`` died, its ``lead.assigned`` went on and is
    being sent when an operator redrives the first. The first must wait for that attempt's lease, not go beside
    it."""
    sub, now, lead = f"in-flight-{uuid.uuid4().hex[:8]}", datetime.now(UTC), uuid.uuid4()
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([{**d, "lead_id": lead} for d in due(sub, 2, now - timedelta(seconds=10))])
        routed = await died(store, sub, now)
        [assigned] = await store.claim({sub: 2}, 2, lease=LEASE)  # under way from here
        await store.redrive(subscription_id=sub, in_file={sub})
        while_under_way = await store.claim({sub: 2}, 2, lease=LEASE)
        await fall_due(conn, assigned.seq)  # its dispatcher died: the lease ran out, nothing recorded
        [after] = await store.claim({sub: 2}, 2, lease=LEASE)
        await conn.rollback()
    assert assigned.seq > routed.seq
    assert while_under_way == []
    assert after.seq == routed.seq  # the earlier one first again, the later one after it


async def test_a_receiver_switched_back_on_counts_the_refusals_of_what_was_due_anew(db):
    """Switched back on, a delivery its receiver had refused twice before another got the 410 must get its
    refused attempts in a row anew, as it gets its attempts (a fixed receiver is asked again from naught)."""
    sub, now = f"refused-on-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, now - timedelta(minutes=1)))
        [refused] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(refused, "retry", 404, now, next_at=now, refused_in_a_row=2)])
        await fall_due(conn, refused.seq)  # due again when its receiver is switched back on
        await store.disable(sub, "410 Gone", url="https://gone.example.com/h")
        assert await store.enable(sub) is True
        [again] = await store.claim({sub: 1}, 1, lease=LEASE)
        await conn.rollback()
    assert (again.seq, again.attempts, again.refused_in_a_row) == (refused.seq, 0, 0)


async def test_a_late_attempt_never_overrides_the_verdict_already_recorded(db):
    """Its lease ran out, another process sent it and recorded the delivery; the first one's failure comes in."""
    run = uuid.uuid4().hex[:8]
    sub, now = f"late-{run}", datetime.now(UTC)
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, now))
        [claimed] = await store.claim({sub: 1}, 5, lease=LEASE)
        for outcome in ("delivered", "dead"):
            await store.record([attempted(claimed, outcome, 204 if outcome == "delivered" else 500, now)])
        status = (await conn.execute(sa.text("SELECT status FROM delivery.deliveries WHERE seq = :seq"),
                                     {"seq": claimed.seq})).scalar_one()
        await conn.rollback()
    assert status == "delivered"


async def test_an_attempt_that_outlived_its_lease_records_nothing_over_the_claim_that_took_it_since(db):
    """Its recording waited for a pooled connection past the lease; another round claimed the delivery and sent
    it again. The stale failure must not move the newer lease (a third round would send it meanwhile) nor take
    its attempt's number."""
    run = uuid.uuid4().hex[:8]
    sub, now = f"lease-{run}", datetime.now(UTC)
    later = now + timedelta(seconds=21)  # the second round's attempt, once the first lease has run out
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, now))
        [first] = await store.claim({sub: 1}, 5, lease=LEASE)
        await fall_due(conn, first.seq)  # its lease has run out
        [second] = await store.claim({sub: 1}, 5, lease=LEASE)
        # Its retry at once: recorded, it would have the third round send the delivery again.
        stale = await store.record([attempted(first, "retry", 503, now, next_at=now)])
        third = await store.claim({sub: 1}, 5, lease=LEASE)
        kept = await store.record([attempted(second, "delivered", 204, later)])
        row = (await conn.execute(sa.text("SELECT status, attempts, last_status FROM delivery.deliveries "
                                          "WHERE seq = :seq"), {"seq": first.seq})).one()
        tries = (await conn.execute(sa.text("SELECT attempt, status FROM delivery.attempts WHERE delivery_seq = :seq"),
                                    {"seq": first.seq})).all()
        await conn.rollback()
    assert (first.seq, first.attempts) == (second.seq, second.attempts)
    assert stale == set() and third == []
    assert kept == {second.seq}
    assert tuple(row) == ("delivered", 1, 204) and [tuple(t) for t in tries] == [(1, 204)]


async def test_a_rounds_attempts_are_recorded_in_one_call_each_as_its_verdict_says(db):
    run = uuid.uuid4().hex[:8]
    sub, now = f"round-{run}", datetime.now(UTC)
    retry_at = now + timedelta(minutes=1)
    async with db.connect() as conn:
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 4, now - timedelta(seconds=10)))
        claimed = sorted(await store.claim({sub: 4}, 5, lease=LEASE), key=lambda c: c.seq)
        recorded = await store.record([
            attempted(claimed[0], "delivered", 204, now),
            attempted(claimed[1], "retry", None, now, next_at=retry_at, error="ConnectTimeout: "),
            attempted(claimed[2], "dead", 500, now),
            attempted(claimed[3], "gone", 410, now),
        ])
        rows = (await conn.execute(sa.text(
            "SELECT status, attempts, last_status, last_error, next_at, done_at FROM delivery.deliveries "
            "WHERE subscription_id = :sub ORDER BY seq"), {"sub": sub})).all()
        tries = (await conn.execute(sa.text(
            "SELECT a.attempt, a.at, a.status, a.error, a.duration_ms FROM delivery.attempts a "
            "JOIN delivery.deliveries d ON d.seq = a.delivery_seq WHERE d.subscription_id = :sub ORDER BY d.seq"),
            {"sub": sub})).all()
        await conn.rollback()
    lease = claimed[0].leased_until
    assert {c.leased_until for c in claimed} == {lease}  # one claim, one lease
    assert recorded == {c.seq for c in claimed}
    assert [tuple(r) for r in rows] == [
        ("delivered", 1, 204, None, lease, now),
        ("pending", 1, None, "ConnectTimeout: ", retry_at, None),
        ("dead", 1, 500, None, lease, now),
        ("pending", 1, 410, None, lease, None),  # its subscription switched off: switching it on sends it again
    ]
    assert [tuple(t) for t in tries] == [(1, now, 204, None, 7), (1, now, None, "ConnectTimeout: ", 7),
                                         (1, now, 500, None, 7), (1, now, 410, None, 7)]


async def test_a_subscription_deleted_while_another_process_queues_for_it_takes_those_deliveries_with_it(db):
    """The queueing process has not refreshed its book: the deletion waits for it, then drops what it queued."""
    gone, now = f"gone-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.begin() as conn:
        assert await DeliveryStore(conn).add_subscription({
            "id": gone, "url": "https://gone.example.com/h", "events": ["lead.routed"], "filter": {},
            "secrets": [], "created_by": "test", "created_at": now, "updated_at": now})

    try:
        async with db.begin() as queueing:
            store = DeliveryStore(queueing)
            assert await store.still_subscribed({gone, "never-made"}) == {gone}
            await store.enqueue(due(gone, 2, now))
            deleting = await kept_waiting(deleted(db, gone), "the deletion did not wait for the deliveries being queued")
        assert await asyncio.wait_for(deleting, 10) == 2
        async with db.connect() as conn:
            left = (await conn.execute(sa.text(
                "SELECT status, last_error FROM delivery.deliveries WHERE subscription_id = :id"), {"id": gone})).all()
            assert await DeliveryStore(conn).still_subscribed({gone}) == set()
        assert [tuple(r) for r in left] == [("dead", "subscription deleted")] * 2
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text("DELETE FROM delivery.deliveries WHERE subscription_id = :id"), {"id": gone})


async def test_a_leads_deliveries_queued_by_two_processes_at_once_are_numbered_in_commit_order(db):
    """The claim sees only committed rows: had the second process's row the higher seq but committed first, it
    would be sent before the first's, which appears later with the lower seq."""
    sub, lead, now = f"order-{uuid.uuid4().hex[:8]}", uuid.uuid4(), datetime.now(UTC)
    first, second = ({"subscription_id": sub, "lead_id": lead, "event_id": uuid.uuid4(), "event_type": kind,
                      "body": b"{}", "created_at": now, "next_at": now} for kind in ("lead.assigned", "lead.routed"))

    async def queue_second() -> None:
        async with db.begin() as conn:
            await DeliveryStore(conn).enqueue([second])

    try:
        async with db.begin() as queueing:
            await DeliveryStore(queueing).enqueue([first])
            other = await kept_waiting(queue_second(),
                                       "the second process queued for the lead while the first had not committed")
        await asyncio.wait_for(other, 10)
        async with db.connect() as conn:
            order = (await conn.execute(sa.text("SELECT event_type FROM delivery.deliveries WHERE subscription_id"
                                                " = :sub ORDER BY seq"), {"sub": sub})).scalars().all()
        assert order == ["lead.assigned", "lead.routed"]
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text("DELETE FROM delivery.deliveries WHERE subscription_id = :id"), {"id": sub})


async def test_a_redriven_deliverys_new_attempts_are_logged_after_its_old_ones(db):
    """A redrive restarts the attempts count (the backoff starts over); the log must not lose what follows."""
    sub, now = f"again-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 1, now))
        first = await died(store, sub, now)
        await store.redrive(in_file={sub})
        [again] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(again, "delivered", 204, now)])
        log = (await conn.execute(sa.text("SELECT attempt, status FROM delivery.attempts WHERE delivery_seq = :seq"
                                          " ORDER BY attempt"), {"seq": first.seq})).all()
        await conn.rollback()
    assert again.attempts == 0 and [tuple(r) for r in log] == [(1, 500), (2, 204)]


async def test_a_purge_clears_the_body_and_last_answer_of_deliveries_finished_before_the_cutoff_only(db):
    """The body is the lead's contact details: kept while the delivery may still be sent, not for ever. The row
    stays, for the audit trail and so that a re-read event is not queued again."""
    sub = f"purge-{uuid.uuid4().hex[:8]}"
    # Long before anything the stack's own tests finish, so the purge's count is this test's alone.
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    cutoff, lately = long_ago + timedelta(days=30), long_ago + timedelta(days=40)
    queued = due(sub, 4, long_ago - timedelta(hours=1))
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(queued)
        delivered, dead, recent = sorted(await store.claim({sub: 3}, 3, lease=LEASE),
                                         key=lambda c: c.seq)  # the fourth is left pending, however old
        await store.record([replace(attempted(delivered, "delivered", 204, long_ago), response="thanks"),
                            replace(attempted(dead, "dead", 422, long_ago), response='{"error": "unknown team"}'),
                            replace(attempted(recent, "delivered", 204, lately), response="thanks")])

        purged = await store.purge(await kept_since(conn, cutoff), limit=100)
        rows = (await conn.execute(sa.text(
            "SELECT status, body IS NULL, last_response, attempts, last_status, done_at FROM delivery.deliveries "
            "WHERE subscription_id = :sub ORDER BY seq"), {"sub": sub})).all()
        [shown] = await store.of_lead(dead.lead_id)
        await store.enqueue([row for row in queued if row["event_id"] == dead.event_id])  # its event read again
        count = (await conn.execute(sa.text("SELECT count(*) FROM delivery.deliveries WHERE subscription_id = :sub"),
                                    {"sub": sub})).scalar_one()
        await conn.rollback()
    assert purged == 2
    assert [tuple(r) for r in rows] == [
        ("delivered", True, None, 1, 204, long_ago),
        ("dead", True, None, 1, 422, long_ago),
        ("delivered", False, "thanks", 1, 204, lately),  # finished after the cutoff
        ("pending", False, None, 0, None, None),  # still to be sent
    ]
    assert (shown["status"], shown["last_status"], shown["last_response"], len(shown["attempts"])) == (
        "dead", 422, None, 1)
    assert count == 4


async def test_a_purge_counts_the_retention_back_from_postgres_clock_which_dated_the_finish(db):
    """The purge counted the retention back from its host's clock, deliveries' done_at being Postgres's: a delivery
    host behind Postgres purged bodies before their retention ended (a dead delivery could no longer be redriven),
    one ahead kept them longer. A minute either side of the retention's end, by Postgres's clock."""
    sub = f"retention-{uuid.uuid4().hex[:8]}"
    # A retention no other test's deliveries are as old as (some 25 years), so what is purged is this test's alone.
    keep = timedelta(days=9000)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        ended = await postgres_clock(conn) - keep
        await store.enqueue(due(sub, 2, ended - timedelta(hours=1)))
        claimed = sorted(await store.claim({sub: 2}, 2, lease=LEASE), key=lambda c: c.seq)
        await store.record([attempted(c, "delivered", 204, at) for c, at in zip(
            claimed, (ended - timedelta(minutes=1), ended + timedelta(minutes=1)), strict=True)])
        purged = await store.purge(keep, limit=100)
        bodies = (await conn.execute(sa.text(
            "SELECT body IS NULL FROM delivery.deliveries WHERE subscription_id = :sub ORDER BY seq"),
            {"sub": sub})).scalars().all()
        await conn.rollback()
    assert (purged, bodies) == (1, [True, False])


async def test_a_purge_round_takes_at_most_its_limit_the_longest_finished_first(db):
    """A first purge of a long history goes in bounded rounds, each a short transaction."""
    sub = f"chunks-{uuid.uuid4().hex[:8]}"
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 3, long_ago - timedelta(hours=1)))
        claimed = sorted(await store.claim({sub: 3}, 3, lease=LEASE), key=lambda c: c.seq)
        await store.record([attempted(c, "delivered", 204, long_ago + timedelta(minutes=len(claimed) - i))
                            for i, c in enumerate(claimed)])  # the last one queued finished first

        async def purged() -> list[bool]:
            return list((await conn.execute(sa.text(
                "SELECT body IS NULL FROM delivery.deliveries WHERE subscription_id = :sub ORDER BY seq"),
                {"sub": sub})).scalars())

        first = await store.purge(await kept_since(conn, long_ago + timedelta(days=1)), limit=2)
        after_first = await purged()
        second = await store.purge(await kept_since(conn, long_ago + timedelta(days=1)), limit=2)
        after_second = await purged()
        await conn.rollback()
    assert (first, after_first) == (2, [False, True, True])
    assert (second, after_second) == (1, [True, True, True])


async def test_what_waits_for_a_subscription_switched_off_longer_than_the_retention_is_given_up_and_cleared(db):
    """A receiver answered 410 and nobody switched it back on: what its subscription queued since holds leads'
    contacts that nothing sends. Once the switch-off and a delivery's queueing are both older than the retention,
    the delivery is dead and cleared, and a redrive leaves it out; a lead.erased stays for the receiver to hear
    of, and so does what a subscription switched off more lately keeps, what was queued lately, and one under a
    lease (a process whose file sends the subscription elsewhere judges it on, and may be sending it)."""
    run, long_ago = uuid.uuid4().hex[:8], datetime(2001, 1, 1, tzinfo=UTC)
    gone, lately_off = f"gone-{run}", f"lately-off-{run}"
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        old = due(gone, 4, long_ago)
        # Due after every other: the claim below leases the first of them.
        erased = {**due(gone, 1, long_ago + timedelta(hours=1))[0], "event_type": "lead.erased",
                  "body": b'{"erased": true}'}
        await store.enqueue([*old, erased, *due(lately_off, 1, long_ago)])
        [leased] = await store.claim({gone: 1}, 1, lease=LEASE)
        await store.enqueue(due(gone, 1, datetime.now(UTC)))  # queued lately, though long after the 410
        await store.disable(gone, "410 Gone", url="https://gone.example.com/h")
        await store.disable(lately_off, "410 Gone", url="https://gone.example.com/h")
        await conn.execute(sa.text("UPDATE delivery.disabled SET at = :at WHERE subscription_id = :sub"),
                           {"at": long_ago, "sub": gone})
        await conn.execute(sa.text("UPDATE delivery.deliveries SET created_at = :at WHERE event_id = ANY(:ids)"),
                           {"at": long_ago, "ids": [d["event_id"] for d in [*old, erased]]})
        await conn.execute(sa.text("UPDATE delivery.deliveries SET created_at = :at WHERE subscription_id = :sub"),
                           {"at": long_ago, "sub": lately_off})
        keep = await kept_since(conn, long_ago + timedelta(days=1))
        first = await store.give_up_off({gone, lately_off}, keep, limit=2)
        second = await store.give_up_off({gone, lately_off}, keep, limit=2)
        third = await store.give_up_off({gone, lately_off}, keep, limit=2)
        rows = (await conn.execute(sa.text(
            "SELECT seq, subscription_id, event_type, status, body IS NULL AS cleared, last_error,"
            " done_at IS NOT NULL AS done FROM delivery.deliveries WHERE subscription_id IN (:gone, :lately)"
            " ORDER BY seq"),
            {"gone": gone, "lately": lately_off})).all()
        redriven = await store.redrive(subscription_id=gone, in_file={gone})
        await conn.rollback()
    assert (first, second, third) == ({gone: 2}, {gone: 1}, {})
    given_up = [r for r in rows if r.status == "dead"]
    assert len(given_up) == 3 and all(r.cleared and r.done and r.last_error == SWITCHED_OFF for r in given_up)
    assert leased.seq not in {r.seq for r in given_up}
    assert sorted((r.subscription_id, r.event_type, r.status, r.cleared) for r in rows if r.status != "dead") == [
        (gone, "lead.erased", "pending", False), (gone, "lead.routed", "pending", False),
        (gone, "lead.routed", "pending", False), (lately_off, "lead.routed", "pending", False)]
    assert (redriven.queued, redriven.purged) == (0, 3)


async def test_a_redrive_leaves_out_the_dead_deliveries_whose_body_was_purged_and_counts_them(db):
    """A purged delivery has nothing left to send: queued again, it would go out empty (or not at all) and die
    again, while the answer claimed it was sent once more."""
    sub = f"purged-{uuid.uuid4().hex[:8]}"
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue(due(sub, 3, long_ago - timedelta(hours=1)))
        old, recent, of_another_lead = sorted(await store.claim({sub: 3}, 3, lease=LEASE),
                                              key=lambda c: c.seq)
        await store.record([attempted(old, "dead", 500, long_ago), attempted(of_another_lead, "dead", 500, long_ago),
                            attempted(recent, "dead", 500, long_ago + timedelta(days=40))])
        await store.purge(await kept_since(conn, long_ago + timedelta(days=30)), limit=100)

        of_one_lead = await store.redrive(lead_id=old.lead_id, in_file={sub})
        of_all = await store.redrive(sub, in_file={sub})
        rows = (await conn.execute(sa.text(
            "SELECT status, body IS NULL FROM delivery.deliveries WHERE subscription_id = :sub ORDER BY seq"),
            {"sub": sub})).all()
        await conn.rollback()
    assert (of_one_lead.queued, of_one_lead.purged) == (0, 1)
    assert (of_all.queued, of_all.purged) == (1, 2)
    assert [tuple(r) for r in rows] == [("dead", True), ("pending", False), ("dead", True)]


async def test_a_410_from_the_url_an_api_subscription_has_left_does_not_switch_it_off(db):
    """Another process, its book a refresh behind, sent to the old url and got 410 there: the receiver the
    subscription left must not switch off the one it moved to."""
    crm, now = f"moved-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(crm, "https://new.example.com/h", now))
        said_off_by_old = await store.disable(crm, "410 Gone from https://old.example.com/h",
                                              url="https://old.example.com/h")
        kept_on = crm not in await store.disabled_urls()
        opened = await postgres_clock(conn)
        said_off_by_new = await store.disable(crm, "410 Gone from https://new.example.com/h",
                                              url="https://new.example.com/h")
        closed = await postgres_clock(conn)
        switched_off = crm in await store.disabled_urls()
        # Another of its deliveries got the 410 too, a little later: off, as it was since the first.
        said_off_again = await store.disable(crm, "410 Gone from https://new.example.com/h",
                                             url="https://new.example.com/h")
        off_since = (await conn.execute(sa.text("SELECT at FROM delivery.disabled WHERE subscription_id = :id"),
                                        {"id": crm})).scalar_one()
        await conn.rollback()
    assert (said_off_by_old, kept_on) == (False, True)  # what the dispatcher logs comes from what it is told
    assert (said_off_by_new, switched_off) == (True, True)
    assert said_off_again is True and opened <= off_since <= closed


async def test_a_410_recorded_while_a_change_of_its_url_commits_waits_for_it_and_leaves_the_subscription_on(db):
    """A PATCH to a new url in flight as a 410 from the old one is recorded: unlocked, the 410's check read the
    old url, the PATCH answered on, and the switch-off, committed just after, held the new url off."""
    crm, now = f"moving-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    async with db.begin() as conn:
        assert await DeliveryStore(conn).add_subscription(api_subscription(crm, old, now))

    async def gone_from_old() -> bool:
        async with db.begin() as conn:
            return await DeliveryStore(conn).disable(crm, f"410 Gone from {old}", url=old)

    try:
        async with db.begin() as patching:
            store = DeliveryStore(patching)
            assert await store.subscription_row(crm) is not None
            await store.change_subscription(crm, {"url": new})
            recording = await kept_waiting(gone_from_old(), "the switch-off did not wait for the change of its url")
        assert await asyncio.wait_for(recording, 10) is False
        async with db.connect() as conn:
            assert crm not in await DeliveryStore(conn).disabled_urls()
    finally:
        async with db.begin() as conn:
            await DeliveryStore(conn).remove_subscription(crm)


async def test_a_change_of_url_waits_for_a_410_being_recorded_and_finds_the_subscription_off(db):
    """The other way round: the 410 came from where it still sent, so it is off, and the PATCH that follows must
    not answer on (one made through the API stays off, changed or not, until it is enabled)."""
    crm, now = f"moving-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    async with db.begin() as conn:
        assert await DeliveryStore(conn).add_subscription(api_subscription(crm, old, now))

    async def patch() -> dict[str, str | None]:
        async with db.begin() as conn:
            store = DeliveryStore(conn)
            assert await store.subscription_row(crm) is not None
            await store.change_subscription(crm, {"url": new})
        async with db.connect() as conn:  # as the PATCH reads it for its answer, once committed
            return await DeliveryStore(conn).disabled_urls()

    try:
        async with db.begin() as recording:
            assert await DeliveryStore(recording).disable(crm, f"410 Gone from {old}", url=old) is True
            patching = await kept_waiting(patch(), "the change of its url did not wait for the 410 being recorded")
        assert (await asyncio.wait_for(patching, 10)).get(crm) == old
    finally:
        async with db.begin() as conn:
            await DeliveryStore(conn).remove_subscription(crm)


async def test_a_410_switching_off_a_files_subscription_keeps_its_url_and_one_from_its_new_url_takes_its_place(db):
    """A process still on the older file got 410 from the url the file has left: kept with that url, it holds off
    only the processes still sending there. A 410 from the new url later must switch it off there too: a switch-off
    left with the old url would have the receiver's 410 ignored for ever."""
    crm = f"file-{uuid.uuid4().hex[:8]}"
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        said_off_by_old = await store.disable(crm, f"410 Gone from {old}", url=old)
        from_old = (await store.disabled_urls())[crm]
        opened = await postgres_clock(conn)
        said_off_by_new = await store.disable(crm, f"410 Gone from {new}", url=new)
        closed = await postgres_clock(conn)
        row = (await conn.execute(sa.text("SELECT at, reason, url FROM delivery.disabled WHERE subscription_id = :id"),
                                  {"id": crm})).one()
        await conn.rollback()
    assert said_off_by_old is True and from_old == old
    assert said_off_by_new is True and (row.reason, row.url) == (f"410 Gone from {new}", new)
    assert opened <= row.at <= closed  # off since the new url's 410


async def test_a_redrive_never_sends_a_deleted_api_subscriptions_dead_deliveries_to_the_files_under_its_id(db):
    """A file's subscription has no creation time to tell the deleted one's dead deliveries from its own by: they
    are marked when it is deleted, and stay dead whoever takes the id."""
    crm, now = f"crm-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(crm, "https://old.example.com/h",
                                                             now - timedelta(hours=2)))
        await store.enqueue(due(crm, 1, hour_ago))
        await died(store, crm, hour_ago)  # dead before the deletion, its error kept
        assert await store.remove_subscription(crm) == 0
        await store.enqueue(due(crm, 1, now - timedelta(minutes=5)))  # now the file's, under the same id
        own = await died(store, crm, now)

        redriven = await store.redrive(crm, in_file={crm})
        pending = (await conn.execute(sa.text("SELECT seq FROM delivery.deliveries WHERE subscription_id = :id "
                                              "AND status = 'pending'"), {"id": crm})).scalars().all()
        await conn.rollback()
    assert redriven.queued == 1 and pending == [own.seq]  # the file's own, nothing of the deleted one's


async def test_a_new_subscription_starts_on_though_a_late_410_switched_off_a_deleted_one_of_its_id(db):
    """A process whose book still held the deleted subscription recorded its receiver's 410 after the delete."""
    crm, now = f"again-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(crm, "https://old.example.com/h", now))
        assert await store.remove_subscription(crm) == 0
        await store.disable(crm, "410 Gone from https://old.example.com/h", url="https://old.example.com/h")
        late_410_recorded = crm in await store.disabled_urls()
        assert await store.add_subscription(api_subscription(crm, "https://new.example.com/h", now))
        switched_off = crm in await store.disabled_urls()
        await conn.rollback()
    assert (late_410_recorded, switched_off) == (True, False)


async def test_secrets_sealed_again_are_written_only_over_those_read(db):
    """A rotation through the API (or another process's reseal) committed between a refresh's read and its write
    stays: the reseal of the older secrets writes nothing."""
    crm, now = f"reseal-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    read = [{"sealed": "sealed-under-the-old-key", "expires_at": None}]
    rotated = [{"sealed": "a-rotation-since", "expires_at": None}]
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription({**api_subscription(crm, "https://crm.example.com/h", now),
                                             "secrets": read})
        first = await store.reseal_secrets(crm, read, [{"sealed": "sealed-under-the-new-key", "expires_at": None}])
        stored = (await store.subscription_row(crm))["secrets"]
        opened = await postgres_clock(conn)
        await store.set_secrets(crm, rotated)
        closed = await postgres_clock(conn)
        late = await store.reseal_secrets(crm, read, [{"sealed": "from-a-stale-read", "expires_at": None}])
        kept = await store.subscription_row(crm)
        await conn.rollback()
    assert first is True and stored == [{"sealed": "sealed-under-the-new-key", "expires_at": None}]
    assert late is False and kept["secrets"] == rotated
    assert opened <= kept["updated_at"] <= closed  # the rotation's time, by Postgres's clock; a reseal's none


def held(subscription: str, lead_id: uuid.UUID, event_type: str = "lead.routed") -> dict:
    """A delivery to ``subscription`` of an event of ``lead_id``, due a second ago, its body holding the person."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    return {"subscription_id": subscription, "lead_id": lead_id, "event_id": uuid.uuid4(), "event_type": event_type,
            "body": b'{"contact": {"email": "jane.doe@example.com"}}', "created_at": since, "next_at": since}


async def what_is_kept(conn, subscription: str, lead_id: uuid.UUID) -> list[tuple]:
    """Each delivery to ``subscription`` in order: its type, whether it is ``lead_id``'s, its status, whether its
    body is gone, its receiver's last answer and its last error."""
    return [tuple(r) for r in await conn.execute(sa.text(
        "SELECT event_type, lead_id = :lead, status, body IS NULL, last_response, last_error, done_at IS NOT NULL "
        "FROM delivery.deliveries WHERE subscription_id = :sub ORDER BY seq"), {"sub": subscription, "lead": lead_id})]


async def deleted(db, subscription: str) -> int | None:
    """``subscription`` deleted through the store (as the admin API does), in a transaction of its own: what it
    answers."""
    async with db.begin() as conn:
        return await DeliveryStore(conn).remove_subscription(subscription)


async def remove_rows(db, subscription: str, **leads: uuid.UUID) -> None:
    """What a test that committed left in delivery's tables: ``subscription``'s deliveries, rows in followed and
    row, and in each table named in ``leads`` (``erased_leads=lead``) that lead's row."""
    async with db.begin() as conn:
        for table, column, value in (("deliveries", "subscription_id", subscription),
                                     ("followed", "subscription_id", subscription), ("subscriptions", "id", subscription),
                                     *((table, "lead_id", lead) for table, lead in leads.items())):
            await conn.execute(sa.text(f"DELETE FROM delivery.{table} WHERE {column} = :value"), {"value": value})


async def test_an_erasure_gives_up_its_leads_waiting_deliveries_and_clears_every_body_of_it_but_its_own(db):
    """A delivery's body holds the person's contact, and its receiver's last answer may echo it: given up while
    waiting (dead, "erased"), cleared once delivered or dead. The lead's ``lead.erased`` deliveries hold no one,
    and tell the receivers to erase the person too; another lead's are left as they were."""
    sub, lead, other, now = f"erase-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([held(sub, lead)])
        [sent] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([replace(attempted(sent, "delivered", 204, now), response='{"saved": "jane.doe@"}')])
        await store.enqueue([held(sub, lead)])
        [refused] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([replace(attempted(refused, "dead", 422, now, error="refused"), response="no team")])
        await store.enqueue([held(sub, lead), held(sub, lead, "lead.erased"), held(sub, other)])
        await store.enqueue([], erased={lead: now})
        kept = await what_is_kept(conn, sub, lead)
        await conn.rollback()
    assert kept == [
        ("lead.routed", True, "delivered", True, None, None, True),
        ("lead.routed", True, "dead", True, None, "refused", True),  # its receiver's error kept: it names no one
        ("lead.routed", True, "dead", True, None, "erased", True),
        ("lead.erased", True, "pending", False, None, None, False),
        ("lead.routed", False, "pending", False, None, None, False),
    ]


async def test_an_attempt_under_way_when_its_lead_is_erased_is_logged_and_its_lead_erased_waits_for_its_lease(db):
    """The erasure gave up the delivery its attempt was carrying: the attempt's result matched nothing, was
    counted as a lease overrun, and left no trace that the receiver may have taken the person; and the lead's
    lead.erased could be sent before that attempt arrived, the person back at the receiver after it."""
    sub, lead, now = f"flight-{uuid.uuid4().hex[:8]}", uuid.uuid4(), datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([held(sub, lead)])
        [flying] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.enqueue([held(sub, lead, "lead.erased")])
        await store.enqueue([], erased={lead: now})
        while_leased = await store.claim({sub: 1}, 1, lease=LEASE)
        recorded = await store.record([attempted(flying, "delivered", 204, now)])
        row = (await conn.execute(sa.text("SELECT status, last_error, last_status, body FROM delivery.deliveries "
                                          "WHERE seq = :seq"), {"seq": flying.seq})).one()
        tries = (await conn.execute(sa.text("SELECT attempt, status FROM delivery.attempts WHERE delivery_seq = :seq"),
                                    {"seq": flying.seq})).all()
        await fall_due(conn, flying.seq)  # the lease has run out
        [erased] = await store.claim({sub: 1}, 1, lease=LEASE)
        await conn.rollback()
    assert while_leased == [] and recorded == {flying.seq}
    assert tuple(row) == ("dead", "erased", None, None)  # as the erasure left it: given up, nothing of the person
    assert [tuple(t) for t in tries] == [(1, 204)]
    assert erased.event_type == "lead.erased"


async def test_a_lead_erased_while_a_delivery_of_it_waits_for_a_retry_is_told_at_once_not_after_the_backoff(db):
    """Given up by the erasure, a waiting delivery keeps its retry time (up to an hour ahead): lead.erased waits
    only for a lease, which that is not."""
    sub, lead, now = f"waiting-{uuid.uuid4().hex[:8]}", uuid.uuid4(), datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([held(sub, lead)])
        [tried] = await store.claim({sub: 1}, 1, lease=LEASE)
        await store.record([attempted(tried, "retry", 503, now, next_at=now + timedelta(hours=1))])
        await store.enqueue([held(sub, lead, "lead.erased")])
        await store.enqueue([], erased={lead: now})
        [erased] = await store.claim({sub: 1}, 1, lease=LEASE)
        await conn.rollback()
    assert erased.event_type == "lead.erased"


async def test_a_delivery_queued_for_a_lead_after_its_erasure_is_given_up_at_once(db):
    """delivery reads leads.routed apart from the lifecycle: a lead.routed routing wrote before the erasure may be
    read after it, with the whole contact (an SLA reassignment's after it, with none)."""
    sub, lead, other, now = f"late-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([], erased={lead: now})
        await store.enqueue([], erased={lead: now + timedelta(days=1)})  # read again: the first erasure's time stays
        await store.enqueue([held(sub, lead), held(sub, other)])
        kept = await what_is_kept(conn, sub, lead)
        erased_at = (await conn.execute(sa.text("SELECT erased_at FROM delivery.erased_leads WHERE lead_id = :lead"),
                                        {"lead": lead})).scalar_one()
        await conn.rollback()
    assert kept == [("lead.routed", True, "dead", True, None, "erased", True),
                    ("lead.routed", False, "pending", False, None, None, False)]
    assert erased_at == now


@pytest.mark.parametrize("first", ["queueing", "erasure"])
async def test_a_delivery_queued_while_its_leads_erasure_commits_is_given_up_whichever_began_first(db, first):
    """Two processes (one reading leads.routed, one the lifecycle): the erasure's statement does not see a delivery
    queued but not yet committed, nor the queueing's check an erasure not yet committed. The lead's lock orders
    them: whichever comes second waits, and then sees what the first did."""
    sub, lead, now = f"race-{uuid.uuid4().hex[:8]}", uuid.uuid4(), datetime.now(UTC)

    async def queue(conn) -> None:
        await DeliveryStore(conn).enqueue([held(sub, lead)])

    async def erase(conn) -> None:
        await DeliveryStore(conn).enqueue([], erased={lead: now})

    async def alone(step) -> None:
        async with db.begin() as conn:
            await step(conn)

    begun, then = (queue, erase) if first == "queueing" else (erase, queue)
    try:
        async with db.begin() as conn:
            await begun(conn)
            second = await kept_waiting(alone(then), f"the lead's {first} did not hold the other back")
        await asyncio.wait_for(second, 10)
        async with db.connect() as conn:
            kept = await what_is_kept(conn, sub, lead)
        assert kept == [("lead.routed", True, "dead", True, None, "erased", True)]
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text("DELETE FROM delivery.deliveries WHERE subscription_id = :id"), {"id": sub})
            await conn.execute(sa.text("DELETE FROM delivery.erased_leads WHERE lead_id = :lead"), {"lead": lead})


async def test_an_erasure_and_the_deletion_of_an_api_subscription_that_took_its_lead_take_turns_not_deadlock(db):
    """The erasure's batch locked its lead, then share-locked the API subscriptions it queued the erasure for; a
    deletion deletes its subscription's row, then locks the leads it took (``_unfollow``) and its deliveries: each
    held what the other waited for, and Postgres aborted one (DeadlockDetected, within its deadlock_timeout: the
    batch retried, or a 503 for the admin). Both take the subscription first (the store's LOCK ORDER). Interleaved
    for certain: a row of erased_leads another transaction inserts and holds stops the erasure once it holds its
    first locks (it notes the erasure under them), while the deletion takes its own first lock and waits."""
    from leadpipe_common import topics
    from leadpipe_common.events import LeadErased
    from leadpipe_common.testing import factories
    from leadpipe_common.uow import MemoryUnitOfWork

    from delivery.handlers import Delivery, handle_lead_erased
    from delivery.subscriptions import SecretBox, SubscriptionBook, sealed_secrets

    sub, lead, now = f"erasing-{uuid.uuid4().hex[:8]}", uuid.uuid4(), datetime.now(UTC)
    # It filters on grade: it took the lead at its lead.routed, which waits to be sent.
    settings = {"events": ["lead.erased", "lead.routed"], "filter": {"grade": ["B"]}}
    box = SecretBox.from_secrets(None, "a session secret")
    book = SubscriptionBook({}, box, allow_private=False)
    book.load([{**api_subscription(sub, "https://crm.example.com/h", now), **settings, "retry_hours": None,
                "contact": None, "secrets": sealed_secrets(box, [("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", None)])}],
              now)
    ctx = Delivery(book, clock=lambda: now, http=None)
    erasure = factories.envelope(topics.LIFECYCLE, LeadErased(lead_id=lead, at=now, by="dpo"))

    async def erase() -> None:
        async with db.begin() as conn:
            await factories.one_batch(MemoryUnitOfWork(DeliveryStore(conn)), (handle_lead_erased, [erasure], ctx))

    gate = await db.connect()
    try:
        async with db.begin() as conn:
            store = DeliveryStore(conn)
            assert await store.add_subscription({**api_subscription(sub, "https://crm.example.com/h", None),
                                                 **settings})
            await store.enqueue([held(sub, lead)], taken={(sub, lead): Mark(now)})
        await gate.execute(sa.text("INSERT INTO delivery.erased_leads (lead_id, erased_at) VALUES (:lead, :at)"),
                           {"lead": lead, "at": now})
        erasing = await kept_waiting(erase(), "the erasure did not wait for the erased lead's row held elsewhere")
        deleting = await kept_waiting(deleted(db, sub), "the deletion did not wait for the erasure")
        await gate.rollback()
        _, dropped = await asyncio.wait_for(asyncio.gather(erasing, deleting), 10)  # neither a deadlock's victim
        async with db.connect() as conn:
            kept = await what_is_kept(conn, sub, lead)
            following = await DeliveryStore(conn).following({(sub, lead)})
        assert dropped == 1  # the erasure, queued for it before the deletion went on
        assert kept == [("lead.routed", True, "dead", True, None, "erased", True),
                        ("lead.erased", True, "dead", False, None, "subscription deleted", True)]
        assert following.followed == {}
    finally:
        await gate.close()
        await remove_rows(db, sub, erased_leads=lead)


async def test_a_batch_and_the_deletion_of_the_subscription_that_took_its_leads_take_turns_not_deadlock(db):
    """A batch lets go a rejected lead (its rows in followed deleted) and takes another again (its row updated); a
    deletion deletes its subscription's rows in the order of their leads. Had the batch locked the higher lead's
    row, then the lower one's, while the deletion took the lower one's and waited for the higher, each would wait
    for the other. The batch locks its leads' rows in their order before it writes any (``_HOLD_FOLLOWED``).
    Interleaved for certain: a delivery with the batch's event id, inserted by another transaction and held,
    stops the batch after its let-go, while the deletion starts. The batch takes no share lock of the subscription
    here, as a batch that queues nothing for it does not (rejections it is not sent), nor one for a file's
    subscription (whose forgetting deletes by subscription too)."""
    sub, now = f"taking-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    low, high = sorted(uuid.uuid4() for _ in range(2))
    routed, rejected, recycled = Mark(now - timedelta(hours=3), 1), Mark(now - timedelta(hours=2), 1), Mark(now, 2)
    again = held(sub, low)

    async def batch() -> None:
        async with db.begin() as conn:
            await DeliveryStore(conn).enqueue([again], taken={(sub, low): recycled}, let_go={high: rejected})

    gate = await db.connect()
    try:
        async with db.begin() as conn:
            store = DeliveryStore(conn)
            assert await store.add_subscription({**api_subscription(sub, "https://crm.example.com/h", None),
                                                 "filter": {"grade": ["A"]}})
            await store.enqueue([held(sub, low), held(sub, high)], taken={(sub, low): routed, (sub, high): routed})
        await gate.execute(sa.text("INSERT INTO delivery.deliveries (subscription_id, lead_id, event_id, event_type, "
                                   "created_at, next_at) VALUES (:sub, :lead, :event, 'lead.routed', now(), now())"),
                           {"sub": sub, "lead": low, "event": again["event_id"]})
        batching = await kept_waiting(batch(), "the batch did not wait for its delivery's key held elsewhere")
        deleting = await kept_waiting(deleted(db, sub), "the deletion did not wait for the batch's rows of followed")
        await gate.rollback()
        _, dropped = await asyncio.wait_for(asyncio.gather(batching, deleting), 10)  # neither a deadlock's victim
        async with db.connect() as conn:
            left = (await conn.execute(sa.text("SELECT count(*) FROM delivery.followed WHERE subscription_id = :sub"),
                                       {"sub": sub})).scalar_one()
        assert dropped == 3  # the two queued before, and the batch's, committed before the deletion went on
        assert left == 0
    finally:
        await gate.close()
        await remove_rows(db, sub, rejected_leads=high)


async def test_a_subscription_that_took_a_hundred_thousand_leads_is_deleted(db):
    """A lock per lead it took, all in the deletion's transaction, filled Postgres's shared lock table (64 a
    connection): "out of shared memory" from some tens of thousands on, for a year's leads of a busy grade
    subscription, and every other transaction failed meanwhile too. Its rows are locked in the rows themselves."""
    sub = f"busy-{uuid.uuid4().hex[:8]}"
    try:
        async with db.begin() as conn:
            store = DeliveryStore(conn)
            assert await store.add_subscription({**api_subscription(sub, "https://crm.example.com/h", None),
                                                 "filter": {"grade": ["A"]}})
            await conn.execute(sa.text("INSERT INTO delivery.followed (subscription_id, lead_id) "
                                       "SELECT :sub, gen_random_uuid() FROM generate_series(1, 100000)"),
                               {"sub": sub})
        async with db.begin() as conn:
            assert await DeliveryStore(conn).remove_subscription(sub) == 0
        async with db.connect() as conn:
            left = (await conn.execute(sa.text("SELECT count(*) FROM delivery.followed WHERE subscription_id = :sub"),
                                       {"sub": sub})).scalar_one()
        assert left == 0
    finally:
        await remove_rows(db, sub)


async def test_the_stores_rule_for_a_rejection_ending_a_take_is_the_domains_for_every_pair_of_marks(db):
    """The rule is written twice: ``domain.Mark.no_later_than`` (a batch's own reading, ``Following``) and the
    store's SQL (``_ended``: what another process noted). Were they to part, a lead would be let go by one and
    kept by the other. Every pair of marks with numbers said or not, equal or apart, and times equal or apart."""
    times = (datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 23, 10, tzinfo=UTC))
    marks = [Mark(at, seq) for at in times for seq in (None, 1, 2)]
    pairs = [(take, rejection) for take in marks for rejection in marks]
    async with db.connect() as conn:
        rows = await conn.execute(sa.text(f"""
            SELECT n, {_ended("t", "r")} FROM unnest(CAST(:n AS int[]), CAST(:taken_at AS timestamptz[]),
                CAST(:taken_seq AS int[]), CAST(:rejected_at AS timestamptz[]), CAST(:handoff_seq AS int[]))
                AS p(n, taken_at, taken_seq, rejected_at, handoff_seq),
            LATERAL (SELECT p.taken_at, p.taken_seq) AS t, LATERAL (SELECT p.rejected_at, p.handoff_seq) AS r
            ORDER BY n"""), {"n": list(range(len(pairs))), "taken_at": [t.at for t, _ in pairs],
                             "taken_seq": [t.seq for t, _ in pairs], "rejected_at": [r.at for _, r in pairs],
                             "handoff_seq": [r.seq for _, r in pairs]})
        ended = [bool(row[1]) for row in rows]
    assert ended == [take.no_later_than(rejection) for take, rejection in pairs]
    assert len(set(ended)) == 2  # both answers among them


async def test_a_lead_a_subscription_took_is_followed_until_a_rejection_lets_it_go(db):
    """Taken again at the same hand-off, it stays as it was; let go, it is no subscription's; rejected and recycled
    within one batch (let go, then taken at the recycle), it is followed again."""
    sub, lead, other = f"follow-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    # Unnumbered (records of an older routing): ordered by routing's times.
    routed, rejected, recycled = (Mark(datetime(2026, 11, 23, 9, tzinfo=UTC) + timedelta(hours=h)) for h in range(3))
    asked = {(sub, lead), (sub, other), (f"{sub}-other", lead)}
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([held(sub, lead), held(sub, other)], taken={(sub, lead): routed, (sub, other): routed})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): routed})
        taken = await store.following(asked)
        await store.enqueue([], let_go={lead: rejected})
        let_go = await store.following(asked)
        await store.enqueue([held(sub, lead)], taken={(sub, lead): recycled}, let_go={lead: rejected})
        again = await store.following(asked)
        await conn.rollback()
    assert taken == ({(sub, lead): routed, (sub, other): routed}, {})
    assert let_go == ({(sub, other): routed}, {lead: rejected})
    assert again == ({(sub, lead): recycled, (sub, other): routed}, {lead: rejected})


async def test_a_rejection_and_the_lead_routed_of_the_hand_off_it_ends_read_in_either_order_leave_the_lead_to_nobody(
        db):
    """Delivery reads leads.routed apart from the lifecycle: the rejection may be read first (downtime, a redrive of
    the lead.routed), and a process whose lookup saw no rejection may take the lead after another noted one. Noted,
    the rejection keeps the lead.routed of a hand-off routed before it from taking the lead, whoever writes it; read
    after a recycle was taken (routed after it), it lets go only what was taken before it. A later rejection noted
    again, then an earlier one read late, keep the later."""
    sub, lead, other = f"late-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    routed, rejected, recycled, again = (Mark(datetime(2026, 11, 23, 9, tzinfo=UTC) + timedelta(hours=h))
                                         for h in range(4))
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([], let_go={lead: rejected})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): routed})  # read late: takes nothing
        late = await store.following({(sub, lead)})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): recycled})
        await store.enqueue([held(sub, other)], taken={(sub, other): recycled})  # its recycle, read first
        await store.enqueue([], let_go={other: rejected})
        recycles = await store.following({(sub, lead), (sub, other)})
        await store.enqueue([], let_go={lead: again})
        await store.enqueue([], let_go={lead: rejected})
        kept = await store.following({(sub, lead)})
        await conn.rollback()
    assert late == ({}, {lead: rejected})
    assert recycles == ({(sub, lead): recycled, (sub, other): recycled}, {lead: rejected, other: rejected})
    assert kept == ({}, {lead: again})


async def test_a_rejection_and_a_lead_routed_are_ordered_by_the_hand_off_number_when_both_say_it_whatever_their_times(
        db):
    """Two routing processes' clocks 2 s apart: the hand-off a rejection ended, dated after it, read late, takes
    nothing, and a recycle dated before it is taken; a rejection read late lets go the take of the hand-off it ended
    (dated after it) and leaves a recycle's (dated before it); a take that says no number goes by the times. The
    highest number noted is kept, whichever rejection is read last."""
    sub, lead, other = f"seq-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 11, 23, 9, tzinfo=UTC)
    ahead, behind = at + timedelta(seconds=2), at - timedelta(seconds=2)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([], let_go={lead: Mark(at, 2)})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): Mark(ahead, 2)})  # the hand-off it ended
        late = await store.following({(sub, lead)})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): Mark(behind, 3)})  # its recycle
        recycle = await store.following({(sub, lead)})
        await store.enqueue([held(sub, other), held(f"{sub}-r", other), held(f"{sub}-old", other)],
                            taken={(sub, other): Mark(ahead, 2), (f"{sub}-r", other): Mark(behind, 3),
                                   (f"{sub}-old", other): Mark(behind)})
        await store.enqueue([], let_go={other: Mark(at, 2)})
        await store.enqueue([], let_go={other: Mark(behind, 1)})
        read_late = await store.following({(sub, other), (f"{sub}-r", other), (f"{sub}-old", other)})
        await conn.rollback()
    assert late == ({}, {lead: Mark(at, 2)})
    assert recycle.followed == {(sub, lead): Mark(behind, 3)}
    assert read_late == ({(f"{sub}-r", other): Mark(behind, 3)}, {other: Mark(at, 2)})


async def test_an_erased_lead_is_followed_by_no_subscription_nor_taken_by_a_lead_routed_read_after_its_erasure(db):
    """Its erasure passes every filter and nothing follows it: what was taken of it goes, and a lead.routed read
    from leads.routed after the erasure was read from the lifecycle takes nothing."""
    sub, lead, other, now = f"erased-{uuid.uuid4().hex[:8]}", uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        await store.enqueue([held(sub, lead), held(sub, other)], taken=dict.fromkeys({(sub, lead), (sub, other)},
                                                                                     Mark(now)))
        await store.enqueue([], erased={lead: now})
        after_erasure = await store.following({(sub, lead), (sub, other)})
        await store.enqueue([held(sub, lead)], taken={(sub, lead): Mark(now)})
        late = await store.following({(sub, lead)})
        await conn.rollback()
    assert after_erasure.followed == {(sub, other): Mark(now)}
    assert late.followed == {}


async def test_a_deleted_or_forgotten_subscription_follows_nothing_and_a_new_one_of_its_id_starts_with_nothing(db):
    """An API subscription's leads go with it, a file's when it is forgotten; an API subscription taking the id of a
    file's removed from the file (not forgotten) is another receiver, which took none of them."""
    run = uuid.uuid4().hex[:8]
    made, filed, removed, lead = f"made-{run}", f"filed-{run}", f"removed-{run}", uuid.uuid4()
    pairs = {(made, lead), (filed, lead), (removed, lead)}
    async with db.connect() as conn:  # rolled back at the end
        store = DeliveryStore(conn)
        assert await store.add_subscription(api_subscription(made, "https://crm.example.com/h", None))
        await store.enqueue([held(sub, lead) for sub, _ in sorted(pairs)],
                            taken=dict.fromkeys(pairs, Mark(datetime.now(UTC))))
        before = set((await store.following(pairs)).followed)
        assert await store.remove_subscription(made) == 1
        assert await store.forget(filed) == Forgotten(dropped=1, was_disabled=False)
        assert await store.add_subscription(api_subscription(removed, "https://new.example.com/h", None))
        after = (await store.following(pairs)).followed
        await conn.rollback()
    assert before == pairs
    assert after == {}


async def test_a_grade_filter_hears_of_a_lead_it_took_raised_to_a_until_sales_reject_it_and_not_of_its_recycle(
        db, raised_from_b_to_a):
    """The handler through the store on Postgres, batch by batch as delivery reads them: the B subscription takes
    the lead at its routing, hears of the touch that makes it an A and of its acceptance, then of its rejection;
    the touch that recycles it as an A, a routing to another rep, is not the B subscription's."""
    from leadpipe_common import topics
    from leadpipe_common.testing import factories
    from leadpipe_common.uow import MemoryUnitOfWork

    from delivery.domain import parse_subscriptions
    from delivery.handlers import Delivery, handle_deliverable
    from delivery.subscriptions import SubscriptionBook

    lead, sub = raised_from_b_to_a, f"crm-b-{uuid.uuid4().hex[:8]}"
    subs = parse_subscriptions({"subscriptions": [{
        "id": sub, "url": "https://crm.example.com/b", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        "events": ["lead.routed", "lead.stage_changed"], "filter": {"grade": "B"}}]}, allow_private=False)
    book = SubscriptionBook(subs, None, allow_private=False)
    book.load([], datetime.now(UTC))  # the file's alone: not those other tests made through the stack's API
    ctx = Delivery(book, clock=lambda: datetime.now(UTC), http=None)
    batches = [[(topics.ROUTED, lead.first)], [(topics.ROUTED, lead.told), (topics.LIFECYCLE, lead.accepted)],
               [(topics.LIFECYCLE, lead.rejected)], [(topics.ROUTED, lead.recycled)]]
    rejected_at = lead.first.routed_at + timedelta(days=1)  # when routing recorded the rejection: before the recycle
    async with db.connect() as conn:  # rolled back at the end
        uow = MemoryUnitOfWork(DeliveryStore(conn))
        for batch in batches:
            async with uow:
                await handle_deliverable(uow, [factories.envelope(topic, e, time=rejected_at) for topic, e in batch],
                                         ctx)
        queued = (await conn.execute(sa.text(
            "SELECT event_type FROM delivery.deliveries WHERE subscription_id = :sub ORDER BY seq"),
            {"sub": sub})).scalars().all()
        followed = await DeliveryStore(conn).following({(sub, lead.first.lead_id)})
        await conn.rollback()
    assert queued == ["lead.routed", "lead.routed", "lead.stage_changed", "lead.stage_changed"]
    assert followed.followed == {}
