"""scoring against a real broker and Postgres."""

import pytest
import sqlalchemy as sa

from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import for_lead, produce, read_topic

pytestmark = pytest.mark.asyncio


async def test_an_enriched_lead_is_scored_explained_and_stored(bootstrap, db):
    lead = factories.enriched("cfo@bigbank.example", employees=20_000, seniority="c-level", offer="demo",
                              country="GB")
    await produce(bootstrap, [factories.message("leads.enriched", lead)])

    out = await read_topic(bootstrap, "leads.scored", where=for_lead(lead.lead_id), until=bool)
    score = out[0].json()["score"]
    assert score["decision"] == "mql" and score["grade"] in {"A", "B"}
    assert {"Asked for a demo", "Decision maker (C-level or VP)"} <= {r["rule"] for r in score["reasons"]}
    assert score["rules_version"] == "2026-11-23.2"
    steps = await read_topic(bootstrap, "leads.lifecycle", where=for_lead(lead.lead_id),
                             until=lambda f: any(r.json()["to_stage"] == "mql" for r in f))
    assert any("MQL bar" in r.json()["reason"] for r in steps)
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT decision, score FROM scoring.scores WHERE lead_id = :id"),
                                  {"id": lead.lead_id})).one()
    assert (row.decision, row.score) == ("mql", score["value"])
