"""delivery's HTTP API: what was sent for a lead; the subscriptions in force, and making, changing, rotating and
deleting them (their secrets made here, answered once, stored sealed: ``delivery.subscriptions``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from cryptography.fernet import InvalidToken
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from leadpipe_common.auth import ADMIN, Principal, needs
from leadpipe_common.db import UNAVAILABLE, is_unavailable
from leadpipe_common.http import FieldProblem, Problem, StrictRoute, problem_responses
from leadpipe_common.service import Runtime, runtime

from delivery.domain import (
    CONTACT_FIELDS, DELIVERABLE, LONGEST_RETRY_HOURS, Subscription, live_secrets, new_secret, parse_subscription,
    switched_off,
)
from delivery.handlers import Delivery
from delivery.store import DeliveryStore
from delivery.subscriptions import SecretBox, SubscriptionBook, opened_secrets, sealed_secrets

DeliveryRuntime = Annotated[Runtime[Delivery, DeliveryStore], Depends(runtime)]
router = APIRouter(tags=["deliveries"], route_class=StrictRoute, responses=problem_responses(401, 403, 422))
log = structlog.get_logger(__name__)


class Attempt(BaseModel):
    attempt: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


class DeliveryState(BaseModel):
    subscription_id: str
    event_id: uuid.UUID
    event_type: str
    #: pending (waiting for its next attempt), delivered, or dead (given up after the retry window, or refused)
    status: str
    created_at: datetime
    next_at: datetime | None
    last_status: int | None
    last_error: str | None
    last_response: str | None = Field(description="the receiver's last answer: its body's first 2,000 bytes, as "
                                                  "sent (a dead delivery's says why it was refused), shown to admin "
                                                  "keys only; null: no answer, cleared `DELIVERY_KEEP_BODIES_DAYS` "
                                                  "after the delivery finished, with what was sent, or the caller "
                                                  "is not an admin key (a receiver may be an internal service, "
                                                  "`DELIVERY_ALLOW_PRIVATE_TARGETS`)")
    attempts: list[Attempt]


@router.get("/v1/deliveries", summary="Every delivery of a lead's events, with every attempt",
            response_model=list[DeliveryState])
async def list_deliveries(lead_id: Annotated[uuid.UUID, Query(description="the lead")], rt: DeliveryRuntime,
                          who: Annotated[Principal, needs("reports:read")]) -> list[dict[str, Any]]:
    async with rt.request_unit_of_work() as uow:
        deliveries = await uow.store.of_lead(lead_id)
    if who.may(ADMIN):
        return deliveries
    # A receiver's answer is its service's, not leadpipe's: with DELIVERY_ALLOW_PRIVATE_TARGETS a subscription to
    # an internal service would let any key that reads reports read that service's answers here.
    return [{**delivery, "last_response": None} for delivery in deliveries]


class SubscriptionState(BaseModel):
    id: str
    url: str
    events: list[str]
    filter: dict[str, list[str]]
    retry_hours: float | None
    #: The contact fields the receiver is sent (the others are left out of every body); null: all of them.
    contact: list[str] | None = None
    #: ``file`` (DELIVERY_SUBSCRIPTIONS_FILE: edit the file) or ``api`` (made, changed, rotated and deleted here).
    source: str
    #: How many secrets sign each delivery now (more than one during a rotation); never the secrets.
    signing_secrets: int
    #: A receiver answered 410 Gone: nothing is sent until it is switched back on.
    disabled: bool
    #: When it was switched off, and why (the 410 and the url that answered it); null while it is on.
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    #: False: made through the API and sealed with another key than this process has (DELIVERY_SECRETS_KEY, or
    #: LEADPIPE_SESSION_SECRET's), or no longer valid here (``problem``): delivery consumes nothing until the key
    #: or setting is back or it is deleted.
    opened: bool = True
    #: Why a subscription that is not opened is refused when it was stored fine (a private address after
    #: DELIVERY_ALLOW_PRIVATE_TARGETS was turned off, say); None otherwise.
    problem: str | None = None


def _state(sub: Subscription, book: SubscriptionBook, off: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"id": sub.id, "url": sub.url, "events": sorted(sub.events),
            "filter": {k: sorted(v) for k, v in sub.filter.items()}, "retry_hours": sub.retry_hours,
            "contact": _listed(sub.contact), "source": book.source(sub.id), "signing_secrets": len(sub.secrets),
            **_switched(sub.id, off)}


def _switched(subscription_id: str, off: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    why = off.get(subscription_id)
    return {"disabled": why is not None, "disabled_at": why and why["at"], "disabled_reason": why and why["reason"]}


async def _off(store: DeliveryStore, book: SubscriptionBook) -> dict[str, dict[str, Any]]:
    """The subscriptions switched off by a 410 (``domain.switched_off``), each with when and why."""
    rows = await store.switch_offs()
    return {sub_id: rows[sub_id] for sub_id in switched_off({k: r["url"] for k, r in rows.items()}, book.from_file)}


def _listed(fields: frozenset[str] | None) -> list[str] | None:
    """Contact fields in the order of the contact itself."""
    return None if fields is None else [f for f in CONTACT_FIELDS if f in fields]


def _unopened_state(row: dict[str, Any], off: Mapping[str, Mapping[str, Any]], problem: str | None) -> dict[str, Any]:
    """A stored subscription this process cannot use, as far as it can be told without its secrets."""
    return {"id": row["id"], "url": row["url"], "events": sorted(row["events"]),
            "filter": {k: sorted(v) if isinstance(v, list) else [v] for k, v in (row["filter"] or {}).items()},
            "retry_hours": row["retry_hours"], "contact": row["contact"], "source": "api", "signing_secrets": 0,
            **_switched(row["id"], off), "opened": False, "problem": problem}


async def _every_subscription(rt: DeliveryRuntime) -> list[dict[str, Any]]:
    """Every subscription, as read now (this process may not have seen another's change yet): those in force,
    then those stored that it cannot open, listed too so that an operator finds here what holds delivery back,
    not only in its log."""
    book = rt.context.subscriptions
    async with rt.request_unit_of_work() as uow:
        rows = await book.reload(uow.store, rt.context.clock())
        off = await _off(uow.store, book)
    unopened = set(book.unopened)
    return [*(_state(s, book, off) for s in book.values()),
            *(_unopened_state(row, off, book.invalid.get(row["id"])) for row in rows if row["id"] in unopened)]


@router.get("/v1/subscriptions", summary="The subscriptions (never their secrets)",
            response_model=list[SubscriptionState], dependencies=[needs("admin")])
async def list_subscriptions(rt: DeliveryRuntime) -> list[dict[str, Any]]:
    return await _every_subscription(rt)


@router.get("/v1/subscriptions/{subscription_id}", summary="One subscription (never its secrets)",
            response_model=SubscriptionState, dependencies=[needs("admin")],
            responses=problem_responses(404, _404="no such subscription"))
async def get_subscription(subscription_id: str, rt: DeliveryRuntime) -> dict[str, Any]:
    """As `GET /v1/subscriptions` lists it: where the `Location` of a subscription made through the API points."""
    found = next((state for state in await _every_subscription(rt) if state["id"] == subscription_id), None)
    if found is None:
        raise Problem(404, f"no subscription {subscription_id!r}")
    return found


#: What a filter's grade key does beyond the grade an event names, said to whoever makes or changes a subscription.
_GRADE_KEPT = ("with lead.routed among its events, a subscription with a grade key is sent the later events of a "
               "lead it took (was sent its lead.routed) whatever grade the lead is raised to, until sales reject it")


class NewSubscription(BaseModel):
    """A webhook to send lead events to; its signing secret is made by leadpipe and shown once."""

    # A misspelt key ("contacts") would otherwise be dropped: the receiver sent all it was meant not to get.
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="a name of your choice")
    url: str = Field(max_length=2000, description="the receiver (private addresses are refused unless "
                                                  "DELIVERY_ALLOW_PRIVATE_TARGETS=true)")
    events: list[str] = Field(min_length=1, description=f"any of {', '.join(DELIVERABLE)}")
    filter: dict[str, str | list[str]] = Field(default_factory=dict, description="team, owner, grade, source: "
                                                                                  "a value or a list (lead.handed_over "
                                                                                  "and lead.sla_breached pass when the "
                                                                                  "side the lead left or the side it "
                                                                                  "went to meets every key, "
                                                                                  "lead.merged when the lead merged "
                                                                                  "away or the survivor does; "
                                                                                  "lead.erased passes any filter; "
                                                                                  f"{_GRADE_KEPT})")
    retry_hours: float | None = Field(None, gt=0, le=LONGEST_RETRY_HOURS, description="how long a failing delivery is "
                                                                         "retried (default DELIVERY_RETRY_HOURS)")
    contact: list[str] | None = Field(None, description=f"the contact fields the receiver is sent, among "
                                                        f"{', '.join(CONTACT_FIELDS)}; the others, what "
                                                        "enrichment read from them and the score's reasons that "
                                                        "read them are left out of every body and named in its "
                                                        "`withheld` attribute (default: all). The score's numbers "
                                                        "stay: they tell a receiver that knows the rules what the "
                                                        "reasons left out add up to, and so may tell what a field "
                                                        "left out gave")


class SubscriptionChange(BaseModel):
    """A subscription's new settings, as a JSON merge patch: a key left out keeps its value, ``null`` puts back
    the default (no filter, DELIVERY_RETRY_HOURS, all contact fields). Its id and secret stay (rotate the secret
    with ``/secrets``)."""

    # A misspelt key ("contacts") would otherwise be dropped and answered 200, leaving the receiver sent all it was.
    model_config = ConfigDict(extra="forbid")

    # No default to put back: null is refused, naming the field.
    url: str = Field(None, max_length=2000, description="the receiver; every delivery sent from now on goes "
                                                        "there, those waiting included")
    events: list[str] = Field(None, min_length=1, description=f"any of {', '.join(DELIVERABLE)}; for the "
                                                              "events read from now on")
    filter: dict[str, str | list[str]] | None = Field(None, description="team, owner, grade, source: a value or "
                                                                        "a list (lead.handed_over and "
                                                                        "lead.sla_breached pass when the side the "
                                                                        "lead left or the side it went to meets "
                                                                        "every key, lead.merged when the lead "
                                                                        "merged away or the survivor does; "
                                                                        "lead.erased passes any filter; "
                                                                        f"{_GRADE_KEPT}); replaced whole (null: "
                                                                        "none)")
    retry_hours: float | None = Field(None, gt=0, le=LONGEST_RETRY_HOURS, description="how long a failing delivery "
                                      "is retried, counted from its first attempt; it holds from the next attempt on, for those "
                                      "waiting too (null: DELIVERY_RETRY_HOURS)")
    contact: list[str] | None = Field(None, description=f"the contact fields the receiver is sent, among "
                                                        f"{', '.join(CONTACT_FIELDS)}, in the events read from "
                                                        "now on (null: all)")


class WithSecret(SubscriptionState):
    #: Shown once: leadpipe keeps it sealed and never shows it again. Give it to the receiver now.
    secret: str


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    previous_valid_hours: float = Field(24, ge=0, le=24 * 30, description="how long the secrets in use now keep "
                                                                          "signing beside the new one (0: stop now)")


class Rotated(BaseModel):
    id: str
    #: Shown once, like a new subscription's.
    secret: str
    previous_valid_until: datetime


class Deleted(BaseModel):
    id: str
    #: Deliveries still waiting, now dead with "subscription deleted".
    dropped: int


def _box(rt: Runtime[Delivery, DeliveryStore]) -> SecretBox:
    box = rt.context.subscriptions.box
    if box is None:
        raise Problem(503, "subscriptions cannot be made through the API until DELIVERY_SECRETS_KEY (or "
                           "LEADPIPE_SESSION_SECRET) is set: their secrets are stored sealed with it")
    return box


def _api_made(rt: Runtime[Delivery, DeliveryStore], subscription_id: str) -> None:
    if subscription_id in rt.context.subscriptions.from_file:
        raise Problem(409, f"subscription {subscription_id!r} is defined in DELIVERY_SUBSCRIPTIONS_FILE: change "
                           "it there")


def _opened(box: SecretBox, row: dict[str, Any]) -> list[tuple[str, datetime | None]]:
    try:
        return opened_secrets(box, row["secrets"])
    except InvalidToken:
        raise Problem(409, f"subscription {row['id']!r} was sealed with another key than this process has "
                           f"({box.source}): give that key back, or delete the subscription and make it "
                           "again") from None


def _parsed(item: dict[str, Any], book: SubscriptionBook) -> Subscription:
    """A subscription as the API was given it, checked as the file's are; 422 naming the field."""
    try:
        return parse_subscription(item, "body", allow_private=book.allow_private)
    except ValueError as exc:
        where, _, reason = str(exc).partition(": ")
        field = where.removeprefix("body.")
        raise Problem(422, f"{field}: {reason}", [FieldProblem(field, reason)]) from None


def _columns(sub: Subscription) -> dict[str, Any]:
    """What is stored of a subscription's settings (its secrets apart)."""
    return {"url": sub.url, "events": sorted(sub.events), "filter": {k: sorted(v) for k, v in sub.filter.items()},
            "retry_hours": sub.retry_hours, "contact": _listed(sub.contact)}


async def _put_in_force(rt: DeliveryRuntime, now: datetime) -> None:
    """This process's subscriptions read again after a change was committed, under a deadline of their own: the
    change is stored whatever happens here, so a read Postgres does not answer in time is left to the next refresh
    (``DELIVERY_SUBSCRIPTIONS_REFRESH_S``), not answered 503 (a retry of a creation would find its id taken and
    the secret, shown only in this answer, lost)."""
    try:
        async with rt.request_unit_of_work() as uow:
            await rt.context.subscriptions.reload(uow.store, now)
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        log.warning("a subscription change is stored but not yet in force here; the next refresh puts it",
                    error=type(exc).__name__)


@router.post("/v1/subscriptions", summary="Subscribe a webhook; its secret is answered once", status_code=201,
             response_model=WithSecret, responses={
                 201: {"headers": {"Location": {"description": "where it is read back: `/v1/subscriptions/{id}`",
                                                "schema": {"type": "string"}}}},
                 **problem_responses(409, 503, _409="the id is taken")})
async def create_subscription(body: NewSubscription, rt: DeliveryRuntime, request: Request, response: Response,
                              who: Annotated[Principal, needs("admin")]) -> dict[str, Any]:
    box, book, now = _box(rt), rt.context.subscriptions, rt.context.clock()
    secret = new_secret(os.urandom(32))
    sub = _parsed({**body.model_dump(), "secrets": [secret]}, book)
    if sub.id in book:
        raise Problem(409, f"a subscription {sub.id!r} exists", [FieldProblem("id", "is taken")])
    async with rt.request_unit_of_work() as uow:
        # Dated by Postgres's clock, not this host's: its deliveries are, and a redrive tells its own from an
        # earlier holder's of its id by comparing the two (``store._made_through_api_for_it``).
        made = await uow.store.add_subscription({
            "id": sub.id, **_columns(sub), "secrets": sealed_secrets(box, [(secret, None)]), "created_by": who.name})
        if not made:
            raise Problem(409, f"a subscription {sub.id!r} exists", [FieldProblem("id", "is taken")])
        await uow.commit()
    await _put_in_force(rt, now)
    log.info("subscription made through the API", subscription=sub.id, by=who.name)
    # A path under the prefix a proxy serves the service at (as paging's Link headers are); ids need no escaping.
    response.headers["Location"] = request.scope.get("root_path", "") + request.app.url_path_for(
        "get_subscription", subscription_id=sub.id)
    return {**_state(sub, book, {}), "secret": secret}


@router.patch("/v1/subscriptions/{subscription_id}",
              summary="Change a subscription made through the API (any of url, events, filter, retry_hours, "
                      "contact); its secret stays", response_model=SubscriptionState, responses=problem_responses(
                  404, 409, 503, _409="defined in the file, or sealed with a key this process does not have"))
async def change_subscription(subscription_id: str, body: SubscriptionChange, rt: DeliveryRuntime,
                              who: Annotated[Principal, needs("admin")]) -> dict[str, Any]:
    box, book, now = _box(rt), rt.context.subscriptions, rt.context.clock()
    given = body.model_dump(include=body.model_fields_set)
    if not given:
        raise Problem(422, "nothing to change", [FieldProblem(
            "body", f"give any of {', '.join(SubscriptionChange.model_fields)}")])
    _api_made(rt, subscription_id)
    async with rt.request_unit_of_work() as uow:
        row = await uow.store.subscription_row(subscription_id)
        if row is None:
            raise Problem(404, f"no subscription {subscription_id!r}")
        # Checked whole, as a new one is: the stored settings with the change, signed by the secrets in use.
        stored = {"id": row["id"], "url": row["url"], "events": list(row["events"]), "filter": row["filter"],
                  "retry_hours": row["retry_hours"], "contact": row["contact"]}
        sub = _parsed({**stored, **given, "secrets": list(live_secrets(_opened(box, row), now))}, book)
        # Only what was given is written: two changes at once, of different fields, both stay.
        changes = {k: v for k, v in _columns(sub).items() if k in given}
        await uow.store.change_subscription(subscription_id, changes)
        off = await _off(uow.store, book)
        await uow.commit()
    await _put_in_force(rt, now)
    # Names only: a URL may hold a token (a chat's incoming webhook).
    log.info("subscription changed through the API", subscription=subscription_id, by=who.name,
             changed=sorted(k for k, v in changes.items() if v != stored[k]))
    return _state(book.get(subscription_id, sub), book, off)


@router.post("/v1/subscriptions/{subscription_id}/secrets",
             summary="Rotate a subscription's secret: a new one signs from now, beside the old for a while",
             response_model=Rotated, responses=problem_responses(
                 404, 409, 503, _409="defined in the file, or sealed with a key this process does not have"))
async def rotate_secret(subscription_id: str, body: Rotation, rt: DeliveryRuntime,
                        who: Annotated[Principal, needs("admin")]) -> dict[str, Any]:
    box, book, now = _box(rt), rt.context.subscriptions, rt.context.clock()
    _api_made(rt, subscription_id)
    secret = new_secret(os.urandom(32))
    # By this host's clock, unlike the row's updated_at (the store's): each process judges a secret's expiry by its
    # own clock when it reloads (``SubscriptionBook.load``); a skew only moves the end of the overlap by as much.
    until = now + timedelta(hours=body.previous_valid_hours)
    async with rt.request_unit_of_work() as uow:
        row = await uow.store.subscription_row(subscription_id)
        if row is None:
            raise Problem(404, f"no subscription {subscription_id!r}")
        opened = _opened(box, row)
        kept = [(s, min(at, until) if at else until) for s, at in opened if (at is None or at > now) and until > now]
        await uow.store.set_secrets(subscription_id, sealed_secrets(box, [*kept, (secret, None)]))
        await uow.commit()
    await _put_in_force(rt, now)
    log.info("subscription secret rotated", subscription=subscription_id, by=who.name, previous_until=until)
    return {"id": subscription_id, "secret": secret, "previous_valid_until": until}


@router.delete("/v1/subscriptions/{subscription_id}", summary="Delete a subscription made through the API",
               response_model=Deleted, responses=problem_responses(404, 409, _409="defined in the file"))
async def delete_subscription(subscription_id: str, rt: DeliveryRuntime,
                              who: Annotated[Principal, needs("admin")]) -> dict[str, Any]:
    _api_made(rt, subscription_id)
    async with rt.request_unit_of_work() as uow:
        dropped = await uow.store.remove_subscription(subscription_id)
        if dropped is None:
            raise Problem(404, f"no subscription {subscription_id!r}")
        await uow.commit()
    await _put_in_force(rt, rt.context.clock())
    log.info("subscription deleted", subscription=subscription_id, by=who.name, dropped=dropped)
    return {"id": subscription_id, "dropped": dropped}


class RedriveRequest(BaseModel):
    """Which dead deliveries to send again: all of them, one subscription's, or one lead's."""

    # A misspelt key ("subscription") would otherwise be dropped: every dead delivery of all sent again.
    model_config = ConfigDict(extra="forbid")

    subscription_id: str | None = Field(None, max_length=100)
    lead_id: uuid.UUID | None = None


class Redriven(BaseModel):
    redriven: int
    purged: int = Field(description="dead deliveries asked for that were left dead: their body was purged "
                                    "(`DELIVERY_KEEP_BODIES_DAYS` after they died), so there is nothing to send")
    not_in_force: int = Field(description="dead deliveries asked for that were left dead: their subscription is not "
                                          "in force (deleted, or in neither `DELIVERY_SUBSCRIPTIONS_FILE` nor those "
                                          "made through the API); one whose body was purged too is in neither count")
    switched_off: list[str] = Field(default_factory=list, description="subscriptions asked for that a receiver's "
                                    "410 switched off: what was queued again for them waits until each is enabled "
                                    "(`POST /v1/subscriptions/{id}/enable`)")


@router.post("/v1/deliveries/redrive", summary="Send dead deliveries again (their retry window restarts)",
             response_model=Redriven, dependencies=[needs("admin")],
             responses=problem_responses(422, _422="`subscription_id` names no subscription in force"))
async def redrive(body: RedriveRequest, rt: DeliveryRuntime) -> dict[str, Any]:
    book = rt.context.subscriptions
    async with rt.request_unit_of_work() as uow:
        # One made or deleted through another process since this one's last refresh counts as it stands now.
        await book.reload(uow.store, rt.context.clock())
        if body.subscription_id is not None and body.subscription_id in book.unopened:
            why = book.invalid.get(body.subscription_id) or "its secrets are sealed under a key this process lacks"
            raise Problem(422, "the redrive was not made", [FieldProblem(
                "subscription_id", f"{body.subscription_id!r} is stored but cannot be put in force here ({why}; "
                                   "its GET says so too): nothing of it can be sent until it can")])
        if body.subscription_id is not None and body.subscription_id not in book:
            # "0 redriven" for a misspelt id would read as "nothing was dead" (leadpipe-delivery redrive refuses it
            # too).
            raise Problem(422, "the redrive was not made", [FieldProblem(
                "subscription_id", f"{body.subscription_id!r} is no subscription in force; one of "
                                   f"{', '.join(sorted(book)) or '(none)'}")])
        done = await uow.store.redrive(body.subscription_id, body.lead_id, in_file=book.from_file)
        off = await _off(uow.store, book)
        await uow.commit()
    # "3 redriven" for a subscription a 410 switched off read as sent: they wait until it is enabled.
    asked = {body.subscription_id} if body.subscription_id is not None else set(book)
    return {"redriven": done.queued, "purged": done.purged, "not_in_force": sum(done.not_in_force.values()),
            "switched_off": sorted(asked & set(off))}


class Enabled(BaseModel):
    id: str
    #: It had been switched off by a 410.
    was_disabled: bool


@router.post("/v1/subscriptions/{subscription_id}/enable",
             summary="Switch a subscription back on after its receiver answered 410 Gone", response_model=Enabled,
             dependencies=[needs("admin")], responses=problem_responses(404, _404="no such subscription"))
async def enable(subscription_id: str, rt: DeliveryRuntime) -> dict[str, Any]:
    book = rt.context.subscriptions
    async with rt.request_unit_of_work() as uow:
        # As the list shows them: one made through another process since this one's last refresh, or one this
        # process cannot open (its receiver may still have answered 410 before), is switched back on all the same.
        await book.reload(uow.store, rt.context.clock())
        if subscription_id not in book and subscription_id not in book.unopened:
            raise Problem(404, f"no subscription {subscription_id!r}")
        was = await uow.store.enable(subscription_id)
        await uow.commit()
    return {"id": subscription_id, "was_disabled": was}
