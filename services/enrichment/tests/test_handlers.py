"""enrichment's handler with an in-memory unit of work: no broker, no Postgres."""

from datetime import UTC, datetime

from enrichment.domain import Company, ReferenceData, TitleRules
from enrichment.handlers import Enrichment, handle_lead_captured
from leadpipe_common import topics
from leadpipe_common.envelope import decode
from leadpipe_common.testing import factories
from leadpipe_common.testing.fakes import SavedRows
from leadpipe_common.uow import MemoryUnitOfWork

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CTX = Enrichment(
    ReferenceData(companies={"sap.com": Company("sap.com", "SAP SE", "Software", 100_000, "DE")},
                  free_mail=frozenset({"gmail.com"}), disposable=frozenset(), seniority=TitleRules(()),
                  departments=TitleRules(()), country_aliases={}),
    clock=lambda: NOW,
)


async def enrich(*leads):
    uow = MemoryUnitOfWork(Enrichments())
    batch = [factories.envelope(topics.CAPTURED, lead) for lead in leads]
    async with uow:
        outcomes = await handle_lead_captured(uow, batch, CTX)
    return uow, batch, outcomes


async def test_a_captured_lead_is_enriched_and_its_step_announced():
    lead = factories.captured("maria@sap.com")
    uow, [env], outcomes = await enrich(lead)
    enriched, step = outcomes[env.id]
    assert (enriched.topic, step.topic) == (topics.ENRICHED, topics.LIFECYCLE)
    data = decode(enriched.headers, enriched.key, enriched.value).data
    assert data.enrichment.company_name.value == "SAP SE" and data.enriched_at == NOW
    changed = decode(step.headers, step.key, step.value).data
    assert (changed.from_stage, changed.to_stage, changed.reason) == ("captured", "enriched", "matched company SAP SE")
    stored = uow.store.rows[lead.lead_id]["data"].model_dump(mode="json")
    assert stored["company_name"] == {"value": "SAP SE", "source": "companies"}


async def test_a_redelivered_lead_yields_outputs_with_the_same_ids():
    lead = factories.captured("jo@gmail.com")
    env = factories.envelope(topics.CAPTURED, lead)
    first = await handle_lead_captured(MemoryUnitOfWork(Enrichments()), [env], CTX)
    again = await handle_lead_captured(MemoryUnitOfWork(Enrichments()), [env], CTX)
    assert [m.header("ce_id") for m in first[env.id]] == [m.header("ce_id") for m in again[env.id]]
    assert "free-mail" in decode(first[env.id][1].headers, first[env.id][1].key, first[env.id][1].value).data.reason


class Enrichments(SavedRows):
    """enrichment's store: its enrichments by lead, and their erasure, noted whether it held the lead or not."""

    def __init__(self) -> None:
        super().__init__()
        self.erased_leads: dict = {}

    async def erase(self, erased):
        for lead_id, at in erased.items():
            self.erased_leads.setdefault(lead_id, at)
            if lead_id in self.rows:
                self.rows[lead_id]["data"] = self.rows[lead_id]["data"].model_copy(update={"phone_e164": None,
                                                                                            "country": None})

    async def erased(self, lead_ids):
        return set(lead_ids) & self.erased_leads.keys()


async def test_an_erased_lead_keeps_its_company_facts_loses_its_persons_everywhere_and_goes_on_to_scoring():
    from leadpipe_common.events import LeadErased
    from enrichment.handlers import handle_lead_erased

    lead = factories.captured("maria@sap.com", phone="+49 30 1234567", country="DE", first_name="Maria")
    uow = MemoryUnitOfWork(Enrichments())
    captured = factories.envelope(topics.CAPTURED, lead)
    erasure = factories.envelope(topics.CAPTURED, LeadErased(lead_id=lead.lead_id, at=NOW, by="dpo"))
    # One batch, as the runner hands it over: the erasure after the lead it erases.
    outcomes = await factories.one_batch(uow, (handle_lead_captured, [captured], CTX),
                                         (handle_lead_erased, [erasure], CTX))
    [passed_on] = outcomes[erasure.id]
    assert passed_on.topic == topics.ENRICHED
    assert decode(passed_on.headers, passed_on.key, passed_on.value).data == erasure.data
    stored = uow.store.rows[lead.lead_id]["data"]
    assert (stored.company_name.value, stored.phone_e164, stored.country) == ("SAP SE", None, None)
    kept = [m.value for m in uow.inbox[captured.id]]
    assert kept and not any(b"maria" in value.lower() or b"1234567" in value for value in kept)


async def test_a_lead_erased_before_enrichment_held_it_is_not_enriched_when_its_dead_letter_is_redriven():
    from leadpipe_common.events import LeadErased, LeadMerged
    from enrichment.handlers import handle_lead_erased, handle_lead_merged

    lead = factories.captured("maria@sap.com", phone="+49 30 1234567", country="DE")
    store = Enrichments()
    erasure = factories.envelope(topics.CAPTURED, LeadErased(lead_id=lead.lead_id, at=NOW, by="dpo"))
    await factories.one_batch(MemoryUnitOfWork(store), (handle_lead_erased, [erasure], CTX))
    redriven = factories.envelope(topics.CAPTURED, lead)
    merged = factories.envelope(topics.CAPTURED, LeadMerged(lead_id=lead.lead_id, survivor_id=factories.captured(
        "x@sap.com").lead_id, at=NOW, by="ana", reason="same person", attribution=lead.attribution))
    outcomes = await factories.one_batch(MemoryUnitOfWork(store), (handle_lead_captured, [redriven], CTX),
                                         (handle_lead_merged, [merged], CTX))
    assert outcomes == {redriven.id: [], merged.id: []}
    assert store.rows == {} and lead.lead_id in store.erased_leads
