"""reporting's store on the real Postgres, where a replay writes: a shadow schema."""

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from leadpipe_common.events import (
    Attribution, LeadHandedOver, LeadMerged, LeadQuarantined, LeadSlaBreached, LeadStageChanged, LeadTouched,
    LeadTouchRecorded, Touch,
)
from leadpipe_common.testing.waits import kept_waiting
from reporting.domain import MODELS, LeadFacts, Projection, project
from reporting.replay import missing_from
from reporting.reports import (
    Filters, attribution, breakdown, funnel, rejections, sla, sources, spam_report, timeline, velocity,
)
from reporting.store import SCHEMA, ReportingStore, leads, metadata, save_leads, save_merges


@contextlib.asynccontextmanager
async def shadow_with(db, captured: dict[uuid.UUID, tuple[str, datetime]]) -> AsyncIterator[str]:  # noqa: ANN001
    """A shadow schema of reporting's tables holding each lead ``captured`` (its source and time), dropped after."""
    shadow = f"shadow_{uuid.uuid4().hex[:10]}"
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
        translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
        await translated.run_sync(metadata.create_all)
        await save_leads(translated, [LeadFacts(lead, attribution={"utm_source": source}, furthest=0,
                                                first_at={"captured": at}) for lead, (source, at) in captured.items()])
    try:
        yield shadow
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{shadow}" CASCADE'))


async def merge_in(conn, shadow: str, merges: list[tuple[uuid.UUID, uuid.UUID]],  # noqa: ANN001
                   at: datetime | None = None) -> None:
    """One batch's merges (merged, survivor), made ``at`` (now), saved in ``shadow`` on ``conn``, uncommitted."""
    translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
    p = Projection()
    p.merges += [{"lead_id": merged, "survivor_id": survivor, "at": at or datetime.now(UTC)}
                 for merged, survivor in merges]
    await save_merges(translated, p)


async def leads_in(db, shadow: str) -> dict[uuid.UUID, sa.Row]:  # noqa: ANN001
    async with db.connect() as conn:
        return {r.lead_id: r for r in await conn.execute(sa.text(
            f'SELECT lead_id, merged_into, utm_source, captured_at FROM "{shadow}".leads'))}


def days(*leads: uuid.UUID) -> dict[uuid.UUID, tuple[str, datetime]]:
    """Each lead captured a day after the one before, from a source of its own."""
    return {lead: (f"src-{n}", datetime(2026, 11, n, tzinfo=UTC)) for n, lead in enumerate(leads, start=1)}


async def test_a_merge_replayed_into_a_shadow_schema_is_applied_there_not_to_the_live_tables(db):
    merged, survivor = uuid.uuid4(), uuid.uuid4()
    async with shadow_with(db, days(merged, survivor)) as shadow:
        async with db.begin() as conn:
            await merge_in(conn, shadow, [(merged, survivor)])
        rows = await leads_in(db, shadow)
        async with db.connect() as conn:
            live = (await conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.leads WHERE lead_id = ANY(:ids)"),
                                       {"ids": [merged, survivor]})).scalar()
    assert rows[merged].merged_into == survivor
    assert (rows[survivor].utm_source, rows[survivor].captured_at) == days(merged)[merged]  # the first touch's
    assert live == 0


async def test_what_a_lead_merged_into_a_lead_merged_on_before_brings_reaches_the_end_of_the_chain(db):
    """S into T and T into U were applied a batch before D into S: D's first touch, the earliest, is U's now."""
    s, d, t, u = sorted(uuid.uuid4() for _ in "sdtu")  # S's merge on comes before D's in id order
    async with shadow_with(db, days(d, s, t, u)) as shadow:
        for batch in ([(s, t), (t, u)], [(d, s)]):
            async with db.begin() as conn:
                await merge_in(conn, shadow, batch)
        rows = await leads_in(db, shadow)
    assert (rows[u].utm_source, rows[u].captured_at) == days(d)[d]
    assert [rows[lead].merged_into for lead in (d, s, t, u)] == [s, t, u, None]


async def test_a_merge_into_a_lead_another_process_is_merging_on_reaches_the_end_of_the_chain(db):
    """D into S and S into T applied by two processes at once, each blind to the other's uncommitted merge."""
    d, s, t = (uuid.uuid4() for _ in "dst")
    async with shadow_with(db, days(d, s, t)) as shadow:

        async def merge_d_into_s() -> None:
            async with db.begin() as conn:
                await merge_in(conn, shadow, [(d, s)])

        async with db.begin() as onward:
            await merge_in(onward, shadow, [(s, t)])  # not committed yet
            blind = await kept_waiting(merge_d_into_s(), "the merge into S did not wait for S's own merge being applied")
        await asyncio.wait_for(blind, 10)
        rows = await leads_in(db, shadow)
    assert (rows[t].utm_source, rows[t].captured_at) == days(d)[d]


async def save_in(db, shadow: str, batch: list) -> None:  # noqa: ANN001
    """One batch of ``(event id, recorded at, event)`` projected and saved in ``shadow``, committed."""
    async with db.begin() as conn:
        translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
        await ReportingStore(translated).save(project(batch))


async def test_a_survivor_takes_the_earlier_leads_first_touch_whole_however_the_events_were_batched(db):
    """D (google, nothing else) was captured a day before S (newsletter's spring campaign, the ebook), merged into
    S, then S moved on: S's first touch is D's, with no campaign or offer of S's mixed in, live or replayed."""
    d, s = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    d_touch, s_touch = Attribution(utm_source="google"), Attribution(utm_source="newsletter", utm_campaign="spring",
                                                                     offer="ebook")

    def at(days: int, event):  # noqa: ANN001, ANN202
        return uuid.uuid4(), t0 + timedelta(days=days), event

    d_captured = at(0, LeadStageChanged(lead_id=d, from_stage=None, to_stage="captured", at=t0, by="capture",
                                        reason="r", attribution=d_touch))
    s_captured = at(1, LeadStageChanged(lead_id=s, from_stage=None, to_stage="captured", at=t0 + timedelta(days=1),
                                        by="capture", reason="r", attribution=s_touch))
    merged = at(2, LeadMerged(lead_id=d, survivor_id=s, at=t0 + timedelta(days=2), by="anna", reason="same person",
                              attribution=d_touch))
    s_accepted = at(3, LeadStageChanged(lead_id=s, from_stage="routed", to_stage="accepted",
                                        at=t0 + timedelta(days=3), by="ana", reason="r", attribution=s_touch))
    found = []
    for batches in ([[d_captured, s_captured], [merged], [s_accepted]],  # live: S's next event a batch after
                    [[d_captured, s_captured], [merged, s_accepted]],  # replayed: in one batch
                    [[merged], [s_accepted], [d_captured], [s_captured]]):  # the merge seen before either capture
        async with shadow_with(db, {}) as shadow:
            for batch in batches:
                await save_in(db, shadow, batch)
            async with db.connect() as conn:
                found.append((await conn.execute(sa.text(
                    f'SELECT utm_source, utm_medium, utm_campaign, offer, captured_at FROM "{shadow}".leads '
                    'WHERE lead_id = :s'), {"s": s})).one()._tuple())
    assert found == [("google", None, None, None, t0)] * 3


async def test_a_submission_released_as_a_touch_of_its_persons_open_lead_is_counted_released_not_spam(db):
    """Three submissions taken for bots': one released as a lead of its own, one released when its person had a
    lead open (a touch of that lead, under the submission's id), one kept out."""
    own, touch, bot, open_lead = (uuid.uuid4() for _ in range(4))
    t0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
    demo = Attribution(form_id="demo", utm_source="google")

    def quarantined(lead: uuid.UUID):  # noqa: ANN202
        return uuid.uuid4(), t0, LeadQuarantined(lead_id=lead, received_at=t0, reasons=["token too fresh"],
                                                 form_id="demo", utm_source="google")

    def captured(lead: uuid.UUID, minutes: int):  # noqa: ANN202
        at = t0 + timedelta(minutes=minutes)
        return uuid.uuid4(), at, LeadStageChanged(lead_id=lead, from_stage=None, to_stage="captured", at=at,
                                                  by="capture", reason="r", attribution=demo)

    touched = LeadTouched(lead_id=open_lead, captured_at=t0 - timedelta(days=1), contact={"email": "p@x.example"},
                          attribution=demo, touch=Touch(touch_id=touch, at=t0, attribution=demo))
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, [quarantined(own), quarantined(touch), quarantined(bot),
                                   captured(open_lead, -24 * 60), captured(own, 60),
                                   (uuid.uuid4(), t0 + timedelta(hours=1), touched)])
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            report = await spam_report(translated, Filters())
    assert (report["quarantined"], report["released"], report["spam"]) == (3, 2, 1)


def through(lead: uuid.UUID, *stages: str, source: str | None = "src-1",
            reasons: tuple[str | None, ...] = ("not-a-fit",)) -> list[tuple[uuid.UUID, datetime, LeadStageChanged]]:
    """``lead``'s steps through ``stages``, a minute apart; a rejection's way back to nurture at the same moment,
    as routing records it. Its rejections give ``reasons`` in turn."""
    t0, minute, out, previous = datetime(2026, 11, 2, 9, tzinfo=UTC), 0, [], None
    codes = iter(reasons)
    for stage in stages:
        minute += 0 if (previous, stage) == ("rejected", "nurture") else 1
        at = t0 + timedelta(minutes=minute)
        out.append((uuid.uuid4(), at, LeadStageChanged(
            lead_id=lead, from_stage=previous, to_stage=stage, at=at, by="t", reason="r",
            attribution=Attribution(utm_source=source), reason_code=next(codes) if stage == "rejected" else None)))
        previous = stage
    return out


async def read_after_both_orders(db, events, read):
    """What ``read`` (a report, given a connection to the shadow tables) says after ``events`` were saved in one
    batch, and after they were saved one a batch newest first: the two must agree, whatever came first."""
    found = []
    for batches in ([events], [[e] for e in reversed(events)]):
        async with shadow_with(db, {}) as shadow:
            for batch in batches:
                await save_in(db, shadow, batch)
            async with db.connect() as conn:
                found.append(await read(await conn.execution_options(schema_translate_map={SCHEMA: shadow})))
    return found


async def test_the_funnel_counts_each_lead_out_of_it_where_its_latest_stage_left_it(db):
    """Sales rejected one lead (back in nurture: counted rejected); another, rejected too, was recycled and won;
    one nurtured from the start; one contacted and still with sales; one contacted then lost."""
    won, rejected, nurtured, contacted, lost = (uuid.uuid4() for _ in range(5))
    sales = ("captured", "mql", "routed", "accepted", "contacted")
    events = [*through(won, "captured", "mql", "routed", "rejected", "nurture", "mql", "routed", "accepted",
                       "contacted", "won"),
              *through(rejected, "captured", "mql", "routed", "rejected", "nurture"),
              *through(nurtured, "captured", "nurture"), *through(contacted, *sales), *through(lost, *sales, "lost")]
    async def exits(conn):
        return (await funnel(conn, Filters()))["exits"]

    found = await read_after_both_orders(db, events, exits)
    assert found == [{"nurture": 1, "disqualified": 0, "rejected": 1, "lost": 1}] * 2


async def test_a_won_deal_counts_at_its_latest_correction_in_every_revenue_figure_however_the_events_came(db):
    """Won for 50,000 EUR, a typo: corrected to 5,000 EUR, then to 5,000 USD. Saved in one batch, and one a batch
    newest first (the older correction after the newer, the win last), the revenue is the second correction's under
    every model, and a redelivery of the first changes nothing."""
    from decimal import Decimal

    from leadpipe_common.events import LeadWonAmountCorrected

    lead = uuid.uuid4()
    events = through(lead, "captured", "mql", "routed", "accepted", source="src-won")
    won_at = events[-1][1] + timedelta(minutes=1)
    events.append((uuid.uuid4(), won_at, LeadStageChanged(
        lead_id=lead, from_stage="accepted", to_stage="won", at=won_at, by="ana", reason="r",
        attribution=Attribution(utm_source="src-won"), amount=Decimal("50000"), currency="EUR")))
    for number, currency in ((1, "EUR"), (2, "USD")):
        at = won_at + timedelta(days=number)
        events.append((uuid.uuid4(), at, LeadWonAmountCorrected(
            lead_id=lead, amount=Decimal("5000"), currency=currency, previous_amount=Decimal("50000"),
            previous_currency="EUR", correction=number, at=at, by="ana", reason="typo", owner_id="ana", team="emea",
            grade="A", attribution=Attribution(utm_source="src-won"))))

    async def revenue(conn):
        await ReportingStore(conn).save(project([events[-2]]))  # the first correction delivered again
        credited = {model: (await attribution(conn, Filters(), "source", model))["rows"] for model in MODELS}
        row = (await conn.execute(sa.select(leads.c.won_amount, leads.c.won_currency, leads.c.won_correction)
                                  .where(leads.c.lead_id == lead))).one()._tuple()
        return row, {m: [(r["value"], r["won"], r["won_revenue"]) for r in rows] for m, rows in credited.items()}

    found = await read_after_both_orders(db, events, revenue)
    assert found == [((Decimal("5000.00"), "USD", 2),
                      dict.fromkeys(MODELS, [("src-won", 1, {"USD": "5000.00"})]))] * 2


@pytest.mark.parametrize("order", list(itertools.permutations(("win", "c1", "c2"))), ids="-".join)
async def test_a_win_and_its_two_corrections_saved_one_a_batch_in_any_order_leave_one_row_and_one_revenue(db, order):
    """Routing's two paths may deliver a win and its corrections in any order, each in a batch of its own: a
    correction saved before its win is not undone by the win saved after it. The second correction's amount is in
    force and the win dates the lead won, though the sales tool dated that correction before the win."""
    from decimal import Decimal

    from leadpipe_common.events import LeadWonAmountCorrected

    lead = uuid.uuid4()
    history = through(lead, "captured", "mql", "routed", "accepted", source="src-order")
    won_at = history[-1][1] + timedelta(minutes=10)
    events = {"win": (uuid.uuid4(), won_at, LeadStageChanged(
        lead_id=lead, from_stage="accepted", to_stage="won", at=won_at, by="ana", reason="r",
        attribution=Attribution(utm_source="src-order"), amount=Decimal("50000"), currency="EUR"))}
    for number, currency, dated in ((1, "EUR", won_at + timedelta(days=1)), (2, "USD", won_at - timedelta(minutes=5))):
        events[f"c{number}"] = (uuid.uuid4(), won_at + timedelta(days=number), LeadWonAmountCorrected(
            lead_id=lead, amount=Decimal("5000"), currency=currency, previous_amount=Decimal("50000"),
            previous_currency="EUR", correction=number, at=dated, by="ana", reason="typo", owner_id="ana",
            team="emea", grade="A", attribution=Attribution(utm_source="src-order")))
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, history)
        for name in order:
            await save_in(db, shadow, [events[name]])
        async with db.connect() as conn:
            conn = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            row = (await conn.execute(sa.select(leads.c.won_amount, leads.c.won_currency, leads.c.won_correction,
                                                leads.c.won_at).where(leads.c.lead_id == lead))).one()._tuple()
            credited = [(r["value"], r["won"], r["won_revenue"])
                        for r in (await attribution(conn, Filters(), "source"))["rows"]]
    assert row == (Decimal("5000.00"), "USD", 2, won_at)
    assert credited == [("src-order", 1, {"USD": "5000.00"})]


async def test_a_correction_applied_before_the_win_it_corrects_is_no_revenue_until_the_win_comes(db):
    """routing sends the win and its correction by two paths (its outbox, its consumer): the correction may come
    first. Until the win does, the lead is not won, under any model, and neither is its amount revenue."""
    from decimal import Decimal

    from leadpipe_common.events import LeadWonAmountCorrected

    lead = uuid.uuid4()
    events = through(lead, "captured", "mql", "routed", "accepted", source="src-early")
    at = events[-1][1] + timedelta(minutes=1)
    events.append((uuid.uuid4(), at, LeadWonAmountCorrected(
        lead_id=lead, amount=Decimal("5000"), currency="EUR", previous_amount=Decimal("50000"),
        previous_currency="EUR", correction=1, at=at, by="ana", reason="typo", owner_id="ana", team="emea",
        grade="A", attribution=Attribution(utm_source="src-early"))))

    async def revenue(conn):
        return {model: [(r["value"], r["won"], r["won_revenue"])
                        for r in (await attribution(conn, Filters(), "source", model))["rows"]] for model in MODELS}

    found = await read_after_both_orders(db, events, revenue)
    assert found == [dict.fromkeys(MODELS, [("src-early", 0, {})])] * 2


async def test_a_lead_scoring_nurtured_and_lifted_to_mql_in_one_batch_is_out_of_the_funnel_nowhere(db):
    """Scoring's first score put the lead in nurture and a touch in the same batch lifted it to MQL: both steps
    carry one time, recorded and own. It waits for routing, in no exit, and its timeline reads in the order it
    moved, whichever step the store kept first."""
    lead, t0 = uuid.uuid4(), datetime(2026, 11, 2, 9, tzinfo=UTC)
    events = [*through(lead, "captured", "enriched")]
    scored = t0 + timedelta(minutes=5)
    events += [(uuid.uuid4(), scored, LeadStageChanged(lead_id=lead, from_stage=frm, to_stage=to, at=scored,
                                                       by="scoring", reason="r", attribution=Attribution()))
               for frm, to in (("enriched", "nurture"), ("nurture", "mql"))]

    async def where(conn):
        moves = [(s["from_stage"], s["to_stage"]) for s in (await timeline(conn, lead))["steps"]]
        return (await funnel(conn, Filters()))["exits"], moves[-2:]

    found = await read_after_both_orders(db, events, where)
    assert found == [({"nurture": 0, "disqualified": 0, "rejected": 0, "lost": 0},
                      [("enriched", "nurture"), ("nurture", "mql")])] * 2


async def test_attribution_counts_as_captured_the_leads_the_funnel_does_under_every_model(db):
    """Reporting never saw two leads' captures (dead-lettered): all it saw of one was its way to nurture, which
    the funnel counts nowhere and "Won by campaign" counted captured, so their close rates differed; the other
    reached mql, a funnel stage, and is captured in both. A third was captured and won."""
    won, nurtured, scored = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [*through(won, "captured", "mql", "routed", "accepted", "won", source="src-won"),
              *through(nurtured, "captured", "nurture", source="src-nurtured")[1:],
              *through(scored, "captured", "mql", source="src-scored")[1:]]

    async def captured(conn):
        counted = await funnel(conn, Filters())
        stages = {s["stage"]: s["count"] for s in counted["stages"]}
        credited = {model: (await attribution(conn, Filters(), "source", model))["rows"] for model in MODELS}
        by_source = sorted((r["value"], r["captured"]) for r in (await breakdown(conn, Filters(), "source"))["rows"])
        listed, _ = await sources(conn, Filters(), 10)
        return (stages["captured"], counted["exits"]["nurture"], by_source, sorted(listed),
                {m: sorted((r["value"], r["captured"]) for r in rows) for m, rows in credited.items()})

    found = await read_after_both_orders(db, events, captured)
    # The funnel's exits, its breakdown and the dashboard's sources counted the lead its stages do not.
    assert found == [(2, 0, [("src-scored", 1), ("src-won", 1)], ["src-scored", "src-won"],
                      dict.fromkeys(MODELS, [("src-scored", 1), ("src-won", 1)]))] * 2


async def test_a_source_picks_the_leads_first_touched_from_it_under_every_model_whatever_touch_is_credited(db):
    """One lead came via google and back via bing before it was won; another via bing, then google. Under last touch
    google's lead closed through bing, and bing's is google's; asking for google picks google's lead alone."""
    via_google, via_bing = uuid.uuid4(), uuid.uuid4()
    events = []
    for lead, first, then in ((via_google, "google", "bing"), (via_bing, "bing", "google")):
        steps = through(lead, "captured", "mql", "routed", "accepted", "won", source=first)
        back = steps[0][1] + timedelta(seconds=90)  # before its routing, long before the win
        events += [*steps, (uuid.uuid4(), back, LeadTouchRecorded(
            lead_id=lead, attribution=Attribution(utm_source=first),
            touch=Touch(touch_id=uuid.uuid4(), at=back, attribution=Attribution(utm_source=then))))]

    async def credited(conn):
        return {(source, model): sorted((r["value"], r["captured"], r["won"]) for r in (
                    await attribution(conn, Filters(source=source), "source", model))["rows"])
                for source in ("google", "bing") for model in MODELS}

    found = await read_after_both_orders(db, events, credited)
    assert found[0] == found[1]
    assert found[0] == {
        ("google", "first"): [("google", 1, 1)], ("google", "last"): [("bing", 1, 1)],
        ("google", "linear"): [("bing", 0.5, 0.5), ("google", 0.5, 0.5)],
        ("bing", "first"): [("bing", 1, 1)], ("bing", "last"): [("google", 1, 1)],
        ("bing", "linear"): [("bing", 0.5, 0.5), ("google", 0.5, 0.5)]}


async def test_leads_without_a_source_and_those_whose_source_reads_none_are_one_row_under_every_model(db):
    """Google Analytics writes a direct visit's medium "(none)", and forms pass it on: counted apart from the
    leads that gave none, they were two rows named "(none)"."""
    events = [*through(uuid.uuid4(), "captured", "mql", source=None), *through(uuid.uuid4(), "captured", source=None),
              *through(uuid.uuid4(), "captured", source="(none)"), *through(uuid.uuid4(), "captured", source="ads")]

    async def rows(conn):
        credited = {model: (await attribution(conn, Filters(), "source", model))["rows"] for model in MODELS}
        by_source = (await breakdown(conn, Filters(), "source"))["rows"]
        return (sorted((r["value"], r["captured"]) for r in by_source),
                {m: sorted((r["value"], r["captured"]) for r in found) for m, found in credited.items()})

    found = await read_after_both_orders(db, events, rows)
    expected = [("(none)", 3), ("ads", 1)]
    assert found == [(expected, dict.fromkeys(MODELS, expected))] * 2

    async def picked(conn):  # the row's source, picked in the dashboard's list, is those three leads
        listed, _ = await sources(conn, Filters(), 5)
        return listed, (await funnel(conn, Filters(source="(none)")))["stages"][0]["count"]

    assert await read_after_both_orders(db, events, picked) == [(["(none)", "ads"], 3)] * 2


async def test_the_sources_listed_are_those_with_the_most_leads_in_the_range_whatever_source_is_picked(db):
    """A bot posted the most leads, under one source, a week after the range."""
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    captured = {uuid.uuid4(): (source, t0 + timedelta(days=day))
                for source, day in [*[("mail", 0)] * 3, *[("ads", 0)] * 2, ("seo", 0), *[("bot-1", 7)] * 4]}
    in_range = Filters(since=t0, until=t0 + timedelta(days=1), source="seo")
    async with shadow_with(db, captured) as shadow, db.connect() as conn:
        translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
        found = [await sources(translated, in_range, limit) for limit in (2, 3)]
    assert found == [(["mail", "ads"], True), (["mail", "ads", "seo"], False)]


async def test_every_rejection_is_reported_with_its_reason_of_a_lead_recycled_or_merged_away_since_too(db):
    """Sales rejected a lead for not fitting, a touch recycled it, and sales rejected it again for its budget;
    another, rejected for its timing, was merged into a lead sales never rejected."""
    recycled, merged, survivor = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 11, 3, tzinfo=UTC)
    events = [*through(recycled, "captured", "mql", "routed", "rejected", "nurture", "mql", "routed", "rejected",
                       "nurture", source="src-a", reasons=("not-a-fit", "no-budget")),
              *through(merged, "captured", "mql", "routed", "rejected", "nurture", source="src-b",
                       reasons=("timing",)),
              *through(survivor, "captured", "mql", "routed", source="src-c"),
              (uuid.uuid4(), at, LeadMerged(lead_id=merged, survivor_id=survivor, at=at, by="anna",
                                            reason="same person", attribution=Attribution(utm_source="src-b")))]
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, events)
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            report = await rejections(translated, Filters())
            kept = (await conn.execute(sa.text(f'SELECT rejected_reason FROM "{shadow}".leads WHERE lead_id = :s'),
                                       {"s": survivor})).scalar()
    assert sorted((r["source"], r["reason_code"], r["rejections"], r["leads"]) for r in report["rows"]) == [
        ("src-a", "no-budget", 1, 1), ("src-a", "not-a-fit", 1, 1), ("src-b", "timing", 1, 1)]
    assert kept == "timing"  # the survivor's row carries the merged lead's rejection, its reason too


async def test_a_rejection_and_a_quarantined_submission_that_gave_nothing_are_reported_under_none(db):
    """The SQL labels a missing value "(none)" (``_labelled``), the only place that does: no row of the
    rejections or the spam report reaches a reader as null."""
    t0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
    bot = uuid.uuid4(), t0, LeadQuarantined(lead_id=uuid.uuid4(), received_at=t0, reasons=["token too fresh"],
                                            form_id=None, utm_source=None)
    events = [*through(uuid.uuid4(), "captured", "mql", "routed", "rejected", "nurture", source=None,
                       reasons=(None,)), bot]
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, events)
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            rejected = (await rejections(translated, Filters()))["rows"]
            quarantined = (await spam_report(translated, Filters()))["rows"]
    assert [(r["source"], r["reason_code"], r["rejections"]) for r in rejected] == [("(none)", "(none)", 1)]
    assert [(r["form_id"], r["source"], r["spam"]) for r in quarantined] == [("(none)", "(none)", 1)]


async def test_a_report_grouped_by_free_text_answers_its_first_rows_and_counts_the_rest_in_its_totals(db):
    """A bot posting a new utm_source each time made a row a source in every report grouped by it, by the million:
    an answer no process could hold. Each answers its first ``limit`` rows, in its order, and how many it left
    out; the spam totals and the revenue won count the rows left out too."""
    from decimal import Decimal

    sources = [f"src-{n}" for n in range(5)]
    events, t0 = [], datetime(2026, 11, 23, 9, tzinfo=UTC)
    for n, source in enumerate(sources):
        lead = uuid.uuid4()
        # src-0 the most of everything, src-4 the least: the order the rows come in.
        for _ in range(5 - n):
            events += through(uuid.uuid4(), "captured", "mql", "routed", "rejected", "nurture", source=source)
        events += through(lead, "captured", "mql", "routed", "accepted", source=source)
        won_at = events[-1][1] + timedelta(minutes=1)
        events.append((uuid.uuid4(), won_at, LeadStageChanged(
            lead_id=lead, from_stage="accepted", to_stage="won", at=won_at, by="ana", reason="r",
            attribution=Attribution(utm_source=source), amount=Decimal(100 * (5 - n)), currency="EUR")))
        events += [(uuid.uuid4(), t0, LeadQuarantined(lead_id=uuid.uuid4(), received_at=t0, reasons=["bot"],
                                                      form_id="demo", utm_source=source)) for _ in range(5 - n)]
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, events)
        async with db.connect() as conn:
            conn = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            by_source = await breakdown(conn, Filters(), "source", 2)
            credited = {m: await attribution(conn, Filters(), "source", m, 2) for m in MODELS}
            rejected = await rejections(conn, Filters(), 2)
            spam = await spam_report(conn, Filters(), 2)
            everything = await spam_report(conn, Filters(), 5)
    assert [(r["value"], r["captured"]) for r in by_source["rows"]] == [("src-0", 6), ("src-1", 5)]
    assert by_source["omitted"] == 3
    for model, report in credited.items():
        assert [r["value"] for r in report["rows"]] == ["src-0", "src-1"] and report["omitted"] == 3, model
        assert report["won_revenue"] == {"EUR": "1500.00"}, model  # 500 + 400 + 300 + 200 + 100
    assert [(r["source"], r["rejections"]) for r in rejected["rows"]] == [("src-0", 5), ("src-1", 4)]
    assert rejected["omitted"] == 3
    assert [(r["source"], r["spam"]) for r in spam["rows"]] == [("src-0", 5), ("src-1", 4)] and spam["omitted"] == 3
    assert (spam["quarantined"], spam["spam"]) == (everything["quarantined"], everything["spam"]) == (15, 15)
    assert everything["omitted"] == 0 and len(everything["rows"]) == 5


async def test_an_acceptance_a_sales_tool_dates_before_the_routing_counts_as_at_once_however_the_events_came(db):
    """A CRM posted {"outcome": "accepted", "at": "2020-01-01T00:00Z"} for a lead routed ten minutes after its
    capture and won an hour after that: no interval is negative, and the win is timed from the routing, not from
    2020, applied in order or newest first."""
    lead, t0 = uuid.uuid4(), datetime(2026, 11, 2, 9, tzinfo=UTC)
    dated = {"captured": t0, "routed": t0 + timedelta(minutes=10), "accepted": datetime(2020, 1, 1, tzinfo=UTC),
             "won": t0 + timedelta(minutes=70)}
    events, previous = [], None
    for stage, at in dated.items():
        events.append((uuid.uuid4(), t0 + timedelta(minutes=len(events)), LeadStageChanged(
            lead_id=lead, from_stage=previous, to_stage=stage, at=at, by="t", reason="r",
            attribution=Attribution(utm_source="crm"))))
        previous = stage
    async def intervals(conn):
        return {r["interval"]: (r["leads"], r["p50_seconds"], r["p90_seconds"])
                for r in (await velocity(conn, Filters()))["rows"]}

    found = await read_after_both_orders(db, events, intervals)
    assert found == [{"capture_to_routed": (1, 600.0, 600.0), "routed_to_accepted": (1, 0.0, 0.0),
                      "accepted_to_won": (1, 3600.0, 3600.0)}] * 2


def test_merges_are_applied_along_their_chain():
    from reporting.store import chain_order  # (here: the module's other tests stand without it)

    d, s, t, u, x, y = (uuid.UUID(int=n) for n in (5, 1, 3, 2, 4, 6))
    assert chain_order({(t, u), (s, t), (d, s), (x, y)}) == [(x, y), (d, s), (s, t), (t, u)]


def recycled_lead(lead: uuid.UUID) -> list[tuple[uuid.UUID, datetime, LeadStageChanged]]:
    """Routed to ana, who accepted (her tool dates it a minute before the hand-off: its clock is behind) then
    rejected it; a touch sent it back and ben, routed it three days later, has not answered yet."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def step(to: str, frm: str | None, minutes: int, recorded: int | None = None, **kw: object):  # noqa: ANN202
        return (uuid.uuid4(), t0 + timedelta(minutes=recorded if recorded is not None else minutes),
                LeadStageChanged(lead_id=lead, from_stage=frm, to_stage=to, at=t0 + timedelta(minutes=minutes),
                                 by="t", reason="r", attribution=Attribution(utm_source="src-1"), **kw))

    day = 24 * 60
    return [step("captured", None, 0), step("mql", "captured", 1),
            step("routed", "mql", 2, owner_id="ana", team="emea", due_at=t0 + timedelta(minutes=17)),
            step("accepted", "routed", 1, recorded=7), step("rejected", "accepted", 9, reason_code="not-a-fit"),
            step("nurture", "rejected", 9), step("mql", "nurture", 3 * day),
            step("routed", "mql", 3 * day + 1, owner_id="ben", team="emea", due_at=t0 + timedelta(days=3, minutes=16))]


async def test_each_hand_off_of_a_recycled_lead_is_judged_on_its_own_however_the_events_were_batched(db):
    lead = uuid.uuid4()
    events = recycled_lead(lead)
    found = []
    for batches in ([events], [[e] for e in events], [events[:3], events[3:7], events[7:]]):
        async with shadow_with(db, days(lead)) as shadow:
            for batch in batches:
                async with db.begin() as conn:
                    translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
                    await ReportingStore(translated).save(project(batch))
            async with db.connect() as conn:
                translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
                report = await sla(translated, Filters())
                rows = (await conn.execute(sa.text(f'SELECT owner_id, due_at, started_at, breached_at '
                                                   f'FROM "{shadow}".handoffs ORDER BY due_at'))).all()
        found.append((rows, report["reps"]))
    assert found[0] == found[1] == found[2]
    rows, reps = found[0]
    assert [r.owner_id for r in rows] == ["ana", "ben"]
    assert [(r["owner_id"], r["met"], r["missed"], r["open"]) for r in reps] == [("ana", 1, 0, 0), ("ben", 0, 0, 1)]


def handed_over_lead(lead: uuid.UUID, ben_answers_after: int | None) -> list[tuple[uuid.UUID, datetime, Any]]:
    """Routed to ana at 9:03, due 9:18; a manager hands it to ben at 9:05, due 9:20 (or, with ``ben_answers_after``
    None, at 9:25, after ana's deadline); ben accepts that many minutes after 9:00."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    handed_at = 5 if ben_answers_after is not None else 25
    routed = LeadStageChanged(lead_id=lead, from_stage="mql", to_stage="routed", at=at(3), by="t", reason="r",
                              attribution=Attribution(), owner_id="ana", team="emea", due_at=at(18))
    handed = LeadHandedOver(lead_id=lead, from_owner_id="ana", from_team="emea", from_due_at=at(18), owner_id="ben",
                            owner_name="Ben", team="emea", stage="routed", at=at(handed_at), by="sales-ops",
                            reason="ana left", due_at=at(handed_at + 15), grade="A", attribution=Attribution())
    events = [(uuid.uuid4(), at(3), routed), (uuid.uuid4(), at(handed_at), handed)]
    if ben_answers_after is not None:
        accepted = LeadStageChanged(lead_id=lead, from_stage="routed", to_stage="accepted", at=at(ben_answers_after),
                                    by="t", reason="r", attribution=Attribution())
        events.append((uuid.uuid4(), at(ben_answers_after), accepted))
    return events


@pytest.mark.parametrize(("ben_answers_after", "expected"), [
    (19, [("ana", 0, 0, 0, 1), ("ben", 1, 0, 0, 0)]),  # after ana's deadline, before his own
    (10, [("ana", 0, 0, 0, 1), ("ben", 1, 0, 0, 0)]),  # one answer, one hand-off met by it
    (None, [("ana", 0, 1, 0, 0), ("ben", 0, 0, 1, 0)]),  # handed over unanswered after ana's deadline
])
async def test_a_hand_off_a_manager_handed_over_before_its_deadline_is_neither_met_nor_missed_however_batched(
        db, ben_answers_after, expected):
    """Ana was handed over at 9:05, her deadline 9:18: Ben's answer is his, not hers, whether he gave it after 9:18
    (it counted as her miss) or before (it counted as her hand-off met too)."""
    lead = uuid.uuid4()
    events = handed_over_lead(lead, ben_answers_after)
    found = await read_after_both_orders(db, events, lambda conn: sla(conn, Filters()))
    assert found[0] == found[1]
    assert [(r["owner_id"], r["met"], r["missed"], r["open"], r["handed_over"]) for r in found[0]["reps"]] == expected


async def test_two_holders_of_a_lead_with_one_deadline_are_each_judged_on_their_own_however_batched(db):
    """Routed to ana on Friday evening, due Monday at 9:15; handed to ben on Saturday, due Monday at 9:15 too; ben
    accepts on Monday at 9:00. One row a lead and deadline kept ana's live (ben's answer judged hers) and ben's in
    a replay (one batch)."""
    lead = uuid.uuid4()
    friday = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    saturday, monday = friday + timedelta(hours=16), datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
    events = [
        (uuid.uuid4(), friday, LeadStageChanged(lead_id=lead, from_stage="mql", to_stage="routed", at=friday, by="t",
                                                reason="r", attribution=Attribution(), owner_id="ana", team="emea",
                                                due_at=monday)),
        (uuid.uuid4(), saturday, LeadHandedOver(lead_id=lead, from_owner_id="ana", from_team="emea",
                                                from_due_at=monday, owner_id="ben", owner_name="Ben", team="emea",
                                                stage="routed", at=saturday, by="sales-ops", reason="ana left",
                                                due_at=monday, grade="A", attribution=Attribution())),
        (uuid.uuid4(), monday - timedelta(minutes=15), LeadStageChanged(
            lead_id=lead, from_stage="routed", to_stage="accepted", at=monday - timedelta(minutes=15), by="t",
            reason="r", attribution=Attribution())),
    ]
    found = await read_after_both_orders(db, events, lambda conn: sla(conn, Filters()))
    assert found[0] == found[1]
    assert [(r["owner_id"], r["met"], r["missed"], r["open"], r["handed_over"]) for r in found[0]["reps"]] == [
        ("ana", 0, 0, 0, 1), ("ben", 1, 0, 0, 0)]


async def test_a_hand_off_an_overflow_team_got_on_a_breach_is_that_teams_however_batched(db):
    """ana (emea) missed her deadline; routing gave the lead to ben, of dach (emea's overflow), who missed his: emea
    and dach missed one each. A v1 breach did not name ben's team (its guess: emea), his own breach does: the
    live tables kept the team the hand-off was first saved with (batch by batch, the guess), a replay's batch the
    last; now both keep one by one rule."""
    lead = uuid.uuid4()
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    ana_due, ben_due = t0 + timedelta(minutes=15), t0 + timedelta(minutes=30)

    def breach(owner: str, team: str, due: datetime, n: int, **kw: Any) -> tuple[uuid.UUID, datetime, LeadSlaBreached]:
        return (uuid.uuid4(), due, LeadSlaBreached(lead_id=lead, owner_id=owner, team=team, grade="A", due_at=due,
                                                   breached_at=due, breach=n, attribution=Attribution(), **kw))

    routed = (uuid.uuid4(), t0, LeadStageChanged(lead_id=lead, from_stage="mql", to_stage="routed", at=t0, by="t",
                                                 reason="r", attribution=Attribution(), owner_id="ana", team="emea",
                                                 due_at=ana_due))
    his = breach("ben", "dach", ben_due, 2, action="escalated", next_owner_id="emea", next_owner_name="EMEA queue",
                 next_due_at=None)
    to_ben = {"action": "reassigned", "next_owner_id": "ben", "next_owner_name": "Ben", "next_due_at": ben_due}
    for hers in (breach("ana", "emea", ana_due, 1, next_team="dach", **to_ben),
                 breach("ana", "emea", ana_due, 1, **to_ben)):
        events = [routed, hers, his]
        found = []
        for batches in ([events], [[e] for e in events], [[e] for e in reversed(events)]):
            async with shadow_with(db, {}) as shadow:
                for batch in batches:
                    await save_in(db, shadow, batch)
                async with db.connect() as conn:
                    report = await sla(await conn.execution_options(schema_translate_map={SCHEMA: shadow}), Filters())
                found.append([(t["team"], t["missed"]) for t in report["teams"]])
        assert found == [[("dach", 1), ("emea", 1)]] * 3
    # Nothing later names ben's team (he has yet to answer): only the breach's next_team files his hand-off under
    # dach, where a v1 breach's guess is emea, the team of the rep who missed.
    for hers, team in ((breach("ana", "emea", ana_due, 1, next_team="dach", **to_ben), "dach"),
                       (breach("ana", "emea", ana_due, 1, **to_ben), "emea")):
        async with shadow_with(db, {}) as shadow:
            await save_in(db, shadow, [routed, hers])
            async with db.connect() as conn:
                report = await sla(await conn.execution_options(schema_translate_map={SCHEMA: shadow}), Filters())
        assert sorted((t["team"], t["missed"], t["open"]) for t in report["teams"]) == sorted(
            {("emea", 1, 0), (team, 0, 1)} if team != "emea" else {("emea", 1, 1)})


async def test_a_deadline_missed_stays_missed_when_the_lead_is_merged_into_another(db):
    """ana missed her deadline on D, then D was merged into S: the miss is still hers; ben's hand-off of a lead
    merged away while open, before its deadline, is counted nowhere (nobody will answer it)."""
    d, s, e = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def routed(lead: uuid.UUID, owner: str) -> tuple[uuid.UUID, datetime, LeadStageChanged]:
        return (uuid.uuid4(), t0, LeadStageChanged(lead_id=lead, from_stage="mql", to_stage="routed", at=t0, by="t",
                                                    reason="r", attribution=Attribution(), owner_id=owner,
                                                    team="emea", due_at=t0 + timedelta(minutes=15)))

    breach = LeadSlaBreached(lead_id=d, owner_id="ana", team="emea", grade="A", due_at=t0 + timedelta(minutes=15),
                             breached_at=t0 + timedelta(minutes=15), breach=1, action="escalated",
                             next_owner_id="emea", next_owner_name="EMEA queue", next_due_at=None,
                             attribution=Attribution())
    async with shadow_with(db, days(d, s, e)) as shadow:
        async with db.begin() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            await ReportingStore(translated).save(project([routed(d, "ana"), routed(e, "ben"),
                                                           (uuid.uuid4(), t0 + timedelta(minutes=15), breach)]))
            await merge_in(conn, shadow, [(d, s), (e, s)], at=t0 + timedelta(minutes=10))
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            reps = (await sla(translated, Filters()))["reps"]
    assert [(r["owner_id"], r["met"], r["missed"], r["open"]) for r in reps] == [("ana", 0, 1, 0)]


async def test_a_hand_off_its_lead_was_merged_away_unanswered_after_its_deadline_is_missed_however_batched(db):
    """All due at 9:15, none breached yet: D (ana's) merged at 9:20, past her deadline: missed, as a hand-over then
    would be. E (ben's) merged at 9:10: open when it closed, left out. F, handed from cat to dan (due 9:20) at
    9:05, merged at 9:30: cat's was handed over, dan's missed."""
    d, e, f, s = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    def routed(lead: uuid.UUID, owner: str) -> tuple[uuid.UUID, datetime, LeadStageChanged]:
        return (uuid.uuid4(), t0, LeadStageChanged(lead_id=lead, from_stage="mql", to_stage="routed", at=t0, by="t",
                                                    reason="r", attribution=Attribution(), owner_id=owner,
                                                    team="emea", due_at=at(15)))

    def merged(lead: uuid.UUID, minutes: int) -> tuple[uuid.UUID, datetime, LeadMerged]:
        return (uuid.uuid4(), at(minutes), LeadMerged(lead_id=lead, survivor_id=s, at=at(minutes), by="ana",
                                                       reason="same person", attribution=Attribution()))

    handed = LeadHandedOver(lead_id=f, from_owner_id="cat", from_team="emea", from_due_at=at(15), owner_id="dan",
                            owner_name="Dan", team="emea", stage="routed", at=at(5), by="sales-ops",
                            reason="cat left", due_at=at(20), grade="A", attribution=Attribution())
    events = [routed(d, "ana"), merged(d, 20), routed(e, "ben"), merged(e, 10), routed(f, "cat"),
              (uuid.uuid4(), at(5), handed), merged(f, 30)]
    found = await read_after_both_orders(db, events, lambda conn: sla(conn, Filters()))
    assert found[0] == found[1]
    assert [(r["owner_id"], r["met"], r["missed"], r["open"], r["handed_over"]) for r in found[0]["reps"]] == [
        ("ana", 0, 1, 0, 0), ("cat", 0, 0, 0, 1), ("dan", 0, 1, 0, 0)]


async def test_streamed_touches_are_credited_to_their_lead_across_fetches():
    """Rows come a thousand to a fetch: a lead whose touches straddle two fetches is still one lead."""
    from types import SimpleNamespace

    from reporting.reports import _by_lead

    a, b = uuid.UUID(int=1), uuid.UUID(int=2)
    won = datetime(2026, 11, 9, tzinfo=UTC)

    def row(lead: uuid.UUID, day: int, value: str) -> SimpleNamespace:
        return SimpleNamespace(lead_id=lead, at=datetime(2026, 11, day, tzinfo=UTC), value=value,
                               won_at=won if lead == a else None, won_amount=None, won_currency=None)

    class Fetched:
        async def partitions(self, size: int):  # noqa: ANN202
            for part in ([row(a, 1, "ads"), row(a, 2, "seo")], [row(a, 3, "mail"), row(b, 1, "ads")],
                         [row(b, 2, "seo")]):
                yield part

    leads = [lead async for lead in _by_lead(Fetched())]
    assert [([v for _, v in lead.touches], lead.won_at) for lead in leads] == [
        (["ads", "seo", "mail"], won), (["ads", "seo"], None)]


async def test_leads_the_live_tables_hold_and_a_rebuild_lacks_count_when_their_events_were_recorded_before_the_scan(db):
    """What a replay checks before its swap: a stream that lost events and started again from offset 0 (the
    embedded broker restarted) rebuilds tables without the leads of what it lost. A lead whose events were
    recorded after the scan began may still be on its way to the rebuilt tables, however long ago it was
    captured (a submission released from quarantine during the rebuild), and does not count."""
    kept, lost, lost_earlier, released = (uuid.uuid4() for _ in range(4))
    t = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def captured(lead: uuid.UUID, at: datetime, recorded: datetime):  # noqa: ANN202
        return uuid.uuid4(), recorded, LeadStageChanged(lead_id=lead, from_stage=None, to_stage="captured", at=at,
                                                        by="t", reason="r", attribution=Attribution())

    kept_step = captured(kept, t, t)
    live_steps = [kept_step, captured(lost, t + timedelta(hours=1), t + timedelta(hours=1)),
                  captured(lost_earlier, t - timedelta(days=3), t - timedelta(days=3)),
                  captured(released, t - timedelta(days=3), t + timedelta(hours=3))]
    async with shadow_with(db, {}) as live, shadow_with(db, {}) as rebuilt:
        await save_in(db, live, live_steps)
        await save_in(db, rebuilt, [kept_step])
        async with db.connect() as conn:
            found = await missing_from(conn, live, rebuilt, before=t + timedelta(hours=2))
            nothing_lost = await missing_from(conn, rebuilt, live, before=t + timedelta(hours=2))
    assert found == (2, t - timedelta(days=3))
    assert nothing_lost == (0, None)


async def test_every_report_answers_as_its_api_model_describes_it_key_by_key(db):
    """The OpenAPI document's models (``reporting.answers``) are read from the answers the SQL builds: each key a
    report gives is one its model names, each value of the shape it says, and every key it names is there (but a
    timeline's, which are each step's own)."""
    from decimal import Decimal

    from leadpipe_common.events import LeadWonAmountCorrected
    from reporting import answers

    won, rejected, t0 = uuid.uuid4(), uuid.uuid4(), datetime(2026, 11, 2, 9, tzinfo=UTC)
    source = Attribution(utm_source="src-models", utm_campaign="spring")
    events = [*through(won, "captured", "mql", source="src-models"),
              *through(rejected, "captured", "mql", "routed", "rejected", "nurture", source=None)]
    for minutes, frm, to, kw in ((5, "mql", "routed", {"owner_id": "ana", "team": "emea",
                                                       "due_at": t0 + timedelta(minutes=20)}),
                                 (8, "routed", "accepted", {}),
                                 (60, "accepted", "won", {"amount": Decimal("900"), "currency": "EUR"})):
        events.append((uuid.uuid4(), t0 + timedelta(minutes=minutes), LeadStageChanged(
            lead_id=won, from_stage=frm, to_stage=to, at=t0 + timedelta(minutes=minutes), by="ana", reason="r",
            attribution=source, **kw)))
    touch = Touch(touch_id=uuid.uuid4(), at=t0 + timedelta(minutes=30), attribution=Attribution(utm_source="bing"))
    events += [(uuid.uuid4(), touch.at, LeadTouchRecorded(lead_id=won, attribution=source, touch=touch)),
               (uuid.uuid4(), t0 + timedelta(minutes=70), LeadWonAmountCorrected(
                   lead_id=won, amount=Decimal("90"), currency="EUR", previous_amount=Decimal("900"),
                   previous_currency="EUR", correction=1, at=t0 + timedelta(minutes=70), by="ana", reason="typo",
                   owner_id="ana", team="emea", grade="A", attribution=source)),
               (uuid.uuid4(), t0, LeadQuarantined(lead_id=uuid.uuid4(), received_at=t0, reasons=["token too fresh"],
                                                  form_id="demo", utm_source="src-models"))]
    cohort = Filters(since=t0 - timedelta(days=1), until=t0 + timedelta(days=1))
    async with shadow_with(db, {}) as shadow:
        await save_in(db, shadow, events)
        async with db.connect() as conn:
            conn = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            found = [(answers.Funnel, await funnel(conn, cohort)),
                     (answers.Breakdown, await breakdown(conn, cohort, "source")),
                     *[(answers.AttributionReport, await attribution(conn, cohort, "source", m)) for m in MODELS],
                     (answers.Velocity, await velocity(conn, cohort)), (answers.Sla, await sla(conn, cohort)),
                     (answers.Rejections, await rejections(conn, cohort)),
                     (answers.Spam, await spam_report(conn, cohort)), (answers.Timeline, await timeline(conn, won))]
    for model, body in found:
        assert model.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True) == body, model
        assert body.get("rows", True) and body.get("steps", True)  # rows to read, not an empty list
    assert not any(step.model_extra for step in answers.Timeline.model_validate(found[-1][1]).steps)


async def test_a_full_replay_is_refused_while_a_migrate_of_reportings_schema_holds_its_lock(db, monkeypatch):
    """The lock a replay takes is the one ``migrate`` holds (``migrations.run_env``), by Postgres's own hash of the
    same key: a stand-in database could not tell a key or a hash that differs."""
    from aiokafka import TopicPartition

    from leadpipe_common.testing.fakes import TopicScanOf
    from reporting import replay as replay_module

    class Kept:
        """The test's engine, not disposed of by the replay."""

        def __getattr__(self, name: str) -> Any:
            return getattr(db, name)

        async def dispose(self) -> None:
            pass

    monkeypatch.setattr(replay_module, "make_engine", lambda settings: Kept())
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition("leads.lifecycle", 0): 0}))
    async with db.connect() as migrating:
        await migrating.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                {"key": f"leadpipe-migrate:{SCHEMA}"})
        with pytest.raises(replay_module.ReplayBusy):
            # Not forced: were the lock not found held, the empty rebuild would be refused (LostHistory), never
            # swapped in for the tables the other tests' leads are in.
            await replay_module.replay(object())
        await migrating.rollback()
    async with db.connect() as conn:
        shadow = (await conn.execute(sa.text("SELECT to_regnamespace('reporting_replay')"))).scalar_one()
        free = (await conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
                                   {"key": f"leadpipe-migrate:{SCHEMA}"})).scalar_one()
        await conn.rollback()
    assert shadow is None and free  # nothing written, and the lock not left held
