"""reporting's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-reporting migrate`` as an operator runs it, in a database of their own."""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadpipe_common.testing.migrations import fresh_database, migrate

from reporting.reports import Filters, funnel


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
