"""What every service's HTTP edge promises: body limits and deadlines, security headers on pages, one error shape."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from leadpipe_common.local.stack import Stack
from leadpipe_common.testing.plugin import KEY_HEADERS, ROUTING_BODY_DEADLINE_S


def url(stack: Stack, service: str) -> str:
    return next(p.url for p in stack.processes if p.service == service)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_a_body_over_the_limit_is_refused_by_every_service_in_the_one_error_shape(stack, chunked):
    big = b'{"outcome": "accepted", "rep_id": "' + b"x" * 100_000 + b'"}'

    async def in_chunks():  # no content-length: the limit must count what arrives
        yield big[:50_000]
        yield big[50_000:]

    content = in_chunks() if chunked else big
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        r = await routing.post(f"/v1/leads/{uuid.uuid4()}/disposition", content=content,
                               headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "request body is larger than 64 KiB"}


async def test_a_body_still_arriving_at_the_deadline_gets_408_and_its_connection_closed(stack):
    """A client trickling a body held its connection, and up to the body limit of memory, for as long as it liked."""
    where = urlsplit(url(stack, "routing"))
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    body = b'{"outcome": "accepted", "rep_id": "ana"}'
    writer.write(f"POST /v1/leads/{uuid.uuid4()}/disposition HTTP/1.1\r\nHost: routing\r\n"
                 f"Authorization: {KEY_HEADERS['Authorization']}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    try:
        answer = await asyncio.wait_for(reader.read(), ROUTING_BODY_DEADLINE_S + 10)  # to the server's close
    finally:
        writer.close()
    head, _, sent = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"\r\nconnection: close" in head.lower()
    assert json.loads(sent) == {"error": f"the request body did not arrive within {ROUTING_BODY_DEADLINE_S:g} s"}


async def test_an_unknown_path_answers_in_the_one_error_shape(stack):
    async with httpx.AsyncClient(base_url=url(stack, "reporting"), headers=KEY_HEADERS) as reporting:
        r = await reporting.get("/v1/no/such/report")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


async def test_pages_forbid_scripts_framing_and_referrers_and_every_answer_forbids_sniffing(stack):
    async with httpx.AsyncClient(base_url=url(stack, "reporting"), headers=KEY_HEADERS) as reporting:
        dashboard = await reporting.get("/dashboard")
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        form_error = await capture.post("/v1/forms/contact-us", data={"email": "nope"}, headers={"accept": "text/html"})
        api = await capture.post("/v1/leads", json={"email": "edge@example.com"})
    for page in (dashboard, form_error):
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["x-frame-options"] == "DENY"
    assert "javascript:" not in form_error.text  # the policy would block it anyway
    assert api.status_code == 202 and api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers


async def test_a_form_post_over_the_limit_gets_a_readable_page(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        r = await capture.post("/v1/forms/contact-us", data={"email": "big@example.com", "message": "x" * 70_000},
                               headers={"accept": "text/html"})
    assert r.status_code == 413 and "text/html" in r.headers["content-type"] and "64 KiB" in r.text


async def test_a_multipart_post_over_the_limit_is_refused_as_too_large_not_as_malformed(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        r = await capture.post("/v1/forms/contact-us", data={"email": "big@example.com"},
                               files={"cv": ("cv.pdf", b"x" * 70_000, "application/pdf")},
                               headers={"accept": "application/json"})
    assert r.status_code == 413 and "64 KiB" in r.json()["error"]


async def test_text_with_a_nul_character_is_refused_at_every_edge_naming_the_field(stack):
    # PostgreSQL stores no U+0000: let in, such a lead would fail its stage's batch on every retry.
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        as_json = await capture.post("/v1/leads", json={"email": "nul@example.com", "job_title": "VP\u0000Sales"})
        as_form = await capture.post("/v1/forms/contact-us", content=b"email=nul%40example.com&utm_source=a%00b",
                                     headers={"content-type": "application/x-www-form-urlencoded",
                                              "accept": "application/json"})
        fine = await capture.post("/v1/leads", json={"email": "nul@example.com", "job_title": "VP \\u0000 Sales"})
    async with httpx.AsyncClient(base_url=url(stack, "reporting"), headers=KEY_HEADERS) as reporting:
        in_query = await reporting.get("/v1/reports/funnel", params={"source": "a\u0000b"})
        page = await reporting.get("/dashboard", params={"source": "a\u0000b"})
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        in_path = await routing.get("/v1/reps/a%00b/availability")
        nested = await routing.post(f"/v1/leads/{uuid.uuid4()}/disposition",
                                    json={"outcome": "rejected", "rep_id": "ana", "reason": "x\u0000"})
    reason = "must not contain the NUL character (U+0000)"
    for answer, field in ((as_json, "job_title"), (as_form, "utm_source"), (in_query, "source"), (page, "source"),
                          (in_path, "path"), (nested, "reason")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [{"field": field, "reason": reason}]
    assert fine.status_code == 202  # a backslash followed by "u0000" is only text


async def test_a_nul_is_found_whatever_the_content_type_says_and_an_attachment_may_hold_one(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        shouted = await capture.post("/v1/leads", content=b'{"email": "nul@example.com", "company": "a\\u0000"}',
                                     headers={"content-type": "Application/JSON; charset=utf-8"})
        with_cv = await capture.post("/v1/forms/contact-us", data={"email": "cv@example.com"},
                                     files={"cv": ("cv.pdf", b"%PDF\x00\x01\x02", "application/pdf")},
                                     headers={"accept": "application/json"})
        in_multipart = await capture.post("/v1/forms/contact-us", data={"email": "cv@example.com", "company": "a\x00"},
                                          files={"cv": ("cv.pdf", b"%PDF", "application/pdf")},
                                          headers={"accept": "application/json"})
        page = await capture.post("/v1/forms/contact-us", data={"email": "nul@example.com", "company": "a\x00"},
                                  headers={"accept": "text/html"})
    assert shouted.status_code == 422 and shouted.json()["errors"][0]["field"] == "company"
    assert with_cv.status_code == 202, with_cv.text
    assert in_multipart.status_code == 422 and in_multipart.json()["errors"][0]["field"] == "company"
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]  # a browser gets a page


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/forms/contact-us/token", "/v1/forms/contact-us/token.js"])
async def test_head_is_answered_as_get_is_without_a_body(stack, path):
    """FastAPI's routes take only the methods they name: an uptime monitor's HEAD /healthz, a link checker's HEAD of
    token.js, got 405 and reported the service down."""
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        got, head = await capture.get(path), await capture.head(path)
    assert head.status_code == got.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"] and head.content == b""
