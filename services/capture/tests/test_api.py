"""capture against a real broker and Postgres, through HTTP."""

import gzip
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from leadpipe_common.testing.kafka import for_lead, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS

pytestmark = pytest.mark.asyncio


async def test_a_json_lead_is_accepted_and_published_with_its_first_lifecycle_step(capture_url, bootstrap):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/leads", json={"email": f"ada.{uuid.uuid4().hex[:8]}@stripe.com", "utm_campaign": "spring", "x-custom": 1})
    assert r.status_code == 202
    lead_id = r.json()["lead_id"]

    captured = await read_topic(bootstrap, "leads.captured", where=for_lead(lead_id), until=lambda f: len(f) >= 1)
    assert captured[0].type == "lead.captured"
    assert captured[0].json()["attribution"]["utm_campaign"] == "spring"
    lifecycle = await read_topic(bootstrap, "leads.lifecycle", where=for_lead(lead_id),
                                 until=lambda f: any(r.json()["to_stage"] == "captured" for r in f))
    first = next(r.json() for r in lifecycle if r.json()["to_stage"] == "captured")
    assert first["from_stage"] is None and first["by"] == "capture"


async def test_a_browser_form_post_is_redirected_to_the_forms_thank_you_page(capture_url):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/forms/whitepaper-lead-scoring", data={"email": "jo@example.com"})
    assert r.status_code == 303
    assert r.headers["location"] == "https://example.com/thank-you/whitepaper"


async def test_a_form_without_a_thank_you_page_shows_a_confirmation(capture_url):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/forms/demo-request", data={"email": "jo@example.com"},
                              headers={"accept": "text/html"})
    assert r.status_code == 200
    assert "Thank you" in r.text and "Request a demo" in r.text


async def test_a_multipart_form_asking_for_json_gets_the_api_answer(capture_url, bootstrap):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post(
            "/v1/forms/demo-request",
            files={"cv": ("cv.txt", b"attachment ignored")},
            data={"email": f"jo.{uuid.uuid4().hex[:8]}@example.com", "job_title": "CTO", "marketing_consent": "on"},
            headers={"accept": "application/json"},
        )
    assert r.status_code == 202
    body = r.json()
    assert body["form_id"] == "demo-request"
    captured = await read_topic(bootstrap, "leads.captured", where=for_lead(body["lead_id"]), until=lambda f: bool(f))
    lead = captured[0].json()
    assert lead["attribution"]["offer"] == "demo"  # from the forms file
    assert lead["contact"]["marketing_consent"] is True and lead["contact"]["marketing_consent_at"]


@pytest.mark.parametrize(
    ("send", "status", "field"),
    [
        (dict(json={"first_name": "No Email"}), 422, "email"),
        (dict(json={"email": "not an address"}), 422, "email"),
        (dict(json=["a", "list"]), 422, "body"),
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 422, "body"),
        (dict(content=b"email=x@example.com", headers={"content-type": "text/plain"}), 415, "Content-Type"),
        # Read as it came, a compressed body was "not UTF-8": the importer was told its data was wrong.
        (dict(content=gzip.compress(b'{"email": "gz@example.com"}'),
              headers={"content-type": "application/json", "content-encoding": "gzip"}), 415, "Content-Encoding"),
        (dict(json={"email": "big@example.com", "message": "x" * 70_000}), 413, None),
        # JSON in UTF-16 carries its NUL escape past the check that reads UTF-8 (then every stage refused it)
        (dict(content='{"email": "u16@example.com", "first_name": "a\\u0000b"}'.encode("utf-16"),
              headers={"content-type": "application/json"}), 422, "body"),
        (dict(content=b"[" * 5000, headers={"content-type": "application/json"}), 422, "body"),
        # Python's json reads NaN, which JSON has not: it was stored as the text "nan"
        (dict(content=b'{"email": "nan@example.com", "phone": NaN}', headers={"content-type": "application/json"}),
         422, "body"),
    ],
    ids=["missing-email", "bad-email", "not-an-object", "broken-json", "wrong-content-type", "compressed", "too-large",
         "utf-16", "nested-too-deep", "nan"],
)
async def test_bad_input_gets_a_clear_error_and_stores_nothing(capture_url, db, send, status, field):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        before = await _lead_count(db)
        r = await client.post("/v1/leads", **send)
    assert r.status_code == status
    body = r.json()
    assert body["error"]
    if field:
        assert field in {e["field"] for e in body["errors"]}
    assert await _lead_count(db) == before


async def test_a_field_nobody_reads_holding_a_lone_surrogate_does_not_fail_a_keyed_post(capture_url):
    """The Idempotency-Key's fingerprint covers every field sent, read or not."""
    body = b'{"email": "surrogate@example.com", "nickname": "\\ud800"}'
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/leads", content=body, headers={"content-type": "application/json",
                                                                  "Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 202, r.text


async def test_a_bad_browser_form_post_gets_a_readable_page(capture_url):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/forms/contact-us", data={"email": "nope"}, headers={"accept": "text/html"})
    assert r.status_code == 422
    assert "text/html" in r.headers["content-type"]
    assert "email" in r.text


async def test_capture_reports_ready_to_anyone_and_its_metrics_only_to_a_key(capture_url):
    """The metrics move when a bot's post is quarantined: read without a key, they told the bot it was caught."""
    async with httpx.AsyncClient(base_url=capture_url) as client:
        ready = await client.get("/readyz")
        keyless = await client.get("/metrics")
        metrics = await client.get("/metrics", headers=KEY_HEADERS)
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert keyless.status_code == 401 and "capture_" not in keyless.text
    assert "capture_leads_accepted_total" in metrics.text and "capture_submissions_quarantined_total" in metrics.text


async def _lead_count(db) -> int:
    async with db.connect() as conn:
        return (await conn.execute(sa.text("SELECT count(*) FROM capture.leads"))).scalar_one()


async def test_public_posts_are_counted_under_their_route_templates(capture_url):
    async with httpx.AsyncClient(base_url=capture_url) as client:
        def count(route: str, status: str) -> float:
            line = f'leadpipe_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
            return next((float(l.split()[-1]) for l in metrics.splitlines() if l.startswith(line)), 0.0)

        metrics = (await client.get("/metrics", headers=KEY_HEADERS)).text
        before = count("/v1/leads", "202"), count("/v1/forms/{form_id}", "303"), count("/v1/leads", "422")
        await client.post("/v1/leads", json={"email": f"metered.{uuid.uuid4().hex[:8]}@example.com"})
        await client.post("/v1/forms/whitepaper-lead-scoring", data={"email": f"m.{uuid.uuid4().hex[:8]}@example.com"})
        await client.post("/v1/leads", json={"email": "not an address"})
        metrics = (await client.get("/metrics", headers=KEY_HEADERS)).text
    after = count("/v1/leads", "202"), count("/v1/forms/{form_id}", "303"), count("/v1/leads", "422")
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]


async def test_a_form_id_outside_the_routes_pattern_is_refused_naming_it(capture_url, db):
    before = await _lead_count(db)
    async with httpx.AsyncClient(base_url=capture_url) as client:
        r = await client.post("/v1/forms/no%20spaces", json={"email": "jo@example.com"},
                              headers={"accept": "application/json"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["form_id"]
    assert await _lead_count(db) == before


async def test_a_person_whose_row_another_transaction_holds_gets_a_503_to_retry_not_a_wait_for_ever(capture_url, db):
    """An admin's open transaction (or a stuck follower) holds the person's row: capture's writer gives up after
    CAPTURE_DB_LOCK_TIMEOUT_MS (2 s) and answers 503 with Retry-After; once the row is free, the retry is taken."""
    # Sales-ready, so the lead stays open while the test runs (scoring disqualifies a bare address, which closes
    # the lead: the retry would then rightly open a new one).
    email, sales_ready = f"held.{uuid.uuid4().hex[:8]}@example.com", {"job_title": "Chief Marketing Officer",
                                                                      "country": "US", "offer": "demo"}
    # With a key: only a key holder is told the open lead a touch went to.
    async with httpx.AsyncClient(base_url=capture_url, timeout=15, headers=KEY_HEADERS) as client:
        first = await client.post("/v1/leads", json={"email": email, **sales_ready})
        assert first.status_code == 202
        async with db.connect() as conn, conn.begin():
            (await conn.execute(sa.text("SELECT person_key FROM capture.people WHERE open_lead_id = :lead FOR UPDATE"),
                                {"lead": first.json()["lead_id"]})).scalar_one()  # the person's row, held
            waited = time.monotonic()
            r = await client.post("/v1/leads", json={"email": email, **sales_ready})
            waited = time.monotonic() - waited
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert waited < 10
        again = await client.post("/v1/leads", json={"email": email, **sales_ready})
    assert again.status_code == 202 and again.json()["lead_id"] == first.json()["lead_id"] and again.json()["existing"]
