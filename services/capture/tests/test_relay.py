"""capture's outbox relay against a real broker and Postgres: what it does with a stored lead it cannot publish."""

import json
import uuid

import httpx
import pytest
import sqlalchemy as sa

from leadpipe_common.testing.kafka import for_lead, read_topic

pytestmark = pytest.mark.asyncio


async def test_a_stored_lead_that_no_longer_validates_is_set_aside_and_the_leads_after_it_are_published(
        capture_url, bootstrap, db):
    """Its claim raised on it every round (captured_lead_messages validates what the row stores): the relay claimed
    the same oldest rows again and again, and every lead accepted after it waited for good, 202 and all."""
    broken, request_id = uuid.uuid4(), uuid.uuid4()
    stored = json.dumps({"lead_id": str(broken), "captured_at": "2026-11-23T09:30:00Z"}).encode()  # no contact
    async with db.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO capture.leads (lead_id, request_id, email, captured_at, traceparent, event) "
            "VALUES (:lead, :request, :email, now(), :trace, :event)"),
            {"lead": broken, "request": request_id, "email": f"broken.{broken.hex[:8]}@example.com",
             "trace": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "event": stored})
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/leads", json={"email": f"after.{uuid.uuid4().hex[:8]}@stripe.com"})
    assert r.status_code == 202

    after = await read_topic(bootstrap, "leads.captured", where=for_lead(r.json()["lead_id"]), until=bool)
    assert [rec.type for rec in after] == ["lead.captured"]
    [letter] = await read_topic(bootstrap, "leads.deadletter", until=bool,
                                where=lambda rec: rec.key == str(broken).encode())
    assert (letter.value, letter.headers["dlq.error.kind"], letter.headers["dlq.source.outbox"],
            letter.headers["dlq.source.topic"], letter.headers["ce_type"]) == (
        stored, "schema", "capture", "leads.captured", "lead.captured")
    assert "contact" in letter.headers["dlq.error.message"]
    steps = await read_topic(bootstrap, "leads.lifecycle", where=for_lead(str(broken)), until=bool)
    assert [step.json()["to_stage"] for step in steps] == ["deadlettered"]
    async with db.connect() as conn:
        published = (await conn.execute(sa.text("SELECT published_at FROM capture.leads WHERE lead_id = :lead"),
                                        {"lead": broken})).scalar_one()
    assert published is not None  # set aside, and kept: its row still holds the event
