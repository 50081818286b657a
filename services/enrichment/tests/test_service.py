"""enrichment against a real broker and Postgres: input on its topic, outputs read back."""

import uuid

import pytest
import sqlalchemy as sa

from leadpipe_common.envelope import Message
from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import for_lead, partitions_of, produce, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS

pytestmark = pytest.mark.asyncio


async def test_a_captured_lead_is_enriched_with_its_company_and_sources(bootstrap):
    lead = factories.captured("maria@sap.com", job_title="Head of Demand Generation", phone="+49 30 1234567")
    await produce(bootstrap, [factories.message("leads.captured", lead)])

    out = await read_topic(bootstrap, "leads.enriched", where=for_lead(lead.lead_id), until=bool)
    e = out[0].json()["enrichment"]
    assert e["company_name"] == {"value": "SAP SE", "source": "companies"}
    assert e["seniority"]["value"] == "director" and e["department"]["value"] == "marketing"
    assert e["phone_e164"]["value"] == "+49301234567"
    assert e["country"] == {"value": "DE", "source": "phone"}
    steps = await read_topic(bootstrap, "leads.lifecycle", where=for_lead(lead.lead_id),
                             until=lambda f: any(r.json()["to_stage"] == "enriched" for r in f))
    assert any(r.json()["from_stage"] == "captured" and r.json()["by"] == "enrichment" for r in steps)


async def test_a_redelivered_event_is_applied_once_and_re_emits_the_same_event_id(bootstrap, db):
    lead = factories.captured("jo@stripe.com")
    msg = factories.message("leads.captured", lead)
    await produce(bootstrap, [msg])
    first = await read_topic(bootstrap, "leads.enriched", where=for_lead(lead.lead_id), until=bool)
    await produce(bootstrap, [msg])
    both = await read_topic(bootstrap, "leads.enriched", where=for_lead(lead.lead_id), until=lambda f: len(f) >= 2)

    assert len(both) == 2
    assert both[0].id == both[1].id == first[0].id
    assert both[0].value == both[1].value
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT count(*) FROM enrichment.enrichments WHERE lead_id = :id"),
                                   {"id": lead.lead_id})).scalar_one()
    assert rows == 1


async def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on(bootstrap):
    marker = uuid.uuid4().hex.encode()
    good = factories.captured("after.poison@example.com")
    valid = factories.message("leads.captured", factories.captured())
    schema_broken = Message(
        topic="leads.captured", key=marker,
        value=valid.value.replace(b'"email":"jo@example.com"', b'"email":42'), headers=valid.headers,
    )
    garbage = Message(topic="leads.captured", key=marker, value=b"\x00\xffnot an event", headers=())
    await produce(bootstrap, [garbage, schema_broken, factories.message("leads.captured", good)])

    dead = await read_topic(bootstrap, "leads.deadletter", where=lambda r: r.key == marker,
                            until=lambda f: len(f) >= 2)
    kinds = sorted(r.headers["dlq.error.kind"] for r in dead)
    assert kinds == ["schema", "undecodable"]
    for r in dead:
        assert r.headers["dlq.source.topic"] == "leads.captured"
        assert r.headers["dlq.stage"] == "enrichment"
        assert r.headers["dlq.source.offset"].isdigit()
    assert any(r.value == b"\x00\xffnot an event" for r in dead)  # the original bytes, untouched
    assert await read_topic(bootstrap, "leads.enriched", where=for_lead(good.lead_id), until=bool)


async def test_an_operator_sees_the_lag_of_every_input_partition_and_requests_by_route(stack, bootstrap):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    lead = factories.captured("lag@sap.com")
    await produce(bootstrap, [factories.message("leads.captured", lead)])
    await read_topic(bootstrap, "leads.enriched", where=for_lead(lead.lead_id), until=bool)
    url = next(p.url for p in stack.processes if p.service == "enrichment")
    async with httpx.AsyncClient(base_url=url) as client:
        await client.get("/readyz")
        await client.get(f"/no/such/{uuid.uuid4()}")
        text = (await client.get("/metrics", headers=KEY_HEADERS)).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    lag = {s.labels["partition"]: s.value for s in samples if s.name == "leadpipe_consumer_lag_records"}
    partitions = await partitions_of(bootstrap, "leads.captured")
    assert len(partitions) > 1 and set(lag) == {str(p) for p in partitions}  # the only process holds them all
    assert all(v >= 0 for v in lag.values())
    assert any(s.name == "leadpipe_consumer_oldest_unprocessed_age_seconds" for s in samples)
    requests = {(s.labels["route"], s.labels["status"]) for s in samples if s.name == "leadpipe_http_requests_total"}
    assert ("/readyz", "200") in requests and ("(no route)", "404") in requests
    assert not any("/no/such" in route for route, _ in requests)
