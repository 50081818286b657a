"""routing's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-routing migrate`` as an operator runs it, in a database of their own."""

import uuid

import sqlalchemy as sa

from leadpipe_common.testing.migrations import fresh_database, migrate


async def test_hand_offs_stored_before_0007_number_the_hand_offs_their_row_tells_of_and_count_on_from_there(stack):
    """Under 0006 a hand-off kept no number, and its lead.routed records carried none. From 0007 each starts from
    the hand-offs its row can tell of (its first, each recycle, each missed deadline of the current one): any start
    keeps the records sent from then on in order, as none before was numbered."""
    stored = {uuid.uuid4(): (cycle, reassignments) for cycle, reassignments in [(0, 0), (0, 2), (1, 0), (2, 1)]}
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("routing", url, "0006")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO routing.handoffs (lead_id, status, owner_id, team, grade, reassignments, cycle, lead) "
                "VALUES (:lead, 'routed', 'ana', 'emea', 'B', :reassignments, :cycle, '{}')"),
                [{"lead": lead_id, "cycle": cycle, "reassignments": reassignments}
                 for lead_id, (cycle, reassignments) in stored.items()])
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
