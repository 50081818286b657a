"""scoring's handler with an in-memory unit of work: no broker, no Postgres."""

from datetime import UTC, datetime

from leadpipe_common import topics
from leadpipe_common.envelope import decode
from leadpipe_common.testing import factories
from leadpipe_common.testing.fakes import SavedRows
from leadpipe_common.uow import MemoryUnitOfWork
from scoring.domain import parse_rules
from scoring.handlers import Scoring, handle_lead_enriched

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CTX = Scoring(parse_rules({
    "version": "test-1", "grades": {"A": 80, "B": 60, "C": 35}, "thresholds": {"mql": 50, "nurture": 10},
    "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30}],
    "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 40}],
    "disqualify": [{"rule": "Disposable", "field": "is_disposable", "equals": True}],
}), clock=lambda: NOW)


def decoded(message):
    return decode(message.headers, message.key, message.value).data


async def score(lead):
    uow = MemoryUnitOfWork(SavedRows())
    env = factories.envelope(topics.ENRICHED, lead)
    async with uow:
        outcomes = await handle_lead_enriched(uow, [env], CTX)
    return uow, outcomes[env.id]


async def test_an_enriched_lead_that_reaches_the_bar_becomes_an_mql_with_its_reasons_stored():
    lead = factories.enriched("cmo@bigco.example", employees=5000, offer="demo")
    uow, (scored, step) = await score(lead)
    assert (scored.topic, step.topic) == (topics.SCORED, topics.LIFECYCLE)
    assert decoded(scored).score.decision == "mql" and decoded(scored).scored_at == NOW
    assert (decoded(step).from_stage, decoded(step).to_stage) == ("enriched", "mql")
    row = uow.store.rows[lead.lead_id]
    assert (row["score"], row["rules_version"]) == (70, "test-1")
    assert [r["rule"] for r in row["reasons"]] == ["Enterprise", "Demo"]


async def test_a_lead_below_the_bar_is_scored_for_nurture():
    lead = factories.enriched("reader@smallco.example", offer="demo")
    _, (scored, step) = await score(lead)
    assert decoded(scored).score.decision == "nurture"
    assert decoded(step).to_stage == "nurture"
