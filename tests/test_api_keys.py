"""API keys with scopes on every endpoint but capture's public ones and the probes, through the real services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common.local.stack import Stack
from leadpipe_common.testing.plugin import KEY_HEADERS


def url(stack: Stack, service: str) -> str:
    return next(p.url for p in stack.processes if p.service == service)


def keys(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leadpipe_common.keys", *args], capture_output=True, text=True,
                          env={**stack.env()}, timeout=60)


def create(stack: Stack, name: str, *scopes: str) -> tuple[str, str]:
    done = keys(stack, "create", "--name", name, *(a for s in scopes for a in ("--scope", s)))
    assert done.returncode == 0, done.stderr
    # The key alone on stdout (`> file` makes a credentials file), what it is on stderr.
    key = done.stdout.strip()
    assert "\n" not in key and "shown only now" in done.stderr, (done.stdout, done.stderr)
    return key.split("_")[1], key


def protected(stack: Stack) -> list[tuple[str, str, dict]]:
    lead = uuid.uuid4()
    return [
        ("POST", f"{url(stack, 'routing')}/v1/leads/{lead}/disposition", {"json": {"outcome": "accepted", "rep_id": "x"}}),
        ("GET", f"{url(stack, 'routing')}/v1/leads/{lead}/handoff", {}),
        ("GET", f"{url(stack, 'reporting')}/v1/reports/funnel", {}),
        ("GET", f"{url(stack, 'reporting')}/v1/leads/{lead}/timeline", {}),
        ("GET", f"{url(stack, 'enrichment')}/asyncapi.json", {}),
        ("GET", f"{url(stack, 'capture')}/asyncapi.yaml", {}),
        *(("GET", f"{url(stack, service)}{doc}", {}) for service in ("capture", "routing", "reporting")
          for doc in ("/docs", "/openapi.json")),
        *(("GET", f"{url(stack, service)}/metrics", {}) for service in ("capture", "delivery")),
    ]


async def test_without_a_key_every_protected_endpoint_answers_401_with_a_challenge(stack):
    async with httpx.AsyncClient() as client:
        for method, target, kw in protected(stack):
            r = await client.request(method, target, **kw)
            assert r.status_code == 401, (target, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer") and "API key" in r.json()["error"]
        wrong = await client.get(protected(stack)[2][1], headers={"Authorization": "Bearer lpk_nope_nope"})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["error"]
        dashboard = await client.get(f"{url(stack, 'reporting')}/dashboard")
        assert dashboard.status_code == 303 and dashboard.headers["location"] == "/dashboard/login"


async def test_the_public_capture_endpoints_and_the_probes_need_no_key(stack):
    async with httpx.AsyncClient() as client:
        assert (await client.post(f"{url(stack, 'capture')}/v1/leads", json={"email": "open@example.com"})).status_code == 202
        for service in ("capture", "routing", "reporting"):
            for probe in ("/healthz", "/readyz"):
                assert (await client.get(f"{url(stack, service)}{probe}")).status_code == 200, (service, probe)


async def test_a_key_works_only_for_its_scopes_in_either_header(stack):
    _, crm = create(stack, "crm", "feedback:write")
    async with httpx.AsyncClient() as client:
        disposition = await client.post(f"{url(stack, 'routing')}/v1/leads/{uuid.uuid4()}/disposition",
                                         json={"outcome": "accepted", "rep_id": "x"}, headers={"X-API-Key": crm})
        reports = await client.get(f"{url(stack, 'reporting')}/v1/reports/funnel", headers={"Authorization": f"Bearer {crm}"})
        # A refused report sends the tool to the hand-off (who holds the lead now, which lead a merge kept).
        handoff = await client.get(f"{url(stack, 'routing')}/v1/leads/{uuid.uuid4()}/handoff", headers={"X-API-Key": crm})
    assert disposition.status_code == 404  # past the key: routing never routed this lead
    assert handoff.status_code == 404
    assert reports.status_code == 403 and "reports:read" in reports.json()["error"]


async def test_a_key_of_another_scope_is_told_every_scope_that_would_do(stack):
    _, importer = create(stack, "importer-2", "capture:write")
    async with httpx.AsyncClient(headers={"X-API-Key": importer}) as client:
        handoff = await client.get(f"{url(stack, 'routing')}/v1/leads/{uuid.uuid4()}/handoff")
    assert handoff.status_code == 403
    assert "reports:read or feedback:write" in handoff.json()["error"]


async def test_a_scrapers_key_reads_every_services_metrics_and_nothing_else(stack):
    _, scraper = create(stack, "prometheus", "metrics:read")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {scraper}"}) as client:
        scraped = {p.name: await client.get(f"{p.url}/metrics") for p in stack.processes}
        reports = await client.get(f"{url(stack, 'reporting')}/v1/reports/funnel")
        subscriptions = await client.get(f"{url(stack, 'delivery')}/v1/subscriptions")
    assert {s: r.status_code for s, r in scraped.items()} == dict.fromkeys(scraped, 200)
    assert all("leadpipe_http_requests_total" in r.text for r in scraped.values())
    assert reports.status_code == subscriptions.status_code == 403


async def test_a_revoked_key_stops_working_within_seconds_without_a_restart(stack):
    key_id, analyst = create(stack, "analyst", "reports:read")
    funnel = f"{url(stack, 'reporting')}/v1/reports/funnel"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {analyst}"}) as client:
        assert (await client.get(funnel)).status_code == 200
        done = keys(stack, "revoke", key_id)
        assert done.returncode == 0, done.stderr
        for _ in range(50):
            if (await client.get(funnel)).status_code == 401:
                break
            await asyncio.sleep(0.2)
        assert (await client.get(funnel)).status_code == 401


async def test_keys_are_stored_and_listed_only_as_digests(stack, db):
    key_id, secret_key = create(stack, "importer", "capture:write")
    limited = keys(stack, "create", "--name", "bulk-importer", "--scope", "capture:write", "--rate-limit", "50/second")
    assert limited.returncode == 0, limited.stderr
    listing = keys(stack, "list")
    assert key_id in listing.stdout and secret_key not in listing.stdout and "importer" in listing.stdout
    # Its own rate limit is shown, so a key rotated by the runbook keeps it.
    [bulk] = [line for line in listing.stdout.splitlines() if "bulk-importer" in line]
    assert bulk.endswith("active  rate limit 50/second")
    async with db.connect() as conn:
        row = (await conn.execute(sa.text("SELECT * FROM auth.api_keys WHERE key_id = :id"), {"id": key_id})).one()
    assert secret_key.split("_", 2)[2].encode() not in bytes(row.secret_sha256) and len(row.secret_sha256) == 32
    assert secret_key not in str(row)


async def test_the_bootstrap_key_is_an_admin_key(stack):
    async with httpx.AsyncClient(headers=KEY_HEADERS) as client:
        assert (await client.get(f"{url(stack, 'reporting')}/v1/reports/funnel")).status_code == 200
        assert (await client.get(f"{url(stack, 'scoring')}/asyncapi.json")).status_code == 200


@pytest.mark.parametrize("command", [[sys.executable, "-m", "leadpipe_common.keys", "list"],
                                     [sys.executable, "-m", "scoring", "migrate"]])
def test_a_database_that_refuses_the_command_is_one_line_not_a_traceback(stack, command):
    """A wrong DATABASE_URL (here a database that does not exist; a wrong password alike) is the likeliest
    first-deploy mistake: the migrate jobs and init containers print what the command prints."""
    env = stack.env()
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/no_such_database"
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        'cannot use the database at DATABASE_URL: database "no_such_database" does not exist']


@pytest.mark.parametrize("command", [["list"], ["revoke", "0123456789ab"]])
async def test_listing_or_revoking_in_a_database_with_no_keys_says_so_and_makes_nothing_there(stack, command):
    """Pointed at a database the services do not use, list made the auth schema there and said "no keys yet":
    a key then made there was read by no service."""
    env = stack.env()
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "leadpipe_common.keys", *command],
                                   capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "no API keys in the database at DATABASE_URL" in done.stderr, done.stderr
    engine = create_async_engine(env["DATABASE_URL"])
    try:
        async with engine.connect() as conn:  # nothing made there
            assert (await conn.execute(sa.text("SELECT to_regclass('auth.api_keys')"))).scalar() is None
    finally:
        await engine.dispose()


def test_a_bad_scope_is_refused_with_a_message_not_a_traceback(stack):
    done = keys(stack, "create", "--name", "x", "--scope", "everything")
    assert done.returncode == 2 and "unknown scope everything" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("outcome", ["wrong key", "no reports scope"])
async def test_the_dashboard_sign_in_refuses_a_key_that_cannot_read_reports(stack, outcome):
    key = "lpk_nope_nope" if outcome == "wrong key" else create(stack, "crm-2", "feedback:write")[1]
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as client:
        r = await client.post("/dashboard/login", data={"key": key})
    assert r.status_code == (401 if outcome == "wrong key" else 403)
    assert "leadpipe_session" not in r.cookies and "Sign in" in r.text


async def test_signing_out_ends_the_session(stack):
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as client:
        signed_in = await client.post("/dashboard/login", data={"key": KEY_HEADERS["Authorization"].split()[1]})
        assert signed_in.status_code == 200 and "leadpipe_session" in client.cookies
        assert (await client.get("/dashboard")).status_code == 200
        await client.post("/dashboard/logout")
        assert (await client.get("/dashboard")).status_code == 303


async def test_a_copy_of_a_signed_out_sessions_cookie_reads_nothing_on_any_service(stack):
    """A cookie copied off a shared computer, a proxy log or a stolen one: signing out ends it on the server."""
    from leadpipe_common import auth

    key = KEY_HEADERS["Authorization"].split()[1]
    funnel, docs = f"{url(stack, 'reporting')}/v1/reports/funnel", f"{url(stack, 'capture')}/openapi.json"
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as browser:
        assert (await browser.post("/dashboard/login", data={"key": key})).status_code == 200
        async with httpx.AsyncClient(cookies={"leadpipe_session": browser.cookies["leadpipe_session"]}) as copy:
            assert (await copy.get(funnel)).status_code == 200
            assert (await copy.get(docs)).status_code == 200  # capture's processes have seen it valid too
            signed_out = await browser.post("/dashboard/logout")
            assert signed_out.status_code == 303 and "leadpipe_session" not in browser.cookies
            refused = await copy.get(funnel)  # at once in the process that signed it out
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            await asyncio.sleep(auth.CACHE_S)  # and within the cache interval in every other one
            for _ in range(4):
                assert (await copy.get(docs)).status_code == 401


async def test_a_signed_out_session_is_refused_at_once_here_and_within_the_cache_interval_elsewhere(stack, db):
    from leadpipe_common import auth

    key_id, _ = create(stack, "analyst-signing-out", "reports:read")
    now = [0.0]
    here, elsewhere = (auth.Keys(db, bootstrap=None, clock=lambda: now[0]) for _ in range(2))
    sessions = auth.Sessions("s3cret")
    session, other = sessions.read(sessions.issue(key_id)), sessions.read(sessions.issue(key_id))
    assert (await here.of_session(session)).key_id == key_id and (await elsewhere.of_session(session)).key_id == key_id
    await here.end(session)
    assert await here.of_session(session) is None
    assert await elsewhere.of_session(session) is not None  # what it looked up less than CACHE_S ago
    now[0] += auth.CACHE_S
    assert await elsewhere.of_session(session) is None
    assert (await elsewhere.of_session(other)).key_id == key_id  # the key's other sessions go on


async def test_a_sign_out_forgets_the_signed_out_sessions_whose_cookies_expired_over_an_hour_ago(db):
    from leadpipe_common import auth

    def session(expired_s: float) -> auth.Session:
        sessions = auth.Sessions("s3cret", lifetime_s=60, clock=lambda: time.time() - 60 - expired_s)
        return sessions.read(sessions.issue("abc123"))

    keys = auth.Keys(db, bootstrap=None)
    long_expired, just_expired, live = session(2 * 3600), session(60), session(-3600)
    for s in (long_expired, just_expired, live):
        await keys.end(s)
    async with db.connect() as conn:
        kept = set((await conn.execute(sa.select(auth.ended_sessions.c.nonce_sha256))).scalars())
    assert {bytes(n) for n in kept} >= {just_expired.nonce_sha256, live.nonce_sha256}
    assert long_expired.nonce_sha256 not in {bytes(n) for n in kept}


async def test_a_browser_signed_in_to_the_dashboard_reads_every_services_api_docs(stack):
    key = KEY_HEADERS["Authorization"].split()[1]
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as browser:
        assert (await browser.post("/dashboard/login", data={"key": key})).status_code == 200
        # Cookies ignore ports: the session reaches every service on the host, as in a browser.
        for service in ("capture", "scoring"):
            docs = await browser.get(f"{url(stack, service)}/docs")
            assert docs.status_code == 200 and "swagger-ui" in docs.text, service
            assert (await browser.get(f"{url(stack, service)}/openapi.json")).json()["info"]["title"] == (
                f"leadpipe {service}")


async def test_a_dashboard_session_of_an_admin_key_reads_reports_and_administers_nothing(stack):
    """The cookie goes to every service on the host, with every request of the site's pages: it only reads."""
    key = KEY_HEADERS["Authorization"].split()[1]
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as browser:
        assert (await browser.post("/dashboard/login", data={"key": key})).status_code == 200
        assert (await browser.get("/v1/reports/funnel")).status_code == 200
        quarantine = await browser.get(f"{url(stack, 'capture')}/v1/quarantine")
        assert quarantine.status_code == 403, quarantine.text
        assert "a dashboard session only reads reports" in quarantine.json()["error"]
    async with httpx.AsyncClient(headers=KEY_HEADERS) as client:  # the key itself still may
        assert (await client.get(f"{url(stack, 'capture')}/v1/quarantine")).status_code == 200


@pytest.mark.parametrize("headers", [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}])
async def test_a_page_on_another_site_can_neither_sign_a_visitor_in_nor_out(stack, headers):
    key = KEY_HEADERS["Authorization"].split()[1]
    async with httpx.AsyncClient(base_url=url(stack, "reporting")) as browser:
        forced = await browser.post("/dashboard/login", data={"key": key}, headers=headers)
        assert forced.status_code == 403 and "leadpipe_session" not in browser.cookies
        assert (await browser.post("/dashboard/login", data={"key": key},
                                   headers={"sec-fetch-site": "same-origin"})).status_code == 200
        assert (await browser.post("/dashboard/logout", headers=headers)).status_code == 403
        assert (await browser.get("/dashboard")).status_code == 200  # still signed in


async def test_made_up_key_ids_do_not_grow_a_process_memory_without_bound(db, monkeypatch):
    """Every made-up key a caller sends is looked up and remembered as unknown: only the newest are kept."""
    from leadpipe_common import auth

    monkeypatch.setattr(auth, "CACHED_KEYS", 3)
    keys = auth.Keys(db, bootstrap=None)
    for n in range(10):
        assert await keys.authenticate(f"lpk_{n:012x}_{'s' * 43}") is None
    assert len(keys._cache) == 3 and f"{9:012x}" in keys._cache


async def test_a_key_id_found_valid_is_told_from_made_up_ones_without_a_lookup(stack, db):
    """What lets capture look up a real key from an address others flood with made-up ones."""
    from leadpipe_common import auth

    keys = auth.Keys(db, bootstrap=None)
    key_id, key = create(stack, "known-importer", "capture:write")
    made_up = "lpk_000000000000_" + "s" * 43
    assert not keys.seen_valid(key)  # never looked up here
    assert (await keys.authenticate(key)).key_id == key_id and await keys.authenticate(made_up) is None
    assert keys.seen_valid(key) and not keys.seen_valid(made_up) and not keys.seen_valid("not a key")
