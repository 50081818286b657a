"""routing against a real broker and Postgres: the rotation lives in the database."""

import asyncio
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from leadpipe_common import topics
from leadpipe_common.events import LeadDispositioned
from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import for_lead, produce, read_topic
from routing.store import RoutingStore

pytestmark = pytest.mark.asyncio


async def test_mqls_rotate_through_the_team_by_weight_and_the_state_is_stored(bootstrap, db):
    # amer-commercial in the shipped reps file: priya.nair (weight 3), sam.taylor (weight 1).
    leads = [factories.scored("mql", email=f"buyer{i}@smallco.example", employees=50, country="US") for i in range(8)]
    turns_before = await _turns(db, "amer-commercial")
    await produce(bootstrap, [factories.message("leads.scored", lead) for lead in leads])
    ids = {str(lead.lead_id).encode() for lead in leads}

    routed = await read_topic(bootstrap, "leads.routed", where=lambda r: r.key in ids, until=lambda f: len(f) >= 8)
    owners = Counter(r.json()["assignment"]["owner_id"] for r in routed)
    assert owners == {"priya.nair": 6, "sam.taylor": 2}
    assert all(r.json()["assignment"]["method"] == "territory" for r in routed)
    assert await _turns(db, "amer-commercial") == turns_before + 8


async def test_a_nurture_lead_is_applied_without_being_routed(bootstrap, db):
    lead = factories.scored("nurture", email="reader@example.com", country="US")
    msg = factories.message("leads.scored", lead)
    await produce(bootstrap, [msg])
    async with db.connect() as conn:
        for _ in range(100):
            outputs = (await conn.execute(sa.text("SELECT outputs FROM routing.inbox WHERE event_id = :id"),
                                          {"id": msg.header("ce_id")})).scalar_one_or_none()
            if outputs is not None:
                break
            await asyncio.sleep(0.1)
        assigned = (await conn.execute(sa.text("SELECT count(*) FROM routing.assignments WHERE lead_id = :id"),
                                       {"id": lead.lead_id})).scalar_one()
    assert outputs == []
    assert assigned == 0


async def test_a_new_teams_rotation_starts_empty_and_every_turned_team_is_stored_with_its_turns(db):
    new, other = (f"team-{uuid.uuid4().hex[:8]}" for _ in range(2))
    sessions = async_sessionmaker(db)
    async with sessions() as session, session.begin():
        assert await RoutingStore(session).lock_rotations([new]) == {new: {}}
    async with sessions() as session, session.begin():
        store = RoutingStore(session)
        assert await store.lock_rotations([other, new, other]) == {new: {}, other: {}}
        await store.save_rotations({new: {"ann": 2}, other: {"bob": 1}}, {new: 3, other: 1})
    async with sessions() as session, session.begin():
        assert await RoutingStore(session).lock_rotations([new, other]) == {new: {"ann": 2}, other: {"bob": 1}}
    assert (await _turns(db, new), await _turns(db, other)) == (3, 1)


async def test_a_report_refused_on_the_topic_stays_refused_when_read_again_after_the_move_became_legal(
        bootstrap, db):
    lead = factories.scored("mql", email="early.win@smallco.example", employees=50, country="US")
    await produce(bootstrap, [factories.message(topics.SCORED, lead)])
    [routed] = await read_topic(bootstrap, topics.ROUTED, where=for_lead(lead.lead_id), until=bool)
    owner = routed.json()["assignment"]["owner_id"]
    won = factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome="won", rep_id=owner,
                                                               amount="1200", currency="EUR"))
    await produce(bootstrap, [won])
    [letter] = await read_topic(bootstrap, topics.DEADLETTER, where=for_lead(lead.lead_id), until=bool)
    assert "while it is routed" in letter.headers["dlq.error.message"]
    await produce(bootstrap, [factories.message(topics.FEEDBACK, LeadDispositioned(
        lead_id=lead.lead_id, outcome="accepted", rep_id=owner))])
    assert await _status_becomes(db, lead.lead_id, "accepted")

    await produce(bootstrap, [won])  # the same record read again, as after a crash (or a redrive) sends it
    letters = await read_topic(bootstrap, topics.DEADLETTER, where=for_lead(lead.lead_id),
                               until=lambda found: len(found) >= 2)
    assert [(r.value, r.headers) for r in letters] == [(letter.value, letter.headers)] * 2  # the stored letter
    assert not await _status_becomes(db, lead.lead_id, "won", tries=1)


async def _status_becomes(db, lead_id: uuid.UUID, status: str, tries: int = 100) -> bool:
    async with db.connect() as conn:
        for _ in range(tries):
            now = (await conn.execute(sa.text("SELECT status FROM routing.handoffs WHERE lead_id = :id"),
                                      {"id": lead_id})).scalar_one_or_none()
            if now == status:
                return True
            await asyncio.sleep(0.1)
    return False


async def _turns(db, team: str) -> int:
    async with db.connect() as conn:
        turns = (await conn.execute(sa.text("SELECT turns FROM routing.rotation WHERE team = :t"), {"t": team})).scalar()
    return turns or 0
