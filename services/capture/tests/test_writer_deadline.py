"""capture's group-commit writer when Postgres goes silent (a failover dropping packets), with no Postgres: its
statements stand in for the writer's own and wait as asyncpg would, for an answer that never comes
(``fakes.SilentPostgres``). Each statement of a round has a deadline; a request waits for its round while Postgres answers the rounds
ahead of it, and twice the deadline of silence at most."""

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from leadpipe_common import db
from leadpipe_common.envelope import new_traceparent
from leadpipe_common.testing import factories
from leadpipe_common.testing.fakes import SilentPostgres

from capture import writer as writer_module
from capture.settings import CaptureSettings
from capture.writer import Admitted, LeadWriter, Submitted, WriteTimedOut, answer_for

DEADLINE_S = 0.1
NOWHERE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"


def submission(email: str) -> Submitted:
    """An importer's (sent with a key): its answer says whether it opened a lead or touched one."""
    return Submitted(lead=factories.captured(email), person_key=email, request_id=uuid.uuid4(),
                     traceparent=new_traceparent(), keyed=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


def opened(sub: Submitted) -> Admitted:
    return Admitted(answer_for(sub.lead.lead_id, sub, existing=False))


@pytest.fixture
def postgres(monkeypatch) -> SilentPostgres:
    server = SilentPostgres()
    monkeypatch.setattr(db, "raw_connection", SilentPostgres.driver)
    return server


@pytest.fixture
def rounds(monkeypatch) -> list[list[str]]:
    """The people of each round's first statement, which opens every submission's lead once Postgres answers."""
    seen: list[list[str]] = []

    async def open_leads(conn, batch, now):  # noqa: ANN001, ANN202
        seen.append([sub.person_key for sub in batch])
        await conn.fetch("open leads")
        return [opened(sub) for sub in batch]

    monkeypatch.setattr(writer_module, "open_leads", open_leads)
    return seen


def writer_on(postgres: SilentPostgres) -> LeadWriter:
    return LeadWriter(postgres, max_batch=10, on_commit=lambda: None, clock=utc_now,  # type: ignore[arg-type]
                      statement_deadline_s=DEADLINE_S)


async def test_a_round_postgres_never_answers_fails_its_request_at_its_deadline_and_the_next_round_is_written(
        postgres, rounds):
    writer = writer_on(postgres)
    writer.start()
    try:
        postgres.silent = True
        started = time.monotonic()
        with pytest.raises(WriteTimedOut):
            await asyncio.wait_for(writer.write(submission("ada@example.com")), timeout=5)
        assert time.monotonic() - started < 1
        [silent] = postgres.connections
        assert silent.terminated and silent.invalidated  # closed, never back in the pool mid-statement
        postgres.silent = False  # the failover is over
        written = await asyncio.wait_for(writer.write(submission("bo@example.com")), timeout=5)
    finally:
        await writer.stop()
    assert written.answer["existing"] is False
    assert rounds == [["ada@example.com"], ["bo@example.com"]]


async def test_leads_stored_before_a_round_timed_out_are_answered_and_only_its_unanswered_transaction_fails(
        postgres, monkeypatch):
    """The first statement stored a new person's lead; the touch's transaction after it got no answer."""
    async def open_leads(conn, batch, now):  # noqa: ANN001, ANN202
        await conn.fetch("open leads")
        return [opened(batch[0]), None]

    async def admit(conn, batch, now):  # noqa: ANN001, ANN202
        postgres.silent = True
        await conn.fetch("admit")

    monkeypatch.setattr(writer_module, "open_leads", open_leads)
    monkeypatch.setattr(writer_module, "admit", admit)
    writer = writer_on(postgres)
    pending = [asyncio.ensure_future(writer.write(submission(email))) for email in ("new@example.com",
                                                                                    "known@example.com")]
    await asyncio.sleep(0)  # both queued: they share the round
    writer.start()
    try:
        new, touch = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=5)
    finally:
        await writer.stop()
    assert isinstance(new, Admitted) and new.answer["existing"] is False
    assert isinstance(touch, WriteTimedOut)
    first, transaction = postgres.connections
    assert not (first.terminated or first.invalidated)
    assert transaction.sent == ["BEGIN", "admit"]  # neither committed nor waited on for a ROLLBACK
    assert transaction.terminated and transaction.invalidated


async def test_a_round_whose_every_statement_is_answered_within_the_deadline_is_written_however_long_in_all(
        postgres, monkeypatch):
    """A working Postgres, a little slow: each of the round's statements (its first, then the transaction's BEGIN,
    three of admit's and the COMMIT) takes most of the deadline, all of them together several times it."""
    async def open_leads(conn, batch, now):  # noqa: ANN001, ANN202
        await conn.fetch("open leads")
        return [opened(batch[0]), None]

    async def admit(conn, batch, now):  # noqa: ANN001, ANN202
        for statement in ("claim keys", "lock people", "insert touches"):
            await conn.fetch(statement)
        return [Admitted(answer_for(sub.lead.lead_id, sub, existing=True)) for sub in batch]

    monkeypatch.setattr(writer_module, "open_leads", open_leads)
    monkeypatch.setattr(writer_module, "admit", admit)
    postgres.answer_after_s = 0.6 * DEADLINE_S
    writer = writer_on(postgres)
    pending = [asyncio.ensure_future(writer.write(submission(email))) for email in ("new@example.com",
                                                                                    "known@example.com")]
    await asyncio.sleep(0)  # both queued: they share the round
    started = time.monotonic()
    writer.start()
    try:
        new, touch = await asyncio.wait_for(asyncio.gather(*pending), timeout=5)
    finally:
        await writer.stop()
    assert time.monotonic() - started > 3 * DEADLINE_S
    assert new.answer["existing"] is False and touch.answer["existing"] is True
    first, transaction = postgres.connections
    assert transaction.sent == ["BEGIN", "claim keys", "lock people", "insert touches", "COMMIT"]
    assert not (first.terminated or transaction.terminated or transaction.invalidated)


async def test_a_lock_timeout_near_the_deadline_leaves_its_rollback_a_whole_deadline_and_the_round_goes_around_it(
        postgres, monkeypatch):
    """Postgres gave up on a held person's row (lock_timeout) just before the statement's deadline: its ROLLBACK,
    slow but answered, ran on what was left of that deadline, so the round failed WriteTimedOut (503s for everyone
    in it) instead of retrying around the held person."""
    async def open_leads(conn, batch, now):  # noqa: ANN001, ANN202
        await conn.fetch("open leads")
        return [None] * len(batch)  # touches, all of them: admit's transaction

    async def admit(conn, batch, now):  # noqa: ANN001, ANN202
        await conn.fetch("lock people")
        return [Admitted(answer_for(sub.lead.lead_id, sub, existing=True)) for sub in batch]

    monkeypatch.setattr(writer_module, "open_leads", open_leads)
    monkeypatch.setattr(writer_module, "admit", admit)
    deadline_s = 2 * DEADLINE_S  # room for a loaded machine within the statement that answers at 0.95 of it
    postgres.answers = {"lock people": (0.95 * deadline_s, asyncpg.LockNotAvailableError("lock timeout")),
                        "ROLLBACK": (0.6 * deadline_s, None)}
    writer = LeadWriter(postgres, max_batch=10, on_commit=lambda: None, clock=utc_now,  # type: ignore[arg-type]
                        statement_deadline_s=deadline_s)
    pending = [asyncio.ensure_future(writer.write(submission(email))) for email in ("ada@example.com",
                                                                                    "bo@example.com")]
    await asyncio.sleep(0)  # both queued: they share the round
    writer.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=5)
    finally:
        await writer.stop()
    assert all(isinstance(result, Admitted) for result in results), results
    _, failed, around = postgres.connections
    assert failed.sent == ["BEGIN", "lock people", "ROLLBACK"] and not failed.terminated
    assert around.sent[-2:] == ["lock people", "COMMIT"]  # _around_held: no one held, everyone written


async def test_a_request_whose_round_never_comes_is_answered_within_twice_the_deadline_and_then_left_unwritten(
        postgres, rounds):
    writer = writer_on(postgres)  # not started: a round ahead that never ends
    started = time.monotonic()
    with pytest.raises(WriteTimedOut):
        await asyncio.wait_for(writer.write(submission("gave-up@example.com")), timeout=5)
    assert 2 * DEADLINE_S <= time.monotonic() - started < 1
    writer.start()
    try:
        await asyncio.wait_for(writer.write(submission("later@example.com")), timeout=5)
    finally:
        await writer.stop()
    # Its client was told to retry: written too, it would be stored twice (the retry a touch of it).
    assert rounds == [["later@example.com"]]


async def test_requests_queued_behind_rounds_postgres_keeps_answering_are_each_written_none_given_up_on(
        postgres, monkeypatch):
    """A working Postgres, a little slow, and more requests queued than a round takes: the rounds go one at a time,
    the last request's round seven rounds away, far past twice the deadline. Postgres answering all along, no
    request is answered 503 (as one its round was storing once was, or one still queued behind them)."""
    stored: list[str] = []

    async def open_leads(conn, batch, now):  # noqa: ANN001, ANN202
        await conn.fetch("open leads")
        stored.extend(sub.person_key for sub in batch)  # answered: committed
        return [opened(sub) for sub in batch]

    monkeypatch.setattr(writer_module, "open_leads", open_leads)
    postgres.answer_after_s = 0.6 * DEADLINE_S
    writer = LeadWriter(postgres, max_batch=1, on_commit=lambda: None, clock=utc_now,  # type: ignore[arg-type]
                        statement_deadline_s=DEADLINE_S)
    writer.start()
    subs = [submission(f"queued.{i}@example.com") for i in range(8)]
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(asyncio.gather(*map(writer.write, subs), return_exceptions=True),
                                         timeout=5)
    finally:
        await writer.stop()
    assert time.monotonic() - started > 2 * DEADLINE_S + writer._linger.max_s
    assert all(isinstance(result, Admitted) for result in results), results
    assert stored == [sub.person_key for sub in subs]


def test_each_statement_of_a_write_round_is_given_the_statement_timeout_and_a_second_and_none_without_one():
    assert CaptureSettings(DATABASE_URL=NOWHERE, db_statement_timeout_ms=5000).write_statement_deadline_s() == 6.0
    assert CaptureSettings(DATABASE_URL=NOWHERE, db_statement_timeout_ms=0).write_statement_deadline_s() is None


async def test_requests_queued_behind_rounds_postgres_never_answers_are_given_up_on_together_not_one_round_each(
        postgres, rounds):
    """Postgres silent, eight requests, rounds of one: a round sent is no answer, so the requests queued behind the
    first are answered 503 twice the deadline after they came, not each a deadline after the round before it."""
    postgres.silent = True
    writer = LeadWriter(postgres, max_batch=1, on_commit=lambda: None, clock=utc_now,  # type: ignore[arg-type]
                        statement_deadline_s=DEADLINE_S)
    writer.start()
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(writer.write(submission(f"queued.{i}@example.com")) for i in range(8)), return_exceptions=True),
            timeout=5)
    finally:
        await writer.stop()
    assert all(isinstance(result, WriteTimedOut) for result in results), results
    assert time.monotonic() - started < 5 * DEADLINE_S  # one round each: eight deadlines
    assert len(rounds) < 4  # the rest left out of any round: never sent to a Postgres that does not answer
