"""delivery's HTTP API with the key store and the queue stood in for: what it answers."""

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import structlog
from cryptography.fernet import Fernet
from fastapi import FastAPI

from leadpipe_common import auth
from leadpipe_common.db import Unanswered
from leadpipe_common.http import install_problem_handlers
from leadpipe_common.testing.fakes import unit_of_work_over
from leadpipe_common.throttle import parse_rate

from delivery.api import router
from delivery.domain import new_secret, parse_subscriptions
from delivery.store import Redrive
from delivery.subscriptions import SecretBox, SubscriptionBook, sealed_secrets

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
#: Postgres's clock in the stood-in store, seven minutes ahead of the API host's (``NOW``).
POSTGRES_NOW = NOW + timedelta(minutes=7)
ANALYST = auth.Principal(key_id="def456", name="analyst", scopes=frozenset({auth.READ_REPORTS}))
ADMIN = auth.Principal(key_id="abc123", name="ops", scopes=frozenset({auth.ADMIN}))


class Keys:
    def __init__(self, principal: auth.Principal = ANALYST) -> None:
        self.principal = principal

    async def authenticate(self, key: str) -> auth.Principal:
        return self.principal

    def seen_valid(self, token: str) -> bool:
        return True


class Queue:
    """A lead's deliveries, as the store reads them."""

    def __init__(self, deliveries: list[dict], not_in_force: dict[str, int] | None = None) -> None:
        self.deliveries = deliveries
        #: Of the dead deliveries a redrive is asked for, those left out because their subscription is not in force.
        self.not_in_force = not_in_force or {}

    async def of_lead(self, lead_id: uuid.UUID) -> list[dict]:
        return self.deliveries

    async def redrive(self, subscription_id=None, lead_id=None, *, in_file) -> Redrive:
        return Redrive(queued=1, purged=2, not_in_force=self.not_in_force)

    async def api_subscriptions(self) -> list[dict]:
        return []  # none made through the API

    async def switch_offs(self) -> dict[str, dict]:
        return {}  # none switched off


class Stored(Queue):
    """The subscriptions made through the API, as rows of ``delivery.subscriptions``."""

    def __init__(self, *rows: dict, disabled: dict[str, str | None] | None = None) -> None:
        super().__init__([])
        self.rows = {row["id"]: dict(row) for row in rows}
        #: The subscriptions a receiver's 410 switched off, with the url that answered it.
        self.switched_off = dict(disabled or {})

    async def api_subscriptions(self) -> list[dict]:
        return [dict(row) for _, row in sorted(self.rows.items())]

    async def subscription_row(self, subscription_id: str) -> dict | None:
        row = self.rows.get(subscription_id)
        return dict(row) if row else None

    async def add_subscription(self, row: dict) -> bool:
        if row["id"] in self.rows:
            return False
        self.rows[row["id"]] = dict(row)
        return True

    async def change_subscription(self, subscription_id: str, columns: dict) -> None:
        self.rows[subscription_id].update(columns, updated_at=POSTGRES_NOW)

    async def set_secrets(self, subscription_id: str, sealed: list[dict]) -> None:
        self.rows[subscription_id].update(secrets=sealed, updated_at=POSTGRES_NOW)

    async def disabled_urls(self) -> dict[str, str | None]:
        return dict(self.switched_off)

    async def switch_offs(self) -> dict[str, dict]:
        return {sub_id: {"at": SWITCHED_OFF_AT, "reason": f"410 Gone from {url}", "url": url}
                for sub_id, url in self.switched_off.items()}

    async def enable(self, subscription_id: str) -> bool:
        return self.switched_off.pop(subscription_id, False) is not False


#: When a receiver's 410 switched off each subscription ``Stored`` holds switched off.
SWITCHED_OFF_AT = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
BOX = SecretBox([Fernet.generate_key()])
CREATED = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
FILE = parse_subscriptions({"subscriptions": [
    {"id": "crm", "url": "https://crm.example.com/h", "secrets": [new_secret(bytes(32))], "events": ["lead.routed"]},
]}, allow_private=False)


def made(sub_id: str = "slack", box: SecretBox = BOX, **settings) -> dict:
    """A row as the API's POST stores it."""
    return {"id": sub_id, "url": "https://hooks.example.com/s", "events": ["lead.queued", "lead.routed"],
            "filter": {"team": ["na"]}, "retry_hours": 12.0, "contact": ["email", "company"],
            "secrets": sealed_secrets(box, [(new_secret(bytes(range(32))), None)]), "created_by": "ops",
            "created_at": CREATED, "updated_at": CREATED, **settings}


def book_of(stored: Stored) -> SubscriptionBook:
    book = SubscriptionBook(FILE, BOX, allow_private=False)
    book.load([row for row in stored.rows.values()], NOW)
    return book


def serving(queue: Queue, principal: auth.Principal = ANALYST, book: SubscriptionBook | None = None,
            root_path: str = "") -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    book = book if book is not None else SubscriptionBook({}, None, allow_private=False)
    app.state.keys, app.state.wrong_keys = Keys(principal), auth.WrongKeys(parse_rate("30/minute", "test"))
    app.state.runtime = SimpleNamespace(request_unit_of_work=unit_of_work_over(queue),
                                        context=SimpleNamespace(subscriptions=book, clock=lambda: NOW))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path=root_path), base_url="http://delivery",
                             headers={"Authorization": "Bearer lp_abc123_secret"})


def dead(response: str) -> dict:
    """A delivery given up after its receiver answered 422 with ``response``, as the store reads it."""
    return {"subscription_id": "crm", "event_id": uuid.uuid4(), "event_type": "lead.routed", "status": "dead",
            "created_at": NOW, "next_at": None, "last_status": 422, "last_error": None, "last_response": response,
            "attempts": [{"attempt": 1, "at": NOW, "status": 422, "error": None, "duration_ms": 7}]}


async def test_a_dead_delivery_is_shown_to_an_admin_with_the_receivers_last_response():
    """The README promises it kept; the answer left it out, so nobody could read why a delivery died."""
    async with serving(Queue([dead('{"error": "unknown team"}')]), ADMIN) as client:
        shown = await client.get("/v1/deliveries", params={"lead_id": str(uuid.uuid4())})
    assert shown.status_code == 200, shown.text
    [delivery] = shown.json()
    assert (delivery["status"], delivery["last_status"], delivery["last_response"]) == (
        "dead", 422, '{"error": "unknown team"}')


async def test_a_key_that_only_reads_reports_sees_no_receivers_answer():
    """With DELIVERY_ALLOW_PRIVATE_TARGETS a subscription may send to an internal service: 2,000 bytes of each of
    its answers were shown to every key that reads reports. What became of the delivery is still shown."""
    async with serving(Queue([dead('{"db_password": "hunter2"}')]), ANALYST) as client:
        shown = await client.get("/v1/deliveries", params={"lead_id": str(uuid.uuid4())})
    assert shown.status_code == 200, shown.text
    [delivery] = shown.json()
    assert (delivery["status"], delivery["last_status"], delivery["last_response"]) == ("dead", 422, None)


async def test_a_redrive_answers_how_many_it_left_dead_because_their_body_was_purged():
    """A purged delivery has nothing left to send: the answer says so beside what was queued again."""
    async with serving(Queue([]), ADMIN) as client:
        answer = await client.post("/v1/deliveries/redrive", json={"lead_id": str(uuid.uuid4())})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"redriven": 1, "purged": 2, "not_in_force": 0, "switched_off": []}


async def test_a_redrive_answers_how_many_it_left_dead_because_their_subscription_is_not_in_force():
    """Left out without a word, they read as never dead: a deleted subscription's, or one's missing from the file."""
    async with serving(Queue([], not_in_force={"old-crm": 3, "gone": 1}), ADMIN) as client:
        answer = await client.post("/v1/deliveries/redrive", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["not_in_force"] == 4 and answer.json()["redriven"] == 1


async def test_a_subscription_made_through_the_api_is_dated_by_postgres_clock_not_the_api_hosts():
    """Dated by the API host's clock: ahead of Postgres's, by which its deliveries are queued, the deliveries of its
    first moments were judged an earlier holder's of its id, and a redrive left them dead; behind, an earlier
    holder's dead deliveries were judged its own, and a redrive sent them to this receiver."""
    stored = Stored()
    async with serving(stored, ADMIN, book_of(stored)) as client:
        answer = await client.post("/v1/subscriptions", json={"id": "chat", "url": "https://hooks.example.com/c",
                                                              "events": ["lead.routed"]})
    assert answer.status_code == 201, answer.text
    row = stored.rows["chat"]
    assert row["created_by"] == "ops" and not {"created_at", "updated_at"} & row.keys()  # the store's to set


class SilentAfterCommit(Stored):
    """Stores, then goes silent: the subscriptions' read that puts a change in force gets no answer in time."""

    async def api_subscriptions(self) -> list[dict]:
        raise Unanswered(0.05)


async def test_a_subscription_stored_before_postgres_went_silent_is_answered_with_its_secret_not_a_503():
    """A 503 for a creation that was stored: its retry found the id taken, and the secret, shown only in the
    answer, was lost. Putting it in force is left to the next refresh."""
    stored = SilentAfterCommit()
    async with serving(stored, ADMIN, book_of(Stored())) as client:
        answer = await client.post("/v1/subscriptions", json={"id": "chat", "url": "https://hooks.example.com/c",
                                                              "events": ["lead.routed"]})
        rotated = await client.post("/v1/subscriptions/chat/secrets", json={})
    assert answer.status_code == 201 and answer.json()["secret"].startswith("whsec_"), answer.text
    assert rotated.status_code == 200 and rotated.json()["secret"] != answer.json()["secret"], rotated.text
    assert "chat" in stored.rows


async def test_a_subscription_another_process_made_or_this_one_cannot_open_is_enabled_and_redriven_at_once():
    """Enable and redrive looked ids up in this process's copy, refreshed every few seconds: one made through
    another process answered 404 (or 422) until then, and one this process cannot open always did."""
    stored = Stored(disabled={"chat": "https://hooks.example.com/s", "sealed": "https://hooks.example.com/s"})
    book = book_of(stored)  # before either was made
    stored.rows["chat"] = made("chat")
    stored.rows["sealed"] = made("sealed", box=SecretBox([Fernet.generate_key()]))  # another key sealed it
    async with serving(stored, ADMIN, book) as client:
        enabled = [await client.post(f"/v1/subscriptions/{sub}/enable") for sub in ("chat", "sealed")]
        redriven = await client.post("/v1/deliveries/redrive", json={"subscription_id": "chat"})
        unsendable = await client.post("/v1/deliveries/redrive", json={"subscription_id": "sealed"})
        nowhere = await client.post("/v1/subscriptions/nowhere/enable")
    assert [e.json() for e in enabled] == [{"id": "chat", "was_disabled": True}, {"id": "sealed", "was_disabled": True}]
    assert redriven.status_code == 200, redriven.text
    assert unsendable.status_code == 422 and "cannot be put in force here" in unsendable.json()["errors"][0]["reason"]
    assert nowhere.status_code == 404 and stored.switched_off == {}


async def test_a_made_subscription_is_read_back_where_its_location_points_as_the_list_shows_it():
    """A 201 with no Location, and no GET of one subscription: after a timeout a client had to list them all."""
    stored = Stored(made("sealed", box=SecretBox([Fernet.generate_key()])))  # one this process cannot open
    book = book_of(stored)
    async with serving(stored, ADMIN, book) as client:
        answer = await client.post("/v1/subscriptions", json={"id": "chat", "url": "https://hooks.example.com/c",
                                                              "events": ["lead.routed"]})
        read = await client.get(answer.headers["location"])
        listed = {s["id"]: s for s in (await client.get("/v1/subscriptions")).json()}
        unopened = await client.get("/v1/subscriptions/sealed")
        nowhere = await client.get("/v1/subscriptions/nowhere")
    assert answer.status_code == 201 and answer.headers["location"] == "/v1/subscriptions/chat", answer.text
    assert read.status_code == 200 and read.json() == listed["chat"]
    assert unopened.json() == listed["sealed"] and unopened.json()["opened"] is False
    assert nowhere.status_code == 404
    # Behind a proxy serving delivery under a prefix, the Location names the path the client asks there.
    async with serving(stored, ADMIN, book, root_path="/delivery") as client:
        behind = await client.post("/delivery/v1/subscriptions", json={
            "id": "crm2", "url": "https://hooks.example.com/c", "events": ["lead.routed"]})
    assert behind.headers["location"] == "/delivery/v1/subscriptions/crm2", behind.text


async def test_a_changed_url_and_contact_are_stored_in_force_and_listed_and_the_rest_is_kept():
    """Changed in place: before, a new url or contact meant deleting the subscription (its waiting deliveries
    dead) and making it again (a new secret for the receiver)."""
    stored = Stored(made(), disabled={"slack": "https://hooks.example.com/s"})  # off, and stays off
    book = book_of(stored)
    secrets = stored.rows["slack"]["secrets"]
    async with serving(stored, ADMIN, book) as client:
        with structlog.testing.capture_logs() as lines:
            changed = await client.patch("/v1/subscriptions/slack",
                                         json={"url": "https://hooks.example.com/moved", "contact": ["email"]})
        listed = await client.get("/v1/subscriptions")
    assert changed.status_code == 200, changed.text
    slack = next(s for s in listed.json() if s["id"] == "slack")
    assert changed.json() == slack == {
        "id": "slack", "url": "https://hooks.example.com/moved", "events": ["lead.queued", "lead.routed"],
        "filter": {"team": ["na"]}, "retry_hours": 12.0, "contact": ["email"], "source": "api",
        "signing_secrets": 1, "disabled": True, "disabled_at": "2026-11-20T07:30:00Z",
        "disabled_reason": "410 Gone from https://hooks.example.com/s", "opened": True, "problem": None}
    assert (book["slack"].url, book["slack"].contact) == ("https://hooks.example.com/moved", frozenset({"email"}))
    row = stored.rows["slack"]
    assert (row["secrets"], row["created_at"], row["updated_at"]) == (secrets, CREATED, POSTGRES_NOW)
    [line] = [line for line in lines if line["event"] == "subscription changed through the API"]
    assert (line["by"], line["changed"]) == ("ops", ["contact", "url"]) and "moved" not in str(line)


async def test_a_rotation_is_dated_by_postgres_clock_and_the_old_secret_signs_beside_the_new_one():
    """A rotation dated the row by the API host's clock, its created_at by Postgres's: one table, two clocks, and a
    host behind Postgres's could show a subscription changed before it was made. The store dates it now."""
    stored = Stored(made())
    book = book_of(stored)
    async with serving(stored, ADMIN, book) as client:
        rotated = await client.post("/v1/subscriptions/slack/secrets", json={"previous_valid_hours": 24})
    assert rotated.status_code == 200, rotated.text
    row = stored.rows["slack"]
    assert (row["created_at"], row["updated_at"]) == (CREATED, POSTGRES_NOW)
    assert len(book["slack"].secrets) == 2 and rotated.json()["secret"] in book["slack"].secrets


async def test_a_files_subscription_is_listed_as_switched_off_only_by_a_410_from_the_url_the_file_gives_it():
    """A process still on the older file got 410 from the url the file has left: the subscription sends to its
    new url, and is not listed as off."""
    async with serving(Stored(disabled={"crm": "https://old-crm.example.com/h"}), ADMIN, book_of(Stored())) as client:
        moved = (await client.get("/v1/subscriptions")).json()
    async with serving(Stored(disabled={"crm": "https://crm.example.com/h"}), ADMIN, book_of(Stored())) as client:
        gone = (await client.get("/v1/subscriptions")).json()
    assert [(s["id"], s["source"], s["disabled"]) for s in moved] == [("crm", "file", False)]
    assert [(s["id"], s["source"], s["disabled"]) for s in gone] == [("crm", "file", True)]


async def test_null_puts_back_the_default_and_a_key_left_out_keeps_its_value():
    stored = Stored(made())
    book = book_of(stored)
    async with serving(stored, ADMIN, book) as client:
        changed = await client.patch("/v1/subscriptions/slack",
                                     json={"retry_hours": None, "contact": None, "filter": {"grade": "A"}})
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in ("url", "events", "filter", "retry_hours", "contact")} == {
        "url": "https://hooks.example.com/s", "events": ["lead.queued", "lead.routed"], "filter": {"grade": ["A"]},
        "retry_hours": None, "contact": None}
    assert (book["slack"].retry_hours, book["slack"].contact, book["slack"].filter) == (
        None, None, {"grade": frozenset({"A"})})


async def test_a_change_to_a_bad_or_unknown_field_is_refused_naming_it_and_nothing_is_stored():
    stored = Stored(made())
    book = book_of(stored)
    before = dict(stored.rows["slack"])
    refusals = [({"contact": ["email", "phon"]}, "contact"), ({"url": "http://10.0.0.1/x"}, "url"),
                ({"events": ["lead.captured"]}, "events"), ({"filter": {"colour": "red"}}, "filter"),
                ({"url": None}, "url"), ({"events": []}, "events"), ({"retry_hours": 0}, "retry_hours"),
                ({"url": "https://hooks.example.com/x", "contacts": ["email"]}, "contacts"), ({"id": "other"}, "id"),
                ({}, "body")]
    async with serving(stored, ADMIN, book) as client:
        for body, field in refusals:
            refused = await client.patch("/v1/subscriptions/slack", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert [e["field"] for e in refused.json()["errors"]] == [field], (body, refused.text)
    assert stored.rows["slack"] == before and book["slack"].url == "https://hooks.example.com/s"


async def test_a_change_to_no_subscription_or_to_the_files_is_refused():
    stored = Stored(made())
    async with serving(stored, ADMIN, book_of(stored)) as client:
        unknown = await client.patch("/v1/subscriptions/nobody", json={"contact": ["email"]})
        in_file = await client.patch("/v1/subscriptions/crm", json={"contact": ["email"]})
    assert unknown.status_code == 404, unknown.text
    assert in_file.status_code == 409 and "DELIVERY_SUBSCRIPTIONS_FILE" in in_file.json()["error"], in_file.text


async def test_a_change_to_a_subscription_sealed_with_another_key_is_refused_and_not_stored():
    """Its secrets cannot be opened here, so it cannot be checked whole, nor put in force."""
    stored = Stored(made("sealed-away", SecretBox([Fernet.generate_key()])))
    before = dict(stored.rows["sealed-away"])
    async with serving(stored, ADMIN, book_of(stored)) as client:
        refused = await client.patch("/v1/subscriptions/sealed-away", json={"contact": ["email"]})
    assert refused.status_code == 409 and "sealed with another key" in refused.json()["error"], refused.text
    assert stored.rows["sealed-away"] == before


async def test_a_change_needs_the_admin_scope():
    stored = Stored(made())
    async with serving(stored, ANALYST, book_of(stored)) as client:
        refused = await client.patch("/v1/subscriptions/slack", json={"contact": ["email"]})
    assert refused.status_code == 403, refused.text


async def test_a_misspelt_key_is_refused_naming_it_not_dropped():
    """Dropped, "contacts" would make a subscription sent every contact field, and "subscription" a redrive of all."""
    stored = Stored()
    async with serving(stored, ADMIN, book_of(stored)) as client:
        made_ = await client.post("/v1/subscriptions", json={"id": "chat", "url": "https://hooks.example.com/c",
                                                              "events": ["lead.routed"], "contacts": ["first_name"]})
        redriven = await client.post("/v1/deliveries/redrive", json={"subscription": "crm"})
        rotated = await client.post("/v1/subscriptions/chat/secrets", json={"previous_valid_hour": 1})
    for answer, field in ((made_, "contacts"), (redriven, "subscription"), (rotated, "previous_valid_hour")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [{"field": field, "reason": "is not a field this takes (misspelt?)"}]
    assert stored.rows == {}


async def test_a_redrive_of_a_subscription_a_410_switched_off_says_what_it_queued_waits_for_it_to_be_enabled():
    """"1 redriven" read as sent: nothing goes to a switched-off subscription until it is enabled."""
    stored = Stored(made(), disabled={"slack": "https://hooks.example.com/s"})
    async with serving(stored, ADMIN, book_of(stored)) as client:
        off = await client.post("/v1/deliveries/redrive", json={"subscription_id": "slack"})
        every = await client.post("/v1/deliveries/redrive", json={})
    assert off.status_code == 200, off.text
    assert off.json()["switched_off"] == every.json()["switched_off"] == ["slack"]
