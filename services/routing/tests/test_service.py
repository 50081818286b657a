"""routing against a real broker and Postgres: the rotation lives in the database."""

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from leadpipe_common import topics
from leadpipe_common.db import make_sessionmaker, record_digest
from leadpipe_common.events import LeadDispositioned, LeadScored
from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import for_lead, produce, read_topic
from leadpipe_common.uow import SqlUnitOfWork
from routing.domain import Merged
from routing.handlers import Routing, record_merge
from routing.service import SERVICE
from routing.settings import RoutingSettings
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
    owner = await _routed_to(bootstrap, lead)
    won = factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome="won", rep_id=owner,
                                                               amount="1200", currency="EUR"))
    await produce(bootstrap, [won])
    [letter] = await read_topic(bootstrap, topics.DEADLETTER, where=for_lead(lead.lead_id), until=bool)
    assert "while it is routed" in letter.headers["dlq.error.message"]
    assert letter.headers["dlq.final"] == "true"  # make redrive leaves it: it would only come back
    await produce(bootstrap, [factories.message(topics.FEEDBACK, LeadDispositioned(
        lead_id=lead.lead_id, outcome="accepted", rep_id=owner))])
    assert await _status_becomes(db, lead.lead_id, "accepted")

    await produce(bootstrap, [won])  # the same record read again, as after a crash (or a redrive) sends it
    letters = await read_topic(bootstrap, topics.DEADLETTER, where=for_lead(lead.lead_id),
                               until=lambda found: len(found) >= 2)
    assert [(r.value, r.headers) for r in letters] == [(letter.value, letter.headers)] * 2  # the stored letter
    assert not await _status_becomes(db, lead.lead_id, "won", tries=1)


async def test_a_report_on_the_topic_under_a_ce_id_used_for_another_is_dead_lettered_naming_it_and_not_applied(
        bootstrap, db):
    """A sales tool giving every report on a lead the lead's own id: its later report was answered as the first."""
    lead = factories.scored("mql", email="one.id@smallco.example", employees=50, country="US")
    owner = await _routed_to(bootstrap, lead)
    accepted, contacted = (factories.message(topics.FEEDBACK, LeadDispositioned(
        lead_id=lead.lead_id, outcome=outcome, rep_id=owner), event_id=lead.lead_id)
        for outcome in ("accepted", "contacted"))
    await produce(bootstrap, [accepted])
    assert await _status_becomes(db, lead.lead_id, "accepted")

    await produce(bootstrap, [contacted])
    [letter] = await read_topic(bootstrap, topics.DEADLETTER, where=for_lead(lead.lead_id), until=bool)
    assert (letter.headers["dlq.error.kind"], letter.headers["dlq.final"]) == ("reused_id", "true")
    assert letter.headers["dlq.error.message"].startswith(f"ce_id {lead.lead_id} was used before")
    assert letter.value == contacted.value
    assert not await _status_becomes(db, lead.lead_id, "contacted", tries=1)
    async with db.connect() as conn:
        kept = (await conn.execute(sa.text("SELECT digest FROM routing.inbox WHERE event_id = :id"),
                                   {"id": lead.lead_id})).scalar_one()
    assert kept == record_digest(accepted.value)


async def test_a_won_deal_corrected_on_the_topic_stays_won_with_both_reports_and_one_correction(bootstrap, db):
    lead = factories.scored("mql", email="typo.win@smallco.example", employees=50, country="US")
    owner = await _routed_to(bootstrap, lead)
    await produce(bootstrap, [factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, **report))
                              for report in ({"outcome": "accepted", "rep_id": owner},
                                             {"outcome": "won", "rep_id": owner, "amount": "50000", "currency": "EUR"},
                                             {"outcome": "won", "rep_id": owner, "amount": "5000", "currency": "EUR"})])
    [corrected] = await read_topic(bootstrap, topics.LIFECYCLE, until=bool, where=lambda r: (
        for_lead(lead.lead_id)(r) and r.type == "lead.won_amount_corrected"))
    body = corrected.json()
    assert (body["amount"], body["previous_amount"], body["correction"], body["by"]) == ("5000.00", "50000.00", 1,
                                                                                          owner)
    async with db.connect() as conn:
        status, history = (await conn.execute(sa.text(
            "SELECT status, history FROM routing.handoffs WHERE lead_id = :id"), {"id": lead.lead_id})).one()
    assert status == "won" and [d["amount"] for d in history if d["outcome"] == "won"] == ["50000.00", "5000.00"]


async def test_reports_on_the_topic_dated_hours_before_the_lead_was_routed_are_dated_at_its_routing(bootstrap, db):
    """A New York CRM writing its local wall-clock time with a Z: its acceptance is dated no earlier than the
    hand-off it answers, its win no earlier than the lead's first routing (here the same moment)."""
    lead = factories.scored("mql", email="new.york@smallco.example", employees=50, country="US")
    await produce(bootstrap, [factories.message(topics.SCORED, lead)])
    [routed] = await read_topic(bootstrap, topics.ROUTED, where=for_lead(lead.lead_id), until=bool)
    owner, routed_at = routed.json()["assignment"]["owner_id"], datetime.fromisoformat(routed.json()["routed_at"])
    early = (routed_at - timedelta(hours=5)).isoformat()
    await produce(bootstrap, [factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, **report))
                              for report in ({"outcome": "accepted", "rep_id": owner, "at": early},
                                             {"outcome": "won", "rep_id": owner, "amount": "1200", "currency": "EUR",
                                              "at": early})])
    steps = await read_topic(bootstrap, topics.LIFECYCLE, until=lambda found: len(found) >= 2, where=lambda r: (
        for_lead(lead.lead_id)(r) and r.type == "lead.stage_changed" and r.json()["to_stage"] in ("accepted", "won")))
    assert {r.json()["to_stage"]: datetime.fromisoformat(r.json()["at"]) for r in steps} == {
        "accepted": routed_at, "won": routed_at}
    async with db.connect() as conn:
        first = (await conn.execute(sa.text("SELECT first_routed_at FROM routing.handoffs WHERE lead_id = :id"),
                                    {"id": lead.lead_id})).scalar_one()
    assert first == routed_at


async def test_a_batch_reporting_on_two_leads_and_a_merge_of_them_at_once_both_commit(bootstrap, db):
    """The batch reports on B, then A (its log order); the merge locks A, then B (id order). Were the batch to lock
    B first and then wait for A, each would hold the row the other waits for, and Postgres would fail one."""
    leads = [factories.scored("mql", email=f"twin{i}@smallco.example", employees=50, country="US") for i in range(2)]
    await produce(bootstrap, [factories.message(topics.SCORED, lead) for lead in leads])
    keys = {str(lead.lead_id).encode() for lead in leads}
    routed = await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key in keys,
                              until=lambda found: len(found) >= 2)
    owner = {uuid.UUID(r.key.decode()): r.json()["assignment"]["owner_id"] for r in routed}
    a, b = sorted(owner)
    ctx = Routing(RoutingSettings().files.load(), clock=lambda: datetime.now(UTC))
    handle = SERVICE.handlers(ctx)[LeadDispositioned.type]
    reports = [factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=i, outcome="accepted", rep_id=owner[i]))
               for i in (b, a)]
    first_lock, go_on = asyncio.Event(), asyncio.Event()

    class Pausing(RoutingStore):
        """Holds the batch after its first hand-off lock until the merge is waiting: the worst moment for it."""

        async def handoff(self, lead_id, *, lock=True):
            found = await super().handoff(lead_id, lock=lock)
            await self._pause()
            return found

        async def lock_handoffs(self, lead_ids):
            found = await super().lock_handoffs(lead_ids)
            await self._pause()
            return found

        async def _pause(self) -> None:
            if not first_lock.is_set():
                first_lock.set()
                await go_on.wait()

    sessions = make_sessionmaker(db)

    async def batch():
        async with SqlUnitOfWork(sessions, Pausing) as uow:
            outcomes = await handle(uow, reports)
            await uow.commit()
        return outcomes

    async def merge():
        async with SqlUnitOfWork(sessions, RoutingStore) as uow:
            result = await record_merge(uow.store, a, b, owner[a], "one person", ctx.data, datetime.now(UTC))
            await uow.commit()
        return result

    reporting = asyncio.create_task(batch())
    await asyncio.wait_for(first_lock.wait(), 10)
    merging = asyncio.create_task(merge())
    done, _ = await asyncio.wait([merging], timeout=1)
    assert not done  # it waits for a row the batch holds
    go_on.set()
    outcomes, merged = await asyncio.wait_for(asyncio.gather(reporting, merging), 20)
    assert set(outcomes) == {env.id for env in reports} and isinstance(merged.verdict, Merged)


async def _routed_to(bootstrap: str, lead: LeadScored) -> str:
    """``lead`` (a score) routed: the rep it went to."""
    await produce(bootstrap, [factories.message(topics.SCORED, lead)])
    [routed] = await read_topic(bootstrap, topics.ROUTED, where=for_lead(lead.lead_id), until=bool)
    return routed.json()["assignment"]["owner_id"]


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
