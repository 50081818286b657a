"""API keys, dashboard sessions and the wrong keys a client sends, with no IO."""

import asyncio
import hashlib
import importlib
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from leadpipe_common import auth
from leadpipe_common.db import Unanswered
from leadpipe_common.http import install_problem_handlers
from leadpipe_common.testing.fakes import NeverAnswers, NoKeysStored, NothingSignedOut
from leadpipe_common.throttle import Throttle, parse_networks, parse_rate
from leadpipe_common.topology import SERVICES


def test_a_new_key_is_its_id_and_a_secret_of_which_only_the_digest_is_kept():
    key_id, key, digest = auth.new_key()
    assert key.startswith(f"lpk_{key_id}_") and len(key) > 50
    assert auth.split(key) == (key_id, key.split("_", 2)[2])
    assert digest == auth.digest(key.split("_", 2)[2]) and key.encode() not in digest


def test_text_that_is_not_a_key_is_not_split():
    assert auth.split("Bearer nonsense") is None and auth.split("lpk__x") is None


SECRET = "s" * 43


@pytest.mark.parametrize("token", [
    "lpk_abc_x", f"lpk_{'0' * 12}_short", f"lpk_{'0' * 11}_{SECRET}", f"lpk_{'0' * 13}_{SECRET}",
    f"lpk_{'A' * 12}_{SECRET}", f"lpk_{'0' * 12}_{SECRET}s", f"lpk_{'0' * 12}_{'s' * 42}!",
    f"lpk_{'0' * 12}_{SECRET}\n",
], ids=["made up", "short secret", "short id", "long id", "upper-case id", "long secret", "not url-safe",
        "trailing newline"])
async def test_a_key_not_shaped_as_keys_are_made_is_refused_without_a_lookup(token):
    """Each made-up lpk_<anything>_<anything> cost a database lookup, however far from a key it was."""
    stored = NoKeysStored()
    keys = auth.Keys(stored, "the-bootstrap-key-0123456789")  # type: ignore[arg-type]
    assert await keys.authenticate(token) is None and stored.lookups == 0
    assert await keys.authenticate(f"lpk_{'0' * 12}_{SECRET}") is None and stored.lookups == 1  # one of the shape is


def test_admin_grants_every_scope_and_other_scopes_only_themselves():
    crm = auth.Principal("k", "crm", frozenset({"feedback:write"}))
    assert crm.may("feedback:write") and not crm.may("reports:read")
    assert auth.BOOTSTRAP.may("reports:read") and auth.BOOTSTRAP.may("capture:write")


def test_a_session_names_its_key_until_it_expires_and_a_tampered_one_names_nothing():
    now = [1_000_000.0]
    sessions = auth.Sessions("s3cret", lifetime_s=60, clock=lambda: now[0])
    cookie = sessions.issue("abc123")
    assert sessions.read(cookie).key_id == "abc123" and sessions.read(cookie).expires == 1_000_060
    assert sessions.read(cookie.replace("abc123", "admin1")) is None
    assert auth.Sessions("other secret", clock=lambda: now[0]).read(cookie) is None
    now[0] += 61
    assert sessions.read(cookie) is None


@pytest.mark.parametrize("cookie", ["abc123.1.nonce.\u00e9", "abc123.1.nonce.\u00c3\u00a9"], ids=["latin-1", "utf-8"])
def test_a_cookie_whose_signature_holds_a_non_ascii_character_names_no_session(cookie):
    """Starlette reads a cookie's bytes as latin-1: a browser's UTF-8 arrives as two characters."""
    assert auth.Sessions("s3cret").read(cookie) is None


def test_each_session_is_named_by_the_digest_of_its_own_nonce_which_only_the_cookie_holds():
    sessions = auth.Sessions("s3cret")
    first, second = sessions.issue("abc123"), sessions.issue("abc123")
    nonce = first.split(".")[2]
    assert sessions.read(first).nonce_sha256 == hashlib.sha256(nonce.encode()).digest()
    assert sessions.read(first).nonce_sha256 != sessions.read(second).nonce_sha256
    assert nonce.encode() not in sessions.read(first).nonce_sha256


async def test_the_bootstrap_key_is_admin_without_a_database():
    keys = auth.Keys(engine=None, bootstrap="x" * 30)  # type: ignore[arg-type]
    assert await keys.authenticate("x" * 30) == auth.BOOTSTRAP
    assert await keys.authenticate("not a key") is None


BOOTSTRAP_KEY, ROTATED = "first-bootstrap-key-0123456789", "second-bootstrap-key-0123456789"


def silent_postgres() -> auth.Keys:
    """Keys on a Postgres gone silent (a network partition, a frozen host), each lookup given 50 ms."""
    return auth.Keys(NeverAnswers(), BOOTSTRAP_KEY, deadline_s=0.05)  # type: ignore[arg-type]


@pytest.mark.parametrize("unanswered", [
    lambda keys, session: keys.find(session.key_id), lambda keys, session: keys.ended(session),
    lambda keys, session: keys.end(session)], ids=["a key", "whether a session was signed out", "a sign-out"])
async def test_a_lookup_or_sign_out_postgres_never_answers_is_given_up_on_at_its_deadline(unanswered):
    session = auth.Sessions("s3cret").read(auth.Sessions("s3cret").issue("abc123def456"))
    started = time.monotonic()
    with pytest.raises(Unanswered):
        await asyncio.wait_for(unanswered(silent_postgres(), session), timeout=5)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("sent", ["a key", "a dashboard session"])
async def test_a_key_or_session_postgres_does_not_look_up_in_time_is_a_503_to_retry_never_a_401(sent):
    """A 401 tells a client its key is unknown or revoked, and a client drops such a key."""
    app = importlib.import_module("reporting.app").create_app()
    app.state.keys = silent_postgres()
    cookies = {auth.SESSION_COOKIE: app.state.sessions.issue("abc123def456")} if sent == "a dashboard session" else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting",
                                 cookies=cookies) as client:
        r = await asyncio.wait_for(client.get("/openapi.json", headers=bearer(made_up()) if not cookies else {}), 5)
    assert (r.status_code, r.headers.get("retry-after")) == (503, "5"), r.text
    assert "www-authenticate" not in r.headers


def session_of(keys: auth.Keys, sessions: auth.Sessions) -> auth.Session:
    return sessions.read(sessions.issue(keys.session_key_id(auth.BOOTSTRAP)))


async def test_a_session_the_bootstrap_key_opened_ends_when_that_key_is_changed_or_unset():
    sessions, signed_in = auth.Sessions("s3cret"), auth.Keys(NothingSignedOut(), BOOTSTRAP_KEY)
    session = session_of(signed_in, sessions)
    assert await signed_in.of_session(session) == auth.BOOTSTRAP
    assert await auth.Keys(NothingSignedOut(), BOOTSTRAP_KEY).of_session(session) == auth.BOOTSTRAP  # any replica
    assert await auth.Keys(NothingSignedOut(), ROTATED).of_session(session) is None
    assert await auth.Keys(NothingSignedOut(), None).of_session(session) is None


async def test_a_bootstrap_session_from_before_sessions_were_bound_to_the_key_is_ended():
    keys, sessions = auth.Keys(NothingSignedOut(), BOOTSTRAP_KEY), auth.Sessions("s3cret")
    assert await keys.of_session(sessions.read(sessions.issue("bootstrap"))) is None


def test_a_bootstrap_sessions_cookie_shows_neither_the_key_nor_its_digest():
    keys = auth.Keys(NothingSignedOut(), BOOTSTRAP_KEY)
    key_id = keys.session_key_id(auth.BOOTSTRAP)
    assert key_id.startswith("bootstrap-") and key_id != auth.Keys(NothingSignedOut(), ROTATED).session_key_id(
        auth.BOOTSTRAP)
    assert BOOTSTRAP_KEY not in key_id and auth.digest(BOOTSTRAP_KEY).hex()[:16] not in key_id


def test_a_stored_keys_session_names_the_key_by_its_own_id():
    analyst = auth.Principal("abc123", "analyst", frozenset({auth.READ_REPORTS}))
    assert auth.Keys(NothingSignedOut(), BOOTSTRAP_KEY).session_key_id(analyst) == "abc123"


# -- wrong keys, counted per client address -------------------------------------------------


def made_up() -> str:
    """A key of the right shape that no database holds."""
    return auth.new_key()[1]


class KeysStored(NoKeysStored):
    """A database holding the keys made with ``add``, counting the statements it is sent; each lookup lets other
    requests run meanwhile, as a database's round trip does."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, SimpleNamespace] = {}

    def add(self, *scopes: str) -> str:
        """A new key with ``scopes`` (admin when none), stored."""
        key_id, key, secret_digest = auth.new_key()
        self.rows[key_id] = SimpleNamespace(key_id=key_id, name="analyst", secret_sha256=secret_digest,
                                            scopes=list(scopes or [auth.ADMIN]), created_at=datetime.now(UTC),
                                            revoked_at=None, rate_limit=None)
        return key

    async def execute(self, statement: object) -> SimpleNamespace:
        await super().execute(statement)
        await asyncio.sleep(0)
        [key_id] = statement.compile().params.values()  # type: ignore[attr-defined]
        row = self.rows.get(key_id)
        return SimpleNamespace(first=lambda: row, scalar=lambda: False)


def service(stored: NoKeysStored, rate: str = "3/minute", proxies: str = "") -> FastAPI:
    """An app whose one route takes an admin key, on ``stored``; the time stands still for its counts (no window
    ends within a test)."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/admin", dependencies=[auth.needs(auth.ADMIN)])
    async def admin() -> dict[str, str]:
        return {}

    app.state.keys = auth.Keys(stored, BOOTSTRAP_KEY)  # type: ignore[arg-type]
    app.state.wrong_keys = auth.WrongKeys(parse_rate(rate, "test"), parse_networks(proxies, "test"),
                                          Throttle(clock=lambda: 1000.0))
    return app


def calling(app: FastAPI, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A client of ``app`` connecting from ``address``."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 50000)),
                             base_url="http://service")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_address_that_sent_too_many_wrong_keys_gets_429_and_its_guesses_cost_the_process_few_lookups():
    """Every made-up key cost a database lookup, at whatever rate a client sent them."""
    stored = NoKeysStored()
    app = service(stored)
    async with calling(app) as client:
        keyless = [(await client.get("/admin")).status_code for _ in range(5)]  # no key: nothing was checked
        wrong = [(await client.get("/admin", headers=bearer(made_up()))).status_code for _ in range(3)]
        not_keys = [await client.get("/admin", headers=bearer(f"not a key {n}")) for n in range(3)]
        looked_up_by_then = stored.lookups
        guesses = [await client.get("/admin", headers=bearer(made_up())) for _ in range(10)]
    async with calling(app, "198.51.100.9") as another:  # over its own limit, with an allowance of its own
        more = [(await another.get("/admin", headers=bearer(made_up()))).status_code for _ in range(4)]
    assert keyless == [401] * 5 and wrong == [401] * 3 and looked_up_by_then == 3
    assert {r.status_code for r in not_keys + guesses} == {429} and "too many" in not_keys[0].json()["error"]
    assert {r.headers["retry-after"] for r in not_keys + guesses[:1]} == {"60"}  # when the address's window ends
    assert {r.headers["retry-after"] for r in guesses[1:]} == {"1"}  # when the address has a key looked up again
    assert more == [401, 401, 401, 429] and stored.lookups == 3 + 1 + 3 + 1


async def test_a_key_not_seen_yet_gets_through_from_an_address_that_sent_too_many_wrong_keys():
    """Behind a NAT or an ingress every client has one address: 3 junk keys from anyone there (30 a minute by
    default) refused every key the process had not yet found valid, a sign-in after a restart or on another
    replica, until the window ended."""
    stored = KeysStored()
    key = stored.add()
    async with calling(service(stored)) as client:
        wrong = [(await client.get("/admin", headers=bearer(made_up()))).status_code for _ in range(3)]
        right = await client.get("/admin", headers=bearer(key))
    assert wrong == [401] * 3 and right.status_code == 200


async def test_junk_keys_from_one_address_do_not_hold_up_a_real_keys_first_use_behind_another_throttled_one():
    """Keys looked up for addresses over their limit were one budget for the whole process: one address sending
    made-up keys faster than 5 a second spent all of it, and a real client's new key behind any other address over
    its limit got 429 for as long as they came."""
    stored = KeysStored()
    key = stored.add()
    app = service(stored)
    async with calling(app) as flooding, calling(app, "198.51.100.9") as nat:
        over = [(await client.get("/admin", headers=bearer(made_up()))).status_code
                for client in (flooding, nat) for _ in range(3)]
        junk = [(await flooding.get("/admin", headers=bearer(made_up()))).status_code for _ in range(20)]
        real = await nat.get("/admin", headers=bearer(key))
    assert over == [401] * 6 and junk == [429] * 20
    assert real.status_code == 200


async def test_addresses_over_their_limit_get_a_lookup_each_and_together_no_more_than_the_process_allows():
    stored = NoKeysStored()
    app = service(stored)
    looked_up = []
    for n in range(10):
        before = stored.lookups
        async with calling(app, f"198.51.100.{n}") as client:
            for _ in range(3 + 4):  # its limit, then 4 more while over it
                await client.get("/admin", headers=bearer(made_up()))
        looked_up.append(stored.lookups - before)
    assert auth.THROTTLED_LOOKUPS.amount == 5 and auth.THROTTLED_LOOKUPS_PER_ADDRESS.amount == 1
    assert looked_up == [3 + 1] * 5 + [3] * 5  # the process's 5 spent by the first five addresses, 1 each


def test_a_key_the_process_has_no_lookup_left_for_does_not_spend_its_addresss_own():
    """Else that address would wait on its own allowance once the process's budget came back."""
    now = [1000.0]
    wrong = auth.WrongKeys(parse_rate("3/minute", "test"), throttle=Throttle(clock=lambda: now[0]))
    spent = [wrong.lookup_while_throttled(f"198.51.100.{n}") for n in range(5)]
    now[0] += 0.5
    refused = wrong.lookup_while_throttled("203.0.113.7")
    now[0] += 0.5  # the process's second has passed, the address's own would not have
    assert spent == [None] * 5 and refused == 1
    assert wrong.lookup_while_throttled("203.0.113.7") is None


async def test_keys_sent_at_once_are_counted_before_they_are_looked_up():
    """A wrong key was counted once its lookup had ended: 50 made-up keys sent at once, with a limit of 3 a minute,
    all found the address within it and cost 50 lookups."""
    stored = KeysStored()
    async with calling(service(stored)) as client:
        answers = await asyncio.gather(*[client.get("/admin", headers=bearer(made_up())) for _ in range(50)])
    codes = [r.status_code for r in answers]
    assert (codes.count(401), codes.count(429)) == (3, 47)
    assert stored.lookups == 3 + auth.THROTTLED_LOOKUPS_PER_ADDRESS.amount


async def test_a_valid_key_costs_its_address_one_count_the_first_time_and_none_once_found_valid():
    stored = KeysStored()
    key = stored.add()
    async with calling(service(stored)) as client:
        used = [(await client.get("/admin", headers=bearer(key))).status_code for _ in range(5)]
        wrong = [(await client.get("/admin", headers=bearer(made_up()))).status_code for _ in range(3)]
    assert used == [200] * 5 and wrong == [401, 401, 429]


async def test_guesses_at_the_bootstrap_key_are_throttled_and_the_right_one_is_no_different_meanwhile():
    """LEADPIPE_BOOTSTRAP_KEY is chosen by a person: it could be guessed at the full request rate. Had the right
    key got through while the guesses got 429, the answer would have told a guesser when it was right."""
    app = service(NoKeysStored())
    async with calling(app) as client:
        before = await client.get("/admin", headers=bearer(BOOTSTRAP_KEY))
        guesses = [(await client.get("/admin", headers=bearer(f"{BOOTSTRAP_KEY[:-2]}{n:02}"))).status_code
                   for n in range(4)]
        right = await client.get("/admin", headers=bearer(BOOTSTRAP_KEY))
    async with calling(app, "198.51.100.9") as elsewhere:
        other = await elsewhere.get("/admin", headers=bearer(BOOTSTRAP_KEY))
    assert before.status_code == 200 and guesses == [401, 401, 401, 429]
    assert right.status_code == 429 and other.status_code == 200  # its own address only, until the window ends


async def test_each_address_is_counted_apart_and_a_forwarded_one_only_from_a_trusted_proxy():
    app = service(NoKeysStored(), rate="1/minute", proxies="10.0.0.0/8")
    async with calling(app) as client:
        first = await client.get("/admin", headers=bearer(made_up()))
        spoofed = await client.get("/admin", headers={**bearer(made_up()), "x-forwarded-for": "198.51.100.1"})
    async with calling(app, "198.51.100.9") as another:
        elsewhere = await another.get("/admin", headers=bearer(made_up()))
    async with calling(app, "10.0.0.2") as proxy:
        forwarded = [(await proxy.get("/admin", headers={**bearer(made_up()), "x-forwarded-for": f"198.51.100.{n}"})
                      ).status_code for n in (1, 2, 1)]
    assert first.status_code == 401
    assert spoofed.status_code == 429  # not from a proxy: its X-Forwarded-For is not believed
    assert elsewhere.status_code == 401  # another address, another count
    assert forwarded == [401, 401, 429]  # behind the proxy, each client its own count


@pytest.mark.parametrize("name", [s.name for s in SERVICES])
async def test_every_service_counts_wrong_keys_by_address_as_its_settings_say(name, monkeypatch):
    monkeypatch.setenv(f"{name.upper()}_BAD_KEY_RATE_LIMIT", "2/minute")
    app = importlib.import_module(f"{name}.app").create_app()
    stored = NoKeysStored()
    app.state.keys = auth.Keys(stored, None)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        codes = [(await client.get("/openapi.json", headers={"X-API-Key": key})).status_code
                 for key in (made_up(), "not a key", "not a key either")]
    assert codes == [401, 401, 429] and stored.lookups == 1


@pytest.mark.parametrize("name", [s.name for s in SERVICES])
async def test_every_service_shows_its_metrics_only_to_a_key_that_may_read_them_and_its_probes_to_anyone(name):
    """/metrics was open on every service: lead volumes, delivery's subscription ids, and on capture the counters
    that move when a bot's post is quarantined, which capture promises a bot never learns."""
    app = importlib.import_module(f"{name}.app").create_app()
    stored = KeysStored()
    reader, scraper = stored.add(auth.READ_REPORTS), stored.add(auth.READ_METRICS)
    app.state.keys = keys = auth.Keys(stored, BOOTSTRAP_KEY)  # type: ignore[arg-type]
    admins_session = f"{auth.SESSION_COOKIE}={app.state.sessions.issue(keys.session_key_id(auth.BOOTSTRAP))}"
    async with calling(app) as client:
        keyless = await client.get("/metrics")
        reports_only = await client.get("/metrics", headers=bearer(reader))
        signed_in = await client.get("/metrics", headers={"cookie": admins_session})
        scraped = await client.get("/metrics", headers=bearer(scraper))
        by_admin = await client.get("/metrics", headers={"X-API-Key": BOOTSTRAP_KEY})
        probes = [(await client.get(probe)).status_code for probe in ("/healthz", "/readyz")]
    assert keyless.status_code == 401 and keyless.headers["www-authenticate"].startswith("Bearer")
    assert "leadpipe_http_requests_total" not in keyless.text
    assert reports_only.status_code == 403 and "metrics:read" in reports_only.json()["error"]
    assert signed_in.status_code == 403 and "dashboard session" in signed_in.json()["error"]  # even an admin key's
    assert scraped.status_code == by_admin.status_code == 200 and "leadpipe_http_requests_total" in scraped.text
    assert probes == [200, 503]  # not started: no readiness check has passed, but no key was asked for


class GoesAway(KeysStored):
    """A database that answers until ``gone`` says how: ``"down"`` (connections refused) or ``"silent"``."""

    gone: str | None = None
    #: Statements sent, answered or not.
    asked = 0

    async def execute(self, statement: object) -> SimpleNamespace:
        self.asked += 1
        if self.gone == "down":
            raise ConnectionRefusedError("connection refused")
        if self.gone == "silent":
            await asyncio.Event().wait()
        return await super().execute(statement)


@pytest.mark.parametrize("gone", ["down", "silent"])
async def test_a_key_found_valid_keeps_reading_metrics_through_a_database_outage_for_a_while(gone):
    """Prometheus scrapes every 15 s, past the 2 s a key is cached: /metrics went dark in every incident it is
    there to show. A key never found valid here is still a 503, and one found valid long ago too."""
    now = [1000.0]
    stored = GoesAway()
    key, unseen = stored.add(auth.READ_METRICS), stored.add(auth.READ_METRICS)
    keys = auth.Keys(stored, None, clock=lambda: now[0], deadline_s=0.05)  # type: ignore[arg-type]
    assert await keys.authenticate(key) is not None
    stored.gone, now[0] = gone, now[0] + 60
    assert (await asyncio.wait_for(keys.authenticate(key), 1)).scopes == frozenset({auth.READ_METRICS})
    with pytest.raises(auth.Unreachable):  # a lookup just failed: not asked (the next test)
        await asyncio.wait_for(keys.authenticate(unseen), 1)
    now[0] += auth.STALE_S
    with pytest.raises((ConnectionRefusedError, Unanswered)):
        await asyncio.wait_for(keys.authenticate(key), 1)


@pytest.mark.parametrize("gone", ["down", "silent"])
async def test_once_a_lookup_finds_postgres_gone_the_next_keys_and_sessions_are_answered_without_asking_it(gone):
    """On a silent Postgres every request with a key waited the lookup's 5 s before its answer, stale key or 503,
    one request after another for as long as the incident lasted."""
    now = [1000.0]
    stored = GoesAway()
    key, unseen = stored.add(auth.READ_METRICS), stored.add(auth.READ_METRICS)
    keys = auth.Keys(stored, None, clock=lambda: now[0], deadline_s=0.05)  # type: ignore[arg-type]
    session = auth.Sessions("s3cret").read(auth.Sessions("s3cret").issue(auth.split(key)[0]))  # type: ignore[index]
    assert await keys.authenticate(key) is not None
    stored.gone, now[0] = gone, now[0] + 60
    assert await asyncio.wait_for(keys.authenticate(key), 1) is not None  # asked: it failed, the key is stale
    asked = stored.asked
    now[0] += auth.CACHE_S / 2
    assert await keys.authenticate(key) is not None
    with pytest.raises(auth.Unreachable):
        await keys.authenticate(unseen)
    with pytest.raises(auth.Unreachable):
        await keys.ended(session)  # type: ignore[arg-type]
    assert stored.asked == asked
    now[0] += auth.CACHE_S / 2
    with pytest.raises((ConnectionRefusedError, Unanswered)):  # asked again once the window is over
        await asyncio.wait_for(keys.authenticate(unseen), 1)
    stored.gone, now[0] = None, now[0] + auth.CACHE_S
    assert await keys.authenticate(unseen) is not None and await keys.ended(session) is False  # type: ignore[arg-type]


async def test_once_the_window_after_a_failed_lookup_is_over_one_request_tries_postgres_and_the_others_do_not_wait(
        monkeypatch):
    """Each request arriving while the lookup trying Postgres again hung started one of its own and waited it out."""
    monkeypatch.setattr(auth, "LOOKUP_S", 0.05)
    now = [1000.0]
    stored = GoesAway()
    unseen = stored.add(auth.READ_METRICS)
    keys = auth.Keys(stored, None, clock=lambda: now[0], deadline_s=30)  # type: ignore[arg-type]
    stored.gone = "silent"
    with pytest.raises(Unanswered):
        await keys.find("0" * 12)
    now[0] += auth.CACHE_S
    probe = asyncio.create_task(keys.authenticate(unseen))
    await asyncio.sleep(0.01)
    for _ in range(5):
        with pytest.raises(auth.Unreachable):
            await asyncio.wait_for(keys.authenticate(unseen), 1)
    assert stored.asked == 2 and not probe.done()  # the first lookup and the one probe
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    stored.gone = None
    assert await keys.authenticate(unseen) is not None  # a cancelled probe leaves the next one free to try


async def test_a_keys_lookup_waits_no_longer_than_a_scrape_does_whatever_the_request_deadline(monkeypatch):
    """A scrape gives up after 10 s by default: a lookup that took the request's 30 s gave it nothing to show."""
    monkeypatch.setattr(auth, "LOOKUP_S", 0.05)
    with pytest.raises(Unanswered):
        await asyncio.wait_for(auth.Keys(NeverAnswers(), None, deadline_s=30).find("abc123def456"), 1)  # type: ignore[arg-type]
