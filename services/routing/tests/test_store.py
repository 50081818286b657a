"""routing's store on the real Postgres of the test stack (each test's writes rolled back)."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common.events import Assignment, LeadRouted
from leadpipe_common.testing import factories
from routing.domain import Handoff, Tally
from routing.handlers import merges_followed
from routing.store import _TALLIES, Held, RoutingStore, assignments, handoffs

pytestmark = pytest.mark.asyncio


async def test_held_leads_are_counted_exactly_or_only_as_far_as_a_capacity_check_needs(db):
    busy, idle, other = (f"rep-{uuid.uuid4().hex[:8]}" for _ in range(3))
    rows = [{"lead_id": uuid.uuid4(), "status": status, "owner_id": owner, "team": "t", "lead": {}}
            for owner, status in [(busy, "routed")] * 5 + [(busy, "accepted"), (other, "routed")]]
    async with AsyncSession(db) as session, session.begin():
        await session.execute(sa.insert(handoffs), rows)
        store, now = RoutingStore(session), datetime.now(UTC)
        exact = await store.presence([busy, idle], now)
        capped = await store.presence([busy, idle], now, up_to=3)
        above = await store.presence([busy, idle], now, up_to=20)
        uncounted = await store.presence([busy, idle], now, up_to=0)
        await session.rollback()
    assert exact.held == {busy: 5}  # accepted leads and other reps' are not held by these reps
    assert capped.held == {busy: 3}
    assert above.held == {busy: 5}
    assert uncounted.held == {}


def _held(now: datetime) -> Held:
    lead = factories.scored("mql")
    routed = LeadRouted.model_construct(**dict(lead), routed_at=now, routing_data_version="v1", assignment=Assignment(
        owner_id="ana", owner_name="Ana", team="t", method="territory", reason="in territory"))
    handoff = Handoff(lead_id=lead.lead_id, status="routed", owner_id="ana", team="t", grade="B",
                      due_at=now + timedelta(minutes=15))
    return Held(handoff, routed, f"trace-{lead.lead_id}")


async def test_hand_offs_are_written_over_each_as_last_given_their_trace_kept(db):
    now = datetime.now(UTC)
    a, b = _held(now), _held(now)
    a_first = replace(a, handoff=replace(a.handoff, status="accepted", due_at=None))
    a_last = replace(a, handoff=replace(a.handoff, status="merged", due_at=None, merged_into=b.handoff.lead_id,
                                        holders=("ben",), cycle=2, seq=4),
                     lead=a.lead.model_copy(update={"routing_data_version": "v2"}))
    b_told = replace(b, handoff=replace(b.handoff, waiting_since=now, grade="A"),
                     lead=b.lead.model_copy(update={"routing_data_version": "v3"}))
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs([a, b])
        await store.update_handoffs([a_first, b_told, a_last])
        stored = await store.lock_handoffs([a.handoff.lead_id, b.handoff.lead_id])
        await session.rollback()
    assert (stored[a.handoff.lead_id].handoff, stored[b.handoff.lead_id].handoff) == (a_last.handoff, b_told.handoff)
    assert [stored[h.handoff.lead_id].lead.routing_data_version for h in (a, b)] == ["v2", "v3"]
    assert [stored[h.handoff.lead_id].traceparent for h in (a, b)] == [a.traceparent, b.traceparent]


async def test_hand_offs_alone_are_written_over_each_as_last_given_their_leads_and_traces_kept(db):
    """A batch of reports writes its hand-offs in one statement; a report changes no lead, so none is written back
    (one read by an older version in a rolling update would lose the fields that version does not know)."""
    now = datetime.now(UTC)
    a, b, other = _held(now), _held(now), _held(now)
    a_first = replace(a.handoff, status="accepted", due_at=None, owner_id="ben")
    a_last = replace(a_first, status="rejected", holders=("cy",), cycle=1, history=a.handoff.history, seq=2)
    b_after = replace(b.handoff, status="accepted", due_at=None, waiting_since=None)
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs([a, b, other])
        await store.update_handoffs_only([a_first, b_after, a_last])
        stored = await store.lock_handoffs([h.handoff.lead_id for h in (a, b, other)])
        await session.rollback()
    assert [stored[h.handoff.lead_id].handoff for h in (a, b, other)] == [a_last, b_after, other.handoff]
    assert [stored[h.handoff.lead_id].lead for h in (a, b)] == [a.lead, b.lead]
    assert [stored[h.handoff.lead_id].traceparent for h in (a, b)] == [a.traceparent, b.traceparent]


async def test_a_hand_offs_first_routing_is_stored_with_it_and_kept_through_every_write_over_it(db):
    """Every report on the lead is dated no earlier (a recycle keeps it): each write gives it back as it was."""
    now = datetime.now(UTC)
    first = now - timedelta(days=3)
    a, b = (replace(h, handoff=replace(h.handoff, first_routed_at=first)) for h in (_held(now), _held(now)))
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs([a, b])
        added = await store.lock_handoffs([a.handoff.lead_id, b.handoff.lead_id])
        await store.update_handoffs([replace(a, handoff=replace(a.handoff, status="rejected", cycle=1))])
        await store.update_handoffs_only([replace(b.handoff, status="accepted", due_at=None)])
        written = await store.lock_handoffs([a.handoff.lead_id, b.handoff.lead_id])
        await session.rollback()
    assert [h.handoff.first_routed_at for h in (*added.values(), *written.values())] == [first] * 4


async def test_a_lead_merged_into_one_merged_on_since_reads_as_merged_into_the_lead_holding_the_person_now(db):
    """D was merged into S, then S into T: the rows keep their survivors, and routing reads both as merged into T,
    to send sales there at once."""
    now = datetime.now(UTC)
    d, s, t, other = (_held(now) for _ in range(4))

    def merged(h: Held, into: Held) -> Held:
        return replace(h, handoff=replace(h.handoff, status="merged", due_at=None, merged_into=into.handoff.lead_id))

    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs([merged(d, s), merged(s, t), t, other])
        direct = await store.merged_into([h.handoff.lead_id for h in (d, s, t, other)] + [uuid.uuid4()])
        read = await merges_followed(store, await store.lock_handoffs(h.handoff.lead_id for h in (d, s, t)))
        await session.rollback()
    assert direct == {d.handoff.lead_id: s.handoff.lead_id, s.handoff.lead_id: t.handoff.lead_id}
    assert [read[h.handoff.lead_id].handoff.merged_into for h in (d, s, t)] == [t.handoff.lead_id] * 2 + [None]


async def test_recycled_leads_new_assignments_are_written_over_theirs_in_one_statement_as_last_given(db):
    now = datetime.now(UTC)
    later = now + timedelta(days=3)
    a, b, other = (uuid.uuid4() for _ in range(3))

    def row(lead_id: uuid.UUID, owner: str, at: datetime, **kw: str) -> dict:
        return {"lead_id": lead_id, "owner_id": owner, "team": "t", "method": "territory", "reason": f"to {owner}",
                "routed_at": at, **kw}

    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.save_assignments([row(lead_id, "ana", now) for lead_id in (a, b, other)])
        await store.reassign([row(a, "ben", later), row(b, "cy", later),
                              row(a, "dee", later, team="u", method="queue")])
        stored = {r.lead_id: (r.owner_id, r.team, r.method, r.reason, r.routed_at) for r in await session.execute(
            sa.select(assignments).where(assignments.c.lead_id.in_([a, b, other])))}
        await session.rollback()
    assert stored == {a: ("dee", "u", "queue", "to dee", later), b: ("cy", "t", "territory", "to cy", later),
                      other: ("ana", "t", "territory", "to ana", now)}  # a lead not recycled keeps its assignment


async def test_waiting_leads_are_claimed_page_by_page_past_the_last_one_claimed_ties_broken_by_lead_id(db):
    now, team = datetime.now(UTC), f"team-{uuid.uuid4().hex[:8]}"
    queued = [replace(h, handoff=replace(h.handoff, team=team, owner_id=f"queue:{team}", due_at=None,
                                         waiting_since=now + timedelta(seconds=1 if i == 3 else 0)))
              for i, h in enumerate(_held(now) for _ in range(4))]  # three queued in one batch, one after
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs(queued)
        first = await store.claim_waiting([team], 2)
        last = first[-1].handoff
        rest = await store.claim_waiting([team], 2, after=(last.waiting_since, last.lead_id))  # type: ignore[arg-type]
        await session.rollback()
    in_order = sorted(queued[:3], key=lambda h: h.handoff.lead_id) + queued[3:]
    assert [h.handoff.lead_id for h in first + rest] == [h.handoff.lead_id for h in in_order]


async def test_open_leads_of_teams_the_files_do_not_staff_are_counted_and_those_in_their_queues_claimed(db):
    now, gone, live = datetime.now(UTC), f"gone-{uuid.uuid4().hex[:8]}", f"live-{uuid.uuid4().hex[:8]}"
    held, waiting, escalated, accepted, closed, elsewhere = (_held(now) for _ in range(6))

    def of(h: Held, team: str, **kw) -> Held:
        return replace(h, handoff=replace(h.handoff, team=team, **kw))

    rows = [of(held, gone), of(waiting, gone, owner_id=f"queue:{gone}", due_at=None, waiting_since=now),
            of(escalated, gone, owner_id=f"queue:{gone}", due_at=None, reassignments=2),
            of(accepted, gone, status="accepted", due_at=None), of(closed, gone, status="won", due_at=None),
            of(elsewhere, live, owner_id=f"queue:{live}", due_at=None, waiting_since=now)]
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs(rows)
        counted = await store.open_outside(["t", live])  # "t": every other test's team
        claimed = await store.claim_queued([gone], 10)
        escalated_only = await store.claim_queued([], 10, escalated_in=[gone, live])
        await session.rollback()
    assert counted.get(gone) == (4, 2, 1) and live not in counted  # the won lead is closed: no team holds it
    assert sorted(h.handoff.lead_id for h in claimed) == sorted(h.handoff.lead_id for h in (waiting, escalated))
    assert [h.handoff.lead_id for h in escalated_only] == [escalated.handoff.lead_id]


async def test_a_reps_open_leads_are_locked_a_page_at_a_time_by_lead_id_and_a_former_holder_is_known(db):
    now = datetime.now(UTC)
    rep, other, former = (f"rep-{uuid.uuid4().hex[:8]}" for _ in range(3))
    routed, accepted, qualified, won, merged, passed_on = (_held(now) for _ in range(6))

    def of(h: Held, owner: str, **kw) -> Held:
        return replace(h, handoff=replace(h.handoff, owner_id=owner, **kw))

    rows = [of(routed, rep), of(accepted, rep, status="accepted", due_at=None),
            of(qualified, rep, status="qualified", due_at=None), of(won, rep, status="won", due_at=None),
            of(merged, rep, status="merged", due_at=None, merged_into=won.handoff.lead_id),
            of(passed_on, other, holders=(former,))]
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs(rows)
        page = await store.lock_held(rep, 2)
        whole = await store.lock_held(rep, 10)
        after_first = await store.lock_held(rep, 10, after=page[0].handoff.lead_id)
        known = [await store.ever_held(r) for r in (rep, other, former, f"rep-{uuid.uuid4().hex[:8]}")]
        await session.rollback()
    open_ = sorted(h.handoff.lead_id for h in (routed, accepted, qualified))
    assert [h.handoff.lead_id for h in page] == open_[:2]  # won and merged are closed: nobody's to hand over
    assert [h.handoff.lead_id for h in whole] == open_
    assert [h.handoff.lead_id for h in after_first] == open_[1:]  # Postgres orders uuids as Python does
    assert known == [True, True, True, False]  # holders now, and one who held a lead before


def _queued(h: Held, team: str, *, waiting_since: datetime | None = None, sent_at: datetime | None = None,
            grade: str = "B", status: str = "routed") -> Held:
    """``h`` in ``team``'s queue: waiting since ``waiting_since``, or (None) escalated there; routing sent it there at
    ``sent_at`` (its stored lead's routed_at)."""
    lead = h.lead if sent_at is None else h.lead.model_copy(update={"routed_at": sent_at})
    return replace(h, lead=lead, handoff=replace(h.handoff, status=status, owner_id=f"queue:{team}", team=team,
                                                 grade=grade, due_at=None, waiting_since=waiting_since))


async def test_each_teams_queue_is_counted_by_grade_from_the_index_of_the_leads_in_queues_alone(db):
    now, team, other = datetime.now(UTC), f"team-{uuid.uuid4().hex[:8]}", f"team-{uuid.uuid4().hex[:8]}"
    waiting_a, waiting_b, escalated_a, escalated_b, held, merged, elsewhere = (_held(now) for _ in range(7))
    rows = [_queued(waiting_a, team, waiting_since=now - timedelta(hours=2), grade="A"),
            _queued(waiting_b, team, waiting_since=now - timedelta(hours=1)),
            _queued(escalated_a, team, grade="A"), _queued(escalated_b, team),
            replace(held, handoff=replace(held.handoff, team=team)),  # a rep holds it: in no queue
            _queued(merged, team, status="merged"),  # closed where it waited: no longer in the queue
            _queued(elsewhere, other)]
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs(rows)
        every = await store.queue_tallies()
        one = await store.queue_tallies(team)
        # Read off the index of queued leads, as few as they are, not off a scan of every hand-off routing keeps:
        # the condition is written as the index's is, so Postgres can tell the one implies the other.
        await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join((await session.execute(sa.text("EXPLAIN " + str(_TALLIES.compile(
            dialect=postgresql.dialect()))))).scalars())
        await session.rollback()
    mine = sorted((t for t in every if t.team in (team, other)), key=lambda t: (t.team != team, t.grade))
    assert mine == [Tally(team, "A", 1, 1, now - timedelta(hours=2)), Tally(team, "B", 1, 1, now - timedelta(hours=1)),
                    Tally(other, "B", 0, 1, None)]
    assert sorted(one, key=lambda t: t.grade) == mine[:2]
    assert "handoffs_queued" in plan, plan


async def test_a_teams_queue_is_listed_oldest_first_an_escalated_lead_by_when_routing_sent_it_there_page_by_page(db):
    """A waiting lead stands by when its wait began (its stored lead may be older: a lead moved out of a renamed
    team's queue waits on from then), an escalated one by its stored lead's routed_at; leads queued at one moment
    by lead id."""
    now, team = datetime.now(UTC), f"team-{uuid.uuid4().hex[:8]}"
    escalated, first, second, last, held = (_held(now) for _ in range(5))
    began = now - timedelta(hours=1)
    batch = sorted((first, second), key=lambda h: h.handoff.lead_id)
    rows = [_queued(escalated, team, sent_at=began - timedelta(minutes=1)),
            *(_queued(h, team, waiting_since=began, sent_at=began - timedelta(days=3)) for h in batch),
            _queued(last, team, waiting_since=began + timedelta(seconds=1), sent_at=began - timedelta(days=4)),
            replace(held, handoff=replace(held.handoff, team=team))]
    async with AsyncSession(db) as session, session.begin():
        store = RoutingStore(session)
        await store.add_handoffs(rows)
        page = await store.queued(team, 2)
        rest = await store.queued(team, 2, after=page[-1].position)
        await session.rollback()
    assert [q.lead_id for q in page + rest] == [h.handoff.lead_id for h in (escalated, *batch, last)]
    assert [(q.kind, q.since) for q in page + rest] == [
        ("escalated", began - timedelta(minutes=1)), ("waiting", began), ("waiting", began),
        ("waiting", began + timedelta(seconds=1))]
    assert (page[0].grade, page[0].reassignments, page[0].seq) == ("B", 0, 1)


async def test_an_erasure_notes_the_lead_held_or_not_and_deletes_its_unsent_reassignments_alone(db):
    from leadpipe_common import outbox as outboxes
    from leadpipe_common.envelope import Message
    from routing.store import outbox

    erased, other = uuid.uuid4(), uuid.uuid4()
    async with AsyncSession(db) as session, session.begin():
        await outboxes.add(session, outbox, [Message("leads.routed", str(lead).encode(), b"{}", ())
                                             for lead in (erased, other)])
        store = RoutingStore(session)
        await store.erase({erased: datetime.now(UTC)})
        await store.erase({erased: datetime.now(UTC)})  # again: the first time kept
        kept = [m["key"] for m in (await session.execute(sa.select(outbox.c.message))).scalars()]
        found = await store.erased([erased, other])
        await session.rollback()
    assert str(erased) not in kept and str(other) in kept
    assert found == {erased}
