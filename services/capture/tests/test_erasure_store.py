"""Erasing a person on the real Postgres, through capture's HTTP API: what its tables keep of them afterwards."""

import uuid

import httpx
import sqlalchemy as sa

from leadpipe_common import topics
from leadpipe_common.testing.kafka import read_all, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS

from capture.store import SCHEMA

#: Every row of a table as text, its stored events (bytea) read as the JSON they are.
_HOLDING = """SELECT count(*) FROM {schema}.{table} t
              WHERE t::text ILIKE :pattern {events}"""


async def rows_naming(db, pattern: str) -> dict[str, int]:  # noqa: ANN001
    """How many rows of each of capture's tables hold ``pattern`` anywhere."""
    counts = {}
    async with db.connect() as conn:
        for table, events in (("leads", True), ("touches", True), ("quarantine", False), ("people", False),
                              ("outbox", False), ("idempotency", False)):
            query = _HOLDING.format(schema=SCHEMA, table=table,
                                    events="OR convert_from(t.event, 'UTF8') ILIKE :pattern" if events else "")
            counts[table] = (await conn.execute(sa.text(query), {"pattern": pattern})).scalar_one()
    return counts


async def test_an_erased_persons_rows_keep_no_trace_of_them_and_their_next_submission_is_a_new_lead(
        capture_url, db, bootstrap):
    local = f"erase.{uuid.uuid4().hex[:8]}"
    email = f"{local}@stripe.com"
    async with httpx.AsyncClient(base_url=capture_url, timeout=30) as capture:
        # Its Idempotency-Key the address itself, as a client may make it.
        first = await capture.post("/v1/leads", headers={**KEY_HEADERS, "Idempotency-Key": email}, json={
            "email": email, "first_name": "Ada", "form_id": "erasure-test", "utm_source": "ads",
            "landing_page": f"https://example.com/demo?email={email}&utm_campaign=spring"})
        touch = await capture.post("/v1/leads", headers=KEY_HEADERS,
                                   json={"email": email.replace("@", "+again@"), "phone": "+1 555 0100"})
        bot = await capture.post("/v1/forms/contact-us", headers={"accept": "application/json"},
                                 json={"email": email.upper(), "_gotcha": "x"})
        assert (first.status_code, touch.status_code, bot.status_code) == (202, 202, 202)
        before = await rows_naming(db, f"%{local}%")
        assert before["leads"] == before["touches"] == before["quarantine"] == before["people"] == 1
        assert before["idempotency"] == 1
        erased = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": email.upper()})
        again = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": email})
        by_id = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"lead_id": first.json()["lead_id"]})
        later = await capture.post("/v1/leads", headers=KEY_HEADERS, json={"email": email})
    lead_id = first.json()["lead_id"]
    assert erased.status_code == 202 and erased.json()["lead_ids"] == [lead_id] == by_id.json()["lead_ids"]
    assert erased.json()["touched_leads"] == erased.json()["merged_leads"] == []
    # Nothing leads from the address to the erased lead: asked again, it names nobody.
    assert again.status_code == 404 and lead_id not in again.text
    assert later.json()["existing"] is False and later.json()["lead_id"] != lead_id  # a new person's new lead

    async with db.connect() as conn:
        kept = (await conn.execute(sa.text(
            f"SELECT email, form_id, closed_at IS NOT NULL AS closed, published_at IS NOT NULL AS published, "
            f"convert_from(event, 'UTF8')::json -> 'attribution' AS attribution FROM {SCHEMA}.leads "
            "WHERE lead_id = :lead"), {"lead": lead_id})).one()
    assert (kept.email, kept.form_id, kept.closed, kept.published) == ("", "erasure-test", True, True)
    assert kept.attribution["landing_page"] == "https://example.com/demo"
    assert (kept.attribution["utm_source"], kept.attribution["utm_campaign"]) == ("ads", "spring")
    # Sent once, though erased three times: waited for on the topic (the relay deletes what it sent from the
    # outbox), then the whole topic read.
    erasure = lambda r: r.key == lead_id.encode() and r.type == "lead.erased"  # noqa: E731
    await read_topic(bootstrap, topics.CAPTURED, until=lambda found: len(found) >= 1, where=erasure)
    assert len(await read_all(bootstrap, topics.CAPTURED, where=erasure)) == 1
    # Only the new lead, captured after the erasure, names the person now.
    assert await rows_naming(db, f"%{local}%") == {"leads": 1, "touches": 0, "quarantine": 0, "people": 1,
                                                   "outbox": 0, "idempotency": 0}
