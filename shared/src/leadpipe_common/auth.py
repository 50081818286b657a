"""API keys with scopes: who may call what, for every service but capture's public endpoints and the probes.

Guarantees:
- A key is ``lpk_<id>_<secret>``: a public id to find it by (12 hex digits)
  and 256 random bits (43 characters of URL-safe base64). Only the SHA-256 of
  the secret is stored (in the ``auth`` schema, see ``auth_migrations``); the
  secret is shown once, when the key is created, and is never logged. (A fast
  hash is right for random secrets: nothing to guess, unlike a password.)
  Comparisons are constant-time. Text of any other shape that is not the
  bootstrap key is refused without a lookup.
- Scopes: ``capture:write``, ``feedback:write``, ``reports:read``,
  ``metrics:read`` (``/metrics``, for a Prometheus scraper); ``admin`` grants
  every scope.
- ``LEADPIPE_BOOTSTRAP_KEY``, when set, is an admin key that needs no row
  (first start, tests, automation). A dashboard session it opened ends when
  it is changed or unset, as a stored key's ends when the key is revoked.
- Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No
  key, or an unknown or revoked one: ``401`` with ``WWW-Authenticate``; a key
  without the scope: ``403``. A revoked key stops working within
  ``CACHE_S`` seconds on every process, with no restart.
- A key's lookup waits at most ``LOOKUP_S`` (or the service's shorter
  request deadline). While Postgres cannot be asked (down, or silent past
  that), a key this process found valid within ``STALE_S`` stays valid
  (not refreshed by the outage): what it reaches that needs no database
  (``/metrics``, the API documents) keeps answering through the incident it
  is there to show; a revocation made before the outage and not yet seen
  here is seen when Postgres answers again. Any other key is a ``503``, and
  so is a dashboard session (whether it was signed out is Postgres's to
  say); every route that needs Postgres is a ``503`` whatever the key.
- A key or a session that cannot be looked up now (Postgres unreachable, its
  pool busy, or silent past ``<SERVICE>_DB_REQUEST_DEADLINE_S``:
  ``db.answered_within``) is never taken for unknown: the request is answered
  ``503`` with ``Retry-After``, not ``401``, which would have its client drop
  a valid key. Nothing is cached of a lookup that failed, but for ``CACHE_S``
  after one, and then while one lookup tries Postgres again, no other key or
  session is looked up (``Unreachable``): on a silent Postgres each lookup
  would hold its request ``LOOKUP_S``, so a key found valid within
  ``STALE_S`` passes at once and anything else is a ``503`` at once, until a
  lookup finds Postgres answering again.
- A client address (``throttle.counted_as``; ``X-Forwarded-For`` only from
  ``<SERVICE>_TRUSTED_PROXIES``) that has sent ``<SERVICE>_BAD_KEY_RATE_LIMIT``
  wrong keys, to any route that takes one or to the dashboard sign-in, gets
  ``429`` with ``Retry-After`` for its next wrong key until the window ends:
  a made-up key must not buy a database lookup, nor the bootstrap key be
  guessed, at the rate requests come; text not of a stored key's shape (a
  guess at the bootstrap key) gets it before it is compared, the bootstrap
  key itself too (its 200 among the guesses' 429s would tell a guesser it was
  right). A key this
  process found valid still gets through (looked up once every ``CACHE_S``
  at most, whoever sends it); one of a stored key's shape that it has not
  (after a restart, on another replica) is still looked up, within
  ``THROTTLED_LOOKUPS_PER_ADDRESS`` (1 a second) for its address and
  ``THROTTLED_LOOKUPS`` (5 a second) for the whole process, as the address
  may be a NAT or a proxy with real clients behind it. Guesses sent faster
  than once a second from their address can keep such a client behind it
  waiting (a second at a time) as long as they last, not one behind another
  address; guesses from several addresses over the limit at once (1 a
  second from each at most) can spend the process's 5 and keep such a
  client behind any address over the limit waiting meanwhile.
  The counts are each process's own (``WrongKeys``).
- A dashboard session (a signed cookie naming a key that may read reports)
  only reads: it grants ``reports:read`` whatever else its key may do.
  Cookies ignore ports and go with every request of the site's pages, so
  writing and administering take the key itself.
- Signing out ends the session for good, not only in that browser: its
  cookie (copied, logged, stolen) is refused at once by the process that
  signed it out and within ``CACHE_S`` seconds by every other one.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeGuard, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadpipe_common.db import UNAVAILABLE, is_unavailable, transaction_within
from leadpipe_common.http import SESSION_COOKIE, Problem
from leadpipe_common.throttle import Network, Rate, Throttle, counted_as, parse_rate, request_address

SCOPES = ("capture:write", "feedback:write", "reports:read", "metrics:read", "admin")
ADMIN = "admin"
READ_REPORTS = "reports:read"
#: A scope of its own: a scraper's key, kept in Prometheus' configuration, must read neither reports nor leads.
READ_METRICS = "metrics:read"
CACHE_S = 2.0
#: How long a key's lookup may wait: a Prometheus scrape gives up after 10 s by default.
LOOKUP_S = 5.0
#: How long a key found valid stays so while Postgres cannot be asked (see the module).
STALE_S = 600.0
#: The most keys (found or not) a process remembers.
CACHED_KEYS = 10_000
PREFIX = "lpk"
#: A key's id as ``new_key`` makes it (``token_hex(6)``) and ``leadpipe-keys list`` shows it.
_KEY_ID = "[0-9a-f]{12}"
#: Every key ``new_key`` makes (its id, ``token_urlsafe(32)``), and nothing else: what is not one is refused before
#: anything is looked up.
_KEY = re.compile(rf"{PREFIX}_({_KEY_ID})_([A-Za-z0-9_-]{{43}})")
#: Lookups of keys of a stored key's shape, not found valid before, that a process makes in all for addresses
#: over their limit of wrong keys: what bounds their guesses' cost to the database while letting real clients
#: behind the same address (a NAT, a proxy) in with a key the process has not seen yet.
THROTTLED_LOOKUPS = parse_rate("5/second", "THROTTLED_LOOKUPS")
#: Those lookups that one such address may have: with the process's alone, one address sending junk keys faster
#: spent all of them, and a real client's new key behind every other throttled address waited as long as it did.
THROTTLED_LOOKUPS_PER_ADDRESS = parse_rate("1/second", "THROTTLED_LOOKUPS_PER_ADDRESS")
#: How long a signed-out session is remembered past its cookie's expiry: a process whose clock lags the
#: database's still takes the cookie for unexpired that long.
ENDED_KEPT = timedelta(hours=1)

metadata = sa.MetaData(schema="auth")
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("secret_sha256", BYTEA, nullable=False),
    sa.Column("scopes", ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # A limit like "500/second" for what the key may submit; None: the service's default for keys.
    sa.Column("rate_limit", sa.Text),
)
#: Dashboard sessions signed out before their cookies expire, until they do (``Keys.end``).
ended_sessions = sa.Table(
    "ended_sessions",
    metadata,
    # The SHA-256 of the cookie's nonce: nothing here makes or names a cookie a browser could send.
    sa.Column("nonce_sha256", BYTEA, primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ended_sessions_expires_at", "expires_at"),  # the expired are deleted by the next sign-out
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key (by id and name) or the bootstrap key."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_limit: str | None = None
    #: Signed in through the dashboard (a cookie), not calling with the key.
    session: bool = False

    def may(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes


BOOTSTRAP = Principal(key_id="bootstrap", name="LEADPIPE_BOOTSTRAP_KEY", scopes=frozenset({ADMIN}))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key() -> tuple[str, str, bytes]:
    """(key id, the whole key to hand out once, the digest to store)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}_{key_id}_{secret}", digest(secret)


def is_key_id(text: str) -> bool:
    """Whether ``text`` is a key id of ``new_key``'s shape."""
    return re.fullmatch(_KEY_ID, text) is not None


def split(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a key as ``new_key`` makes them; None for any other text: a made-up ``lpk_x_y``
    would cost a database lookup (and a place in the cache) for an id no key can have."""
    match = _KEY.fullmatch(token)
    return (match[1], match[2]) if match else None


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    name: str
    secret_sha256: bytes
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    rate_limit: str | None


class Unreachable(ConnectionError):
    """Postgres was not asked: a lookup failed for want of it less than ``CACHE_S`` ago (a 503, as that one was)."""

    def __init__(self) -> None:
        super().__init__(f"Postgres could not be asked for keys in the last {CACHE_S:g} s; not asked again yet")


class Keys:
    """Finds keys, and whether a session was signed out, with a short cache so that checking one costs no
    round trip per request."""

    def __init__(self, engine: AsyncEngine, bootstrap: str | None, clock: Callable[[], float] = time.monotonic,
                 deadline_s: float | None = None) -> None:
        """``deadline_s``: how long a request may wait for Postgres (``db.transaction_within``); None: for ever. A
        key's lookup waits ``LOOKUP_S`` at most."""
        self._engine = engine
        self._deadline_s = deadline_s
        self._lookup_s = min(deadline_s or LOOKUP_S, LOOKUP_S)
        self._bootstrap = digest(bootstrap) if bootstrap else None
        self._clock = clock
        # Bounded: every made-up key id a caller sends is a miss that would stay otherwise (oldest go first).
        self._cache: collections.OrderedDict[str, tuple[float, StoredKey | None]] = collections.OrderedDict()
        # Sessions by nonce digest: whether signed out (bounded alike: a signed cookie is needed to add one).
        self._ended: collections.OrderedDict[bytes, tuple[float, bool]] = collections.OrderedDict()
        #: When a lookup last failed for want of Postgres (see the module), until one succeeds; and whether one is
        #: trying Postgres again since.
        self._failed_at: float | None = None
        self._probing = False

    async def authenticate(self, token: str) -> Principal | None:
        if self._is_bootstrap(token):
            return BOOTSTRAP
        parts = split(token)
        if parts is None:
            return None
        stored = await self.find(parts[0])
        if not _live(stored) or not hmac.compare_digest(digest(parts[1]), stored.secret_sha256):
            return None
        return _holder(stored)

    def seen_valid(self, token: str) -> bool:
        """Whether the key id of ``token`` was a valid key when this process last looked it up (no lookup; the
        secret is not checked here). ``check_key`` lets these through when it throttles, outside
        ``THROTTLED_LOOKUPS``: one of them is looked up at most once every ``CACHE_S``, whoever sends it."""
        if self._is_bootstrap(token):
            return True
        parts = split(token)
        cached = self._cache.get(parts[0]) if parts else None
        return cached is not None and _live(cached[1])

    def session_key_id(self, who: Principal) -> str:
        """The key id a dashboard session of ``who`` names: a stored key's own; for the bootstrap key, one of the
        key in force (``_bootstrap_session``), so that changing it ends the sessions the old one opened."""
        if who.key_id == BOOTSTRAP.key_id and self._bootstrap_session is not None:
            return self._bootstrap_session
        return who.key_id

    @functools.cached_property
    def _bootstrap_session(self) -> str | None:
        # The cookie shows it, so it is derived slowly: it must not be a fast way to test guesses of the key.
        if self._bootstrap is None:
            return None
        tag = hashlib.scrypt(self._bootstrap, salt=b"leadpipe dashboard session", n=2**14, r=8, p=1, dklen=8)
        return f"{BOOTSTRAP.key_id}-{tag.hex()}"

    async def of_session(self, session: Session) -> Principal | None:
        """The key a session names, while the key is valid and the session is not signed out."""
        if session.key_id.startswith(BOOTSTRAP.key_id):  # no stored key's id (hex) starts so: nothing to look up
            found: Principal | None = BOOTSTRAP if session.key_id == self._bootstrap_session else None
        else:
            stored = await self.find(session.key_id)
            found = _holder(stored) if _live(stored) else None
        return None if found is None or await self.ended(session) else found

    async def ended(self, session: Session) -> bool:
        """Whether ``session`` was signed out: known at once in this process, within ``CACHE_S`` in others."""
        now = self._clock()
        cached = self._ended.get(session.nonce_sha256)
        if cached and (cached[1] or now - cached[0] < CACHE_S):  # signed out stays signed out
            return cached[1]
        async with self._asking(), self._answered() as conn:
            ended = bool((await conn.execute(sa.select(sa.exists().where(
                ended_sessions.c.nonce_sha256 == session.nonce_sha256)))).scalar())
        _remember(self._ended, session.nonce_sha256, (now, ended))
        return ended

    async def end(self, session: Session) -> None:
        """Sign ``session`` out on every process (see ``ended``). Sign-outs are rare, so the one that writes
        also deletes those whose cookies have expired anyway: the table holds only sessions still to refuse."""
        async with self._answered() as conn:
            await conn.execute(ended_sessions.delete().where(ended_sessions.c.expires_at < sa.func.now() - ENDED_KEPT))
            await conn.execute(insert(ended_sessions).on_conflict_do_nothing().values(
                nonce_sha256=session.nonce_sha256, expires_at=datetime.fromtimestamp(session.expires, UTC)))
        _remember(self._ended, session.nonce_sha256, (self._clock(), True))

    def _answered(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction_within(self._engine, self._deadline_s)

    def _is_bootstrap(self, token: str) -> bool:
        return self._bootstrap is not None and hmac.compare_digest(digest(token), self._bootstrap)

    async def find(self, key_id: str) -> StoredKey | None:
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached and now - cached[0] < CACHE_S:
            return cached[1]
        # Kept with its own time: valid STALE_S after it was last found so, no longer.
        stale = cached[1] if cached and _live(cached[1]) and now - cached[0] < STALE_S else None
        try:
            async with self._asking(), transaction_within(self._engine, self._lookup_s) as conn:
                row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).first()
        except UNAVAILABLE as exc:
            if stale is not None and is_unavailable(exc):
                return stale
            raise
        stored = None if row is None else StoredKey(row.key_id, row.name, bytes(row.secret_sha256),
                                                    frozenset(row.scopes), row.created_at, row.revoked_at,
                                                    row.rate_limit)
        _remember(self._cache, key_id, (now, stored))
        return stored

    @contextlib.asynccontextmanager
    async def _asking(self) -> AsyncIterator[None]:
        """A lookup, unless one failed for want of Postgres less than ``CACHE_S`` ago or another is trying it again
        since (``Unreachable``, at once): one request at a time waits to learn whether Postgres answers again, not
        every request that comes meanwhile."""
        if self._failed_at is not None and (self._probing or self._clock() - self._failed_at < CACHE_S):
            raise Unreachable
        probe = self._failed_at is not None
        self._probing |= probe
        try:
            yield
        except UNAVAILABLE as exc:
            if is_unavailable(exc):
                self._failed_at = self._clock()  # as of its end: a silent Postgres took the whole wait
            raise
        else:
            self._failed_at = None
        finally:
            if probe:
                self._probing = False


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: collections.OrderedDict[K, V], key: K, entry: V) -> None:
    cache[key] = entry
    cache.move_to_end(key)
    while len(cache) > CACHED_KEYS:
        cache.popitem(last=False)


_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer lpk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same API key in `X-API-Key`")


def _live(stored: StoredKey | None) -> TypeGuard[StoredKey]:
    """Found, and not revoked."""
    return stored is not None and stored.revoked_at is None


def _holder(stored: StoredKey) -> Principal:
    return Principal(stored.key_id, stored.name, stored.scopes, stored.rate_limit)


def keys_of(request: Request) -> Keys:
    return request.app.state.keys


@dataclass(frozen=True)
class WrongKeys:
    """The wrong keys each client address has sent this process (``consumer_app`` keeps one in
    ``app.state.wrong_keys``, from ``<SERVICE>_BAD_KEY_RATE_LIMIT`` and ``<SERVICE>_TRUSTED_PROXIES``)."""

    rate: Rate
    trusted_proxies: tuple[Network, ...] = ()
    throttle: Throttle = field(default_factory=Throttle)
    throttled_lookups: Rate = THROTTLED_LOOKUPS
    throttled_lookups_per_address: Rate = THROTTLED_LOOKUPS_PER_ADDRESS

    def client(self, request: Request) -> str:
        return counted_as(request_address(request, self.trusted_proxies))

    def count(self, client: str) -> int | None:
        """None while ``client`` may still try keys, and this try counts; else whole seconds until it may."""
        return self.throttle.retry_after(self.rate, "bad key", client)

    def over(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try keys again, if it has sent too many wrong ones; this is no try."""
        return self.throttle.retry_after(self.rate, "bad key", client, count=False)

    def lookup_while_throttled(self, client: str) -> int | None:
        """None when a key sent from ``client``, an address over ``rate``, may be looked up: it counts against
        ``throttled_lookups_per_address`` for ``client`` and ``throttled_lookups`` for the whole process. Else whole
        seconds until it may, and it counts against neither.

        The per-address counts live in ``throttle`` beside the addresses' counts of wrong keys, and are swept with
        them: one more window for each address over the limit, so what a flood from many addresses adds to memory
        is at most what their counts of wrong keys already hold."""
        budgets = ((self.throttled_lookups_per_address, ("lookup while throttled", client)),
                   (self.throttled_lookups, ("lookup while throttled",)))
        # Looked at before either is counted: an address refused by the process's budget would otherwise spend its
        # own allowance for nothing, and one refused its own would spend the others' share of the process's.
        waits = [w for rate, identity in budgets if (w := self.throttle.retry_after(rate, *identity, count=False))]
        if waits:
            return max(waits)
        for rate, identity in budgets:
            self.throttle.retry_after(rate, *identity)
        return None


class TooManyWrongKeys(Problem):
    """``429``: the client's address has sent too many wrong keys; it may try again in ``wait`` seconds."""

    def __init__(self, wait: int) -> None:
        super().__init__(429, f"too many requests with unknown or revoked API keys; retry in {wait} s",
                         headers={"Retry-After": str(wait)})
        self.wait = wait


async def check_key(request: Request, token: str) -> Principal | None:
    """The holder of ``token``, sent by the request's client; None for a wrong key. A key this process did not
    find valid before counts against the client's address before it is looked up (a valid one too, the first
    time); one it did, only if it is wrong. Once that address has sent too many (``WrongKeys``), raises ``429``
    with ``Retry-After`` (``TooManyWrongKeys``) for a wrong key; and, before anything is compared or looked up,
    for a key this process did not find valid before that is not of a stored key's shape, or once its address's
    ``THROTTLED_LOOKUPS_PER_ADDRESS`` or the process's ``THROTTLED_LOOKUPS`` is spent."""
    keys, wrong = keys_of(request), request.app.state.wrong_keys
    client = wrong.client(request)
    if keys.seen_valid(token):  # a key in use (a CRM's, every second) must not spend its address's allowance
        if split(token) is None and (wait := wrong.over(client)) is not None:
            # The bootstrap key, while its address is over the limit: refused as a guess is. Let through, it made
            # the throttle an oracle: 429 for every wrong guess, 200 for the right one, at the rate requests come.
            raise TooManyWrongKeys(wait)
        found = await keys.authenticate(token)
        if found is None:
            wrong.count(client)
        return found
    # Counted before the lookup: counted after it, 50 made-up keys sent at once all found the address within its
    # limit (3 a minute, say) while the first lookups were under way, and all 50 were looked up.
    wait = wrong.count(client)
    if wait is None:
        return await keys.authenticate(token)
    # The address may be a NAT or an ingress: refusing every key not seen yet let anyone behind it lock out every
    # other client's first use of a key (after a restart, on another replica) with 30 junk keys a minute.
    if split(token) is None:  # nothing to look up: the bootstrap key guessed, or no key at all
        raise TooManyWrongKeys(wait)
    if (busy := wrong.lookup_while_throttled(client)) is not None:
        raise TooManyWrongKeys(busy)
    if (found := await keys.authenticate(token)) is None:
        raise TooManyWrongKeys(wait)
    return found


def has_key(request: Request) -> bool:
    """Whether the request carries a key (right or wrong), before anything is looked up."""
    return _token(request) is not None


def _token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


async def identify(request: Request, *, sessions: bool = True) -> Principal | None:
    """The caller by key (header) or, with ``sessions``, by dashboard session (cookie); raises 401 for a key
    that is unknown or revoked, 429 once its client has sent too many of those (``check_key``).
    (Cookies ignore ports: a browser signed in to the dashboard sends its session to every service on the host,
    so a service that must not count it as a key passes ``sessions=False``.)"""
    token = _token(request)
    if token:
        found = await check_key(request, token)
        if found is None:
            raise Problem(401, "the API key is unknown or revoked", headers=_challenge())
        return found
    if not sessions:
        return None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and (session := request.app.state.sessions.read(cookie)) is not None:
        found = await keys_of(request).of_session(session)
        if found is not None and found.may(READ_REPORTS):
            return replace(found, scopes=frozenset({READ_REPORTS}), session=True)
    return None


async def principal(
    request: Request,
    # Declared for the OpenAPI document (the security schemes a client sees); ``identify`` reads the headers.
    _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _header_scheme: Annotated[str | None, Depends(_header)],
) -> Principal:
    found = await identify(request)
    if found is None:
        raise Problem(401, "an API key is required: send Authorization: Bearer <key> (or X-API-Key)",
                      headers=_challenge())
    return found


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="leadpipe"'}


def needs(*scopes: str) -> Any:
    """A route (or router) dependency: the caller's key must grant one of ``scopes``."""
    if not scopes or any(scope not in SCOPES for scope in scopes):
        raise ValueError(f"unknown scope among {scopes!r}")
    named = " or ".join(scopes)

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if any(who.may(scope) for scope in scopes):
            return who
        if who.session:
            raise Problem(403, f"a dashboard session only reads reports; send an API key with the scope {named}")
        raise Problem(403, f"this API key ({who.name}) lacks the scope {named}")

    return Depends(check)


@dataclass(frozen=True)
class Session:
    """A dashboard session, read from its cookie."""

    key_id: str
    #: When the cookie stops working, in Unix seconds.
    expires: int
    #: What names the session once signed out (``Keys.end``): the nonce itself only ever travels in the cookie.
    nonce_sha256: bytes


class Sessions:
    """Signed, expiring session cookies naming a key by id (its secret never leaves the login request), each
    with a nonce of its own, so that signing out ends that session and no other.

    The signing secret is ``LEADPIPE_SESSION_SECRET`` (give every replica the same one), else random per
    process: sessions then end with a restart, which costs a login, nothing else.
    """

    def __init__(self, secret: str | None, lifetime_s: int = 8 * 3600, clock: Callable[[], float] = time.time) -> None:
        self._secret = (secret or secrets.token_hex(32)).encode()
        self._lifetime = lifetime_s
        self._clock = clock

    def issue(self, key_id: str) -> str:
        expires = int(self._clock()) + self._lifetime
        payload = f"{key_id}.{expires}.{uuid.uuid4().hex}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str) -> Session | None:
        """The session of a cookie signed here and not expired; None for any other."""
        payload, _, signature = cookie.rpartition(".")
        # As bytes: compare_digest raises TypeError on a str with a non-ASCII character, which any cookie may hold.
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        key_id, expires, nonce = (payload.split(".") + ["", "", ""])[:3]
        if not expires.isdigit() or int(expires) < self._clock():
            return None
        return Session(key_id, int(expires), digest(nonce))

    @property
    def lifetime_s(self) -> int:
        return self._lifetime

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
