"""delivery's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-delivery migrate`` as an operator runs it, in a database of their own."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadpipe_common.testing.migrations import fresh_database, migrate

from delivery.domain import Mark
from delivery.store import _PURGE, Attempted, DeliveryStore


async def stored_before(engine, rows: list[dict]) -> None:  # noqa: ANN001
    """``rows`` of delivery.deliveries as an older release stored them: each a ``lead.routed`` to ``crm`` for a lead
    and an event of its own, with the columns it names (every row the same ones)."""
    columns = list(rows[0])
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            f"INSERT INTO delivery.deliveries (subscription_id, lead_id, event_id, event_type, {', '.join(columns)}) "
            f"VALUES ('crm', :lead, :event, 'lead.routed', {', '.join(f':{c}' for c in columns)})"),
            [{**row, "lead": uuid.uuid4(), "event": uuid.uuid4()} for row in rows])


async def test_deliveries_stored_before_0003_keep_their_bodies_until_a_purge_clears_the_finished_ones(stack):
    """Under 0002 every delivery had to keep its body for ever; from 0003 a finished one loses it (and its
    receiver's last answer) once old enough, and a purge round finds those by an index, not by reading the
    whole history."""
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    stored = [  # (status, done_at)
        ("delivered", long_ago), ("dead", long_ago), ("delivered", long_ago + timedelta(days=40)), ("pending", None),
    ]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0002")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO delivery.deliveries (subscription_id, lead_id, event_id, event_type, body, created_at, "
                "status, attempts, next_at, last_status, last_response, done_at) VALUES ('crm', :lead, :event, "
                "'lead.routed', :body, :created, :status, 1, :created, 500, 'busy', :done)"),
                [{"lead": uuid.uuid4(), "event": uuid.uuid4(), "body": b'{"data": {"email": "ana@example.com"}}',
                  "created": long_ago - timedelta(hours=1), "status": status, "done": done}
                 for status, done in stored])
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a handful of rows: any plan would do
            # What finished before long_ago + 30 days, by Postgres's clock.
            keep = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one() - (
                long_ago + timedelta(days=30))
            plan = "\n".join((await conn.execute(sa.text(f"EXPLAIN {_PURGE.text}"),
                                                 {"keep": keep, "limit": 100})).scalars())
            purged = await DeliveryStore(conn).purge(keep, limit=100)
            rows = (await conn.execute(sa.text(
                "SELECT status, body IS NULL, last_response, last_status FROM delivery.deliveries ORDER BY seq"))).all()
    assert "deliveries_unpurged" in plan
    assert purged == 2
    assert [tuple(r) for r in rows] == [("delivered", True, None, 500), ("dead", True, None, 500),
                                        ("delivered", False, "busy", 500), ("pending", False, "busy", 500)]


async def test_a_deletion_before_0005_still_keeps_its_receivers_dead_deliveries_from_a_redrive(stack):
    """Under 0004 a deletion left only the deliveries it turned dead ("subscription deleted"); those already dead
    kept their receiver's error, and a file's subscription taking the id would be redriven them."""
    deleted_at = datetime(2026, 12, 1, tzinfo=UTC)
    stored = [  # (error, done_at): dead before the deletion, dropped by it, and the file's own since
        ("500", deleted_at - timedelta(days=1)), ("subscription deleted", deleted_at),
        ("500", deleted_at + timedelta(days=1))]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0004")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO delivery.deliveries (subscription_id, lead_id, event_id, event_type, body, created_at, "
                "status, attempts, next_at, last_status, last_error, done_at) VALUES ('crm', :lead, :event, "
                "'lead.routed', :body, :done, 'dead', 1, :done, 500, :error, :done)"),
                [{"lead": uuid.uuid4(), "event": uuid.uuid4(), "body": b"{}", "error": error, "done": done}
                 for error, done in stored])
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            redriven = await DeliveryStore(conn).redrive("crm", in_file={"crm"})
            rows = (await conn.execute(sa.text(
                "SELECT status, deleted_at FROM delivery.deliveries ORDER BY done_at"))).all()
    assert redriven.queued == 1
    assert [tuple(r) for r in rows] == [("dead", deleted_at), ("dead", deleted_at), ("pending", None)]


async def test_a_switch_off_recorded_before_0006_holds_its_subscription_off_whatever_its_url(stack):
    """Under 0005 a 410's switch-off kept no url: which url answered is not known, so it holds every process off,
    as it did, until it is enabled or a 410 switches it off again from a url that is kept."""
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0005")
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO delivery.disabled (subscription_id, at, reason) "
                                       "VALUES ('crm', now(), '410 Gone from https://crm.example.com/h')"))
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            store = DeliveryStore(conn)
            before = await store.disabled_urls()
            said_off = await store.disable("crm", "410 Gone from https://new.example.com/h",
                                           url="https://new.example.com/h")
            after = await store.disabled_urls()
    assert before == {"crm": None}
    assert said_off is True and after == {"crm": "https://new.example.com/h"}


async def test_a_delivery_tried_before_0007_keeps_its_window_and_one_never_tried_gets_it_from_its_first_attempt(
        stack):
    """Under 0006 every window counted from created_at; 0007 counts it from the first attempt. One already
    retried keeps the window it was judged by (its first logged attempt may precede a redrive that restarted
    it); one never tried has none yet."""
    queued = datetime(2026, 12, 1, tzinfo=UTC)
    stored = [("pending", 3), ("pending", 0), ("dead", 5)]  # (status, attempts)
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0006")
        await stored_before(engine, [{"body": b"{}", "created_at": queued, "status": status, "attempts": attempts,
                                      "next_at": queued} for status, attempts in stored])
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT first_attempt_at FROM delivery.deliveries ORDER BY seq"))).scalars().all()
    assert rows == [queued, None, None]


async def test_a_delivery_stored_before_0008_starts_with_no_refusals_in_a_row_and_counts_those_after_it(stack):
    """Under 0007 a refusal was judged by every attempt since the delivery was queued; 0008 keeps the refusals in
    a row. One stored before has none counted (its 30 attempts were an outage's), and a refusal recorded after
    the upgrade is what its next claim reads."""
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    stored = [("pending", 30), ("dead", 8)]  # (status, attempts)
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0007")
        await stored_before(engine, [{"body": b"{}", "created_at": long_ago, "first_attempt_at": long_ago,
                                      "status": status, "attempts": attempts, "next_at": long_ago, "last_status": 503}
                                     for status, attempts in stored])
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            store = DeliveryStore(conn)
            counted = (await conn.execute(sa.text(
                "SELECT refused_in_a_row FROM delivery.deliveries ORDER BY seq"))).scalars().all()
            [after_outage] = await store.claim({"crm": 1}, 1, lease=timedelta(seconds=20))
            recorded = await store.record([Attempted(
                after_outage, at=after_outage.claimed_at, status=404, error=None, response="", duration_ms=7,
                outcome="retry", next_at=long_ago, refused_in_a_row=1)])  # due again at once
            [refused_once] = await store.claim({"crm": 1}, 1, lease=timedelta(seconds=20))
    assert counted == [0, 0]
    assert (after_outage.attempts, after_outage.refused_in_a_row) == (30, 0) and recorded == {after_outage.seq}
    assert (refused_once.seq, refused_once.attempts, refused_once.refused_in_a_row) == (after_outage.seq, 31, 1)


async def test_a_lead_a_subscription_was_sent_before_0010_is_not_remembered_and_one_taken_after_it_is(stack):
    """Under 0009 nothing was remembered: whether a subscription's filter named a grade when it was sent a lead (a
    file's filter is in no table) and whether sales rejected the lead since are not known, so its leads from before
    are judged by their grade, as they were (docs/upgrading.md)."""
    sent, after = datetime(2026, 12, 1, tzinfo=UTC), uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0009")
        await stored_before(engine, [{"body": b"{}", "created_at": sent, "next_at": sent, "status": "delivered",
                                      "done_at": sent}])
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            before = (await conn.execute(sa.text("SELECT lead_id FROM delivery.deliveries"))).scalar_one()
            store = DeliveryStore(conn)
            await store.enqueue([{"subscription_id": "crm", "lead_id": after, "event_id": uuid.uuid4(),
                                  "event_type": "lead.routed", "body": b"{}"}], taken={("crm", after): Mark(sent)})
            followed = await store.following({("crm", before), ("crm", after)})
    assert followed.followed == {("crm", after): Mark(sent)}


async def test_a_lead_taken_under_0010_is_let_go_by_its_next_rejection_however_early_it_was_recorded(stack):
    """0010 kept no time of a lead taken: 0011 dates it the epoch, before any rejection, so a rejection read after
    the upgrade lets it go, as it did, though routing recorded it before the upgrade (read late); and from then on a
    lead.routed of a hand-off routed before that rejection takes the lead for nobody."""
    rejected_at, lead = datetime(2001, 1, 1, tzinfo=UTC), uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0010")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO delivery.followed (subscription_id, lead_id) VALUES ('crm', :lead)"), {"lead": lead})
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            store = DeliveryStore(conn)
            kept = await store.following({("crm", lead)})
            await store.enqueue([], let_go={lead: Mark(rejected_at)})
            let_go = await store.following({("crm", lead)})
            await store.enqueue([{"subscription_id": "crm", "lead_id": lead, "event_id": uuid.uuid4(),
                                  "event_type": "lead.routed", "body": b"{}"}],
                                taken={("crm", lead): Mark(rejected_at - timedelta(hours=1))})
            late = await store.following({("crm", lead)})
    assert kept.followed == {("crm", lead): Mark(datetime(1970, 1, 1, tzinfo=UTC))} and kept.rejected == {}
    assert let_go.followed == {} and let_go.rejected == {lead: Mark(rejected_at)}
    assert late.followed == {}


async def test_what_0011_noted_says_no_hand_off_number_and_is_ordered_by_time_against_numbered_events(stack):
    """0011 kept times alone: its rows say no number after 0012, so a numbered rejection lets go a take noted under
    0011 routed before it (and not one routed after it), and a numbered lead.routed routed before a rejection noted
    under 0011 takes nothing, as under 0011."""
    at, lead, other = datetime(2026, 11, 23, 9, tzinfo=UTC), uuid.uuid4(), uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0011")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO delivery.followed (subscription_id, lead_id, taken_at) VALUES ('crm', :lead, :before), "
                "('late', :lead, :after)"), {"lead": lead, "before": at - timedelta(hours=1),
                                             "after": at + timedelta(hours=1)})
            await conn.execute(sa.text("INSERT INTO delivery.rejected_leads (lead_id, rejected_at) "
                                       "VALUES (:lead, :at)"), {"lead": other, "at": at})
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            store = DeliveryStore(conn)
            kept = await store.following({("crm", lead), ("late", lead)})
            await store.enqueue([], let_go={lead: Mark(at, 4)})
            let_go = await store.following({("crm", lead), ("late", lead)})
            await store.enqueue([{"subscription_id": "crm", "lead_id": other, "event_id": uuid.uuid4(),
                                  "event_type": "lead.routed", "body": b"{}"}],
                                taken={("crm", other): Mark(at - timedelta(minutes=1), 4)})
            late = await store.following({("crm", other)})
    before, after = Mark(at - timedelta(hours=1)), Mark(at + timedelta(hours=1))
    assert kept.followed == {("crm", lead): before, ("late", lead): after}
    assert let_go.followed == {("late", lead): after}
    assert late == ({}, {other: Mark(at)})


async def test_a_lead_taken_by_a_process_older_than_0011_during_a_rolling_upgrade_is_kept_until_its_next_rejection(
        stack):
    """Migrated first, then served: a delivery process of 0010 still running takes a lead without a time, which 0011
    refused (NOT NULL: the batch went to the dead letters). Dated the epoch, it is kept, and the lead's next rejection
    lets it go, as under 0010."""
    lead = uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO delivery.followed (subscription_id, lead_id) "
                                       "VALUES ('crm', :lead) ON CONFLICT DO NOTHING"), {"lead": lead})
            store = DeliveryStore(conn)
            taken = await store.following({("crm", lead)})
            await store.enqueue([], let_go={lead: Mark(datetime(2026, 11, 23, 9, tzinfo=UTC), 1)})
            let_go = await store.following({("crm", lead)})
    assert taken.followed == {("crm", lead): Mark(datetime(1970, 1, 1, tzinfo=UTC))}
    assert let_go.followed == {}


async def test_a_migrate_to_a_revision_older_than_the_one_in_place_is_refused_and_changes_nothing(stack):
    """alembic's upgrade to an older revision runs no step, and migrate said "migrated to 0002" all the same."""
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0004")
        back = subprocess.run([sys.executable, "-m", "delivery", "migrate", "0002"], capture_output=True, text=True,
                              env={**os.environ, "DATABASE_URL": url}, timeout=120)
        again = subprocess.run([sys.executable, "-m", "delivery", "migrate", "0004"], capture_output=True,
                               text=True, env={**os.environ, "DATABASE_URL": url}, timeout=120)
        up = subprocess.run([sys.executable, "-m", "delivery", "migrate"], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": url}, timeout=120)
        async with engine.begin() as conn:
            in_place = (await conn.execute(sa.text("SELECT version_num FROM delivery.alembic_version"))).scalar_one()
    assert back.returncode == 2 and "Traceback" not in back.stderr
    assert "delivery: cannot migrate to '0002': 0002 is older than the revision in place (0004)" in back.stderr
    assert again.returncode == 0 and again.stdout.strip() == "delivery: already at 0004; nothing to do"
    assert up.returncode == 0 and up.stdout.strip().startswith("delivery: migrated to 00")
    assert up.stdout.strip().endswith("(from 0004)") and in_place != "0004"


async def test_an_erased_leads_rows_in_followed_kept_from_before_go_at_0013_and_no_other_lead_loses_its_own(stack):
    """Erased by a process older than 0010 while an 0010 one took the lead (or by hand), a lead kept its rows: a
    batch deletes only the rows it locked first, so they would never go."""
    erased, kept = uuid.uuid4(), uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("delivery", url, "0012")
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO delivery.followed (subscription_id, lead_id) VALUES "
                                       "('crm', :erased), ('other', :erased), ('crm', :kept)"),
                               {"erased": erased, "kept": kept})
            await conn.execute(sa.text("INSERT INTO delivery.erased_leads (lead_id, erased_at) VALUES (:lead, now())"),
                               {"lead": erased})
        migrate("delivery", url, "head")
        async with engine.begin() as conn:
            left = (await conn.execute(sa.text("SELECT subscription_id, lead_id FROM delivery.followed"))).all()
    assert [tuple(r) for r in left] == [("crm", kept)]
