"""The whole pipeline: HTTP in, routed leads and lifecycle out, read by a plain Kafka client."""

import asyncio
import json
from collections import defaultdict

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from leadpipe_common.events import TERMINAL_STAGES
from leadpipe_common.testing.kafka import read_topic

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def test_a_json_lead_and_a_browser_form_lead_come_out_routed_for_any_kafka_client(capture_url, bootstrap):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        api = await client.post("/v1/leads", json={
            "email": "grace@datadoghq.com", "first_name": "Grace", "job_title": "VP Engineering",
            "offer": "demo", "utm_source": "linkedin", "utm_campaign": "q4-launch",
        })
        form = await client.post("/v1/forms/pricing", data={
            "email": "linus@novartis.com", "job_title": "Director of IT", "country": "Switzerland",
            "utm_source": "google", "utm_medium": "cpc", "website_field_nobody_defined": "x",
        })
    assert api.status_code == 202 and form.status_code == 200
    api_id = api.json()["lead_id"]

    # An ordinary consumer: no leadpipe code, only the documented topic, key and headers.
    consumer = AIOKafkaConsumer("leads.routed", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        routed = {}
        async with asyncio.timeout(20):
            while "grace@datadoghq.com" not in routed or "linus@novartis.com" not in routed:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        lead = json.loads(r.value)
                        routed[lead["contact"]["email"]] = (r, lead)
    finally:
        await consumer.stop()

    record, grace = routed["grace@datadoghq.com"]
    assert record.key.decode() == api_id
    assert dict(record.headers)["ce_type"] == b"lead.routed"
    assert grace["assignment"]["owner_id"] == "dan.kim"  # the Datadog account owner
    assert grace["assignment"]["method"] == "account"
    assert grace["score"]["decision"] == "mql" and grace["score"]["reasons"]
    assert grace["attribution"]["utm_campaign"] == "q4-launch"
    assert grace["enrichment"]["company_name"]["value"] == "Datadog"

    _, linus = routed["linus@novartis.com"]
    assert linus["attribution"]["form_id"] == "pricing" and linus["attribution"]["offer"] == "pricing"
    assert linus["assignment"]["team"] == "emea-enterprise" and linus["assignment"]["method"] == "territory"

    steps = await read_topic(bootstrap, "leads.lifecycle", where=lambda r: r.key == api_id.encode(),
                             until=lambda f: any(r.json()["to_stage"] == "routed" for r in f))
    path = [(s.json()["from_stage"], s.json()["to_stage"]) for s in sorted(steps, key=lambda r: r.offset)]
    assert path == [(None, "captured"), ("captured", "enriched"), ("enriched", "mql"), ("mql", "routed")]
    assert len({s.id for s in steps}) == 4, "each lifecycle step needs its own event id, or de-duplication drops one"
    assert all(s.json()["attribution"]["utm_source"] == "linkedin" for s in steps)


PROFILES = [
    # (fields, the terminal stage the shipped rules must give it)
    ({"job_title": "Chief Marketing Officer", "offer": "demo", "country": "US"}, "@stripe.com", "routed"),
    ({"job_title": "Marketing Manager", "offer": "pricing", "country": "DE"}, "@sap.com", "routed"),
    ({"offer": "newsletter", "country": "FR"}, "@smallshop.example", "nurture"),
    ({"offer": "newsletter"}, "@mailinator.com", "disqualified"),
]


async def test_a_thousand_leads_each_reach_exactly_one_terminal_outcome(capture_url, bootstrap):
    n = 1000
    limits = httpx.Limits(max_connections=50)
    sem = asyncio.Semaphore(50)
    expected: dict[str, str] = {}

    async def post(client: httpx.AsyncClient, i: int) -> None:
        fields, domain, outcome = PROFILES[i % len(PROFILES)]
        async with sem:
            r = await client.post("/v1/leads", json={**fields, "email": f"lead{i}{domain}", "utm_campaign": "load"})
        assert r.status_code == 202, r.text
        expected[r.json()["lead_id"]] = outcome

    async with httpx.AsyncClient(base_url=capture_url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(post(client, i) for i in range(n)))
    assert len(expected) == n
    keys = {k.encode() for k in expected}

    def all_terminal(found) -> bool:
        return len({r.key for r in found}) >= n

    terminal = await read_topic(
        bootstrap, "leads.lifecycle",
        where=lambda r: r.key in keys and r.json()["to_stage"] in TERMINAL_STAGES,
        until=all_terminal, timeout=120,
    )
    outcomes: dict[str, set[str]] = defaultdict(set)
    event_ids: dict[str, set[str]] = defaultdict(set)
    for r in terminal:
        outcomes[r.key.decode()].add(r.json()["to_stage"])
        event_ids[r.key.decode()].add(r.id)
    missing = set(expected) - set(outcomes)
    assert not missing, f"{len(missing)} leads never reached a terminal outcome"
    doubled = {k for k, ids in event_ids.items() if len(ids) > 1}
    assert not doubled, f"{len(doubled)} leads reached a terminal outcome twice"
    assert {k: next(iter(v)) for k, v in outcomes.items()} == expected

    routed = await read_topic(bootstrap, "leads.routed", where=lambda r: r.key in keys,
                              until=lambda f: len({r.key for r in f}) >= n // 2, timeout=30)
    per_lead = defaultdict(set)
    for r in routed:
        per_lead[r.key].add(r.id)
    assert len(per_lead) == n // 2
    assert all(len(ids) == 1 for ids in per_lead.values())
