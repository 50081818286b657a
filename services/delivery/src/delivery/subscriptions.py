"""The subscriptions in force: the file's, and those made through the admin API (in Postgres, secrets sealed).

Guarantees: a secret made through the API is generated here from 32 random
bytes, shown once in the answer that made it, and stored only sealed
(Fernet: AES-128-CBC with HMAC-SHA256) under ``DELIVERY_SECRETS_KEY``, or a
key derived from ``LEADPIPE_SESSION_SECRET``; it is never logged. Several
comma-separated keys may be given: the first seals, all open (key rotation);
each refresh seals again under the first key the stored secrets only a later
one opens (only those: nothing is written once none is left), so an old key
can be dropped after a refresh.
Every delivery process reloads the API's subscriptions every
``DELIVERY_SUBSCRIPTIONS_REFRESH_S``, and the process that made a change at
once; events consumed before a subscription is in force in a process are not
sent to it. The handler reads them before its first batch, so a restart
never consumes events without them. A secret replaced by a rotation keeps signing until its expiry,
so receivers switch over at their pace. A stored subscription that cannot be
opened (the key changed, or neither setting is there to make one) is never
sent unsigned, and never treated as absent: while any exists, the handler
fails every batch it is given (the runner retries it, commits nothing and
``/readyz`` fails), the refresh fails (``/readyz`` fails even with no traffic),
and ``delivery_subscriptions_unopened`` counts them; the events wait in the
topic until the key they were sealed with is back or they are deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from prometheus_client import Gauge

from leadpipe_common.consumer import NotNow
from leadpipe_common.outbox import BackgroundLoop

from delivery.domain import DELIVERABLE, Subscription, live_secrets, parse_subscription

log = structlog.get_logger(__name__)

#: The ``ce_type`` header value of every event type a subscription may ask for.
DELIVERABLE_TYPES = frozenset(t.encode() for t in DELIVERABLE)

UNOPENED = Gauge("delivery_subscriptions_unopened", "Subscriptions stored through the admin API whose secrets this "
                 "process cannot open: while any, it consumes nothing")

NO_KEY = "neither DELIVERY_SECRETS_KEY nor LEADPIPE_SESSION_SECRET (from which the key is derived) is set"
DERIVED = "the key derived from LEADPIPE_SESSION_SECRET (DELIVERY_SECRETS_KEY is unset)"


class UnopenedSubscriptions(NotNow):
    """Stored subscriptions this process cannot open: consuming without them would never send them what it read.
    (Not the batch's fault: it waits, however long, and is never dead-lettered.)"""


def derived_key(session_secret: str) -> str:
    """The key that seals while DELIVERY_SECRETS_KEY is unset, derived from ``session_secret``: what
    ``leadpipe-delivery derived-key`` prints, so that it can be put in DELIVERY_SECRETS_KEY before (or after)
    the session secret changes."""
    # Its own key, so nothing sealed here can pass for a session cookie signed with the same secret.
    derived = hmac.new(session_secret.encode(), b"leadpipe delivery webhook secrets", hashlib.sha256)
    return base64.urlsafe_b64encode(derived.digest()).decode()


class SecretBox:
    """Seals webhook secrets for the database and opens them again."""

    def __init__(self, keys: list[bytes], source: str = "DELIVERY_SECRETS_KEY") -> None:
        self._fernets = [Fernet(k) for k in keys]
        self._fernet = MultiFernet(self._fernets)
        #: Where the keys come from, as the operator set it: what a secret that will not open is blamed on.
        self.source = source

    @classmethod
    def from_secrets(cls, secrets_key: str | None, session_secret: str | None) -> SecretBox | None:
        """From ``DELIVERY_SECRETS_KEY`` (Fernet keys, comma-separated), else derived from the session secret;
        None when neither is set (subscriptions then come from the file only). Raises ValueError for a bad key."""
        if secrets_key:
            keys = [k.strip().encode() for k in secrets_key.split(",") if k.strip()]
            try:
                return cls(keys)
            except ValueError:
                raise ValueError("DELIVERY_SECRETS_KEY: each key must be 32 url-safe base64-encoded bytes "
                                 "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
                                 ".decode())')") from None
        if session_secret:
            return cls([derived_key(session_secret).encode()], DERIVED)
        return None

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    def resealed(self, sealed: str) -> str | None:
        """``sealed`` sealed again under the first key, if only a later one opens it (None: the first does, or there
        is no other). Raises InvalidToken when no key opens it."""
        if len(self._fernets) == 1:
            return None
        try:
            self._fernets[0].decrypt(sealed.encode())
            return None
        except InvalidToken:
            return self._fernet.rotate(sealed.encode()).decode()


def sealed_secrets(box: SecretBox, secrets: list[tuple[str, datetime | None]]) -> list[dict[str, Any]]:
    return [{"sealed": box.seal(s), "expires_at": at.isoformat() if at else None} for s, at in secrets]


def opened_secrets(box: SecretBox, sealed: list[dict[str, Any]]) -> list[tuple[str, datetime | None]]:
    return [(box.open(s["sealed"]), datetime.fromisoformat(s["expires_at"]) if s["expires_at"] else None)
            for s in sealed]


def resealed_secrets(box: SecretBox, sealed: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A row's ``secrets`` with each one that only a later key opens sealed again under the first; None when none
    needs it. Raises InvalidToken when one cannot be opened."""
    again = [box.resealed(s["sealed"]) for s in sealed]
    if not any(again):
        return None
    return [{**s, "sealed": a or s["sealed"]} for s, a in zip(sealed, again, strict=True)]


class SubscriptionBook(Mapping[str, Subscription]):
    """Every subscription in force, by id: the file's and the API's (an id is never in both)."""

    def __init__(self, from_file: Mapping[str, Subscription], box: SecretBox | None, *, allow_private: bool) -> None:
        self.from_file = dict(from_file)
        self.box = box
        self.allow_private = allow_private
        self._all: dict[str, Subscription] = {}
        self._put(dict(from_file))
        #: The API's subscriptions were read at least once (a handler reads them first if not). Read even with no
        #: key: stored ones that nothing here can open must stop the consumer, not pass for none.
        self.loaded = False
        #: The ids of stored subscriptions that cannot be used: their secrets cannot be opened (the key changed, or
        #: there is none), or they are no longer valid here (``invalid``).
        self.unopened: tuple[str, ...] = ()
        #: Stored subscriptions this process refuses, and why: one made while DELIVERY_ALLOW_PRIVATE_TARGETS was
        #: on, pointing at a private address, after it was turned off; one pointing at a link-local or metadata
        #: address, which that setting once let through.
        self.invalid: dict[str, str] = {}
        #: Reads of the API's subscriptions begun, and the latest of them put in force (``reload``).
        self._reads = self._applied = 0

    def __getitem__(self, key: str) -> Subscription:
        return self._all[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def _put(self, subscriptions: dict[str, Subscription]) -> None:
        self._all = subscriptions
        #: The ``ce_type`` header values some subscription asks for: the consumer decodes only those.
        self.wanted_types = frozenset(t.encode() for sub in subscriptions.values() for t in sub.events
                                      ) & DELIVERABLE_TYPES

    def source(self, subscription_id: str) -> str:
        return "file" if subscription_id in self.from_file else "api"

    async def reload(self, store: Any, now: datetime) -> list[dict[str, Any]]:
        """Read the API's subscriptions from ``store`` and put them in force, unless a read begun later was put in
        force first: a refresh that read before a change committed, putting its rows in force after the change's
        own reload, would undo the change here until the next refresh. The rows read."""
        self._reads += 1
        read = self._reads
        rows = await store.api_subscriptions()
        if read > self._applied:
            self._applied = read
            self.load(rows, now)
        return rows

    def load(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Put the API's subscriptions (rows of ``delivery.subscriptions``) in force beside the file's."""
        made: dict[str, Subscription] = {}
        unopened: list[str] = []
        invalid: dict[str, str] = {}
        for row in rows:
            if row["id"] in self.from_file:
                continue
            if self.box is None:
                unopened.append(row["id"])
                continue
            try:
                secrets = live_secrets(opened_secrets(self.box, row["secrets"]), now)
                made[row["id"]] = parse_subscription(
                    {"id": row["id"], "url": row["url"], "secrets": list(secrets), "events": list(row["events"]),
                     "filter": row["filter"], "retry_hours": row["retry_hours"], "contact": row["contact"]},
                    f"subscription {row['id']}", allow_private=self.allow_private, stored=True)
            except InvalidToken:
                unopened.append(row["id"])
            except ValueError as exc:
                # Left out, its events would be consumed and never queued for it: held against, as one that
                # cannot be opened is, until it is fixed or deleted.
                invalid[row["id"]] = str(exc).partition(": ")[2] or str(exc)
                unopened.append(row["id"])
        self.invalid = invalid
        self._put({**self.from_file, **made})
        if set(unopened) - set(self.unopened):  # once when it starts or spreads, not at every refresh
            log.error("stored subscriptions cannot be opened; consuming nothing until they can",
                      subscriptions=unopened, error=str(self._unopened_error(unopened)))
        elif self.unopened and not unopened:
            log.info("every stored subscription can be opened; consuming again")
        self.unopened = tuple(unopened)
        UNOPENED.set(len(unopened))
        self.loaded = True

    async def reseal(self, store: Any, rows: list[dict[str, Any]]) -> list[str]:
        """Seal again under the first key the secrets of ``rows`` (as read from ``store``) that only a later key
        opens, so that key can be dropped; the ids of those written. Each row is written only if its secrets are
        still those read: a rotation, or another process's reseal, committed since is never overwritten."""
        if self.box is None:
            return []
        done = []
        for row in rows:
            if row["id"] in self.from_file:
                continue
            try:
                again = resealed_secrets(self.box, row["secrets"])
            except InvalidToken:
                continue  # held against as unopened by ``load``
            if again is not None and await store.reseal_secrets(row["id"], row["secrets"], again):
                done.append(row["id"])
        return done

    def require_opened(self) -> None:
        """Raise UnopenedSubscriptions while a stored subscription cannot be opened."""
        if self.unopened:
            raise self._unopened_error(self.unopened)

    def _unopened_error(self, ids: list[str] | tuple[str, ...]) -> UnopenedSubscriptions:
        sealed = [i for i in ids if i not in self.invalid]
        why = f"cannot be opened with {self.box.source}" if self.box else f"cannot be opened: {NO_KEY}"
        if self.box and self.box.source == DERIVED:
            # The key a former session secret gave is printed nowhere else: without it, "put it back" cannot be done.
            why += (" (if it changed, `leadpipe-delivery derived-key --stdin` prints the key the former one gave, "
                    "for DELIVERY_SECRETS_KEY)")
        parts = [f"{len(sealed)} subscription(s) made through the admin API ({', '.join(sealed)}) {why}; delivery "
                 "consumes nothing until the key they were sealed with is back or they are deleted "
                 "(DELETE /v1/subscriptions/ID)"] if sealed else []
        parts += [f"subscription {i} made through the admin API is no longer valid here ({self.invalid[i]}); delivery "
                  "consumes nothing until the setting it needs is back or it is deleted (DELETE /v1/subscriptions/ID)"
                  for i in ids if i in self.invalid]
        return UnopenedSubscriptions("; ".join(parts))


class BookRefresh(BackgroundLoop):
    """Reloads the API's subscriptions, so a change made through another process takes effect here too; first,
    warns of what waits for a subscription the file no longer has (``warn_stranded``)."""

    name = "delivery-subscriptions-refresh"

    def __init__(self, book: SubscriptionBook, unit_of_work: Callable[[], Any], clock: Callable[[], datetime],
                 every_s: float) -> None:
        super().__init__(batch_max=1, idle_s=every_s)
        self._book, self._uow, self._clock = book, unit_of_work, clock
        self._warned_stranded = False

    async def step(self) -> int:
        if not self._warned_stranded:  # the file is read only when the process starts
            await warn_stranded(self._book, self._uow)
            self._warned_stranded = True
        await refresh(self._book, self._uow, self._clock())
        # A failing round is what fails /readyz even while no event comes for the consumer to stop at.
        self._book.require_opened()
        return 0


async def refresh(book: SubscriptionBook, unit_of_work: Callable[[], Any], now: datetime) -> None:
    async with unit_of_work() as uow:
        rows = await book.reload(uow.store, now)
        # Here, not in the API's changes: a round of its own, whose writes wait for no other transaction's locks
        # but those of the rows they touch. Only rows that need it are written: none once every process has the
        # same first key.
        resealed = await book.reseal(uow.store, rows)
        if resealed:
            await uow.commit()
    if resealed:
        log.info("stored webhook secrets sealed again under the first key of DELIVERY_SECRETS_KEY",
                 count=len(resealed), subscriptions=resealed)


async def warn_stranded(book: SubscriptionBook, unit_of_work: Callable[[], Any]) -> None:
    """Name each subscription in neither the file nor the API's that deliveries wait for, with the command that
    gives them up. Never given up here: a process started with an older file (a rolling deploy, a rollback, a
    stray replica) would kill what waits for a subscription added since, and clearing the 410 switch-off of one
    removed would let processes whose file still has it send to a receiver that answered 410 Gone."""
    async with unit_of_work() as uow:
        stranded = await uow.store.stranded(book.from_file)
    for subscription_id, waiting in sorted(stranded.items()):
        log.warning("deliveries wait for a subscription in neither this process's subscriptions file nor the API's; "
                    "once no process's file has it, give them up with the command",
                    subscription=subscription_id, waiting=waiting,
                    command=f"leadpipe-delivery forget --subscription {subscription_id}")
