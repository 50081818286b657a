"""Rate limits on capture: per client address and form for browsers, per key for servers; 429 with Retry-After.

Counts are per process and capture runs two: a limit of n lets through at most 2n, hence the sums below.
"""

from __future__ import annotations

import subprocess
import sys

import httpx

from leadpipe_common.testing.plugin import KEY_HEADERS, LIMITED_FORM


def capture(stack) -> httpx.AsyncClient:  # noqa: ANN001
    return httpx.AsyncClient(base_url=next(p.url for p in stack.processes if p.service == "capture"))


async def test_a_browser_over_its_forms_limit_gets_429_with_retry_after_and_spoofing_does_not_help(stack):
    async with capture(stack) as client:
        answers = [await client.post(f"/v1/forms/{LIMITED_FORM}", data={"email": f"r{i}@example.com"},
                                     headers={"accept": "application/json", "x-forwarded-for": f"203.0.113.{i}"})
                   for i in range(7)]
        other_form = await client.post("/v1/forms/contact-us", data={"email": "r9@example.com"},
                                       headers={"accept": "application/json"})
    codes = [a.status_code for a in answers]
    assert set(codes) == {202, 429} and 3 <= codes.count(202) <= 6  # 3/minute for that form, per process
    refused = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and "too many" in refused.json()["error"]
    assert other_form.status_code == 202  # counted per form


async def test_a_json_post_naming_a_form_in_its_body_is_held_to_that_forms_limit(stack):
    """Posting to /v1/leads is no way around a form's own limit (3/minute, per process; the test before may have
    spent some of this address's already)."""
    async with capture(stack) as client:
        codes = [(await client.post("/v1/leads", json={"email": f"j{i}@example.com", "form_id": LIMITED_FORM})
                  ).status_code for i in range(7)]
    assert 429 in codes and codes.count(202) <= 6, codes


async def test_a_server_with_a_capture_write_key_is_counted_per_key_and_skips_browser_checks(stack, bootstrap):
    from leadpipe_common.testing.kafka import read_topic

    env = stack.env()
    done = subprocess.run([sys.executable, "-m", "leadpipe_common.keys", "create", "--name", "importer",
                           "--scope", "capture:write", "--rate-limit", "2/minute"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    importer = {"Authorization": f"Bearer {done.stdout.strip().splitlines()[-1]}"}
    async with capture(stack) as client:
        first = await client.post(f"/v1/forms/{LIMITED_FORM}", data={"email": "import1@example.com",
                                                                      "_gotcha": "imported as is"},
                                  headers={**importer, "accept": "application/json"})
        more = [await client.post("/v1/leads", json={"email": f"import{i}@example.com"}, headers=importer)
                for i in range(2, 6)]
        admin = await client.post("/v1/leads", json={"email": "import4@example.com"}, headers=KEY_HEADERS)
        wrong = await client.post("/v1/leads", json={"email": "x@example.com"},
                                  headers={"Authorization": "Bearer lpk_nope_nope"})
    codes = [first.status_code] + [r.status_code for r in more]
    assert first.status_code == 202 and 429 in codes and codes.count(202) <= 4  # its own 2/minute, per process
    assert admin.status_code == 202  # another key: another count
    assert wrong.status_code == 401
    # A key vouches for its sender: the honeypot does not apply, the lead is a lead.
    lead = first.json()["lead_id"]
    found = await read_topic(bootstrap, "leads.captured", where=lambda r: r.key.decode() == lead, until=bool)
    assert found

