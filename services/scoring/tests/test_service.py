"""scoring against a real broker and Postgres."""

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from leadpipe_common.events import LeadMerged
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
    assert score["rules_version"] == "2026-12-06.2"
    steps = await read_topic(bootstrap, "leads.lifecycle", where=for_lead(lead.lead_id),
                             until=lambda f: any(r.json()["to_stage"] == "mql" for r in f))
    assert any("MQL bar" in r.json()["reason"] for r in steps)
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT decision, score FROM scoring.scores WHERE lead_id = :id"),
                                  {"id": lead.lead_id})).one()
    assert (row.decision, row.score) == ("mql", score["value"])


def touched_by(lead_id: uuid.UUID):  # noqa: ANN201
    """Whether a lead.scored batch holds a score counting ``lead_id``'s first touch (whose id is the lead's)."""
    return lambda found: any(reason.get("touch_id") == str(lead_id)
                             for r in found for reason in r.json()["score"]["reasons"])


async def test_a_duplicate_merged_into_a_lead_merged_on_before_is_scored_where_the_chain_ends(bootstrap):
    run = uuid.uuid4().hex[:8]
    d, s, t = (factories.enriched(f"{n}.{run}@smallco.example", offer=offer)
               for n, offer in (("d", "demo"), ("s", "pricing"), ("t", "pricing")))

    def merge(duplicate, survivor):  # noqa: ANN001, ANN202
        return factories.message("leads.enriched", LeadMerged(
            lead_id=duplicate.lead_id, survivor_id=survivor.lead_id, at=datetime.now(UTC), by="ana",
            reason="same person", attribution=duplicate.attribution))

    await produce(bootstrap, [factories.message("leads.enriched", lead) for lead in (d, s, t)])
    keys = {str(lead.lead_id).encode() for lead in (d, s, t)}
    await read_topic(bootstrap, "leads.scored", where=lambda r: r.key in keys,
                     until=lambda found: {r.key for r in found} == keys)
    await produce(bootstrap, [merge(s, t)])
    onward = await read_topic(bootstrap, "leads.scored", where=for_lead(t.lead_id), until=touched_by(s.lead_id))
    assert touched_by(s.lead_id)(onward)
    await produce(bootstrap, [merge(d, s)])  # S was merged on already: D's touches belong with T
    ended = await read_topic(bootstrap, "leads.scored", where=for_lead(t.lead_id), until=touched_by(d.lead_id))
    assert touched_by(d.lead_id)(ended)
