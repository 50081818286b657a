"""routing's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-routing migrate`` as an operator runs it, in a database of their own."""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from leadpipe_common.testing.migrations import fresh_database, migrate


async def test_hand_offs_stored_before_0007_number_the_hand_offs_their_row_tells_of_and_count_on_from_there(stack):
    """Under 0006 a hand-off kept no number, and its lead.routed records carried none. From 0007 each starts from
    the hand-offs its row can tell of (its first, each recycle, each missed deadline of the current one): any start
    keeps the records sent from then on in order, as none before was numbered."""
    stored = {uuid.uuid4(): (cycle, reassignments) for cycle, reassignments in [(0, 0), (0, 2), (1, 0), (2, 1)]}
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("routing", url, "0006")
        async with engine.begin() as conn:
            await _hand_offs_stored(conn, stored)
        migrate("routing", url, "head")
        async with engine.begin() as conn:
            seqs = dict((await conn.execute(sa.text("SELECT lead_id, seq FROM routing.handoffs"))).tuples().all())
            # A row the older release inserts during a rolling update is a first hand-off.
            fresh = uuid.uuid4()
            await conn.execute(sa.text(
                "INSERT INTO routing.handoffs (lead_id, status, owner_id, team, lead) "
                "VALUES (:lead, 'routed', 'ben', 'emea', '{}')"), {"lead": fresh})
            assert (await conn.execute(sa.text("SELECT seq FROM routing.handoffs WHERE lead_id = :lead"),
                                       {"lead": fresh})).scalar_one() == 1
    assert {lead_id: seqs[lead_id] for lead_id in stored} == {
        lead_id: 1 + cycle + reassignments for lead_id, (cycle, reassignments) in stored.items()}


async def test_hand_offs_stored_before_0008_are_first_routed_when_their_assignment_says_unless_recycled(stack):
    """A lead's assignment is written when it is first routed, and over only by a recycle: a hand-off never recycled
    was first routed then; a recycled one's first routing is not known, and none of its reports is bounded by it."""
    first, recycle = datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 4, 9, tzinfo=UTC)
    routed_at = {uuid.uuid4(): first, uuid.uuid4(): recycle}
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("routing", url, "0007")
        async with engine.begin() as conn:
            await _hand_offs_stored(conn, dict(zip(routed_at, [(0, 0), (1, 0)], strict=True)))
            await conn.execute(sa.text(
                "INSERT INTO routing.assignments (lead_id, owner_id, team, method, reason, routed_at) "
                "VALUES (:lead, 'ana', 'emea', 'territory', 'territory emea / all', :routed_at)"),
                [{"lead": lead_id, "routed_at": at} for lead_id, at in routed_at.items()])
        migrate("routing", url, "head")
        async with engine.begin() as conn:
            found = dict((await conn.execute(sa.text(
                "SELECT lead_id, first_routed_at FROM routing.handoffs"))).tuples().all())
    assert found == dict(zip(routed_at, [first, None], strict=True))


async def _hand_offs_stored(conn: AsyncConnection, cycles: dict[uuid.UUID, tuple[int, int]]) -> None:
    """Hand-offs routed to ana as an older release stored them: each lead's (cycle, reassignments)."""
    await conn.execute(sa.text(
        "INSERT INTO routing.handoffs (lead_id, status, owner_id, team, grade, reassignments, cycle, lead) "
        "VALUES (:lead, 'routed', 'ana', 'emea', 'B', :reassignments, :cycle, '{}')"),
        [{"lead": lead_id, "cycle": cycle, "reassignments": reassignments}
         for lead_id, (cycle, reassignments) in cycles.items()])
