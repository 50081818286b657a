"""``db.raw_pooled`` and ``db.raw_transaction`` with no Postgres: what a block that ends, fails or is cancelled
(a deadline) leaves of its connection, on a Postgres that goes silent (``fakes.SilentPostgres``)."""

import asyncio

import pytest

from leadpipe_common import db
from leadpipe_common.testing.fakes import SilentPostgres


@pytest.fixture
def postgres(monkeypatch) -> SilentPostgres:
    server = SilentPostgres()
    monkeypatch.setattr(db, "raw_connection", SilentPostgres.driver)
    return server


async def ended_by_its_deadline(block) -> None:  # noqa: ANN001
    """Run ``block`` under a deadline of 50 ms; fail if it is not over within 5 s, as a block waiting for a silent
    Postgres's answer would never be."""
    async def within_deadline() -> None:
        async with asyncio.timeout(0.05):
            await block()

    task = asyncio.ensure_future(within_deadline())
    await asyncio.wait([task], timeout=5)
    if not task.done():
        task.cancel()
        pytest.fail("the block still waited for Postgres's answer after its deadline")
    with pytest.raises(TimeoutError):
        task.result()


async def test_a_transaction_cut_short_by_its_deadline_closes_its_connection_at_once_without_a_rollback(postgres):
    """Postgres went silent mid-transaction: a ROLLBACK would wait as long as the statement did."""
    async def block() -> None:
        async with db.raw_transaction(postgres) as conn:
            postgres.silent = True
            await conn.fetch("INSERT ...")

    await ended_by_its_deadline(block)
    [conn] = postgres.connections
    assert conn.sent == ["BEGIN", "INSERT ..."]
    assert conn.terminated and conn.invalidated  # never back in the pool mid-statement


async def test_a_commit_cut_short_by_its_deadline_closes_its_connection_at_once(postgres):
    async def block() -> None:
        async with db.raw_transaction(postgres) as conn:
            await conn.fetch("INSERT ...")
            postgres.silent = True  # the COMMIT goes unanswered

    await ended_by_its_deadline(block)
    [conn] = postgres.connections
    assert conn.sent == ["BEGIN", "INSERT ...", "COMMIT"]
    assert conn.terminated and conn.invalidated


async def test_a_statement_cut_short_by_its_deadline_closes_its_connection_at_once(postgres):
    async def block() -> None:
        async with db.raw_pooled(postgres) as conn:
            postgres.silent = True
            await conn.fetch("INSERT ...")

    await ended_by_its_deadline(block)
    [conn] = postgres.connections
    assert conn.terminated and conn.invalidated


async def test_a_transaction_commits_when_its_block_ends_and_its_connection_goes_back_to_the_pool(postgres):
    async with db.raw_transaction(postgres) as conn:
        await conn.fetch("INSERT ...")
    [conn] = postgres.connections
    assert conn.sent == ["BEGIN", "INSERT ...", "COMMIT"]
    assert not (conn.terminated or conn.invalidated)


async def test_a_transaction_failed_by_something_else_than_the_database_rolls_back_and_keeps_its_connection(
        postgres):
    with pytest.raises(ValueError, match="the broker said no"):
        async with db.raw_transaction(postgres) as conn:
            await conn.fetch("INSERT ...")
            raise ValueError("the broker said no")
    [conn] = postgres.connections
    assert conn.sent == ["BEGIN", "INSERT ...", "ROLLBACK"]
    assert not (conn.terminated or conn.invalidated)
