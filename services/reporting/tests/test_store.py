"""reporting's store on the real Postgres, where a replay writes: a shadow schema."""

import uuid
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
