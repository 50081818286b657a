"""reporting's store on the real Postgres, where a replay writes: a shadow schema."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import sqlalchemy as sa

from reporting.domain import LeadFacts, Projection
from reporting.store import SCHEMA, metadata, save_leads, save_merges


async def test_a_merge_replayed_into_a_shadow_schema_is_applied_there_not_to_the_live_tables(db):
    shadow = f"shadow_{uuid.uuid4().hex[:10]}"
    merged, survivor = uuid.uuid4(), uuid.uuid4()
    early, late = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
    try:
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            await translated.run_sync(metadata.create_all)
            await save_leads(translated, [
                LeadFacts(merged, attribution={"utm_source": "google"}, furthest=0, first_at={"captured": early}),
                LeadFacts(survivor, attribution={"utm_source": "bing"}, furthest=0, first_at={"captured": late})])
            p = Projection()
            p.merges.append({"lead_id": merged, "survivor_id": survivor, "at": late})
            await save_merges(translated, p)
            await translated.commit()
            rows = {r.lead_id: r for r in await conn.execute(sa.text(
                f'SELECT lead_id, merged_into, utm_source, captured_at FROM "{shadow}".leads'))}
            live = (await conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.leads WHERE lead_id = ANY(:ids)"),
                                       {"ids": [merged, survivor]})).scalar()
        assert rows[merged].merged_into == survivor
        assert (rows[survivor].utm_source, rows[survivor].captured_at) == ("google", early)  # the first touch's
        assert live == 0
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{shadow}" CASCADE'))


async def test_what_a_lead_merged_into_a_lead_merged_on_before_brings_reaches_the_end_of_the_chain(db):
    """S into T and T into U were applied a batch before D into S: D's first touch, the earliest, is U's now."""
    shadow = f"shadow_{uuid.uuid4().hex[:10]}"
    s, d, t, u = sorted(uuid.uuid4() for _ in "sdtu")  # S's merge on comes before D's in id order
    day = {lead: datetime(2026, 11, n, tzinfo=UTC) for n, lead in enumerate((d, s, t, u), start=1)}
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
    try:
        async with db.connect() as conn:
            translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
            await translated.run_sync(metadata.create_all)
            await save_leads(translated, [LeadFacts(lead, attribution={"utm_source": f"src-{n}"}, furthest=0,
                                                    first_at={"captured": day[lead]})
                                          for n, lead in zip("dstu", (d, s, t, u), strict=True)])
            for batch in ([(s, t), (t, u)], [(d, s)]):
                p = Projection()
                p.merges += [{"lead_id": merged, "survivor_id": survivor, "at": day[u]} for merged, survivor in batch]
                await save_merges(translated, p)
            await translated.commit()
            rows = {r.lead_id: r for r in await conn.execute(sa.text(
                f'SELECT lead_id, merged_into, utm_source, captured_at FROM "{shadow}".leads'))}
        assert (rows[u].utm_source, rows[u].captured_at) == ("src-d", day[d])
        assert [rows[lead].merged_into for lead in (d, s, t, u)] == [s, t, u, None]
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{shadow}" CASCADE'))


def test_merges_are_applied_along_their_chain():
    from reporting.store import chain_order

    d, s, t, u, x, y = (uuid.UUID(int=n) for n in (5, 1, 3, 2, 4, 6))
    assert chain_order({(t, u), (s, t), (d, s), (x, y)}) == [(x, y), (d, s), (s, t), (t, u)]


@contextlib.asynccontextmanager
async def shadow_with(db, facts: list[LeadFacts]) -> AsyncIterator[str]:  # noqa: ANN001
    """A shadow schema of reporting's tables holding ``facts``, dropped after."""
    shadow = f"shadow_{uuid.uuid4().hex[:10]}"
    async with db.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{shadow}"'))
        translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
        await translated.run_sync(metadata.create_all)
        await save_leads(translated, facts)
    try:
        yield shadow
    finally:
        async with db.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{shadow}" CASCADE'))


async def test_a_merge_into_a_lead_another_process_is_merging_on_reaches_the_end_of_the_chain(db):
    """D into S and S into T applied by two processes at once, each blind to the other's uncommitted merge."""
    d, s, t = (uuid.uuid4() for _ in "dst")
    day = {lead: datetime(2026, 11, n, tzinfo=UTC) for n, lead in enumerate((d, s, t), start=1)}
    facts = [LeadFacts(lead, attribution={"utm_source": f"src-{n}"}, furthest=0, first_at={"captured": day[lead]})
             for n, lead in zip("dst", (d, s, t), strict=True)]

    async def merge(conn, merged, survivor) -> None:  # noqa: ANN001
        translated = await conn.execution_options(schema_translate_map={SCHEMA: shadow})
        p = Projection()
        p.merges.append({"lead_id": merged, "survivor_id": survivor, "at": day[t]})
        await save_merges(translated, p)

    async def merge_d_into_s() -> None:
        async with db.begin() as conn:
            await merge(conn, d, s)

    async with shadow_with(db, facts) as shadow:
        async with db.begin() as onward:
            await merge(onward, s, t)  # not committed yet
            blind = asyncio.create_task(merge_d_into_s())
            await asyncio.sleep(0.5)
            assert not blind.done(), "the merge into S did not wait for S's own merge being applied"
        await asyncio.wait_for(blind, 10)
        async with db.connect() as conn:
            row = (await conn.execute(sa.text(
                f'SELECT utm_source, captured_at FROM "{shadow}".leads WHERE lead_id = :t'), {"t": t})).one()
    assert tuple(row) == ("src-d", day[d])
