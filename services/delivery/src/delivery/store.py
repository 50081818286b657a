"""delivery's tables: the durable queue of deliveries, every attempt, which subscriptions a receiver
switched off (``410 Gone``), the subscriptions made through the admin API (their secrets sealed), the leads
whose person was erased, the leads each grade filter took and the last rejection of each lead.

Guarantees: a delivery is enqueued once per (subscription, event) whatever
the redeliveries of the event; only the oldest pending delivery of each
(subscription, lead) can be claimed, and a lead's deliveries are numbered in
the order their transactions commit (a lock per lead while queueing), so a
lead's later event never overtakes an earlier one, even when two processes
queue for it at once; a claim is a lease (``next_at`` moved past the attempt's
timeout and its recording, by Postgres's clock, which every dispatcher shares,
whatever its host's says) taken with ``SKIP LOCKED``, so several dispatchers
share the work, and a dispatcher killed mid-attempt leaves a lease that
expires: the delivery is sent again, with the same ``webhook-id``. An attempt
is recorded only while its claim's lease still holds the delivery: one that
outlived it never overwrites what the newer claim records. A finished
delivery's body and its receiver's last answer are cleared once it is older
than the retention (``purge``), and so is a waiting one's once it and its
subscription's switch-off by a 410 are (``give_up_off``: given up); its row stays, and so does its place in
``deliveries_once``: a re-read event is never queued again. An erased lead's
deliveries are given up and their bodies cleared (``enqueue``'s ``erased``), and
so is what is queued for it after its erasure, whichever process queues it.
No two of delivery's transactions wait on each other in a cycle (over a
subscription, a lead or rows): see LOCK ORDER (``_LOCK_LEADS``); a
subscription's deletion holds as many leads as it took in the rows
themselves, none in Postgres's lock table.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpipe_common.db import compiled_once, erased_leads_table

from delivery.domain import Mark

SCHEMA = "delivery"
metadata = sa.MetaData(schema=SCHEMA)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("subscription_id", sa.Text, nullable=False),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False),  # the webhook-id
    sa.Column("event_type", sa.Text, nullable=False),
    # The CloudEvent, structured JSON, as signed; NULL once purged, with last_response, DELIVERY_KEEP_BODIES_DAYS
    # after the delivery finished: it holds the lead's contact details, needed only while it may still be sent.
    sa.Column("body", sa.LargeBinary),
    # When it was queued (or redriven, or its receiver switched back on), by Postgres's clock (``enqueue``), which
    # the backlog's gauge reads its age by.
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=sa.func.statement_timestamp()),
    # When its retry window opened: its first attempt (NULL: none yet, or none since a redrive or an enable). Not
    # created_at: a lead's deliveries go out one at a time, and one queued behind an earlier failing one would
    # find its window spent before it was ever sent.
    sa.Column("first_attempt_at", sa.DateTime(timezone=True)),
    # pending -> delivered | dead
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The attempts its receiver refused in a row (``domain.refused``), the last one's included: any other answer
    # sets it to 0, and so does what resets attempts (a redrive, an enable). Judged by it, not by attempts, a
    # delivery that failed for hours was given up at its receiver's first refusal.
    sa.Column("refused_in_a_row", sa.Integer, nullable=False, server_default="0"),
    # Queued due at once by Postgres's clock (``enqueue``), which claims judge it due by.
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False, default=sa.func.statement_timestamp()),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("last_response", sa.Text),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    # The API subscription it was queued for was deleted then: whatever later takes its id (a file's subscription,
    # or the API's again) is another receiver, and a redrive never sends it this.
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("subscription_id", "event_id", name="deliveries_once"),
    sa.Index("deliveries_queue", "subscription_id", "lead_id", "seq", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("deliveries_due", "next_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("deliveries_lead", "lead_id"),
    # Finished deliveries still holding their body, by age: what a purge round reads, oldest first. Purged rows
    # leave it, so it holds about the retention's worth of deliveries, not the whole history.
    sa.Index("deliveries_unpurged", "done_at", postgresql_where=sa.text("status <> 'pending' AND body IS NOT NULL")),
)
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("delivery_seq", sa.BigInteger, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Integer, nullable=False),
)
disabled = sa.Table(
    "disabled",
    metadata,
    sa.Column("subscription_id", sa.Text, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # The url that answered 410 (NULL: switched off before 0006 kept it). A file's subscription the file sends
    # elsewhere is not held off by it (``domain.switched_off``): a process on an older file got that 410.
    sa.Column("url", sa.Text),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", ARRAY(sa.Text), nullable=False),
    sa.Column("filter", JSONB, nullable=False, server_default="{}"),
    sa.Column("retry_hours", sa.Float),
    #: The contact fields its receiver is sent; NULL: all of them.
    sa.Column("contact", ARRAY(sa.Text)),
    sa.Column("secrets", JSONB, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    # Dated by Postgres's clock (``add_subscription``), as its deliveries' created_at is, which
    # ``_made_through_api_for_it`` compares it with; and so is every change and rotation since.
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=sa.func.statement_timestamp()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=sa.func.statement_timestamp()),
)
erased_leads = erased_leads_table(metadata)
#: The leads each subscription that filters on grade took (was sent their lead.routed), which it keeps hearing of
#: whatever grade they are raised to (``domain.Following``), until sales reject them. Ids, a number and a time: no
#: one's contact.
#: A subscription's rows go with it (``remove_subscription``, ``forget``; a file's subscription has no row in
#: ``subscriptions`` for a foreign key to follow), an erased lead's with its erasure (``_GIVE_UP_ERASED``).
followed = sa.Table(
    "followed",
    metadata,
    sa.Column("subscription_id", sa.Text, primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    # The hand-off that took it (``domain.Mark``): its number (lead.routed's handoff_seq; NULL: not said, routed
    # before v5, or taken before migration 0012) and when it was routed (its routed_at; the epoch for a row taken
    # before migration 0011, earlier than any rejection). A rejection of that hand-off or a later one lets it go; one
    # of an earlier hand-off, read late, leaves a recycle taken since. Defaulted to the epoch for a process older than
    # 0011 (a rolling upgrade), which inserts without it.
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("'epoch'")),
    sa.Column("taken_seq", sa.Integer),
    # A rejection and an erasure let a lead go for every subscription.
    sa.Index("followed_lead", "lead_id"),
)
#: Each lead's last rejection (``domain.Mark``): the highest number of a hand-off a rejection ended (its
#: lead.stage_changed's handoff_seq; NULL: none said, a step of a routing older than v2, or noted before migration
#: 0012) and the latest time routing recorded one (its envelope time). A lead.routed of a hand-off it ended, read
#: after it (leads.routed is read apart from the lifecycle, after downtime or a redrive), takes the lead for no
#: subscription. One row a rejected lead, an id, a number and a time: kept, as such a lead.routed may come at any time
#: its topic keeps it.
rejected_leads = sa.Table(
    "rejected_leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("handoff_seq", sa.Integer),
)

#: A subscription's rows in ``followed`` deleted (``_unfollow``), each locked first, in the order of its lead: the
#: order a batch locks its leads' rows in (``_HOLD_FOLLOWED``). Row locks, kept in each row, not in Postgres's lock
#: table: a lock per lead in one transaction (advisory) ran out of shared memory at some tens of thousands of
#: leads (100,000: "out of shared memory"), the deletion of a year's grade subscription then failing every time.
_UNFOLLOW = sa.text(f"""
WITH held AS MATERIALIZED (
    SELECT lead_id FROM {SCHEMA}.followed WHERE subscription_id = :sub ORDER BY lead_id FOR UPDATE
)
DELETE FROM {SCHEMA}.followed f USING held WHERE f.subscription_id = :sub AND f.lead_id = held.lead_id
""")
#: The rows in ``followed`` of these leads locked, in the order of (lead, subscription): before a batch deletes or
#: upserts any of them (``enqueue``), so that, with ``_UNFOLLOW``'s deletion taking a subscription's rows in the
#: order of their leads, neither holds a row the other took first while it waits for one the other holds.
_HOLD_FOLLOWED = sa.text(f"""
SELECT 1 FROM {SCHEMA}.followed WHERE lead_id = ANY(CAST(:leads AS uuid[]))
ORDER BY lead_id, subscription_id FOR UPDATE
""")

#: The last error of a subscription's deliveries dropped when it was deleted.
_DELETED = "subscription deleted"
#: ...and of those an operator gave up once their subscription was removed from the file (``forget``).
_REMOVED = "subscription removed from the subscriptions file"
#: The last error of the deliveries given up because their subscription stayed switched off (``give_up_off``).
SWITCHED_OFF = "given up: its subscription was switched off by a 410 for longer than bodies are kept"
#: A deleted subscription's deliveries, locked in order by the statement (LOCK ORDER, 5): those waiting become dead
#: ("subscription deleted") now by Postgres's clock, as every other delivery finishes (``record``) and as the purge
#: judges their age; those dead already keep their receiver's last error. Both are marked deleted: a file's
#: subscription taking the id has no creation time to tell them from its own by. Each one's status before, to count
#: those dropped (as locked: the row as it is once any change committed meanwhile is in).
_DROP_DELETED = sa.text(f"""
WITH held AS MATERIALIZED (
    SELECT seq, status FROM {SCHEMA}.deliveries
    WHERE subscription_id = :sub AND (status = 'pending' OR (status = 'dead' AND deleted_at IS NULL))
    ORDER BY seq FOR UPDATE
)
UPDATE {SCHEMA}.deliveries d
SET status = 'dead', deleted_at = statement_timestamp(),
    done_at = CASE WHEN d.status = 'pending' THEN statement_timestamp() ELSE d.done_at END,
    last_error = CASE WHEN d.status = 'pending' THEN '{_DELETED}' ELSE d.last_error END
FROM held WHERE d.seq = held.seq
RETURNING held.status
""")
#: A delivery's subscription is one made through the admin API.
_made_through_api = sa.exists().where(subscriptions.c.id == deliveries.c.subscription_id)
#: ...and the delivery was queued for that subscription, not for an earlier one under its id, deleted since: a
#: delivery's created_at (set when it is queued, moved to now by a redrive or an enable) is never older than its
#: subscription. Both by Postgres's clock: dated by the API host's, ahead of Postgres's, a subscription disowned
#: what was queued for it in its first moments (a redrive left it dead), and behind, it took as its own what an
#: earlier holder of its id had left dead just before (a redrive sent it to the new receiver).
_made_through_api_for_it = sa.exists().where(subscriptions.c.id == deliveries.c.subscription_id,
                                             subscriptions.c.created_at <= deliveries.c.created_at)
_ENQUEUE = insert(deliveries).on_conflict_do_nothing(constraint="deliveries_once")


def _in_seq_order(*where: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """The rows of an UPDATE of deliveries: those matching ``where``, each locked first, in the order of its seq, by
    the same statement (LOCK ORDER, 5). The lock reads each row again as it is by then: one changed meanwhile so
    that it no longer matches is left out."""
    # Materialized: each row locked once, whatever the plan of the UPDATE's join (a subquery under a nested loop is
    # read again for every row, and locks its rows again each time).
    held = (sa.select(deliveries.c.seq).where(*where).order_by(deliveries.c.seq).with_for_update()
            .cte("held").prefix_with("MATERIALIZED"))
    return deliveries.c.seq.in_(sa.select(held.c.seq))


#: A transaction lock per lead (see ``enqueue``), taken in the order given (sorted: two batches never wait on
#: each other in a cycle).
#:
#: LOCK ORDER. Every delivery transaction takes its locks in this order, each kind in one statement in the order
#: given, so none holds a lock another waits for while it waits for one that other holds (Postgres aborts one of
#: such two: a batch retried, a 503 for an admin, an attempt sent again):
#:   1. API subscriptions' rows, by id: a batch's share locks (``still_subscribed``), a deletion's delete, a
#:      switch-off's share lock (``disable``, before the attempts are recorded), a forgetting's look.
#:   2. leads, sorted, ONE statement for all of a transaction's (``_LOCK_LEADS``): a consumer's batch alone
#:      (``enqueue``, called once: its handler takes every type, erasures too, so the runner calls it once).
#:   3. ``disabled``'s rows: one a subscription. A dispatcher's round takes, subscription by subscription in
#:      their order, its row's share lock, then its switch-off (``Dispatcher._record``); a purge round share-locks
#:      the rows of the subscriptions it gives up for, in the same order, before any delivery (``give_up_off``).
#:   4. ``followed``'s rows, by (lead, subscription): a batch locks those of its leads before it writes any
#:      (``_HOLD_FOLLOWED``), a deletion, forgetting or making anew those of its subscription (``_UNFOLLOW``).
#:   5. ``deliveries``' rows, by seq, locked first within the statement that updates them (``_in_seq_order``), an
#:      UPDATE alone locking rows in whatever order its plan reads them; a claim, a purge and a give-up skip
#:      locked rows, and wait for none.
#: An erasure's batch locked its leads, then share-locked the API subscriptions it queued the erasure for, while a
#: deletion held the row and waited for those leads: Postgres aborted one of the two.
_LOCK_LEADS = sa.text(f"""
SELECT pg_advisory_xact_lock(hashtextextended('{SCHEMA}.deliveries/' || lead_id::text, 0))
FROM unnest(CAST(:leads AS uuid[])) WITH ORDINALITY AS t(lead_id, n) ORDER BY n
""")

#: The last error of the deliveries an erasure gave up.
ERASED = "erased"
#: A batch's erasures noted, in one statement; a lead erased already keeps its first time.
_NOTE_ERASED = sa.text(f"""
INSERT INTO {SCHEMA}.erased_leads (lead_id, erased_at)
SELECT * FROM unnest(CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]))
ON CONFLICT (lead_id) DO NOTHING
""")
#: Of the leads among ``:leads`` that were erased, in one statement: each delivery still waiting is given up (dead,
#: "erased", now by Postgres's clock, as every delivery finishes), and every body and receiver's last answer (which
#: may echo it) is cleared, delivered or dead: they hold the person's contact. Not the lead's ``lead.erased``
#: deliveries: they hold no one, and tell the receiver to erase the person too. (Each SET reads the row as it was.)
#: No subscription follows an erased lead any more (its erasure passes every filter, and nothing comes after it):
#: its rows in ``followed`` go too, those this transaction just added among them: of the leads ``:held`` alone, whose
#: rows the batch locked first (LOCK ORDER, 4; a lead erased before keeps no row but those taken here, migration
#: 0013).
_GIVE_UP_ERASED = sa.text(f"""
WITH erased AS (
    SELECT e.lead_id FROM {SCHEMA}.erased_leads e WHERE e.lead_id = ANY(CAST(:leads AS uuid[]))
), held AS MATERIALIZED (  -- LOCK ORDER, 5: in the order of their seq, once each
    SELECT l.seq FROM {SCHEMA}.deliveries l
    WHERE l.lead_id IN (SELECT lead_id FROM erased)
      AND l.event_type <> 'lead.erased'
      AND (l.status = 'pending' OR l.body IS NOT NULL OR l.last_response IS NOT NULL)
    ORDER BY l.seq FOR UPDATE OF l
), unfollowed AS (
    DELETE FROM {SCHEMA}.followed f
    WHERE f.lead_id = ANY(CAST(:held AS uuid[])) AND f.lead_id IN (SELECT lead_id FROM erased)
)
UPDATE {SCHEMA}.deliveries d
SET body = NULL, last_response = NULL,
    status = CASE WHEN d.status = 'pending' THEN 'dead' ELSE d.status END,
    done_at = CASE WHEN d.status = 'pending' THEN statement_timestamp() ELSE d.done_at END,
    last_error = CASE WHEN d.status = 'pending' THEN '{ERASED}' ELSE d.last_error END
WHERE d.seq IN (SELECT h.seq FROM held h)
""")


def _ended(take: str, rejection: str) -> str:
    """SQL: whether the take ``take`` (an alias with taken_at, taken_seq) comes no later than the rejection
    ``rejection`` (an alias with rejected_at, handoff_seq), so that the rejection ended it: ``domain.Mark``'s
    ``no_later_than``, by the hand-off numbers when both say one, else by routing's times."""
    return (f"CASE WHEN {take}.taken_seq IS NOT NULL AND {rejection}.handoff_seq IS NOT NULL"
            f" THEN {take}.taken_seq <= {rejection}.handoff_seq ELSE {take}.taken_at <= {rejection}.rejected_at END")


#: Which of these (subscription, lead) pairs ``followed`` holds, each with the mark of its take, and these leads'
#: last rejections (the rows with no subscription, their mark in taken_at, taken_seq): one statement.
_FOLLOWING = sa.text(f"""
SELECT f.subscription_id, f.lead_id, f.taken_at, f.taken_seq FROM {SCHEMA}.followed f
JOIN unnest(CAST(:subs AS text[]), CAST(:leads AS uuid[])) AS t(subscription_id, lead_id)
  ON f.subscription_id = t.subscription_id AND f.lead_id = t.lead_id
UNION ALL
SELECT NULL, r.lead_id, r.rejected_at, r.handoff_seq FROM {SCHEMA}.rejected_leads r
WHERE r.lead_id = ANY(CAST(:leads AS uuid[]))
""")
#: The leads these subscriptions took, at the hand-offs of these marks; one taken already keeps the later time and
#: the higher number. None is taken at a hand-off its lead's last rejection ended: a lead.routed read after that
#: rejection (this process's lookup may not have seen a rejection another process noted since; this statement runs
#: under the leads' lock, which noting it takes too, so it does).
_FOLLOW = sa.text(f"""
INSERT INTO {SCHEMA}.followed (subscription_id, lead_id, taken_at, taken_seq)
SELECT t.* FROM unnest(CAST(:subs AS text[]), CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]),
                       CAST(:seq AS integer[])) AS t(subscription_id, lead_id, taken_at, taken_seq)
WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.rejected_leads r WHERE r.lead_id = t.lead_id AND {_ended("t", "r")})
ON CONFLICT (subscription_id, lead_id) DO UPDATE SET taken_at = GREATEST(followed.taken_at, EXCLUDED.taken_at),
                                                     taken_seq = GREATEST(followed.taken_seq, EXCLUDED.taken_seq)
""")
#: These leads' rejections, of these marks, noted (a lead's latest time and highest number kept), and the
#: subscriptions that took them at a hand-off a rejection ended let them go; one taken by a recycle (read before
#: the rejection) stays.
_LET_GO = sa.text(f"""
WITH noted AS (
    INSERT INTO {SCHEMA}.rejected_leads (lead_id, rejected_at, handoff_seq)
    SELECT * FROM unnest(CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]), CAST(:seq AS integer[]))
    ON CONFLICT (lead_id) DO UPDATE SET rejected_at = GREATEST(rejected_leads.rejected_at, EXCLUDED.rejected_at),
                                        handoff_seq = GREATEST(rejected_leads.handoff_seq, EXCLUDED.handoff_seq)
)
DELETE FROM {SCHEMA}.followed f
USING unnest(CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]), CAST(:seq AS integer[]))
    AS t(lead_id, rejected_at, handoff_seq)
WHERE f.lead_id = t.lead_id AND {_ended("f", "t")}
""")

#: Each open subscription's due deliveries, at most its free slots of them (a slow receiver's backlog must not
#: fill the round and starve the others), a lead's only when nothing earlier of it is pending and nothing later
#: of it holds a lease (or a retry due within one: a lease cannot be told from it); then the due
#: ones of all, oldest first, up to the round's room. The lock's own level checks again that a row is still
#: pending and due: another dispatcher may have claimed it since this statement's snapshot. Due and leased by
#: Postgres's clock: two hosts' clocks apart by more than a lease would each judge the other's lease run out, and
#: both send the delivery. The statement's start, not the transaction's (``now()``): what the round read before
#: (the backlog's gauge) must not shorten the lease. That clock's reading is returned too: the dispatcher dates
#: its attempts and their verdicts from it (``Claimed.claimed_at``).
_CLAIM = sa.text(
    f"""
    WITH clock AS (SELECT statement_timestamp() AS now)
    UPDATE {SCHEMA}.deliveries SET next_at = (SELECT now FROM clock) + CAST(:lease AS interval)
    WHERE seq IN (
        SELECT d.seq FROM {SCHEMA}.deliveries d
        WHERE d.seq IN (
            SELECT c.seq FROM unnest(CAST(:subs AS text[]), CAST(:free AS int[])) AS room(sub, free)
            CROSS JOIN LATERAL (
                SELECT c.seq, c.next_at FROM {SCHEMA}.deliveries c
                WHERE c.status = 'pending' AND c.next_at <= (SELECT now FROM clock) AND c.subscription_id = room.sub
                  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries e
                                  WHERE e.status = 'pending' AND e.subscription_id = c.subscription_id
                                    AND e.lead_id = c.lead_id AND e.seq < c.seq)
                  -- Nor while a later one of its lead is under way: one redriven or switched back on after the
                  -- lead's next went out would be sent beside it, and could reach the receiver after it.
                  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries l
                                  WHERE l.status = 'pending' AND l.subscription_id = c.subscription_id
                                    AND l.lead_id = c.lead_id AND l.seq > c.seq
                                    AND l.next_at > (SELECT now FROM clock)
                                    AND l.next_at <= (SELECT now FROM clock) + CAST(:lease AS interval))
                  -- A lead's erasure gives up its deliveries, those under way too: its lead.erased waits for their
                  -- leases to run out, or an attempt carrying the person could reach the receiver after it.
                  AND (c.event_type <> 'lead.erased'
                       OR NOT EXISTS (SELECT 1 FROM {SCHEMA}.deliveries u
                                      WHERE u.lead_id = c.lead_id AND u.subscription_id = c.subscription_id
                                        AND u.status <> 'pending' AND u.next_at > (SELECT now FROM clock)
                                        -- a lease, not a backoff's retry time the erasure left on a waiting one
                                        AND u.next_at <= (SELECT now FROM clock) + CAST(:lease AS interval)))
                ORDER BY c.next_at LIMIT room.free
            ) c
            ORDER BY c.next_at LIMIT :limit
        )
        AND d.status = 'pending' AND d.next_at <= (SELECT now FROM clock)
        FOR UPDATE SKIP LOCKED
    )
    RETURNING seq, subscription_id, lead_id, event_id, event_type, body, attempts, created_at, next_at,
              (SELECT now FROM clock), first_attempt_at, refused_in_a_row
    """
)
#: A round's attempts in one statement, each only while the claim that sent it still holds its delivery:
#: pending, and ``next_at`` the lease that claim set. An attempt that outlived its lease (the delivery claimed
#: again since) must not write over the newer claim: it would move that claim's lease (a third process would
#: send the delivery meanwhile), or take its attempt's number.
_RECORD = sa.text(
    f"""
    WITH held AS MATERIALIZED (  -- LOCK ORDER, 5: locked once each, whatever the join's plan
        SELECT seq FROM {SCHEMA}.deliveries WHERE seq = ANY(CAST(:seq AS bigint[])) ORDER BY seq FOR UPDATE
    ), r AS (
        SELECT * FROM unnest(CAST(:seq AS bigint[]), CAST(:leased_until AS timestamptz[]), CAST(:attempt AS int[]),
                             CAST(:attempted_at AS timestamptz[]), CAST(:http_status AS int[]),
                             CAST(:error AS text[]), CAST(:response AS text[]), CAST(:duration_ms AS int[]),
                             CAST(:state AS text[]), CAST(:done_at AS timestamptz[]), CAST(:retry_at AS timestamptz[]),
                             CAST(:refused_in_a_row AS int[]))
            AS r(seq, leased_until, attempt, attempted_at, http_status, error, response, duration_ms, state,
                 done_at, retry_at, refused_in_a_row)
    ), kept AS (
        UPDATE {SCHEMA}.deliveries d
        SET attempts = r.attempt, last_status = r.http_status, last_error = r.error, last_response = r.response,
            status = r.state, done_at = r.done_at, next_at = coalesce(r.retry_at, d.next_at),
            first_attempt_at = coalesce(d.first_attempt_at, r.attempted_at), refused_in_a_row = r.refused_in_a_row
        FROM r
        WHERE d.seq = r.seq AND d.status = 'pending' AND d.next_at = r.leased_until
          AND d.seq IN (SELECT h.seq FROM held h)
        RETURNING r.seq, r.attempted_at, r.http_status, r.error, r.duration_ms
    ), given_up AS (
        -- Given up while its attempt was under way (its lead erased, its subscription deleted or removed), under
        -- the same lease: what was sent is logged (after an erasure, whether the receiver took the person is the
        -- fact to know), its status and what it kept stay as the giving up left them.
        SELECT r.seq, r.attempted_at, r.http_status, r.error, r.duration_ms
        FROM r JOIN {SCHEMA}.deliveries d ON d.seq = r.seq
        WHERE d.status = 'dead' AND d.last_error IN ('{ERASED}', '{_DELETED}', '{_REMOVED}', '{SWITCHED_OFF}')
          AND d.next_at = r.leased_until AND d.seq IN (SELECT h.seq FROM held h)
    ), logged AS (
        -- Numbered after the delivery's last logged attempt, not by its attempts count: a redrive or an enable
        -- restarts that count (it paces the backoff), and a number taken twice would drop the later attempt.
        INSERT INTO {SCHEMA}.attempts (delivery_seq, attempt, at, status, error, duration_ms)
        SELECT k.seq, coalesce((SELECT max(a.attempt) FROM {SCHEMA}.attempts a WHERE a.delivery_seq = k.seq), 0) + 1,
               k.attempted_at, k.http_status, k.error, k.duration_ms
        FROM (SELECT * FROM kept UNION ALL SELECT * FROM given_up) k
        ON CONFLICT DO NOTHING
    )
    SELECT seq FROM kept UNION ALL SELECT seq FROM given_up
    """
)

#: Up to ``:limit`` finished deliveries done longer than ``:keep`` ago by Postgres's clock, oldest first, lose their
#: body and their receiver's last answer; the row stays (its ids keep a re-read event from being queued again, its
#: times and statuses are the audit trail). Bounded, so that a first purge of a long history holds no lock for long;
#: rows another transaction holds (a redrive) are skipped, and the lock's own level checks again that a row is still
#: finished. By the clock that dated their done_at (``record``, ``remove_subscription``, ``forget``): by a delivery
#: host's, behind Postgres's, a body was purged before its retention ended, and a dead delivery could no longer be
#: redriven.
_PURGE = sa.text(
    f"""
    UPDATE {SCHEMA}.deliveries SET body = NULL, last_response = NULL
    WHERE seq IN (
        SELECT seq FROM {SCHEMA}.deliveries
        WHERE status <> 'pending' AND body IS NOT NULL AND done_at < statement_timestamp() - CAST(:keep AS interval)
        ORDER BY done_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING seq
    """
)


#: Of these subscriptions, those a 410 switched off longer than ``:keep`` ago, share-locked (LOCK ORDER, 3) in the
#: order a dispatcher's round takes them (Python's, by code point: "C"): an enable waits for the give-up, or, first,
#: leaves nothing to find.
_OFF_LONG_AGO = sa.text(f"""
SELECT subscription_id FROM {SCHEMA}.disabled
WHERE subscription_id = ANY(CAST(:subs AS text[])) AND at < statement_timestamp() - CAST(:keep AS interval)
ORDER BY subscription_id COLLATE "C" FOR SHARE
""")
#: Up to ``:limit`` of their deliveries queued (or redriven, or switched back on) longer than ``:keep`` ago, given
#: up (dead now by Postgres's clock) with their body and last answer cleared: nothing will send them, and each
#: holds the lead's contact. Not a ``lead.erased``: it holds no one, and tells a receiver switched back on to erase
#: the person too. Nor one whose ``next_at`` is ahead: a lease (a process whose file sends the subscription
#: elsewhere judges it on, ``domain.switched_off``, and may be sending it) or a retry's time; it is given up once
#: due. In no order (each round gives up what it finds first; the rest go in the next): ordered, each round would
#: read and sort every waiting delivery of those subscriptions. Rows another transaction holds are skipped, so it
#: waits for none (LOCK ORDER, 5).
_GIVE_UP_OFF = sa.text(f"""
WITH held AS MATERIALIZED (
    SELECT seq FROM {SCHEMA}.deliveries
    WHERE status = 'pending' AND subscription_id = ANY(CAST(:subs AS text[])) AND event_type <> 'lead.erased'
      AND created_at < statement_timestamp() - CAST(:keep AS interval) AND next_at <= statement_timestamp()
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE {SCHEMA}.deliveries d
SET status = 'dead', done_at = statement_timestamp(), last_error = '{SWITCHED_OFF}', body = NULL, last_response = NULL
FROM held WHERE d.seq = held.seq AND d.status = 'pending'
RETURNING d.subscription_id
""")


@dataclass(frozen=True)
class Claimed:
    seq: int
    subscription_id: str
    lead_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: bytes
    attempts: int
    created_at: datetime
    #: The ``next_at`` the claim set: its result is recorded only while the delivery still has it.
    leased_until: datetime
    #: Postgres's clock when the claim ran (its lease counts from it): what the dispatcher reckons the attempt's
    #: times from, so that its retry is due, and its window judged, by the clock claims read.
    claimed_at: datetime
    #: When its retry window opened (None: this is its first attempt, or the first since a redrive or an enable).
    first_attempt_at: datetime | None = None
    #: The attempts just before this one that its receiver refused in a row (``domain.after_attempt``'s
    #: ``refused_before``).
    refused_in_a_row: int = 0


@dataclass(frozen=True)
class Attempted:
    """What became of one attempt at a claimed delivery (``outcome``, ``next_at`` and ``refused_in_a_row``:
    ``domain.Verdict``'s)."""

    claimed: Claimed
    at: datetime
    status: int | None
    error: str | None
    response: str | None
    duration_ms: int
    outcome: str
    next_at: datetime | None
    #: Stored with the delivery: what its next attempt's verdict counts on (``Claimed.refused_in_a_row``).
    refused_in_a_row: int


@dataclass(frozen=True)
class Forgotten:
    #: Pending deliveries turned dead.
    dropped: int
    #: A receiver's 410 had switched it off; cleared.
    was_disabled: bool


@dataclass(frozen=True)
class Redrive:
    #: Dead deliveries queued again.
    queued: int
    #: Dead deliveries asked for that were left dead: their body was purged, there is nothing to send.
    purged: int
    #: Dead deliveries asked for that were left dead because their subscription is not in force (deleted, or in
    #: neither the file given nor the API's), by subscription id; only those still holding their body (a purged
    #: one could not be sent anyway).
    not_in_force: Mapping[str, int] = field(default_factory=dict)


#: A delivery sent again from when the statement runs: its retry window (from its next attempt), backoff and count
#: of refusals in a row start over (a redrive; ``enable`` for what is due). By Postgres's clock, which claims judge
#: it due by: from a host whose clock ran ahead, it waited out the difference before it was sent.
_FRESH_WINDOW: Mapping[str, Any] = {"next_at": sa.func.statement_timestamp(),
                                    "created_at": sa.func.statement_timestamp(), "attempts": 0,
                                    "first_attempt_at": None, "refused_in_a_row": 0}
#: What ``enable`` starts over for the due deliveries alone: one not due may be under way, and its attempt, when
#: recorded, sets them from its claim's copy.
_DUE_ANEW = ("next_at", "attempts", "refused_in_a_row")


#: No leads taken, none let go, none erased: ``enqueue``'s default (read-only, so one shared default is safe).
_NOTHING: Mapping[Any, Any] = MappingProxyType({})


class Remembered(NamedTuple):
    """What ``following`` found: the pairs followed, each with the mark of its take, and the last rejections of the
    leads asked about (``domain.Following``'s ``known`` and ``rejected``)."""

    followed: dict[tuple[str, uuid.UUID], Mark]
    rejected: dict[uuid.UUID, Mark]


class DeliveryStore:
    def __init__(self, conn: AsyncSession | AsyncConnection) -> None:
        self._conn = conn

    async def enqueue(self, rows: Sequence[dict[str, Any]], *,
                      taken: Mapping[tuple[str, uuid.UUID], Mark] = _NOTHING,
                      let_go: Mapping[uuid.UUID, Mark] = _NOTHING,
                      erased: Mapping[uuid.UUID, datetime] = _NOTHING) -> None:
        """Queue ``rows``; a lead's rows get their ``seq`` only once no other transaction still queues for it. The
        rejections of ``let_go`` (each lead's, of the mark given) are noted and let go the leads taken at the hand-offs
        they ended, then each (subscription, lead) of ``taken`` (among ``rows``': a lead is taken by the lead.routed
        sent to it, at the mark of its hand-off) is followed (``domain.Following``). Rows that give no
        ``created_at`` and ``next_at`` (the handler's) are queued, due at once, by Postgres's clock: by a delivery
        process's, ahead of it, each new delivery waited out the difference before any claim took it.

        The claim sends a lead's lowest pending ``seq`` first, but it sees only committed rows: two processes
        (one reading leads.routed, one leads.lifecycle) queueing for one lead at once could commit the higher
        ``seq`` first and have it sent before the lower one appears. Holding a lock per lead until commit makes
        each lead's ``seq`` order its commit order.

        The same lock orders what the two do to ``followed``: the rejected leads are locked too (a rejection no
        subscription is sent queues nothing), so a rejection noted by one process and the lead.routed of the
        hand-off it ends, taken by the other at once, are written one after the other, and whichever comes second
        sees the first (``_FOLLOW``, ``_LET_GO``): the lead is followed by nobody, in either order. An erasure
        (``erased``) writes to it under the same locks. A subscription's deletion, forgetting or making anew
        (``_unfollow``) deletes by subscription, under no lead's lock: it locks the rows in the order of their
        leads, and this locks the rows of its leads in that order before it writes any (LOCK ORDER).

        The persons of the leads of ``erased`` were erased (at the times given; a lead erased already keeps its
        first): noted, and what is kept of them given up and cleared (``_GIVE_UP_ERASED``), what ``rows`` holds of
        them too. A lead erased already is given up at once: a ``lead.routed`` read from leads.routed after its
        erasure was read from the lifecycle (the two topics are read apart), or an SLA reassignment's. Checked
        under the same lock as an erasure takes, by a statement that starts once it is held: an erasure committing
        meanwhile is waited for and seen, and one that comes later finds these rows, and the leads ``taken``.

        Every lead's lock is taken in one statement, sorted: a transaction calls this once, after it locked any
        subscription's row (LOCK ORDER)."""
        queued = sorted({row["lead_id"] for row in rows})
        if not (queued or let_go or erased):
            return
        await self._conn.execute(_LOCK_LEADS, {"leads": sorted({*queued, *let_go, *erased})})
        # The rows of followed this may delete or update, locked before any is written: a rejected lead's, a lead's
        # taken again, an erased one's. The statements below write to no other lead's.
        held = sorted({*let_go, *erased, *(lead for _, lead in taken)})
        if held:
            await self._conn.execute(_HOLD_FOLLOWED, {"leads": held})
        if erased:
            leads = sorted(erased)
            await self._conn.execute(_NOTE_ERASED, {"leads": leads, "at": [erased[lead] for lead in leads]})
        if let_go:
            rejected = sorted(let_go)
            await self._conn.execute(_LET_GO, {"leads": rejected, "at": [let_go[lead].at for lead in rejected],
                                               "seq": [let_go[lead].seq for lead in rejected]})
        if queued:
            await self._conn.execute(compiled_once(lambda: _ENQUEUE, deliveries), list(rows))
            if taken:
                pairs = sorted(taken)
                await self._conn.execute(_FOLLOW, {"subs": [sub for sub, _ in pairs],
                                                   "leads": [lead for _, lead in pairs],
                                                   "at": [taken[pair].at for pair in pairs],
                                                   "seq": [taken[pair].seq for pair in pairs]})
        if queued or erased:
            await self._conn.execute(_GIVE_UP_ERASED, {"leads": sorted({*queued, *erased}), "held": held})

    async def following(self, pairs: Collection[tuple[str, uuid.UUID]]) -> Remembered:
        """Which of these (subscription, lead) pairs are followed (the subscription took the lead, ``enqueue``'s
        ``taken``, and nothing let it go since), each with the mark of its take, and their leads' last rejections.
        One statement however many."""
        if not pairs:
            return Remembered({}, {})
        ordered = sorted(pairs)
        rows = await self._conn.execute(_FOLLOWING, {"subs": [sub for sub, _ in ordered],
                                                     "leads": [lead for _, lead in ordered]})
        found = Remembered({}, {})
        for r in rows:
            if r.subscription_id is None:
                found.rejected[r.lead_id] = Mark(r.taken_at, r.taken_seq)
            else:
                found.followed[(r.subscription_id, r.lead_id)] = Mark(r.taken_at, r.taken_seq)
        return found

    async def still_subscribed(self, subscription_ids: Collection[str]) -> set[str]:
        """Those of these API subscriptions that exist, share-locked until this transaction ends; before any lead's
        lock (LOCK ORDER), as a deletion takes the row before any row of its followed leads and deliveries.

        A process learns of a deletion made in another one only at its next refresh; meanwhile it would queue
        deliveries for the deleted id, which the deletion (its statement saw none of them) never drops: they
        would wait for ever, or go to whoever takes the id next. Locked here, a deletion waits for this
        transaction, then drops what it queued; one committed before is not found, and nothing is queued."""
        # KEY SHARE: only a deletion waits for it (an update of the row, a secret's rotation, does not).
        rows = await self._conn.execute(sa.select(subscriptions.c.id).where(subscriptions.c.id.in_(
            sorted(subscription_ids))).order_by(subscriptions.c.id).with_for_update(read=True, key_share=True))
        return {r.id for r in rows}

    async def claim(self, free: Mapping[str, int], limit: int, *, lease: timedelta) -> list[Claimed]:
        """Up to ``limit`` deliveries due by Postgres's clock, of each subscription at most its ``free`` slots,
        leased for ``lease`` from when this statement starts (until each one's ``leased_until``)."""
        subs = sorted(sub for sub, n in free.items() if n > 0)
        if not subs:
            return []
        rows = await self._conn.execute(_CLAIM, {"lease": lease, "subs": subs, "free": [free[sub] for sub in subs],
                                                 "limit": limit})
        return [Claimed(*r) for r in rows]

    async def record(self, attempted: Sequence[Attempted]) -> set[int]:
        """These attempts, in one statement (two when one found a row given up meanwhile); the ``seq`` of those
        recorded: their verdict kept, or, given up while under way (their lead erased, their subscription deleted
        or removed, under the lease they were sent with), their attempt logged beside what the giving up left. The
        others had outlived their lease: their deliveries were claimed again since (or switched back on), and what
        that did is kept."""
        if not attempted:
            return set()
        recorded = await self._record(attempted)
        missed = [a for a in attempted if a.claimed.seq not in recorded]
        if missed:
            # Given up by a transaction that committed while this statement waited for its rows' locks: the
            # statement's snapshot still saw them pending, its re-check dead. A statement of its own sees them.
            recorded |= await self._record(missed)
        return recorded

    async def _record(self, attempted: Sequence[Attempted]) -> set[int]:
        done = [a.outcome in ("delivered", "dead") for a in attempted]
        rows = await self._conn.execute(_RECORD, {
            "seq": [a.claimed.seq for a in attempted],
            "leased_until": [a.claimed.leased_until for a in attempted],
            "attempt": [a.claimed.attempts + 1 for a in attempted],
            "attempted_at": [a.at for a in attempted],
            "http_status": [a.status for a in attempted],
            "error": [a.error for a in attempted],
            "response": [a.response for a in attempted],
            "duration_ms": [a.duration_ms for a in attempted],
            "state": [a.outcome if d else "pending" for a, d in zip(attempted, done, strict=True)],
            "done_at": [a.at if d else None for a, d in zip(attempted, done, strict=True)],
            # A 410 keeps the lease as next_at: the subscription is switched off; switched back on, it is sent
            # again (no sooner than the lease's end).
            "retry_at": [a.next_at if a.outcome == "retry" else None for a in attempted],
            "refused_in_a_row": [a.refused_in_a_row for a in attempted],
        })
        return {r.seq for r in rows}

    async def disable(self, subscription_id: str, reason: str, *, url: str) -> bool:
        """Switch it off (its receiver at ``url`` answered 410), from now by Postgres's clock, unless it is made
        through the API and sends elsewhere by now: changed since the attempt was sent, in this process or another
        (its book a refresh behind). Whether it is off: False, it stays on. Checked here, not against a book: a
        change commits before any book is reloaded, so only this table knows where it sends by now. A file's
        subscription has no row here to check: ``url`` is kept, and a process whose file sends it elsewhere sends
        on (``domain.switched_off``).

        Its row is share-locked until this transaction ends: a change of its url in flight (PATCH) is waited for,
        and its new url read; a change that comes later waits for this, and answers it off. Unlocked, a change
        committing just after this check left it switched off at its new url, by the receiver it had left, with
        the change's answer saying on. Called before its deliveries' attempts are recorded: a deletion locks the
        row first, then its deliveries, and the other way round the two could each wait for the other."""
        sends_to = (await self._conn.execute(
            sa.select(subscriptions.c.url).where(subscriptions.c.id == subscription_id).with_for_update(read=True)
        )).scalar_one_or_none()
        if sends_to is not None and sends_to != url:
            return False
        # Dated as the attempts that got the 410 and the deliveries it holds back are: by the dispatcher's host's
        # clock, the switch-off could read as coming before the attempt that caused it.
        add = insert(disabled).values(subscription_id=subscription_id, at=sa.func.statement_timestamp(),
                                      reason=reason, url=url)
        # Off already from this url (another of its deliveries got the 410 too): kept as it was, and said to be
        # off. From another (a file's subscription switched off by a process on an older file, or before 0006
        # kept the url): now from this one, or its receiver's 410 would never switch it off where it sends now.
        # (Should both urls answer 410 during a rolling deploy, the two files' processes take turns until the
        # old ones are gone.)
        same = disabled.c.url == add.excluded.url
        done = await self._conn.execute(add.on_conflict_do_update(index_elements=[disabled.c.subscription_id], set_={
            "at": sa.case((same, disabled.c.at), else_=add.excluded.at),
            "reason": sa.case((same, disabled.c.reason), else_=add.excluded.reason),
            "url": add.excluded.url,
        }).returning(disabled.c.subscription_id))
        return bool(done.all())

    async def redrive(self, subscription_id: str | None = None, lead_id: uuid.UUID | None = None, *,
                      in_file: Collection[str]) -> Redrive:
        """Dead deliveries (of one subscription, one lead, or all) of subscriptions in force (``in_file``, or made
        through the API) back in the queue, their retry window and backoff starting again now; how many, how
        many were left out because their body was purged, and how many because their subscription is not in
        force."""
        # Of a subscription in force only: nothing claims another's, which would wait for ever. A deleted one's
        # deliveries stay dead: its id may be taken again by another receiver, through the API or in the file. Not
        # only those its deletion dropped: those already dead then too (deleted_at; those dead before 0005 are told
        # by an API subscription under that id being younger than they are).
        # Those forgotten once it left the file come back once it is in the file again (forgotten too early, or
        # the wrong file read), but never to a subscription made through the API under its id.
        in_force = sa.and_(
            deliveries.c.last_error.is_distinct_from(_DELETED), deliveries.c.deleted_at.is_(None),
            sa.or_(deliveries.c.subscription_id.in_(sorted(in_file)),
                   sa.and_(deliveries.c.last_error.is_distinct_from(_REMOVED), _made_through_api_for_it)))
        matching = [deliveries.c.status == "dead"]
        if subscription_id is not None:
            matching.append(deliveries.c.subscription_id == subscription_id)
        if lead_id is not None:
            matching.append(deliveries.c.lead_id == lead_id)
        asked = [*matching, in_force]
        # A purged one has nothing left to send. One a purge clears while this waits for its row is left out too:
        # the update checks the row again once it has it.
        queued = await self._conn.execute(deliveries.update()
                                          .where(_in_seq_order(*asked, deliveries.c.body.is_not(None)))
                                          .values(status="pending", done_at=None, **_FRESH_WINDOW)
                                          .returning(deliveries.c.seq))
        n = len(queued.all())
        purged = await self._conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                          .where(*asked, deliveries.c.body.is_(None)))
        # Said, not silently left out: a redrive of all run with another file than the service's (an admin box
        # without DELIVERY_SUBSCRIPTIONS_FILE) leaves out every one of the file's subscriptions.
        left_out = await self._conn.execute(
            sa.select(deliveries.c.subscription_id, sa.func.count())
            .where(*matching, ~in_force, deliveries.c.body.is_not(None)).group_by(deliveries.c.subscription_id))
        return Redrive(queued=n, purged=purged.scalar_one(), not_in_force={sub: k for sub, k in left_out})

    async def enable(self, subscription_id: str) -> bool:
        """Undo a receiver's 410; whether it was switched off. Every waiting delivery's retry window starts again
        (a window that ran out while the receiver was off must not kill it at once), and what is due is sent
        now."""
        done = await self._conn.execute(disabled.delete().where(disabled.c.subscription_id == subscription_id)
                                        .returning(disabled.c.subscription_id))
        if not done.all():
            return False
        # A fresh window for every waiting delivery, one not yet due too (waiting for its retry, or for a last attempt
        # at its old window's end), which would otherwise die at its first failure. Only the due ones are sent now,
        # their backoff and refusals in a row counted anew: one whose next_at is ahead may be leased (an attempt under
        # way when another of its subscription's got the 410, or the 410's own, its lease kept); made due, it would be
        # sent again beside that attempt, whose result would then not be recorded, and that attempt sets its counts when
        # recorded. Its window reopening is harmless: the attempt is judged by its claim's copy, and, recorded, opens
        # the new window at its own start, seconds before this. Judged due and made due by Postgres's clock, which set
        # the lease and which claims read: by this process's, ahead of it, what waited would wait out the difference
        # before it was sent, and (ahead by more than a lease) the delivery under way would be due.
        is_due = deliveries.c.next_at <= sa.func.statement_timestamp()
        waiting = _in_seq_order(deliveries.c.subscription_id == subscription_id, deliveries.c.status == "pending")
        await self._conn.execute(deliveries.update().where(waiting)
                                 .values(**{**_FRESH_WINDOW,
                                            **{column: sa.case((is_due, _FRESH_WINDOW[column]),
                                                               else_=deliveries.c[column]) for column in _DUE_ANEW}}))
        return True

    async def purge(self, keep: timedelta, limit: int) -> int:
        """Clear the body and last response of up to ``limit`` deliveries finished (delivered or dead) longer than
        ``keep`` ago by Postgres's clock, the oldest first; how many."""
        return len((await self._conn.execute(_PURGE, {"keep": keep, "limit": limit})).all())

    async def give_up_off(self, subscription_ids: Collection[str], keep: timedelta, limit: int) -> dict[str, int]:
        """Of these switched-off subscriptions, each one a 410 switched off longer than ``keep`` ago (by Postgres's
        clock): up to ``limit`` of their deliveries queued longer than ``keep`` ago given up (dead, ``SWITCHED_OFF``),
        their body and receiver's last answer cleared, the oldest first; how many, by subscription. A body is kept
        for a redrive as long as a finished delivery's, not for ever for a receiver that said it is gone."""
        off = [r.subscription_id for r in await self._conn.execute(
            _OFF_LONG_AGO, {"subs": sorted(subscription_ids), "keep": keep})]
        if not off:
            return {}
        given_up: dict[str, int] = {}
        for r in await self._conn.execute(_GIVE_UP_OFF, {"subs": off, "keep": keep, "limit": limit}):
            given_up[r.subscription_id] = given_up.get(r.subscription_id, 0) + 1
        return given_up

    async def switch_offs(self) -> dict[str, dict[str, Any]]:
        """Each subscription a receiver's 410 switched off: when (``at``), why (``reason``: the 410 and the url
        that answered it) and that ``url`` (None: not known), for an operator to read."""
        return {r.subscription_id: {"at": r.at, "reason": r.reason, "url": r.url}
                for r in await self._conn.execute(sa.select(disabled.c.subscription_id, disabled.c.at,
                                                            disabled.c.reason, disabled.c.url))}

    async def disabled_urls(self) -> dict[str, str | None]:
        """Each subscription a receiver's 410 switched off, with the url that answered it (None: not known,
        switched off before 0006). Which of them are off: ``domain.switched_off``."""
        return {r.subscription_id: r.url
                for r in await self._conn.execute(sa.select(disabled.c.subscription_id, disabled.c.url))}

    async def of_lead(self, lead_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = (await self._conn.execute(sa.select(deliveries).where(deliveries.c.lead_id == lead_id)
                                         .order_by(deliveries.c.seq))).all()
        tries = (await self._conn.execute(sa.select(attempts).where(attempts.c.delivery_seq.in_([r.seq for r in rows]))
                                          .order_by(attempts.c.delivery_seq, attempts.c.attempt))).all()
        by_seq: dict[int, list[dict[str, Any]]] = {}
        for t in tries:
            by_seq.setdefault(t.delivery_seq, []).append(
                {"attempt": t.attempt, "at": t.at, "status": t.status, "error": t.error, "duration_ms": t.duration_ms})
        return [{"subscription_id": r.subscription_id, "event_id": r.event_id, "event_type": r.event_type,
                 "status": r.status, "created_at": r.created_at, "next_at": r.next_at if r.status == "pending" else None,
                 "last_status": r.last_status, "last_error": r.last_error, "last_response": r.last_response,
                 "attempts": by_seq.get(r.seq, [])}
                for r in rows]

    async def api_subscriptions(self) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in await self._conn.execute(sa.select(subscriptions).order_by(subscriptions.c.id))]

    async def add_subscription(self, row: dict[str, Any]) -> bool:
        """False when the id is taken. A new subscription starts on, whatever an earlier one of its id left. A row
        that gives no ``created_at`` and ``updated_at`` (the API's) is dated by Postgres's clock."""
        done = await self._conn.execute(insert(subscriptions).values(**row).on_conflict_do_nothing()
                                        .returning(subscriptions.c.id))
        if not done.all():
            return False
        # A 410 answering an attempt for a deleted one of its id, recorded after the delete by a process whose book
        # still held it, would switch this one off before it sent anything.
        await self._conn.execute(disabled.delete().where(disabled.c.subscription_id == row["id"]))
        # Nor does it follow the leads a file's subscription of its id took, removed from the file but not forgotten.
        await self._unfollow(row["id"])
        return True

    async def subscription_row(self, subscription_id: str) -> dict[str, Any] | None:
        row = (await self._conn.execute(sa.select(subscriptions).where(subscriptions.c.id == subscription_id)
                                        .with_for_update(key_share=True))).first()  # its id is not changed
        return dict(row._mapping) if row else None

    async def set_secrets(self, subscription_id: str, sealed: list[dict[str, Any]]) -> None:
        """Its secrets replaced (a rotation), its updated_at now by Postgres's clock, as its created_at was."""
        await self._conn.execute(subscriptions.update().where(subscriptions.c.id == subscription_id)
                                 .values(secrets=sealed, updated_at=sa.func.statement_timestamp()))

    async def reseal_secrets(self, subscription_id: str, read: list[dict[str, Any]],
                             resealed: list[dict[str, Any]]) -> bool:
        """Its secrets, sealed again under another key, written if they are still those ``read``: a rotation or
        another process's reseal committed since stays. Its updated_at stays: nothing an admin sees changed."""
        done = await self._conn.execute(subscriptions.update().where(subscriptions.c.id == subscription_id,
                                                                     subscriptions.c.secrets == read)
                                        .values(secrets=resealed).returning(subscriptions.c.id))
        return bool(done.all())

    async def change_subscription(self, subscription_id: str, columns: Mapping[str, Any]) -> None:
        """Its settings in ``columns`` (url, events, filter, retry_hours, contact) replaced, its updated_at now by
        Postgres's clock: dated by the API host's, a row's updated_at could come before its created_at. Its
        created_at stays: the deliveries queued for it before are still its own (a redrive sends them,
        ``_made_through_api_for_it``)."""
        await self._conn.execute(subscriptions.update().where(subscriptions.c.id == subscription_id)
                                 .values(**columns, updated_at=sa.func.statement_timestamp()))

    async def remove_subscription(self, subscription_id: str) -> int | None:
        """Delete it, and what it remembers (its switch-off, the leads it took); its undelivered deliveries become
        dead ("subscription deleted") now by Postgres's clock, as every other delivery finishes (``record``) and as
        the purge judges their age: how many. None: no such subscription."""
        gone = await self._conn.execute(subscriptions.delete().where(subscriptions.c.id == subscription_id)
                                        .returning(subscriptions.c.id))
        if not gone.all():
            return None
        await self._conn.execute(disabled.delete().where(disabled.c.subscription_id == subscription_id))
        await self._unfollow(subscription_id)
        was = await self._conn.execute(_DROP_DELETED, {"sub": subscription_id})
        return sum(status == "pending" for status, in was)

    async def stranded(self, in_file: Collection[str]) -> dict[str, int]:
        """How many deliveries wait for each subscription in neither ``in_file`` nor the API's: nothing here claims
        them."""
        rows = await self._conn.execute(
            sa.select(deliveries.c.subscription_id, sa.func.count())
            .where(deliveries.c.status == "pending", deliveries.c.subscription_id.not_in(sorted(in_file)),
                   ~_made_through_api)
            .group_by(deliveries.c.subscription_id))
        return {sub: n for sub, n in rows}

    async def forget(self, subscription_id: str) -> Forgotten | None:
        """Give up a subscription removed from the file: what waits for it becomes dead ("subscription removed from
        the subscriptions file") now by Postgres's clock, and its switch-off by a 410 and the leads it took go, as a
        deletion's do (an API subscription may take the id). None, and nothing changed: it was made through the API (delete it
        there)."""
        if await self.subscription_row(subscription_id) is not None:
            return None
        cleared = await self._conn.execute(disabled.delete().where(disabled.c.subscription_id == subscription_id)
                                           .returning(disabled.c.subscription_id))
        await self._unfollow(subscription_id)
        dropped = await self._conn.execute(
            deliveries.update().where(_in_seq_order(deliveries.c.subscription_id == subscription_id,
                                                    deliveries.c.status == "pending"))
            .values(status="dead", done_at=sa.func.statement_timestamp(), last_error=_REMOVED)
            .returning(deliveries.c.seq))
        return Forgotten(dropped=len(dropped.all()), was_disabled=bool(cleared.all()))

    async def _unfollow(self, subscription_id: str) -> None:
        """The leads ``subscription_id`` took let go: its rows in ``followed`` deleted, locked in the order of their
        leads, after the subscription's own row (LOCK ORDER). A lead taken meanwhile by a process whose book still
        has the subscription keeps its row, as it did when it committed after the delete: one taken after this
        statement began, and one let go and taken again by a batch this statement waited for (its row deleted and
        inserted anew, which this statement's snapshot does not hold). Only a file's subscription (forgotten, or an
        API one made under its id) can be taken so: a batch that takes a lead for an API subscription holds its
        row's share lock (``still_subscribed``), which a deletion waits for before it starts."""
        await self._conn.execute(_UNFOLLOW, {"sub": subscription_id})

    async def oldest_waiting(self) -> dict[str, float]:
        """Per subscription, the age in seconds of its oldest pending delivery."""
        rows = await self._conn.execute(sa.text(
            f"SELECT subscription_id, extract(epoch FROM now() - min(created_at)) AS age "
            f"FROM {SCHEMA}.deliveries WHERE status = 'pending' GROUP BY subscription_id"))
        return {r.subscription_id: float(r.age) for r in rows}
