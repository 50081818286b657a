"""capture's group-commit writer on the real Postgres: one batch mixing new people, a person's second
submission, a person with an open lead and an Idempotency-Key; and the relay's claim of what it wrote."""

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common import outbox as outbox_rows
from leadpipe_common import topics
from leadpipe_common.consumer import BatchApplier
from leadpipe_common.db import make_engine, make_sessionmaker, raw_connection, raw_transaction
from leadpipe_common.envelope import Message, encode, new_traceparent
from leadpipe_common.events import Attribution, LeadCaptured, LeadMerged, LeadStageChanged
from leadpipe_common.pacing import Linger
from leadpipe_common.testing import factories
from leadpipe_common.testing.failover import Failover
from leadpipe_common.testing.waits import kept_waiting
from leadpipe_common.uow import SqlUnitOfWork

from capture.redrive import Redriver
from capture.service import SERVICE
from capture.settings import CaptureSettings
from capture.domain import ConsentWord, OnRecord, newer_word
from capture.store import CaptureStore, Claimed, claim_publishable, outbox
from capture.writer import (
    Admitted, LeadWriter, Submitted, WriteTimedOut, _repeat_within_batch, _split_event, admit, answer_for,
)


def submission(email: str, key: str | None = None, *, keyed: bool = True) -> Submitted:
    """An importer's (sent with a key, unless not ``keyed``): its answer names the lead it opened or touched and
    says which (``existing``)."""
    lead = factories.captured(email)
    return Submitted(lead=lead, person_key=email, request_id=uuid.uuid4(), traceparent=new_traceparent(),
                     idempotency_key=key, fingerprint="f" if key else None, keyed=keyed)


async def write_together(db, subs: list[Submitted], *, return_exceptions: bool = False) -> list:  # noqa: ANN001
    """``subs`` queued before the writer runs, so they share its batches."""
    writer = LeadWriter(db, max_batch=100, on_commit=lambda: None, clock=lambda: datetime.now(UTC))
    pending = [asyncio.ensure_future(writer.write(s)) for s in subs]
    await asyncio.sleep(0)
    writer.start()
    try:
        return await asyncio.gather(*pending, return_exceptions=return_exceptions)
    finally:
        await writer.stop()


def test_a_lead_event_is_cut_exactly_where_its_person_id_goes():
    lead = factories.captured("cut@sap.com")
    head, tail = _split_event(lead)
    person_id = uuid.uuid4()
    assert head + str(person_id).encode() + tail == lead.model_copy(update={"person_id": person_id}).model_dump_json().encode()


def test_a_repeat_of_a_key_within_a_round_is_logged_as_the_touch_its_first_request_stored():
    """Answered the first's answer (the touch's id, to a caller without a key), and logged as what the first
    stored: the lead it touched, and the touch."""
    first = submission("ann@sap.com", key="k", keyed=False)
    again = dataclasses.replace(first, lead=factories.captured("ann@sap.com"), request_id=uuid.uuid4())
    open_lead = uuid.uuid4()
    results: list = [Admitted.of(open_lead, first, existing=True), None]
    _repeat_within_batch([first, again], results)
    assert (results[1].answer, results[1].repeated) == (results[0].answer, True)
    assert results[1].logged() == {"lead_id": str(open_lead), "touch_id": str(first.lead.lead_id)}


def test_an_answer_kept_for_an_idempotency_key_is_logged_as_a_leads_only_when_it_says_it_names_one():
    """A kept answer is all a later request has: a caller without a key was told an id that may be a touch's."""
    open_lead = uuid.uuid4()
    anonymous = answer_for(open_lead, submission("ann@sap.com", keyed=False), existing=True)
    importer = answer_for(open_lead, submission("ann@sap.com"), existing=True)
    assert Admitted(anonymous, repeated=True).logged() == {"answered_id": anonymous["lead_id"]}
    assert Admitted(importer, repeated=True).logged() == {"lead_id": str(open_lead)}


async def test_one_batch_opens_new_peoples_leads_and_makes_the_rest_touches(db):
    run = uuid.uuid4().hex[:8]
    known = f"known.{run}@sap.com"
    [earlier] = await write_together(db, [submission(known)])
    subs = [submission(f"ada.{run}@sap.com"), submission(f"bo.{run}@sap.com"), submission(f"ada.{run}@sap.com"),
            submission(known), submission(f"keyed.{run}@sap.com", key=f"k-{run}")]
    ada, bo, ada_again, known_again, keyed = await write_together(db, subs)

    assert [a.answer["existing"] for a in (ada, bo, ada_again, known_again, keyed)] == [False, False, True, True, False]
    assert ada_again.answer["lead_id"] == ada.answer["lead_id"]
    assert known_again.answer["lead_id"] == earlier.answer["lead_id"]
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT l.lead_id, l.event, p.person_id FROM capture.leads l JOIN capture.people p "
            "ON p.open_lead_id = l.lead_id WHERE p.person_key LIKE :run"), {"run": f"%{run}%"})).all()
        touched = (await conn.execute(sa.text(
            "SELECT lead_id FROM capture.touches WHERE touch_id = ANY(:ids)"),
            {"ids": [subs[2].lead.lead_id, subs[3].lead.lead_id]})).scalars().all()
    assert {str(r.lead_id) for r in rows} == {a.answer["lead_id"] for a in (ada, bo, keyed, earlier)}
    for r in rows:  # each lead's event names the person its row belongs to, and is the event as pydantic writes it
        event = json.loads(r.event)
        assert event["person_id"] == str(r.person_id)
        assert bytes(r.event) == LeadCaptured.model_validate(event).model_dump_json().encode()
    assert sorted(map(str, touched)) == sorted([ada.answer["lead_id"], earlier.answer["lead_id"]])


async def test_only_touches_and_keyed_submissions_take_the_transaction_and_its_failure_fails_only_them(
        db, monkeypatch):
    from capture import writer

    run = uuid.uuid4().hex[:8]
    subs = [submission(f"keyed.{run}@sap.com", key=f"k-{run}"), submission(f"keyed.{run}@sap.com"),
            submission(f"new.{run}@sap.com"), submission(f"new.{run}@sap.com")]
    reached: list[list[uuid.UUID]] = []

    async def failing_admit(conn, batch, now):  # noqa: ANN001, ANN202
        reached.append([s.request_id for s in batch])
        raise RuntimeError("the database went away")

    monkeypatch.setattr(writer, "admit", failing_admit)
    results = await write_together(db, subs, return_exceptions=True)

    # The keyed person's later unkeyed submission waits for admit too: it must not open the lead first.
    assert reached == [[subs[0].request_id, subs[1].request_id, subs[3].request_id]]
    assert [isinstance(r, RuntimeError) for r in results] == [True, True, False, True]
    async with db.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT lead_id FROM capture.leads WHERE email LIKE :run"),
                                     {"run": f"%{run}%"})).scalars().all()
    assert stored == [subs[2].lead.lead_id]


@pytest.mark.parametrize("keyed", [False, True], ids=["opening-statement", "transaction"])
async def test_a_person_held_elsewhere_fails_only_their_own_submissions_of_a_round(db, keyed):
    """Whether the held row stops the statement that opens leads or admit's transaction, the round's other
    people (a new one, a touch of an open lead) are written and only the held person's request fails."""
    run = uuid.uuid4().hex[:8]
    held, known, new = (f"{who}.{run}@sap.com" for who in ("held", "known", "new"))
    before = [submission(held), submission(known)]
    await write_together(db, before)
    impatient = create_async_engine(db.url, connect_args={"server_settings": {"lock_timeout": "300"}})
    try:
        async with db.connect() as other:
            await other.execute(sa.text("SELECT 1 FROM capture.people WHERE person_key = :k FOR UPDATE"), {"k": held})
            held_sub, new_sub, touch_sub = submission(held, key=f"k-{run}" if keyed else None), submission(new), \
                submission(known)
            results = await write_together(impatient, [held_sub, new_sub, touch_sub], return_exceptions=True)
            await other.rollback()
    finally:
        await impatient.dispose()

    failed, opened, touched = results
    assert isinstance(failed, asyncpg.LockNotAvailableError)
    assert (opened.answer["existing"], touched.answer["existing"]) == (False, True)
    async with db.connect() as conn:
        stored = set((await conn.execute(sa.text(
            "SELECT request_id FROM capture.leads WHERE email LIKE :run UNION ALL "
            "SELECT touch_id FROM capture.touches t JOIN capture.leads l USING (lead_id) WHERE l.email LIKE :run"),
            {"run": f"%{run}%"})).scalars())
    assert stored == {before[0].request_id, before[1].request_id, new_sub.request_id, touch_sub.lead.lead_id}


async def test_capture_connections_keep_the_client_check_their_postgres_has_through_rolled_back_transactions(db):
    """Set by the serving pool's connect listener outside any transaction (a SET in one would end with it), on a
    Postgres 14 or later; an older one is asked nothing and still connects (it refused a start-up that asked)."""
    engine = make_engine(CaptureSettings(DATABASE_URL=db.url.render_as_string(hide_password=False),
                                         db_client_check_ms=250, DB_POOL_SIZE=1), serving=True)
    try:
        seen = []
        for _ in range(2):  # the second on the same connection, back from the pool (its transaction rolled back)
            async with engine.connect() as conn:
                major = (await raw_connection(conn)).get_server_version().major
                seen.append((await conn.execute(sa.text("SHOW client_connection_check_interval"))).scalar()
                            if major >= 14 else "no such setting")
    finally:
        await engine.dispose()
    assert seen == (["250ms", "250ms"] if major >= 14 else ["no such setting"] * 2)


async def test_a_batch_of_outcomes_leaves_what_applying_them_in_turn_would(db):
    """A real outcome replaces ``deadlettered``, nothing replaces a real one: one statement for the batch."""
    from capture.store import record_outcomes

    run = uuid.uuid4().hex[:8]
    written = await write_together(db, [submission(f"{who}.{run}@sap.com") for who in ("dl-then-won", "lost-then-dl",
                                                                                      "dl-twice", "won-before")])
    a, b, c, d = (uuid.UUID(w.answer["lead_id"]) for w in written)
    t = [datetime(2026, 12, 1, h, tzinfo=UTC) for h in range(6)]
    async with db.begin() as conn:
        await record_outcomes(conn, [{"b_lead_id": d, "b_stage": "won", "b_at": t[0]}])
    async with db.begin() as conn:
        await record_outcomes(conn, [
            {"b_lead_id": a, "b_stage": "deadlettered", "b_at": t[1]}, {"b_lead_id": a, "b_stage": "won", "b_at": t[2]},
            {"b_lead_id": b, "b_stage": "lost", "b_at": t[3]}, {"b_lead_id": b, "b_stage": "deadlettered", "b_at": t[4]},
            {"b_lead_id": c, "b_stage": "deadlettered", "b_at": t[1]},
            {"b_lead_id": c, "b_stage": "deadlettered", "b_at": t[5]},
            {"b_lead_id": d, "b_stage": "deadlettered", "b_at": t[5]},
        ])
    async with db.connect() as conn:
        rows = dict((r.lead_id, (r.terminal_stage, r.terminal_at)) for r in await conn.execute(sa.text(
            "SELECT lead_id, terminal_stage, terminal_at FROM capture.leads WHERE lead_id = ANY(:ids)"),
            {"ids": [a, b, c, d]}))
    assert rows == {a: ("won", t[2]), b: ("lost", t[3]), c: ("deadlettered", t[1]), d: ("won", t[0])}


async def test_a_round_waits_for_its_target_to_share_one_statement_and_goes_once_it_is_in(db, monkeypatch):
    from capture import writer as writer_module

    # A submission every 10 s until now, the rate averaged over ~15 minutes: three take long, so the round
    # may wait its whole minute.
    linger = Linger(60.0, target=3, tau_s=1000.0)
    start = time.monotonic() - 290
    for i in range(1, 30):
        linger.note(1, start + i * 10.0)
    assert linger.seconds(time.monotonic()) > 20
    rounds: list[int] = []
    real_open_leads = writer_module.open_leads

    async def counted(conn, batch, now):  # noqa: ANN001, ANN202
        rounds.append(len(batch))
        return await real_open_leads(conn, batch, now)

    monkeypatch.setattr(writer_module, "open_leads", counted)
    writer = LeadWriter(db, max_batch=100, on_commit=lambda: None, clock=lambda: datetime.now(UTC), linger=linger)
    writer.start()
    run = uuid.uuid4().hex[:8]
    try:
        first = asyncio.ensure_future(writer.write(submission(f"first.{run}@sap.com")))
        await asyncio.sleep(0.05)  # the writer has it and lingers
        assert not first.done() and rounds == []
        rest = [asyncio.ensure_future(writer.write(submission(f"{who}.{run}@sap.com"))) for who in ("two", "three")]
        # The third submission ends the wait at once, not the 30 s linger (the test would time out).
        written = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=10)
    finally:
        await writer.stop()
    assert rounds == [3]
    assert [w.answer["existing"] for w in written] == [False, False, False]


async def test_a_writer_cancelled_mid_round_answers_its_requests_those_queued_behind_them_and_later_ones(db, monkeypatch):
    from capture import writer as writer_module

    entered = asyncio.Event()

    async def stuck(conn, batch, now):  # noqa: ANN001, ANN202
        entered.set()
        await asyncio.Event().wait()  # a round that never ends on its own

    monkeypatch.setattr(writer_module, "open_leads", stuck)
    writer = LeadWriter(db, max_batch=1, on_commit=lambda: None, clock=lambda: datetime.now(UTC))
    writer.start()
    run = uuid.uuid4().hex[:8]
    in_round = asyncio.ensure_future(writer.write(submission(f"first.{run}@sap.com")))
    await asyncio.wait_for(entered.wait(), timeout=10)
    queued = asyncio.ensure_future(writer.write(submission(f"second.{run}@sap.com")))
    await asyncio.sleep(0)
    writer._task.cancel()
    answers = await asyncio.wait_for(asyncio.gather(in_round, queued, return_exceptions=True), timeout=10)
    assert [type(a) for a in answers] == [writer_module.WriterStopped] * 2
    await asyncio.wait_for(writer._queue.join(), timeout=1)  # nothing left counted as in progress
    late = await asyncio.wait_for(asyncio.gather(writer.write(submission(f"late.{run}@sap.com")),
                                                 return_exceptions=True), timeout=10)
    assert [type(a) for a in late] == [writer_module.WriterStopped]  # refused at once, not queued for nobody


async def test_a_stopped_writer_refuses_a_request_at_once(db):
    from capture import writer as writer_module

    writer = LeadWriter(db, max_batch=1, on_commit=lambda: None, clock=lambda: datetime.now(UTC))
    writer.start()
    await asyncio.sleep(0)  # the writer waits for work
    late = asyncio.ensure_future(writer.write(submission(f"late.{uuid.uuid4().hex[:8]}@sap.com")))
    await writer.stop()  # nothing queued yet: its wait is over at once; the request comes as the task is cancelled
    answers = await asyncio.wait_for(asyncio.gather(late, return_exceptions=True), timeout=10)
    assert [type(a) for a in answers] == [writer_module.WriterStopped]


async def test_a_request_queued_as_the_stop_stopped_waiting_is_answered_not_left_waiting(db):
    """The request came in once stop's wait for the queue was over, and the writer (waiting for work) was
    cancelled before it could take it: stop answers it from the queue."""
    from capture import writer as writer_module

    writer = LeadWriter(db, max_batch=1, on_commit=lambda: None, clock=lambda: datetime.now(UTC))
    writer.start()
    await asyncio.sleep(0)
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    waited = writer._queue.join

    async def the_wait_then_a_request() -> None:
        await waited()
        writer._queue.put_nowait(writer_module._Request(submission(f"late.{uuid.uuid4().hex[:8]}@sap.com"), done))

    writer._queue.join = the_wait_then_a_request  # type: ignore[method-assign]
    await asyncio.wait_for(writer.stop(), timeout=10)
    with pytest.raises(writer_module.WriterStopped):
        await asyncio.wait_for(done, timeout=1)


async def test_repeats_of_an_answered_key_sent_together_all_get_its_answer(db):
    """Every submission of the round answered from its key: none is stored, and none is left unanswered."""
    run = uuid.uuid4().hex[:8]
    [first] = await write_together(db, [submission(f"again.{run}@sap.com", key=f"again-{run}")])
    repeats = await write_together(db, [submission(f"again.{run}@sap.com", key=f"again-{run}") for _ in range(3)])
    assert [(r.answer["lead_id"], r.repeated) for r in repeats] == [(first.answer["lead_id"], True)] * 3


async def test_an_anonymous_submissions_answer_and_the_one_its_key_keeps_say_nothing_of_its_person(db):
    """The touch of an open lead and the lead a new person opens are answered alike to a caller without a key,
    in either statement of a round, each with the id it is stored under, and so is the retry its Idempotency-Key
    answers."""
    run = uuid.uuid4().hex[:8]
    known = f"known.{run}@sap.com"
    [earlier] = await write_together(db, [submission(known)])
    anonymous = [submission(known, keyed=False), submission(f"new.{run}@sap.com", keyed=False),
                 submission(known, key=f"anon-{run}", keyed=False)]
    touched, opened, keyed_touch = await write_together(db, anonymous)
    [replayed] = await write_together(db, [submission(known, key=f"anon-{run}", keyed=False)])
    assert replayed.repeated and replayed.answer == keyed_touch.answer
    for admitted in (touched, opened, keyed_touch, replayed):
        assert set(admitted.answer) == {"lead_id", "status", "captured_at", "form_id"}
    assert [a.answer["lead_id"] for a in (touched, opened, keyed_touch)] == [str(s.lead.lead_id) for s in anonymous]
    async with db.connect() as conn:
        touches = dict((await conn.execute(sa.text(
            "SELECT touch_id, lead_id FROM capture.touches WHERE touch_id = ANY(:ids)"),
            {"ids": [anonymous[0].lead.lead_id, anonymous[2].lead.lead_id]})).all())
        leads = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE lead_id = :id"),
                                    {"id": anonymous[1].lead.lead_id})).scalar_one()
    assert set(touches.values()) == {uuid.UUID(earlier.answer["lead_id"])} and len(touches) == 2 and leads == 1


async def test_a_touch_is_logged_under_the_lead_it_touched_and_its_own_id_whoever_sent_it(db):
    """What the request's log lines name (``Admitted.logged``), from either statement of a round: the lead as
    lead_id and a touch as touch_id, a caller without a key being answered with the touch's id all the same; an
    answer replayed for an Idempotency-Key knows only the id it named."""
    run = uuid.uuid4().hex[:8]
    known = f"known.{run}@sap.com"
    [earlier] = await write_together(db, [submission(known)])
    subs = [submission(known, keyed=False), submission(known), submission(f"new.{run}@sap.com", keyed=False),
            submission(known, key=f"log-{run}", keyed=False)]
    written = await write_together(db, subs)
    [replayed] = await write_together(db, [submission(known, key=f"log-{run}", keyed=False)])
    lead, ids = earlier.answer["lead_id"], [str(sub.lead.lead_id) for sub in subs]
    assert [admitted.logged() for admitted in (*written, replayed)] == [
        {"lead_id": lead, "touch_id": ids[0]}, {"lead_id": lead, "touch_id": ids[1]}, {"lead_id": ids[2]},
        {"lead_id": lead, "touch_id": ids[3]}, {"answered_id": ids[3]}]
    assert written[0].answer["lead_id"] == ids[0]  # the answer as it was: the touch's own id


#: A claim's limit past any backlog an earlier test may have left: the test's rows are the newest.
EVERY = 1_000_000


@contextlib.asynccontextmanager
async def captures_paused(stack) -> AsyncIterator[None]:  # noqa: ANN001
    """capture's processes stopped, workers and their relays with them, so that only the test claims."""
    captures = [p for p in stack.processes if p.service == "capture"]
    for capture in captures:
        capture.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for capture in captures:
            capture.signal(signal.SIGCONT)


class Relay:
    """A connection claiming as a capture process's relay does, in a transaction it holds open (publishing)
    until it gives up."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._publishing = conn.transaction()

    async def claim(self) -> Claimed:
        if not self.conn.is_in_transaction():
            await self._publishing.start()
        return await claim_publishable(self.conn, EVERY)

    async def give_up(self) -> None:
        """Before the broker acknowledged: what it claimed is due again."""
        await self._publishing.rollback()


@contextlib.asynccontextmanager
async def two_relays(stack) -> AsyncIterator[tuple[Relay, Relay]]:  # noqa: ANN001
    """capture paused and two relays of the test's own. Closing them gives up what they still hold: it stays
    unpublished, for the stack's relays once resumed."""
    dsn = stack.database_url.replace("+asyncpg", "")
    async with captures_paused(stack):
        relays = (Relay(await asyncpg.connect(dsn)), Relay(await asyncpg.connect(dsn)))
        try:
            yield relays
        finally:
            for relay in relays:
                await relay.conn.close()


async def published_by_the_stack(db, sub: Submitted) -> None:  # noqa: ANN001
    """Wait until the stack's relays published ``sub``'s lead, as they would."""
    async with db.connect() as conn:
        deadline = time.monotonic() + 30
        while (await conn.execute(sa.text("SELECT published_at FROM capture.leads WHERE request_id = :r"),
                                  {"r": sub.request_id})).scalar() is None:
            assert time.monotonic() < deadline, "the stack's relays did not publish the lead"
            await asyncio.sleep(0.1)


async def test_a_touch_waits_while_another_relay_holds_its_lead_mid_publish(stack, db):
    """Each capture process runs a relay. One claims a lead; the person submits again; the other relay must not
    publish that touch before the lead's own events, which the first has not committed yet."""
    run = uuid.uuid4().hex[:8]
    first, again = submission(f"ada.{run}@sap.com"), submission(f"ada.{run}@sap.com")
    async with two_relays(stack) as (relay_a, relay_b):
        await write_together(db, [first])
        assert first.request_id in {row.request_id for row in (await relay_a.claim()).leads}
        [touched] = await write_together(db, [again])
        assert touched.answer["existing"]

        assert again.lead.lead_id not in {row.touch_id for row in (await relay_b.claim()).touches}
        await relay_a.give_up()
        after = await relay_b.claim()
        assert first.request_id in {row.request_id for row in after.leads}
        assert again.lead.lead_id in {row.touch_id for row in after.touches}  # in the same round, after it


async def test_a_touch_waits_while_another_relay_holds_an_older_touch_of_its_lead(stack, db):
    """A touch carries the person's latest contact: the second must not overtake the first, which another
    relay holds mid-publish."""
    run = uuid.uuid4().hex[:8]
    opening, first, second = (submission(f"bo.{run}@sap.com") for _ in range(3))
    await write_together(db, [opening])
    await published_by_the_stack(db, opening)
    async with two_relays(stack) as (relay_a, relay_b):
        await write_together(db, [first])
        assert first.lead.lead_id in {row.touch_id for row in (await relay_a.claim()).touches}
        await write_together(db, [second])

        assert second.lead.lead_id not in {row.touch_id for row in (await relay_b.claim()).touches}
        await relay_a.give_up()
        ours = (first.lead.lead_id, second.lead.lead_id)
        assert [row.touch_id for row in (await relay_b.claim()).touches if row.touch_id in ours] == list(ours)


async def test_a_redriven_lead_takes_its_published_touches_along(stack, db):
    """A broker that lost a lead's events lost its touches' too: re-driving the lead must send them again."""
    run = uuid.uuid4().hex[:8]
    opening, again = submission(f"cy.{run}@sap.com"), submission(f"cy.{run}@sap.com")
    async with captures_paused(stack):
        await write_together(db, [opening])
        await write_together(db, [again])
        async with db.begin() as conn:  # published long ago, and nothing came back: what a lost log leaves
            for table in ("leads", "touches"):
                await conn.execute(sa.text(f"UPDATE capture.{table} SET published_at = now() - interval '10 days' "
                                           "WHERE lead_id = :lead"), {"lead": opening.lead.lead_id})
        # Only leads published days ago are due: this test's own, none of the other tests'.
        redriver = Redriver(db, after_s=5 * 86400, every_s=3600, max_redrives=3, on_redrive=lambda: None,
                            backoff=1)
        await redriver.step()
        async with db.connect() as conn:
            unpublished = (await conn.execute(sa.text(
                "SELECT (SELECT published_at IS NULL FROM capture.leads WHERE lead_id = :lead), "
                "(SELECT bool_and(published_at IS NULL) FROM capture.touches WHERE lead_id = :lead)"),
                {"lead": opening.lead.lead_id})).one()
    assert tuple(unpublished) == (True, True)


async def test_a_lead_is_re_driven_no_sooner_than_capture_redrive_after_s_and_counted_stuck_until_its_outcome(
        stack, db):
    """least(after * backoff^n, 3600) capped even the first wait: CAPTURE_REDRIVE_AFTER_S=7200 re-drove after an
    hour. And capture_leads_stuck must count a lead that never finishes at every check, not only at the one that
    re-drives it: a re-drive starts its wait again (published_at), so counted by the re-drive's deadline it was
    stuck at 1 check in 100, and an alert on the gauge never fired."""
    run = uuid.uuid4().hex[:8]
    waiting, due, retried = (submission(f"{who}.{run}@sap.com") for who in ("ev", "fa", "gu"))
    ours = [waiting.lead.lead_id, due.lead.lead_id, retried.lead.lead_id]
    # A first wait of 30 days, far past the hour further waits stop at: no other test's lead is due.
    redriver = Redriver(db, after_s=30 * 86400, every_s=3600, max_redrives=3, on_redrive=lambda: None)

    async def stuck() -> float:
        await redriver.step()
        return REGISTRY.get_sample_value("capture_leads_stuck")

    async with captures_paused(stack):  # no relay publishes and no outcome is learnt: only the test moves the rows
        await write_together(db, [waiting, due, retried])
        others = await stuck()  # other tests' leads re-driven and still without an outcome; ours are unpublished
        async with db.begin() as conn:  # published days ago, and nothing came back
            for sub, days, redrives in ((waiting, 20, 0), (due, 40, 0), (retried, 1, 1)):
                await conn.execute(sa.text(
                    "UPDATE capture.leads SET published_at = now() - make_interval(days => :days), "
                    "redrives = :redrives WHERE lead_id = :lead"),
                    {"days": days, "redrives": redrives, "lead": sub.lead.lead_id})
        # retried: re-driven once and published again a day ago, its next try not due for 29 days, but no outcome
        # since it was first published over 30 days ago.
        assert await stuck() == others + 2
        async with db.connect() as conn:
            unpublished = dict((await conn.execute(sa.text(
                "SELECT lead_id, published_at IS NULL FROM capture.leads WHERE lead_id = ANY(:ours)"),
                {"ours": ours})).all())
        assert unpublished == {waiting.lead.lead_id: False, due.lead.lead_id: True, retried.lead.lead_id: False}
        # due, just re-driven (its wait starts again when a relay publishes it), is still stuck at the next check.
        assert await stuck() == others + 2


async def open_lead_of(db, sub: Submitted) -> uuid.UUID | None:  # noqa: ANN001
    """The lead ``sub``'s person holds open, as capture's writer will see it."""
    async with db.connect() as conn:
        return (await conn.execute(sa.text("SELECT open_lead_id FROM capture.people WHERE person_key = :k"),
                                   {"k": sub.person_key})).scalar_one()


async def test_people_of_a_lead_merged_into_a_closed_lead_open_a_new_lead_next_time(stack, db):
    """Sales may merge a duplicate into a lead already won or lost, and capture may see the close first."""
    run = uuid.uuid4().hex[:8]
    survivor, duplicate = submission(f"di.{run}@sap.com"), submission(f"di.{run}@gmail.com")
    async with captures_paused(stack):
        await write_together(db, [survivor, duplicate])
        async with make_sessionmaker(db)() as session, session.begin():
            store = CaptureStore(session)
            await store.close_leads([survivor.lead.lead_id])
            await store.redirect_people({duplicate.lead.lead_id: survivor.lead.lead_id})
        held = await open_lead_of(db, duplicate)
    assert held is None


async def merge_people(db, survivors: dict[uuid.UUID, uuid.UUID]) -> None:  # noqa: ANN001
    """What capture's lifecycle follower does with one batch's lead.merged."""
    async with make_sessionmaker(db)() as session, session.begin():
        await CaptureStore(session).redirect_people(survivors)


async def test_people_of_a_lead_merged_into_a_lead_merged_on_follow_the_chain_in_one_batch(stack, db):
    """D into S, then S into T: in one batch the later merge may be applied first (the batch goes in lead id
    order), and D's person must still end at T, the lead that is open, not at S."""
    run = uuid.uuid4().hex[:8]
    subs = [submission(f"hu.{n}.{run}@sap.com") for n in "abc"]
    async with captures_paused(stack):
        await write_together(db, subs)
        s, d, t = sorted(subs, key=lambda sub: sub.lead.lead_id)  # S's merge comes first in the batch
        await merge_people(db, {d.lead.lead_id: s.lead.lead_id, s.lead.lead_id: t.lead.lead_id})
        held = [await open_lead_of(db, sub) for sub in (d, s, t)]
    assert held == [t.lead.lead_id] * 3


async def test_people_of_a_lead_merged_into_a_lead_merged_before_follow_the_chain(stack, db):
    """The two merges are keyed by different leads: S into T may have been applied a batch before D into S."""
    run = uuid.uuid4().hex[:8]
    d, s, t = (submission(f"ju.{n}.{run}@sap.com") for n in "abc")
    async with captures_paused(stack):
        await write_together(db, [d, s, t])
        await merge_people(db, {s.lead.lead_id: t.lead.lead_id})
        await merge_people(db, {d.lead.lead_id: s.lead.lead_id})
        held = [await open_lead_of(db, sub) for sub in (d, s, t)]
    assert held == [t.lead.lead_id] * 3


async def test_people_of_a_lead_merged_into_a_closed_lead_merged_on_hold_none_in_either_order(stack, db):
    """A won S merged on into T (routing refuses that now; older logs may hold it); D into S comes before or
    after that, and its people end alike."""
    run = uuid.uuid4().hex[:8]
    held = []
    for n, onward_first in enumerate((True, False)):
        d, s, t = (submission(f"lu.{n}{x}.{run}@sap.com") for x in "dst")
        async with captures_paused(stack):
            await write_together(db, [d, s, t])
            async with make_sessionmaker(db)() as session, session.begin():
                await CaptureStore(session).close_leads([s.lead.lead_id])  # the close precedes S's merge on
            merges = [{s.lead.lead_id: t.lead.lead_id}, {d.lead.lead_id: s.lead.lead_id}]
            for batch in merges if onward_first else merges[::-1]:
                await merge_people(db, batch)
            held.append(await open_lead_of(db, d))
    assert held == [None, None]


async def test_a_merge_into_a_lead_another_process_is_merging_on_waits_and_follows_it(stack, db):
    run = uuid.uuid4().hex[:8]
    d, s, t = (submission(f"ku.{n}.{run}@sap.com") for n in "abc")
    sessions = make_sessionmaker(db)
    async with captures_paused(stack):
        await write_together(db, [d, s, t])
        async with sessions() as onward, onward.begin():
            await CaptureStore(onward).redirect_people({s.lead.lead_id: t.lead.lead_id})  # not committed yet
            merging = await kept_waiting(merge_people(db, {d.lead.lead_id: s.lead.lead_id}),
                                         "the merge into S did not wait for S's own merge being applied")
        await asyncio.wait_for(merging, 10)
        held = await open_lead_of(db, d)
    assert held == t.lead.lead_id


async def test_a_merge_waits_while_another_relay_holds_a_touch_of_the_merged_lead(stack, db):
    """capture sends lead.merged down the pipeline for scoring to give the survivor the merged lead's touches:
    it must not overtake one of them, which another relay holds mid-publish."""
    run = uuid.uuid4().hex[:8]
    survivor, duplicate, touch = submission(f"fe.{run}@sap.com"), *(submission(f"f.e.{run}@sap.com") for _ in "ab")
    await write_together(db, [survivor, duplicate])
    await published_by_the_stack(db, duplicate)
    merged = LeadMerged(lead_id=duplicate.lead.lead_id, survivor_id=survivor.lead.lead_id, at=datetime.now(UTC),
                        by="test", reason="one person", attribution=duplicate.lead.attribution)
    merge = encode(topics.CAPTURED, merged, event_id=uuid.uuid4(), source="test", time=merged.at)
    async with two_relays(stack) as (relay_a, relay_b):
        await write_together(db, [touch])
        assert touch.lead.lead_id in {row.touch_id for row in (await relay_a.claim()).touches}
        async with make_sessionmaker(db)() as session, session.begin():
            await outbox_rows.add(session, outbox, [merge])  # what capture's lifecycle follower writes

        assert merge.header("ce_id") not in {m.header("ce_id") for m in (await relay_b.claim()).outbox}
        await relay_a.give_up()
        after = await relay_b.claim()
        assert touch.lead.lead_id in {row.touch_id for row in after.touches}  # published first in the round
        assert merge.header("ce_id") in {m.header("ce_id") for m in after.outbox}


async def test_a_merge_applied_while_another_process_closes_the_survivor_waits_for_the_close(stack, db):
    """The close (keyed by the survivor) and the merge (keyed by the duplicate) may be on two partitions, applied
    by two capture processes at the same moment."""
    run = uuid.uuid4().hex[:8]
    survivor, duplicate = submission(f"gi.{run}@sap.com"), submission(f"g.i.{run}@sap.com")
    sessions = make_sessionmaker(db)
    async with captures_paused(stack):
        await write_together(db, [survivor, duplicate])
        async with sessions() as closing, closing.begin():
            await CaptureStore(closing).close_leads([survivor.lead.lead_id])  # not committed yet

            async def merge() -> None:
                async with sessions() as merging, merging.begin():
                    await CaptureStore(merging).redirect_people({duplicate.lead.lead_id: survivor.lead.lead_id})

            merging = await kept_waiting(merge(), "the merge did not wait for the close being applied")
        await asyncio.wait_for(merging, 10)
        held = await open_lead_of(db, duplicate)
    assert held is None


async def people_whose_leads_sort_the_other_way(db) -> tuple[Submitted, Submitted]:  # noqa: ANN001
    """Two people with open leads, ``a`` before ``b`` by key but after it by lead id, ``b``'s row stored first:
    an UPDATE of their rows by lead (as the index on open_lead_id, or the table, gives them) meets ``b`` first.

    Made while capture's processes are paused: a relay stopped in the middle of claiming a new lead would hold
    its row until it resumes, and the follower's transaction would wait for that, not for the round."""
    run = uuid.uuid4().hex[:8]
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    a, b = submission(f"a.{run}@sap.com"), submission(f"b.{run}@sap.com")
    a = dataclasses.replace(a, lead=a.lead.model_copy(update={"lead_id": high}))
    b = dataclasses.replace(b, lead=b.lead.model_copy(update={"lead_id": low}))
    await write_together(db, [b])
    await write_together(db, [a])
    return a, b


async def a_round_touching_both_around(db, a: Submitted, b: Submitted, follow) -> None:  # noqa: ANN001
    """A write round's transaction locks ``a``'s row, then ``b``'s (a round holding both locks them in key order),
    and the lifecycle follower's transaction ``follow`` starts in between. Were the follower to lock ``b`` and
    then wait for ``a``, the two would wait for each other, and Postgres would abort one of them."""
    async with raw_transaction(db) as conn:
        await admit(conn, [submission(a.person_key)], datetime.now(UTC))
        following = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        await admit(conn, [submission(b.person_key)], datetime.now(UTC))
    await asyncio.wait_for(following, 10)


async def test_closing_leads_while_a_round_writes_to_their_people_waits_its_turn_instead_of_deadlocking(stack, db):
    async def close() -> None:
        async with make_sessionmaker(db)() as session, session.begin():
            await CaptureStore(session).close_leads(sorted([a.lead.lead_id, b.lead.lead_id]))

    async with captures_paused(stack):  # before the leads exist: see people_whose_leads_sort_the_other_way
        a, b = await people_whose_leads_sort_the_other_way(db)
        await a_round_touching_both_around(db, a, b, close)
        held = [await open_lead_of(db, sub) for sub in (a, b)]
    assert held == [None, None]


async def test_merging_leads_while_a_round_writes_to_their_people_waits_its_turn_instead_of_deadlocking(stack, db):
    survivor = submission(f"c.{uuid.uuid4().hex[:8]}@sap.com")
    async with captures_paused(stack):  # before the leads exist: see people_whose_leads_sort_the_other_way
        a, b = await people_whose_leads_sort_the_other_way(db)
        await write_together(db, [survivor])
        await a_round_touching_both_around(db, a, b, lambda: merge_people(
            db, {a.lead.lead_id: survivor.lead.lead_id, b.lead.lead_id: survivor.lead.lead_id}))
        held = [await open_lead_of(db, sub) for sub in (a, b)]
    assert held == [survivor.lead.lead_id] * 2


class MergesKeptAside(SqlUnitOfWork):
    """capture's lifecycle follower's unit of work, the merges it would send down the pipeline kept aside."""

    def publish(self, messages) -> None:  # noqa: ANN001
        self.kept = list(messages)


async def test_a_batch_closing_one_lead_and_merging_another_while_a_round_writes_to_both_people_does_not_deadlock(
        stack, db):
    """The runner hands a batch to its handlers run by run: a close, then a merge. The batch must still lock both
    people in the round's order, not the close's person and then the merge's."""
    survivor = submission(f"c.{uuid.uuid4().hex[:8]}@sap.com")
    applier = BatchApplier(service="capture", handlers=SERVICE.handlers(None),
                           unit_of_work=lambda: MergesKeptAside(make_sessionmaker(db), CaptureStore))
    async with captures_paused(stack):  # before the leads exist: see people_whose_leads_sort_the_other_way
        a, b = await people_whose_leads_sort_the_other_way(db)
        await write_together(db, [survivor])
        now = datetime.now(UTC)
        lost = LeadStageChanged(lead_id=b.lead.lead_id, from_stage="accepted", to_stage="lost", at=now, by="rep",
                                reason="no budget", attribution=Attribution())
        merged = LeadMerged(lead_id=a.lead.lead_id, survivor_id=survivor.lead.lead_id, at=now, by="rep",
                            reason="one person", attribution=Attribution())
        messages: list[Message] = [factories.message(topics.LIFECYCLE, e) for e in (lost, merged)]
        batch = [factories.consumed(m, i) for i, m in enumerate(messages)]
        await a_round_touching_both_around(db, a, b, lambda: applier.apply(batch))
        held = [await open_lead_of(db, sub) for sub in (a, b)]
    assert held == [survivor.lead.lead_id, None]


async def test_two_people_of_one_lead_touching_it_at_once_are_written_one_after_the_other(stack, db):
    """D merged into S: D's and S's people both touch S. The second waits for the first (so its touch is the
    later one, and its contact includes what the first sent); alone, each would miss the other's."""
    from capture.writer import admit
    from leadpipe_common.db import raw_transaction

    run = uuid.uuid4().hex[:8]
    survivor, duplicate = submission(f"sa.{run}@sap.com"), submission(f"sa.{run}@gmail.com")
    async with captures_paused(stack):
        await write_together(db, [survivor, duplicate])
        await merge_people(db, {duplicate.lead.lead_id: survivor.lead.lead_id})
        first = Submitted(lead=factories.captured(f"sa.{run}@sap.com", phone="+49 30 1234567"),
                          person_key=survivor.person_key, request_id=uuid.uuid4(), traceparent=new_traceparent())
        second = Submitted(lead=factories.captured(f"sa.{run}@gmail.com", company="SAP"),
                           person_key=duplicate.person_key, request_id=uuid.uuid4(), traceparent=new_traceparent())

        async def touch_second() -> None:
            async with raw_transaction(db) as conn:
                await admit(conn, [second], datetime.now(UTC))

        async with raw_transaction(db) as conn:
            await admit(conn, [first], datetime.now(UTC))
            waiting = await kept_waiting(touch_second(), "the second touch of the lead did not wait for the first")
        await asyncio.wait_for(waiting, 10)
        async with db.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT touch_id, event FROM capture.touches WHERE lead_id = :s "
                                               "ORDER BY seq"), {"s": survivor.lead.lead_id})).all()
    assert [r.touch_id for r in rows] == [first.lead.lead_id, second.lead.lead_id]
    contact = json.loads(rows[1].event)["contact"]
    assert (contact["phone"], contact["company"]) == ("+49 30 1234567", "SAP")


async def test_a_touch_saying_no_to_marketing_withdraws_the_consent_its_lead_was_given(db):
    """A touch's false consent was taken for a field left out: lead.touched went on saying the person consented."""
    run = uuid.uuid4().hex[:8]
    email = f"jo.{run}@sap.com"

    def sent(consent: bool | None) -> Submitted:
        lead = factories.captured(email, marketing_consent=bool(consent),
                                  marketing_consent_at=datetime.now(UTC) if consent else None)
        return Submitted(lead=lead, person_key=email, request_id=uuid.uuid4(), traceparent=new_traceparent(),
                         consent=consent)

    subs = [sent(True), sent(False), sent(None)]
    for sub in subs:  # one round each: a touch reads the contact the one before it left
        await write_together(db, [sub])
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT event FROM capture.touches WHERE touch_id = ANY(:ids) ORDER BY seq"),
                                   {"ids": [s.lead.lead_id for s in subs[1:]]})).all()
    contacts = [json.loads(r.event)["contact"] for r in rows]
    assert [(c["marketing_consent"], c["marketing_consent_at"]) for c in contacts] == [(False, None), (False, None)]


def said(email: str, consent: bool | None, at: datetime) -> Submitted:
    """A submission of ``email`` sent at ``at`` saying ``consent`` to marketing (None: nothing)."""
    lead = factories.captured(email, marketing_consent=bool(consent), marketing_consent_at=at if consent else None)
    return Submitted(lead=lead.model_copy(update={"captured_at": at}), person_key=email, request_id=uuid.uuid4(),
                     traceparent=new_traceparent(), consent=consent)


async def released(db, sub: Submitted) -> None:  # noqa: ANN001
    """``sub`` released from quarantine: admit, in a transaction of its own, as a release calls it."""
    async with raw_transaction(db) as conn:
        await admit(conn, [sub], datetime.now(UTC))


async def close(db, lead_id: uuid.UUID) -> None:  # noqa: ANN001
    """What capture's lifecycle follower does when a lead is won, lost or disqualified."""
    async with make_sessionmaker(db)() as session, session.begin():
        await CaptureStore(session).close_leads([lead_id])


async def lead_on_record(db, lead_id: uuid.UUID) -> OnRecord:  # noqa: ANN001
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT event, consent_withdrawn_at FROM capture.leads WHERE lead_id = :l"),
                                  {"l": lead_id})).one()
    return OnRecord(LeadCaptured.model_validate_json(row.event).contact, row.consent_withdrawn_at)


async def word_of(db, person_key: str) -> ConsentWord | None:  # noqa: ANN001
    """What ``person_key``'s row holds of their last word on marketing consent."""
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT consent, consent_said_at FROM capture.people WHERE person_key = :k"),
                                  {"k": person_key})).one()
    return None if row.consent is None else ConsentWord(row.consent, row.consent_said_at)


@pytest.mark.parametrize("how", ["released", "posted"])
async def test_a_yes_older_than_a_no_given_on_a_closed_lead_opens_a_lead_without_consent(db, how):
    """Ann says yes on L1 (Monday); a submission of hers saying yes is quarantined (Tuesday); she says no on L1
    (Wednesday); L1 is lost; Tuesday's is released (Thursday). It opened L2 saying yes, her no being L1's alone, and
    marketing mailed her. Posted (a capture process's clock behind another's), the statement that opens leads leaves
    it to admit, which weighs it."""
    run = uuid.uuid4().hex[:8]
    ann = f"ann.{run}@sap.com"
    monday, tuesday, wednesday = (datetime.now(UTC) - timedelta(days=days) for days in (3, 2, 1))
    yes, caught, no = said(ann, True, monday), said(ann, True, tuesday), said(ann, False, wednesday)
    for sub in (yes, no):
        await write_together(db, [sub])
    await close(db, yes.lead.lead_id)
    await (released(db, caught) if how == "released" else write_together(db, [caught]))

    record = await lead_on_record(db, caught.lead.lead_id)
    assert (record.contact.marketing_consent, record.contact.marketing_consent_at) == (False, None)
    assert record.consent_withdrawn_at == no.lead.captured_at  # an older yes released onto L2 next counts no more
    assert await word_of(db, ann) == ConsentWord(False, no.lead.captured_at)


async def test_a_lead_opened_saying_nothing_after_a_no_keeps_it_against_an_older_yes_released_onto_it(db):
    """L2, opened by a form without the checkbox, rightly recorded no consent, but not the no: a yes from before the
    no, released as a touch of L2, gave consent back."""
    run = uuid.uuid4().hex[:8]
    jo = f"jo.{run}@sap.com"
    monday, tuesday, wednesday = (datetime.now(UTC) - timedelta(days=days) for days in (3, 2, 1))
    caught, no, silent = said(jo, True, monday), said(jo, False, tuesday), said(jo, None, wednesday)
    await write_together(db, [no])
    await close(db, no.lead.lead_id)
    await write_together(db, [silent])  # the statement that opens leads
    await released(db, caught)

    assert (await lead_on_record(db, silent.lead.lead_id)).consent_withdrawn_at == no.lead.captured_at
    async with db.connect() as conn:
        event = (await conn.execute(sa.text("SELECT event FROM capture.touches WHERE touch_id = :t"),
                                    {"t": caught.lead.lead_id})).scalar_one()
    contact = json.loads(event)["contact"]
    assert (contact["marketing_consent"], contact["marketing_consent_at"]) == (False, None)


async def test_a_no_given_on_a_lead_merged_into_another_holds_against_an_older_yes_released_onto_the_survivor(db):
    """Ann's two addresses: sales merged the lead of the one she said no on into the other's. The survivor's record
    never heard that no, and her yes from before it, released from quarantine as a touch of the survivor, gave
    consent back."""
    run = uuid.uuid4().hex[:8]
    home, work = f"ann.{run}@home.example", f"ann.{run}@sap.com"
    sunday, monday, tuesday, wednesday = (datetime.now(UTC) - timedelta(days=days) for days in (4, 3, 2, 1))
    survivor, yes, caught, no = (said(home, None, sunday), said(work, True, monday), said(work, True, tuesday),
                                 said(work, False, wednesday))
    for sub in (survivor, yes, no):
        await write_together(db, [sub])
    await merge_people(db, {yes.lead.lead_id: survivor.lead.lead_id})
    await released(db, caught)

    async with db.connect() as conn:
        touch = (await conn.execute(sa.text("SELECT event, consent_withdrawn_at FROM capture.touches "
                                            "WHERE touch_id = :t"), {"t": caught.lead.lead_id})).one()
    contact = json.loads(touch.event)["contact"]
    assert json.loads(touch.event)["lead_id"] == str(survivor.lead.lead_id)
    assert (contact["marketing_consent"], contact["marketing_consent_at"]) == (False, None)
    assert touch.consent_withdrawn_at == no.lead.captured_at


#: A person's word on record and what the submission that opens their next lead says: (consent, hours after it).
OPENINGS = [(word, (consent, hours)) for word in (None, False, True) for consent in (None, False, True)
            for hours in (-1, 0, 1)]


@pytest.mark.parametrize(("word", "opening"), OPENINGS, ids=[f"{w}-then-{c}-{h:+d}h" for w, (c, h) in OPENINGS])
@pytest.mark.parametrize("how", ["opening-statement", "admit"])
async def test_the_statement_that_opens_leads_weighs_a_persons_word_as_admit_does(db, word, opening, how):
    """The weighing is written twice, in Python (admit) and in the one statement that opens most leads: each puts
    on record what ``OnRecord.first`` says, and keeps the newer word on the person's row."""
    run = uuid.uuid4().hex[:8]
    email = f"kim.{run}@sap.com"
    then = datetime.now(UTC) - timedelta(days=1)
    person_said = None if word is None else ConsentWord(word, then)
    async with db.begin() as conn:  # a person whose last lead closed after they said ``word``
        await conn.execute(sa.text("INSERT INTO capture.people (person_key, person_id, updated_at, consent, "
                                   "consent_said_at) VALUES (:k, :p, :at, :c, :said)"),
                           {"k": email, "p": uuid.uuid4(), "at": then, "c": word,
                            "said": None if word is None else then})
    consent, hours = opening
    sub = said(email, consent, then + timedelta(hours=hours))
    await (write_together(db, [sub]) if how == "opening-statement" else released(db, sub))

    assert await lead_on_record(db, sub.lead.lead_id) == OnRecord.first(sub.lead, consent, person_said)
    assert await word_of(db, email) == newer_word(person_said, ConsentWord.of(sub.lead, consent))


async def test_a_persons_word_on_their_row_is_the_newer_by_when_it_was_sent(db):
    """Touches keep it too, and a released one older than the word on record leaves it."""
    run = uuid.uuid4().hex[:8]
    lee = f"lee.{run}@sap.com"
    monday, tuesday, wednesday, thursday = (datetime.now(UTC) - timedelta(days=days) for days in (4, 3, 2, 1))
    yes, caught = said(lee, True, monday), said(lee, True, tuesday)
    no, silent = said(lee, False, wednesday), said(lee, None, thursday)
    await write_together(db, [yes])
    assert await word_of(db, lee) == ConsentWord(True, yes.lead.captured_at)
    await write_together(db, [no, silent])  # touches, in one round
    await released(db, caught)
    assert await word_of(db, lee) == ConsentWord(False, no.lead.captured_at)


async def test_idempotency_keys_past_their_day_are_deleted_and_the_others_kept(db):
    """Kept 24 hours and an hour's margin; the table does not hold every keyed submission ever made."""
    from capture.writer import ExpiredKeys

    run = uuid.uuid4().hex[:8]
    [old, fresh] = [submission(f"{n}.{run}@sap.com", key=f"{n}-{run}") for n in ("old", "fresh")]
    await write_together(db, [old, fresh])
    async with db.begin() as conn:
        await conn.execute(sa.text("UPDATE capture.idempotency SET created_at = now() - interval '25 hours 1 minute'"
                                   " WHERE key = :k"), {"k": old.idempotency_key})
    while await ExpiredKeys(db, clock=lambda: datetime.now(UTC)).step():
        pass  # an earlier test's expired keys, if any, go too
    async with db.connect() as conn:
        left = {r.key for r in await conn.execute(sa.text("SELECT key FROM capture.idempotency WHERE key = ANY(:k)"),
                                                   {"k": [old.idempotency_key, fresh.idempotency_key]})}
    assert left == {fresh.idempotency_key}


async def test_a_round_postgres_stops_answering_is_given_up_on_and_the_retry_finds_the_lead_it_stored(stack, db):
    """Postgres commits the round's statement, but its answer is lost (a failover): the request is answered 503
    within the statement's deadline, not when TCP gives up, its connection is not pooled again, and the client's retry
    touches the lead that was stored: none lost, none opened twice."""
    run = uuid.uuid4().hex[:8]
    email = f"failover.{run}@sap.com"
    failover = Failover(sa.engine.make_url(stack.database_url))
    async with failover as proxied:
        engine = create_async_engine(proxied, pool_size=1, max_overflow=0)
        invalidated: list[object] = []
        sa.event.listen(engine.sync_engine, "invalidate", lambda conn, record, exc: invalidated.append(conn))
        writer = LeadWriter(engine, max_batch=10, on_commit=lambda: None, clock=lambda: datetime.now(UTC),
                            statement_deadline_s=1.0)
        writer.start()
        try:
            # A first lead sets up the pooled connection and prepares the statement that opens leads: the silent
            # round's goes out whole (bind and execute), and Postgres runs it.
            await asyncio.wait_for(writer.write(submission(f"first.{run}@sap.com")), timeout=30)
            failover.silence()
            lost = submission(email)
            started = time.monotonic()
            with pytest.raises(WriteTimedOut):
                await asyncio.wait_for(writer.write(lost), timeout=30)
            assert time.monotonic() - started < 3
            assert len(invalidated) == 1  # closed, not back in the pool mid-statement
            failover.resume()
            retry = await asyncio.wait_for(writer.write(submission(email)), timeout=30)
        finally:
            await writer.stop()
            await engine.dispose()
    async with db.connect() as conn:
        leads = (await conn.execute(sa.text("SELECT lead_id FROM capture.leads WHERE email = :e"),
                                    {"e": email})).scalars().all()
    assert leads == [lost.lead.lead_id]
    assert (retry.answer["lead_id"], retry.answer["existing"]) == (str(lost.lead.lead_id), True)
