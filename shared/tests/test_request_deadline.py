"""A request's database work within its deadline (``db.answered_within``, ``Runtime.request_unit_of_work``), with no
Postgres: a Postgres gone silent (a network partition, a frozen host) never answers, and the request must not wait
for it until the operating system gives up on the connection."""

import asyncio
import time

import pytest

from leadpipe_common.db import Unanswered, answered_within, is_unavailable
from leadpipe_common.service import Runtime
from leadpipe_common.settings import ConsumerSettings
from leadpipe_common.uow import SqlUnitOfWork


class Session:
    """An ``AsyncSession`` as a unit of work uses it, on a Postgres that may go silent: once ``silent``, a statement,
    and a ROLLBACK (which would first wait for the statement in flight), are never answered."""

    def __init__(self) -> None:
        self.silent = False
        self.calls: list[str] = []

    async def begin(self) -> None:
        pass

    async def execute(self, statement: str) -> None:
        await self._answer(statement)

    async def rollback(self) -> None:
        await self._answer("ROLLBACK")

    async def invalidate(self) -> None:
        self.calls.append("invalidate")  # closed: nothing waits for Postgres

    async def close(self) -> None:
        self.calls.append("close")

    async def _answer(self, statement: str) -> None:
        self.calls.append(statement)
        if self.silent:
            await asyncio.Event().wait()


def serving(session: Session, deadline_s: float) -> Runtime:
    return Runtime(settings=ConsumerSettings(db_request_deadline_s=deadline_s), context=None, engine=None,  # type: ignore[arg-type]
                   producer=None, wake_relay=lambda: None,  # type: ignore[arg-type]
                   unit_of_work=lambda: SqlUnitOfWork(lambda: session, lambda s: s))  # type: ignore[arg-type]


async def test_a_requests_unit_of_work_postgres_never_answers_ends_at_its_deadline_and_closes_its_connection():
    """The ROLLBACK a unit of work ends with would wait for the statement in flight, for ever on a silent Postgres:
    the connection is closed instead, never back in the pool mid-statement."""
    session = Session()
    started = time.monotonic()
    with pytest.raises(Unanswered) as raised:
        async with asyncio.timeout(5):  # the test's own guard: a request that waits for Postgres fails it
            async with serving(session, deadline_s=0.05).request_unit_of_work() as uow:
                session.silent = True
                await uow.session.execute("UPDATE ...")
    assert time.monotonic() - started < 1
    assert session.calls == ["UPDATE ...", "invalidate", "close"]
    assert is_unavailable(raised.value)  # a 503 with Retry-After, as every service answers it


async def test_a_unit_of_work_failed_by_an_error_rolls_back_and_keeps_its_connection():
    session = Session()
    with pytest.raises(ValueError, match="the broker said no"):
        async with serving(session, deadline_s=5).request_unit_of_work() as uow:
            await uow.session.execute("UPDATE ...")
            raise ValueError("the broker said no")
    assert session.calls == ["UPDATE ...", "ROLLBACK", "close"]


async def test_a_timeout_of_the_blocks_own_is_not_taken_for_postgres_unanswered():
    """A call inside the block with a timeout of its own (an HTTP call's) says so, not that Postgres is silent."""
    with pytest.raises(TimeoutError) as raised:
        async with answered_within(5), asyncio.timeout(0.01):
            await asyncio.Event().wait()
    assert not isinstance(raised.value, Unanswered)


def test_a_deadline_of_0_is_none():
    assert ConsumerSettings(db_request_deadline_s=0).request_deadline_s() is None
    assert ConsumerSettings().request_deadline_s() == 30.0
