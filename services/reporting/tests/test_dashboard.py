"""The dashboard's sign-in and sign-out, with the key and session store stood in for: what they end, and what
they answer; and its page and the API's answers, with the reports stood in for."""

import re
import uuid
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout

from leadpipe_common import auth
from leadpipe_common.http import install_problem_handlers
from leadpipe_common.testing.fakes import NoKeysStored, NothingSignedOut
from leadpipe_common.throttle import parse_rate
from reporting import dashboard, reports
from reporting.app import create_app
from reporting.domain import funnel_stages
from reporting.settings import ReportingSettings

SESSIONS = auth.Sessions("s3cret")


class Keys:
    """Records the sessions signed out, or fails as an unreachable database does."""

    def __init__(self, down: bool = False) -> None:
        self.ended: list[auth.Session] = []
        self.down = down

    async def end(self, session: auth.Session) -> None:
        if self.down:
            raise ConnectionRefusedError("database down")
        self.ended.append(session)

    def session_key_id(self, who: auth.Principal) -> str:
        return who.key_id

    def seen_valid(self, token: str) -> bool:
        return False  # every key is new here: counted, then looked up


def client(keys: Keys, cookie: str | None, public_origins: tuple[str, ...] = ()) -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(dashboard.router)
    app.state.sessions, app.state.keys, app.state.public_origins = SESSIONS, keys, public_origins
    app.state.wrong_keys = auth.WrongKeys(parse_rate("30/minute", "test"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting",
                             cookies={auth.SESSION_COOKIE: cookie} if cookie else None)


ANALYST = auth.Principal(key_id="def456", name="analyst", scopes=frozenset({auth.READ_REPORTS}))


class Valid(Keys):
    """Takes every key and every session for the analyst's."""

    async def authenticate(self, key: str) -> auth.Principal:
        return ANALYST

    async def of_session(self, session: auth.Session) -> auth.Principal:
        return ANALYST


async def test_signing_out_ends_the_session_of_the_cookie_for_every_copy_of_it():
    keys, cookie = Keys(), SESSIONS.issue("abc123")
    async with client(keys, cookie) as browser:
        signed_out = await browser.post("/dashboard/logout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/dashboard/login"
    assert keys.ended == [SESSIONS.read(cookie)]


@pytest.mark.parametrize("cookie", [None, "abc123.9999999999.nonce.forged",
                                    auth.Sessions("another secret").issue("abc123"),
                                    auth.Sessions("s3cret", clock=lambda: 0).issue("abc123")],
                         ids=["none", "forged", "signed elsewhere", "expired"])
async def test_signing_out_without_a_session_of_ours_just_signs_the_browser_out(cookie):
    keys = Keys()
    async with client(keys, cookie) as browser:
        signed_out = await browser.post("/dashboard/logout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/dashboard/login"
    assert f'{auth.SESSION_COOKIE}=""' in signed_out.headers["set-cookie"] and keys.ended == []


async def test_a_sign_out_the_database_cannot_record_keeps_the_cookie_and_says_to_try_again():
    async with client(Keys(down=True), SESSIONS.issue("abc123")) as browser:
        failed = await browser.post("/dashboard/logout")
    assert failed.status_code == 503 and "please try again" in failed.text
    assert "set-cookie" not in failed.headers and 'action="/dashboard/logout"' in failed.text


async def test_a_sign_in_the_database_cannot_check_now_says_to_try_again():
    """Every pooled connection taken is no OSError: it was a 500 on the sign-in page."""
    class Busy(Keys):
        async def authenticate(self, key: str) -> None:
            raise PoolTimeout("QueuePool limit of size 10 overflow 10 reached")

    async with client(Busy(), None) as browser:
        failed = await browser.post("/dashboard/login", data={"key": "lpk_abc.def"})
    assert failed.status_code == 503 and "cannot be checked right now" in failed.text


async def test_signing_in_again_ends_the_session_the_browser_had():
    """The new cookie replaces the old one in this browser only: a copy of the old one must stop working too."""
    keys, old = Valid(), SESSIONS.issue("abc123")
    async with client(keys, old) as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"})
    assert signed_in.status_code == 200 and auth.SESSION_COOKIE in signed_in.headers["set-cookie"]
    assert keys.ended == [SESSIONS.read(old)]
    # What a browser that blocks refreshes shows: a page of its own, with a heading and the way on.
    assert '<html lang="en">' in signed_in.text and "<h1>Signed in</h1>" in signed_in.text
    assert 'content="0; url=/dashboard"' in signed_in.text and '<a href="/dashboard">' in signed_in.text


async def test_a_refused_sign_in_leaves_the_session_the_browser_had():
    class WithoutReports(Keys):
        async def authenticate(self, key: str) -> auth.Principal:
            return auth.Principal(key_id="ghi789", name="importer", scopes=frozenset({"capture:write"}))

    keys = WithoutReports()
    async with client(keys, SESSIONS.issue("abc123")) as browser:
        refused = await browser.post("/dashboard/login", data={"key": "lpk_ghi789.secret"})
    assert refused.status_code == 403 and keys.ended == []


class Reader:
    """The key of a reader."""

    async def authenticate(self, key: str) -> auth.Principal:
        return auth.Principal(key_id="abc123", name="reader", scopes=frozenset({"reports:read"}))

    def seen_valid(self, token: str) -> bool:
        return True


class Empty:
    """A database connection that finds nothing (no sources, no leads)."""

    async def __aenter__(self) -> "Empty":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def execute(self, statement: object) -> list:
        return []


async def dashboard_page(monkeypatch: pytest.MonkeyPatch, **params: str) -> str:
    """The dashboard's page for ``params``, every report stood in for by an empty one."""
    async def report(conn, f, *args):  # noqa: ANN001, ANN202
        return {"stages": funnel_stages({}), "exits": {},
                "rows": [], "compliance": None, "teams": [], "reps": [], "spam": 0, "released": 0, "omitted": 0,
                "won_revenue": {}}

    for name in ("funnel", "breakdown", "attribution", "velocity", "sla", "rejections", "spam_report"):
        monkeypatch.setattr(reports, name, report)
    app = FastAPI()
    app.include_router(dashboard.router)
    app.state.sessions, app.state.keys = SESSIONS, Reader()
    app.state.runtime = SimpleNamespace(request_connection=Empty)
    app.state.wrong_keys = auth.WrongKeys(parse_rate("30/minute", "test"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting",
                                 headers={"Authorization": "Bearer lp_abc123_secret"}) as browser:
        page = await browser.get("/dashboard", params=params)
    assert page.status_code == 200, page.text
    return page.text


@pytest.mark.parametrize("model, credit", [("first", "first touch"), ("last", "last touch"),
                                           ("linear", "linear (every touch)")])
async def test_the_won_revenue_card_names_the_attribution_model_picked(monkeypatch, model, credit):
    card = re.search(r'data-kpi="Won revenue">[^<]*</div><div class="s">([^<]*)<',
                     await dashboard_page(monkeypatch, model=model))
    assert card is not None and card.group(1) == f"credit: {credit}"


@pytest.mark.parametrize("model, says", [("first", False), ("last", True), ("linear", True)])
async def test_won_by_campaign_says_a_source_picks_leads_by_first_touch_when_the_credit_may_go_elsewhere(
        monkeypatch, model, says):
    """Under last touch or linear, a lead first touched via google may credit a bing campaign: shown under google,
    the row read as google's."""
    hint = re.search(r'<h2>Won by campaign</h2><p class="hint">([^<]*)<',
                     await dashboard_page(monkeypatch, model=model, source="google"))
    assert hint is not None and ("first touched via google" in hint.group(1)) is says


def service(keys: Keys, cookie: str | None = None, **settings: object) -> httpx.AsyncClient:
    """The whole service (its settings, the shared edge), without its consumer, broker or database."""
    app = create_app(ReportingSettings(**settings))
    app.state.keys, app.state.sessions = keys, SESSIONS
    app.state.runtime = SimpleNamespace(request_connection=Empty)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting",
                             cookies={auth.SESSION_COOKIE: cookie} if cookie else None)


async def test_behind_a_proxy_that_terminates_tls_the_session_cookie_is_secure():
    """The proxy forwards plain http (uvicorn believes no X-Forwarded-Proto): the request's scheme says nothing."""
    async with service(Valid(), public_origin="https://reports.example.com") as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"},
                                       headers={"sec-fetch-site": "same-origin", "x-forwarded-proto": "https"})
    assert signed_in.status_code == 200 and "; secure" in signed_in.headers["set-cookie"].lower()


@pytest.mark.parametrize("origin, secure", [("https://reports.example.com", True),
                                            ("http://leadpipe.internal", False)])
async def test_reached_under_two_names_the_session_cookie_is_secure_for_the_https_one_alone(origin, secure):
    """A Secure cookie set for the http name would be dropped by the browser: signed in, it would land on the
    sign-in page again."""
    async with service(Valid(), public_origin="https://reports.example.com,http://leadpipe.internal") as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"},
                                       headers={"sec-fetch-site": "same-origin", "origin": origin})
    assert signed_in.status_code == 200 and ("; secure" in signed_in.headers["set-cookie"].lower()) is secure


@pytest.mark.parametrize("origin, secure", [("https://reports.example.com", True), ("http://reports.example.com", False),
                                            ("null", False)])
async def test_without_a_public_origin_the_session_cookie_is_secure_when_the_browser_says_its_page_is_https(
        origin, secure):
    """Behind a proxy terminating TLS with REPORTING_PUBLIC_ORIGIN unset, the cookie was not Secure: a signed-in
    browser's first http:// request to the host (a bookmark, a typed name) sent the session in clear."""
    async with service(Valid()) as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"},
                                       headers={"sec-fetch-site": "same-origin", "origin": origin})
    assert signed_in.status_code == 200 and ("; secure" in signed_in.headers["set-cookie"].lower()) is secure


async def test_a_sign_in_from_an_http_page_under_an_https_public_origin_is_sent_to_the_https_one():
    """A proxy that serves the name over plain http too: the cookie is Secure, as the setting says, and a browser on
    the http page would drop it and land on the sign-in page again without a word."""
    async with service(Valid(), public_origin="https://reports.example.com") as browser:
        refused = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"},
                                     headers={"sec-fetch-site": "same-origin", "origin": "http://reports.example.com"})
    assert refused.status_code == 400 and "set-cookie" not in refused.headers
    assert "sign in at https://reports.example.com/dashboard/login" in refused.text


async def test_served_over_plain_http_the_session_cookie_is_not_secure_or_the_browser_would_drop_it():
    async with service(Valid()) as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"},
                                       headers={"sec-fetch-site": "same-origin"})
    assert signed_in.status_code == 200 and "secure" not in signed_in.headers["set-cookie"].lower()


REPORTS, INTERNAL = "https://reports.example.com", "https://leadpipe.internal.example.com"


@pytest.mark.parametrize("public_origins, origin, allowed", [
    ((REPORTS,), REPORTS, True),
    ((REPORTS,), "http://reporting", False),
    ((REPORTS,), "https://evil.example", False),
    ((REPORTS, INTERNAL), INTERNAL, True),
    ((REPORTS, INTERNAL), "https://evil.example", False),
    ((), "http://reporting", True),
    ((), "https://evil.example", False),
], ids=["its public origin", "the address behind the proxy", "another site", "its second name",
        "another site, with two names", "unset: the address it came to", "unset: another site"])
async def test_a_browser_that_sends_only_origin_signs_in_from_a_public_origin_alone(public_origins, origin, allowed):
    """Safari before 16.4 and Firefox before 90 send no Sec-Fetch-Site: their Origin is all there is to go by."""
    async with client(Valid(), None, public_origins=public_origins) as browser:
        answer = await browser.post("/dashboard/login", data={"key": "lpk_def456.secret"}, headers={"origin": origin})
    assert answer.status_code == (200 if allowed else 403)


@pytest.mark.parametrize("method, path, answered", [
    ("GET", "/dashboard", 303), ("GET", "/v1/reports/funnel", 401), ("GET", "/docs", 401),
    ("POST", "/dashboard/logout", 303), ("POST", "/dashboard/login", 200),
])
async def test_a_session_cookie_with_a_non_ascii_byte_is_no_session_not_a_server_error(method, path, answered):
    """A browser sends what a page or an extension set, in any bytes: it was a 500 on every protected route."""
    async with service(Valid()) as browser:
        answer = await browser.request(method, path, headers={"cookie": b"leadpipe_session=abc123.1.n.\xc3\xa9"},
                                       data={"key": "lpk_def456.secret"} if path == "/dashboard/login" else None)
    assert answer.status_code == answered


@pytest.fixture
def no_leads(monkeypatch):
    stages = [{"stage": stage, "count": 0, "conversion": None} for stage in dashboard.STAGE_LABELS]

    async def funnel(conn, f):
        return {"stages": stages, "exits": {}}

    async def rows(*args, **kwargs):
        return {"rows": [], "teams": [], "reps": [], "compliance": None, "spam": 0, "released": 0, "omitted": 0,
                "won_revenue": {}}

    monkeypatch.setattr(reports, "funnel", funnel)
    for report in ("breakdown", "attribution", "velocity", "sla", "rejections", "spam_report"):
        monkeypatch.setattr(reports, report, rows)


@pytest.mark.parametrize("path, credentials", [
    ("/dashboard", {"cookie": f"theme=dark; {auth.SESSION_COOKIE}={SESSIONS.issue('def456')}"}),
    ("/dashboard", {"authorization": "Bearer lpk_def456_secret"}),
    ("/v1/reports/funnel", {"cookie": f"{auth.SESSION_COOKIE}={SESSIONS.issue('def456')}"}),
    ("/v1/reports/funnel", {"x-api-key": "lpk_def456_secret"}),
    ("/v1/reports/funnel?format=csv", {"authorization": "Bearer lpk_def456_secret"}),
], ids=["the dashboard, signed in", "the dashboard, with a key", "JSON, signed in", "JSON, with a key", "CSV"])
async def test_what_a_session_or_a_key_reads_is_kept_by_no_cache(no_leads, path, credentials):
    """After signing out on a shared computer, Back must not show the dashboard from the browser's cache."""
    async with service(Valid()) as browser:
        answer = await browser.get(path, headers=credentials)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"


async def test_signing_out_tells_the_browser_to_drop_what_it_cached_of_the_session():
    async with client(Keys(), SESSIONS.issue("abc123")) as browser:
        signed_out = await browser.post("/dashboard/logout")
    assert signed_out.status_code == 303 and signed_out.headers["clear-site-data"] == '"cache"'


async def test_a_dashboard_session_opened_with_the_bootstrap_key_ends_when_the_key_is_changed(no_leads):
    bootstrap, rotated = "the-first-bootstrap-key-0123456789", "the-next-bootstrap-key-0123456789"
    async with service(auth.Keys(NothingSignedOut(), bootstrap)) as browser:
        signed_in = await browser.post("/dashboard/login", data={"key": bootstrap})
        assert signed_in.status_code == 200 and (await browser.get("/v1/reports/funnel")).status_code == 200
        cookie = browser.cookies[auth.SESSION_COOKIE]
    async with service(auth.Keys(NothingSignedOut(), rotated), cookie) as browser:
        assert (await browser.get("/v1/reports/funnel")).status_code == 401


async def test_wrong_keys_at_the_sign_in_are_counted_per_address_with_those_sent_to_the_api():
    """Nothing limited guesses at the sign-in: the bootstrap key, chosen by a person, could be guessed there at the
    full request rate, and each made-up key cost a lookup."""
    bootstrap, stored = "the-bootstrap-key-of-a-person-2024", NoKeysStored()
    async with service(auth.Keys(stored, bootstrap), bad_key_rate_limit="3/minute") as browser:
        codes = [(await browser.post("/dashboard/login", data={"key": auth.new_key()[1]})).status_code,
                 (await browser.get("/v1/reports/funnel", headers={"x-api-key": auth.new_key()[1]})).status_code,
                 (await browser.post("/dashboard/login", data={"key": "the-bootstrap-key-of-a-person-2025"})
                  ).status_code]
        guessing = await browser.post("/dashboard/login", data={"key": "the-bootstrap-key-of-a-person-2023"})
        owner = await browser.post("/dashboard/login", data={"key": bootstrap})
    assert codes == [401, 401, 401] and stored.lookups == 2
    assert guessing.status_code == 429 and guessing.headers["retry-after"].isdigit()
    assert "try again in" in guessing.text and 'action="/dashboard/login"' in guessing.text
    # The key itself too, from this address until the window ends: its 200 would tell the guesser it was right.
    assert owner.status_code == 429 and "set-cookie" not in owner.headers


@pytest.mark.parametrize("seconds, shown", [(-7200.0, "0 s"), (0.0, "0 s"), (0.4, "0.4 s"),
                                             (71.9 * 3600, "3 d"), (2 * 86400, "2 d")])
def test_a_duration_is_never_shown_below_zero(seconds, shown):
    """A step dated before the one it follows is reached at once: "-7200.0 s" read as a time spent."""
    assert dashboard.duration(seconds) == shown


@pytest.mark.parametrize("revenue, shown", [
    ({"EUR": "0.50"}, "0.50 EUR"), ({"EUR": "2.50"}, "2.50 EUR"), ({"EUR": "1200.00"}, "1,200 EUR"),
    ({"USD": "1500.25", "EUR": "1200.00"}, "1,200 EUR · 1,500.25 USD"), ({"EUR": "0.005"}, "0.01 EUR"),
])
def test_won_revenue_shows_its_cents_unless_it_is_whole(revenue, shown):
    """Rounded to whole units half to even, a deal of 0.50 EUR was "0 EUR" and one of 2.50 "2 EUR"."""
    assert dashboard.money(revenue) == shown


def test_a_currency_is_written_into_the_page_escaped():
    """A lifecycle event's currency is any text: it was the one value written into the page as it came."""
    assert dashboard.money({"<script>x</script>": "10.00"}) == "10 &lt;script&gt;x&lt;/script&gt;"


async def test_a_moment_the_address_gives_stays_in_the_filter_not_cleared_by_a_date_picker(no_leads):
    """A date input clears a value that is not a plain date: Apply then sent since= and the report widened to all
    time without a word."""
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", params={"since": "2026-11-23T09:00Z", "until": "2026-11-30"},
                                 headers={"authorization": "Bearer lpk_def456_secret"})
    assert page.status_code == 200
    assert '<input type="text" name="since" value="2026-11-23T09:00Z">' in page.text
    assert '<input type="date" name="until" value="2026-11-30">' in page.text


@pytest.mark.parametrize("asked, said", [
    ({"since": "bad"}, "since: &#x27;bad&#x27; is not an ISO date"),
    ({"since": "2026-11-02", "until": "2026-11-01"}, "until: must be after since"),
    # Every one wrong, not only the first: corrected one at a time, each page found the next.
    ({"since": "bad", "until": "worse", "model": "bogus"},
     "since: &#x27;bad&#x27; is not an ISO date (2026-11-23) or date-time (2026-11-23T09:00Z); "
     "until: &#x27;worse&#x27; is not an ISO date (2026-11-23) or date-time (2026-11-23T09:00Z); "
     "model: must be one of first, last, linear."),
])
async def test_filters_that_are_wrong_get_the_page_saying_what_is_wrong_not_the_apis_json(no_leads, asked, said):
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", params=asked, headers={"authorization": "Bearer lpk_def456_secret"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert f'<p class="error" role="alert">No report for these filters: {said}' in page.text
    assert f'name="since" value="{asked["since"]}"' in page.text  # kept, to be corrected



async def test_a_credit_model_it_does_not_have_gets_the_page_naming_the_ones_it_has_not_the_apis_json(no_leads):
    """FastAPI checked the model before the page could: ?model=bogus answered the API's 422 JSON in the browser."""
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", params={"since": "2026-11-01", "model": "bogus"},
                                 headers={"authorization": "Bearer lpk_def456_secret"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert ('<p class="error" role="alert">No report for these filters: model: must be one of first, last, linear'
            in page.text)
    assert 'name="since" value="2026-11-01"' in page.text  # kept, to be corrected


async def test_report_filters_that_are_wrong_are_each_named_in_one_answer_of_the_api(no_leads):
    """The API named only the first: a client correcting since was then told of until, one request at a time."""
    async with service(Valid()) as client:
        answer = await client.get("/v1/reports/funnel", params={"since": "bad", "until": "worse"},
                                  headers={"authorization": "Bearer lpk_def456_secret"})
    assert answer.status_code == 422
    assert [(e["field"], e["reason"]) for e in answer.json()["errors"]] == [
        ("since", "'bad' is not an ISO date (2026-11-23) or date-time (2026-11-23T09:00Z)"),
        ("until", "'worse' is not an ISO date (2026-11-23) or date-time (2026-11-23T09:00Z)")]


#: A report as built, in values an answer model would write otherwise (a whole 1 of a fractional figure as 1.0, a
#: time's +00:00 as Z) and a key none names.
AS_BUILT = {"filters": {"since": "2026-11-01T00:00:00+00:00", "until": None, "source": None}, "dimension": "source",
            "model": "linear", "rows": [{"value": "google", "captured": 1, "won": 1, "close_rate": 1.0,
                                         "won_revenue": {"EUR": "1200.00"}}], "note": "kept"}


@pytest.mark.parametrize("path, report", [
    ("/v1/reports/funnel", "funnel"), ("/v1/reports/funnel/by/source", "breakdown"),
    ("/v1/reports/attribution/source?model=linear", "attribution"), ("/v1/reports/velocity", "velocity"),
    ("/v1/reports/sla", "sla"), ("/v1/reports/rejections", "rejections"), ("/v1/reports/spam", "spam_report"),
    (f"/v1/leads/{uuid.UUID(int=1)}/timeline", "timeline"),
])
async def test_each_report_is_sent_byte_for_byte_as_built_not_written_again_by_its_answer_model(
        monkeypatch, path, report):
    """The answer models describe the reports for the OpenAPI document; the JSON clients read is what the routes
    sent before they had models."""
    async def built(*args, **kwargs):
        return AS_BUILT

    monkeypatch.setattr(reports, report, built)
    async with service(Valid()) as client:
        answer = await client.get(path, headers={"authorization": "Bearer lpk_def456_secret"})
    assert answer.status_code == 200 and answer.content == JSONResponse(AS_BUILT).body


async def test_a_wrong_format_is_named_in_the_same_answer_as_the_wrong_filters_not_after_them(no_leads):
    async with service(Valid()) as client:
        answer = await client.get("/v1/reports/sla", params={"since": "nope", "format": "xml"},
                                  headers={"authorization": "Bearer lpk_def456_secret"})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["format", "since"]


async def test_a_browser_without_a_session_is_sent_to_sign_in_whatever_credit_model_it_asks_for():
    """The model's 422 JSON came before the redirect, as if the page were there to be had without signing in."""
    async with service(Keys()) as browser:
        answer = await browser.get("/dashboard", params={"model": "bogus"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"

def listed(page: str) -> list[tuple[str, bool]]:
    """The source filter's options: (value, selected)."""
    select = re.search(r'<select name="source">(.*?)</select>', page, re.S)
    assert select is not None
    return [(value, bool(selected)) for value, selected in re.findall(r'<option value="([^"]*)"( selected)?>',
                                                                     select.group(1))]


def sources_with_most_leads(monkeypatch, names: list[str], more: bool) -> None:
    async def sources(conn, f, limit):  # noqa: ANN001, ANN202
        return names, more

    monkeypatch.setattr(reports, "sources", sources)


async def test_a_source_asked_for_beyond_those_listed_is_listed_selected_not_shown_as_all_sources(no_leads,
                                                                                                monkeypatch):
    """Its figures are one source's: "all sources" over them would mislead."""
    sources_with_most_leads(monkeypatch, ["google", "newsletter"], more=True)
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", params={"source": "bing"},
                                 headers={"authorization": "Bearer lpk_def456_secret"})
    assert page.status_code == 200
    assert listed(page.text) == [("", False), ("bing", True), ("google", False), ("newsletter", False)]


@pytest.mark.parametrize("more", [True, False], ids=["more sources", "every source"])
async def test_the_source_list_says_when_it_holds_only_the_sources_with_the_most_leads(no_leads, monkeypatch, more):
    sources_with_most_leads(monkeypatch, ["google", "newsletter"], more=more)
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", headers={"authorization": "Bearer lpk_def456_secret"})
    assert page.status_code == 200 and ("the 2 with the most leads in range" in page.text) is more


#: A row of any of the tables keyed by free text (a source, a campaign, a form).
ROW = {"source": "src", "form_id": "demo", "reason_code": "no-budget", "captured": 1, "mql": 0, "routed": 0,
       "accepted": 0, "won": 0, "close_rate": None, "won_revenue": {}, "rejections": 1, "leads": 1, "spam": 1,
       "released": 0}


@pytest.mark.parametrize("report, panel, csv", [
    ("breakdown", "Conversion by source",
     "/v1/reports/funnel/by/source?since=2026-11-01&amp;format=csv&amp;limit=10000"),
    ("attribution", "Won by campaign",
     "/v1/reports/attribution/campaign?since=2026-11-01&amp;model=first&amp;format=csv&amp;limit=10000"),
    ("rejections", "Rejection reasons by source",
     "/v1/reports/rejections?since=2026-11-01&amp;format=csv&amp;limit=10000"),
    ("spam_report", "Spam kept out, by form and source",
     "/v1/reports/spam?since=2026-11-01&amp;format=csv&amp;limit=10000"),
])
async def test_a_table_of_more_rows_than_it_shows_asks_for_the_first_and_links_the_csv_of_them_all(
        no_leads, monkeypatch, report, panel, csv):
    """A bot posting a new campaign or source each time made a table of as many rows, and the page megabytes;
    reading them all to show a hundred could take more memory than reporting has."""
    asked = []

    async def many(*args, **kwargs):  # noqa: ANN202
        limit = args[-1]
        asked.append(limit)
        rows = [{**ROW, "value": f"v{n}"} for n in range(250)]
        return {"rows": rows[:limit], "omitted": len(rows[limit:]), "teams": [], "reps": [], "compliance": None,
                "spam": 0, "released": 0, "won_revenue": {}}

    monkeypatch.setattr(reports, report, many)
    async with service(Valid()) as browser:
        page = await browser.get("/dashboard", params={"since": "2026-11-01"},
                                 headers={"authorization": "Bearer lpk_def456_secret"})
    section = re.search(rf"<h2>{re.escape(panel)}</h2>(.*?)</section>", page.text, re.S)
    assert page.status_code == 200 and section is not None
    assert asked == [dashboard.ROWS_SHOWN]
    assert section.group(1).count("<tr>") == 1 + dashboard.ROWS_SHOWN  # the head, then the rows shown
    assert f"The first {dashboard.ROWS_SHOWN} of 250" in section.group(1)
    assert f'<a href="{csv}">CSV</a>' in section.group(1)


def test_a_table_of_no_more_rows_than_it_shows_shows_them_all_without_a_note():
    rows = [{**ROW, "value": f"v{n}"} for n in range(dashboard.ROWS_SHOWN)]
    report = {"rows": rows, "omitted": 0}
    assert dashboard.top(report, "sources", "/v1/reports/funnel/by/source", {}) == (rows, "")


def test_a_table_of_more_rows_than_a_csv_holds_says_the_csv_has_the_first_of_them():
    rows = [{**ROW, "value": f"v{n}"} for n in range(dashboard.ROWS_SHOWN)]
    _, note = dashboard.top({"rows": rows, "omitted": 20_000}, "sources", "/v1/reports/funnel/by/source", {})
    assert f"The first {dashboard.ROWS_SHOWN} of 20,100 sources; the first 10,000:" in note


def browser_request(path: str, query: str = "", accept: str = "text/html,application/xhtml+xml"):  # noqa: ANN201
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
                    "headers": [(b"accept", accept.encode())]})


async def test_a_refusal_on_the_dashboard_is_a_page_for_a_browser_with_a_way_on_and_json_for_the_api():
    """A database blip while the dashboard read its session or its reports answered a signed-in person with the
    API's JSON: no title, no heading, nothing to click."""
    from leadpipe_common.http import FieldProblem, Problem

    blip = Problem(503, "the database cannot serve this right now; please retry", headers={"Retry-After": "5"})
    page = await dashboard.problem_response(browser_request("/dashboard", "since=2026-01-01&source=<b>"), blip)
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "5"
    body = page.body.decode()
    assert '<html lang="en">' in body and "<title>leadpipe · The reports cannot be read right now</title>" in body
    assert '<a href="/dashboard?since=2026-01-01&amp;source=&lt;b&gt;">Try again</a> in 5 s' in body
    refused = await dashboard.problem_response(browser_request("/dashboard"), Problem(
        422, "the request is invalid", [FieldProblem("source", "holds U+0000")]))
    assert "The request is invalid. source: holds U+0000" in refused.body.decode()
    assert 'href="/dashboard">Back to the dashboard</a>' in refused.body.decode()
    for request in (browser_request("/v1/reports/funnel"), browser_request("/dashboard", accept="application/json")):
        answer = await dashboard.problem_response(request, blip)
        assert answer.headers["content-type"] == "application/json" and answer.status_code == 503


def test_reportings_app_renders_its_problems_through_the_dashboards_pages(monkeypatch):
    from leadpipe_common.http import Problem
    from reporting.app import create_app
    from reporting.settings import ReportingSettings

    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert create_app(ReportingSettings()).exception_handlers[Problem] is dashboard.problem_response
