"""reporting's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-reporting migrate`` as an operator runs it, in a database of their own."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common import topics
from leadpipe_common.db import make_sessionmaker
from leadpipe_common.envelope import decode, encode
from leadpipe_common.events import Attribution, Event, LeadHandedOver, LeadMerged, LeadStageChanged, LeadTouched, Touch
from leadpipe_common.testing.migrations import fresh_database, migrate
from leadpipe_common.uow import SqlUnitOfWork

from reporting.handlers import Reporting, handle_lifecycle_events
from reporting.reports import Filters, attribution, funnel, sla
from reporting.store import TABLES, ReportingStore, touches


async def test_leads_recorded_before_0008_are_counted_out_of_the_funnel_where_their_latest_step_left_them(stack):
    """Under 0007 the funnel looked each lead's latest step up at every report; 0008 keeps it on the lead's
    row, filled in from the steps already recorded: a lead rejected (and back in nurture at that moment), one
    nurtured then recycled into the funnel (recorded later, dated earlier by its tool), and one disqualified
    before steps had a recorded time (0005)."""
    rejected, recycled, disqualified = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    steps = [  # (lead, from, to, at, recorded)
        (rejected, None, "captured", 0, 0), (rejected, "captured", "mql", 1, 1), (rejected, "mql", "routed", 2, 2),
        (rejected, "routed", "rejected", 9, 9), (rejected, "rejected", "nurture", 9, 9),
        (recycled, None, "captured", 0, 0), (recycled, "captured", "nurture", 1, 1),
        (recycled, "nurture", "mql", 0, 60),
        (disqualified, None, "captured", 0, None), (disqualified, "captured", "disqualified", 1, None),
    ]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("reporting", url, "0007")
        async with engine.begin() as conn:
            for lead in (rejected, recycled, disqualified):
                first = {to: at(minutes) for who, _, to, minutes, _ in steps if who == lead}
                await conn.execute(sa.text(
                    "INSERT INTO reporting.leads (lead_id, furthest, captured_at, mql_at, routed_at, nurture_at, "
                    "disqualified_at, rejected_at) VALUES (:lead, :furthest, :captured, :mql, :routed, :nurture, "
                    ":disqualified, :rejected)"),
                    {"lead": lead, "furthest": 3 if "routed" in first else 2 if "mql" in first else 0,
                     **{s: first.get(s) for s in ("captured", "mql", "routed", "nurture", "disqualified",
                                                  "rejected")}})
            await conn.execute(sa.text(
                "INSERT INTO reporting.steps (event_id, lead_id, type, at, recorded_at, from_stage, to_stage, by, "
                "reason, detail) VALUES (:id, :lead, 'lead.stage_changed', :at, :recorded, :frm, :to, 't', 'r', "
                "'{}')"),
                [{"id": uuid.uuid4(), "lead": lead, "frm": frm, "to": to, "at": at(minutes),
                  "recorded": None if recorded is None else at(recorded)}
                 for lead, frm, to, minutes, recorded in steps])
        migrate("reporting", url, "head")
        async with engine.connect() as conn:
            report = await funnel(conn, Filters())
            latest = {r.lead_id: (r.latest_from_stage, r.latest_to_stage, r.latest_recorded_at) for r in
                      await conn.execute(sa.text("SELECT * FROM reporting.leads"))}
    assert report["exits"] == {"nurture": 0, "disqualified": 1, "rejected": 1, "lost": 0}
    assert latest == {rejected: ("routed", "rejected", at(9)), recycled: ("nurture", "mql", at(60)),
                      disqualified: ("captured", "disqualified", at(1))}


async def test_events_applied_before_0005_and_redelivered_after_it_change_no_column(stack):
    """Routed to ana, whose tool (its clock four minutes behind) dated her acceptance before the hand-off and her
    rejection before it was recorded; routing sent the lead back to nurture at that moment. Reporting applied all
    this under 0004, stopped before committing its offsets, was migrated, and is handed the tail again: the lead is
    still where 0008 put it (rejected, not accepted), the hand-off has no start (met, as before), every row as it
    was."""
    lead = uuid.uuid4()
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    def step(frm: str | None, to: str, minutes: int, recorded: int, **kw: object):  # noqa: ANN202
        event = LeadStageChanged(lead_id=lead, from_stage=frm, to_stage=to, at=at(minutes), by="t", reason="r",
                                 attribution=Attribution(utm_source="src-1"), **kw)
        m = encode(topics.LIFECYCLE, event, event_id=uuid.uuid4(), source="tests", time=at(recorded))
        return decode(m.headers, m.key, m.value)

    tail = [step("mql", "routed", 2, 2, owner_id="ana", team="emea", due_at=at(17)),
            step("routed", "accepted", 1, 7), step("accepted", "rejected", 5, 9, reason_code="not-a-fit"),
            step("rejected", "nurture", 5, 9)]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("reporting", url, "0004")
        async with engine.begin() as conn:  # what 0004's reporting wrote for the lead's capture, mql and the tail
            await conn.execute(sa.text(
                "INSERT INTO reporting.leads (lead_id, utm_source, furthest, captured_at, mql_at, routed_at, "
                "accepted_at, rejected_at, nurture_at, rejected_reason) VALUES (:lead, 'src-1', 4, :a0, :a1, :a2, "
                ":a1, :a5, :a5, 'not-a-fit')"), {"lead": lead, "a0": at(0), "a1": at(1), "a2": at(2), "a5": at(5)})
            await conn.execute(sa.text(
                "INSERT INTO reporting.touches (lead_id, touch_id, at, utm_source) VALUES (:lead, :lead, :at, "
                "'src-1')"), {"lead": lead, "at": at(0)})
            await conn.execute(sa.text(
                "INSERT INTO reporting.handoffs (lead_id, holder, owner_id, team, due_at) "
                "VALUES (:lead, 0, 'ana', 'emea', :due)"), {"lead": lead, "due": at(17)})
            await conn.execute(sa.text(
                "INSERT INTO reporting.steps (event_id, lead_id, type, at, from_stage, to_stage, by, reason, detail) "
                "VALUES (:id, :lead, 'lead.stage_changed', :at, :frm, :to, 't', 'r', '{}')"),
                [{"id": uuid.uuid4(), "lead": lead, "at": at(0), "frm": None, "to": "captured"},
                 {"id": uuid.uuid4(), "lead": lead, "at": at(1), "frm": "captured", "to": "mql"},
                 *({"id": env.id, "lead": lead, "at": env.data.at, "frm": env.data.from_stage,
                    "to": env.data.to_stage} for env in tail)])
        migrate("reporting", url, "head")
        async with engine.begin() as conn:
            # Asked once a process and then for each batch: an index of those steps alone, not a read of all.
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a handful of rows: any plan would do
            for query in ("SELECT EXISTS (SELECT 1 FROM reporting.steps WHERE recorded_at IS NULL)",
                          "SELECT event_id FROM reporting.steps WHERE event_id = ANY(CAST(:events AS uuid[])) "
                          "AND recorded_at IS NULL"):  # store._ANY_UNRECORDED, store._UNRECORDED
                plan = "\n".join((await conn.execute(sa.text(f"EXPLAIN {query}"),
                                                     {"events": [uuid.uuid4()]} if ":events" in query else {}
                                                     )).scalars())
                assert "steps_unrecorded" in plan, plan

        async def tables() -> dict[str, list[sa.Row]]:
            async with engine.connect() as conn:
                return {t.name: (await conn.execute(sa.select(t).order_by(*t.primary_key.columns))).all()
                        for t in TABLES}

        before = await tables()
        [row] = before["leads"]
        assert (row.latest_from_stage, row.latest_to_stage, row.latest_recorded_at) == ("accepted", "rejected", at(5))
        # Redelivered whole, then an event a batch (the acceptance alone is later, recorded, than the rejection's
        # own time).
        for batch in (tail, *([env] for env in tail)):
            async with SqlUnitOfWork(make_sessionmaker(engine), ReportingStore) as uow:
                await handle_lifecycle_events(uow, batch, Reporting())
                await uow.commit()
            assert await tables() == before
        async with engine.connect() as conn:
            exits, reps = (await funnel(conn, Filters()))["exits"], (await sla(conn, Filters()))["reps"]
    assert exits["rejected"] == 1
    assert [(r["owner_id"], r["met"], r["missed"], r["open"]) for r in reps] == [("ana", 1, 0, 0)]


async def test_hand_offs_kept_before_0011_stay_and_a_second_holder_with_the_same_deadline_gets_a_row_of_its_own(
        stack):
    """Under 0010 reporting held ana's hand-off of a lead routed Friday evening, due Monday at 9:15. Migrated, it
    stays; the lead handed to ben on Saturday, due Monday at 9:15 too, gets ben's own row beside it (one row a lead
    and deadline lost his), and ben's acceptance is his alone."""
    lead = uuid.uuid4()
    friday = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    saturday, monday = friday + timedelta(hours=16), datetime(2026, 11, 23, 9, 15, tzinfo=UTC)

    def recorded(event, at: datetime):  # noqa: ANN001, ANN202
        m = encode(topics.LIFECYCLE, event, event_id=uuid.uuid4(), source="tests", time=at)
        return decode(m.headers, m.key, m.value)

    tail = [recorded(LeadHandedOver(lead_id=lead, from_owner_id="ana", from_team="emea", from_due_at=monday,
                                    owner_id="ben", owner_name="Ben", team="emea", stage="routed", at=saturday,
                                    by="sales-ops", reason="ana left", due_at=monday, grade="A",
                                    attribution=Attribution()), saturday),
            recorded(LeadStageChanged(lead_id=lead, from_stage="routed", to_stage="accepted", at=monday - timedelta(
                minutes=15), by="t", reason="r", attribution=Attribution()), monday - timedelta(minutes=15))]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("reporting", url, "0010")
        async with engine.begin() as conn:  # what 0010's reporting wrote for the lead's routing to ana
            await conn.execute(sa.text(
                "INSERT INTO reporting.leads (lead_id, furthest, routed_at) VALUES (:lead, 3, :friday)"),
                {"lead": lead, "friday": friday})
            await conn.execute(sa.text(
                "INSERT INTO reporting.handoffs (lead_id, owner_id, team, due_at, started_at) "
                "VALUES (:lead, 'ana', 'emea', :monday, :friday)"), {"lead": lead, "monday": monday, "friday": friday})
        migrate("reporting", url, "head")
        async with SqlUnitOfWork(make_sessionmaker(engine), ReportingStore) as uow:
            await handle_lifecycle_events(uow, tail, Reporting())
            await uow.commit()
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT owner_id, due_at, started_at, handed_over_at FROM reporting.handoffs ORDER BY owner_id"))).all()
            reps = (await sla(conn, Filters()))["reps"]
    assert [tuple(r) for r in rows] == [("ana", monday, friday, saturday), ("ben", monday, saturday, None)]
    assert [(r["owner_id"], r["met"], r["handed_over"]) for r in reps] == [("ana", 0, 1), ("ben", 1, 0)]


T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def captured(lead: uuid.UUID, on: int, source: str) -> LeadStageChanged:
    return LeadStageChanged(lead_id=lead, from_stage=None, to_stage="captured", at=day(on), by="capture",
                            reason="r", attribution=Attribution(utm_source=source))


def touched(lead: uuid.UUID, on: int, source: str, first: LeadStageChanged) -> LeadTouched:
    return LeadTouched(lead_id=lead, captured_at=first.at, contact={"email": "p@x.example"},
                       attribution=first.attribution,
                       touch=Touch(touch_id=uuid.uuid4(), at=day(on), attribution=Attribution(utm_source=source)))


#: Columns this release's handler writes that revisions after 0011 add, with their types: lent to a 0011 schema
#: while ``applied_live`` writes as 0011's release did (none of them set then) and taken back before an upgrade.
LATER_COLUMNS = {"leads": {"won_correction": "integer"}}


async def applied_live(engine: AsyncEngine, events: list[Event]) -> None:
    """``events`` applied by this release's handler, each in a batch of its own, recorded when it happened, into a
    0011 schema."""
    await _later_columns(engine, "ADD COLUMN {} {}")
    for event in events:
        at = event.at if isinstance(event, LeadStageChanged | LeadMerged) else event.touch.at
        m = encode(topics.LIFECYCLE, event, event_id=uuid.uuid4(), source="tests", time=at)
        async with SqlUnitOfWork(make_sessionmaker(engine), ReportingStore) as uow:
            await handle_lifecycle_events(uow, [decode(m.headers, m.key, m.value)], Reporting())
            await uow.commit()
    await _later_columns(engine, "DROP COLUMN {}")


async def _later_columns(engine: AsyncEngine, change: str) -> None:
    async with engine.begin() as conn:
        for table, columns in LATER_COLUMNS.items():
            for name, kind in columns.items():
                await conn.execute(sa.text(f"ALTER TABLE reporting.{table} " + change.format(name, kind)))


async def touch_rows(engine: AsyncEngine) -> set[tuple]:
    async with engine.connect() as conn:
        return {tuple(r) for r in await conn.execute(sa.select(touches))}


async def as_0003_left_them(engine: AsyncEngine, captured_before: list[uuid.UUID]) -> None:
    """What 0011's reporting holds when the leads ``captured_before`` 0003 were touched (and merged) after it:
    0003 made touches empty, so their captures are in no touch row (nor copied by a merge)."""
    async with engine.begin() as conn:
        await conn.execute(sa.delete(touches).where(touches.c.touch_id.in_(captured_before)))


async def test_a_lead_captured_before_0003_and_touched_since_is_credited_its_capture_again(stack):
    """0003 made touches empty and filled nothing in: a lead captured before it and touched after held its later
    touches alone, and last and linear credit, which read a lead's own first touch only when it has no touch,
    gave them all of it. One from the fair, touched at a webinar and won, then touched again: linear gave the
    webinar the whole deal. One from the expo, won before its only touch since: last credited that touch, after
    the win. Migrated, each has its capture back, as this release writes it at capture; a lead never touched,
    and one captured after 0003, are as they were."""
    fair, expo, quiet, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    firsts = {lead: captured(lead, on, source) for lead, on, source in
              ((fair, 0, "fair"), (expo, 0, "expo"), (quiet, 0, "print"), (new, 20, "ads"))}

    def won(lead: uuid.UUID, on: int) -> LeadStageChanged:
        return LeadStageChanged(lead_id=lead, from_stage="captured", to_stage="won", at=day(on), by="t", reason="r",
                                attribution=firsts[lead].attribution, amount=Decimal("1000"), currency="EUR")

    events = [*firsts.values(), won(expo, 1), touched(fair, 3, "webinar", firsts[fair]), won(fair, 5),
              touched(expo, 6, "retarget", firsts[expo]), touched(fair, 10, "retarget", firsts[fair]),
              touched(new, 21, "webinar", firsts[new])]

    async def credited() -> dict[tuple[str, str], list[tuple[str, float]]]:
        async with engine.connect() as conn:
            return {(source, model): sorted((r["value"], r["captured"]) for r in (
                await attribution(conn, Filters(source=source), "source", model))["rows"])
                for source in ("fair", "expo") for model in ("last", "linear")}

    async with fresh_database(stack.database_url) as (url, engine):
        migrate("reporting", url, "0011")
        await applied_live(engine, events)
        written = await touch_rows(engine)
        await as_0003_left_them(engine, [fair, expo, quiet])
        before = await credited()
        migrate("reporting", url, "head")
        after = await credited()
        migrated = await touch_rows(engine)
    assert before == {("fair", "last"): [("webinar", 1)], ("fair", "linear"): [("webinar", 1)],
                      ("expo", "last"): [("retarget", 1)], ("expo", "linear"): [("retarget", 1)]}
    assert after == {("fair", "last"): [("webinar", 1)], ("fair", "linear"): [("fair", 0.5), ("webinar", 0.5)],
                     ("expo", "last"): [("expo", 1)], ("expo", "linear"): [("expo", 1)]}
    # Each capture as this release writes it: its id, time and attribution. The untouched lead gets none: it is
    # its own first touch in the reports as before.
    assert migrated == {row for row in written if row[:2] != (quiet, quiet)}


async def test_a_capture_from_before_0003_merged_into_another_lead_is_copied_to_its_survivor_as_the_merge_does(
        stack):
    """Two pairs of leads captured before 0003, each merged after it (merge copies a lead's touches to its
    survivor; the capture was in none). Early, the first of its pair, was merged into late: late's row holds
    early's capture since, its own attribution is not kept, so late gets early's capture back, not its own. Keeper,
    the first of its pair, took joiner in: it gets its own capture back, and joiner's. The leads merged away had no
    touch of their own: they are in no report, and get none."""
    early, late, keeper, joiner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    firsts = {lead: captured(lead, on, source) for lead, on, source in
              ((early, 1, "partner"), (late, 2, "seo"), (keeper, 3, "events"), (joiner, 4, "social"))}

    def merged(lead: uuid.UUID, survivor: uuid.UUID, on: int) -> LeadMerged:
        return LeadMerged(lead_id=lead, survivor_id=survivor, at=day(on), by="anna", reason="same person",
                          attribution=firsts[lead].attribution)

    events = [*firsts.values(), touched(late, 11, "mail", firsts[late]), merged(early, late, 12),
              touched(keeper, 13, "mail", firsts[keeper]), merged(joiner, keeper, 14)]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("reporting", url, "0011")
        await applied_live(engine, events)
        written = await touch_rows(engine)
        await as_0003_left_them(engine, list(firsts))
        migrate("reporting", url, "head")
        migrated = await touch_rows(engine)
    assert {(late, early), (keeper, joiner)} <= {row[:2] for row in written}  # the merges' copies of captures
    assert migrated == {row for row in written if row[:2] not in {(late, late), (early, early), (joiner, joiner)}}


async def test_a_migrate_with_nothing_to_do_does_not_wait_for_a_full_replay_holding_the_lock(stack):
    """A pod's init container migrates on every start: with a full replay running (hours, holding migrate's lock),
    one with nothing to migrate waited for it, and the reporting API with it. One with work still waits."""
    import asyncio

    async with fresh_database(stack.database_url) as (url, engine):
        await asyncio.to_thread(migrate, "reporting", url, "head")
        async with engine.connect() as replaying:
            await replaying.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('leadpipe-migrate:reporting'))"))
            await asyncio.wait_for(asyncio.to_thread(migrate, "reporting", url, "head"), timeout=30)
            await replaying.rollback()
