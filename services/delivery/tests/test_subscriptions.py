"""Subscriptions made through the admin API: secrets made here, sealed at rest, rotated with an overlap."""

import os
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from cryptography.fernet import Fernet

from leadpipe_common.testing.fakes import unit_of_work_over

from delivery.domain import live_secrets, new_secret, parse_subscription, parse_subscriptions
from delivery.subscriptions import (
    BookRefresh, SecretBox, SubscriptionBook, UnopenedSubscriptions, opened_secrets, sealed_secrets,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FILE = parse_subscriptions({"subscriptions": [
    {"id": "crm", "url": "https://crm.example.com/h", "secrets": [new_secret(bytes(32))], "events": ["lead.routed"]},
]}, allow_private=False)


def row(box, sub_id="slack", secrets=None):
    return {"id": sub_id, "url": "https://hooks.example.com/s", "events": ["lead.queued"], "filter": {"team": ["na"]},
            "retry_hours": None, "contact": None, "secrets": sealed_secrets(box, secrets or [(new_secret(os.urandom(32)), None)])}


def test_a_new_secret_is_a_standard_webhooks_secret_of_enough_random_bytes():
    secret = new_secret(os.urandom(32))
    sub = parse_subscription({"id": "x", "url": "https://a.example.com", "secrets": [secret],
                              "events": ["lead.routed"]}, "x", allow_private=False)
    assert sub.secrets == (secret,) and secret.startswith("whsec_")
    with pytest.raises(ValueError, match="24 random bytes"):
        new_secret(b"short")


def test_a_rotated_out_secret_signs_until_its_expiry_only():
    old, new = new_secret(bytes(32)), new_secret(bytes(range(32)))
    secrets = [(old, NOW + timedelta(hours=1)), (new, None)]
    assert live_secrets(secrets, NOW) == (old, new)
    assert live_secrets(secrets, NOW + timedelta(hours=1)) == (new,)


def test_secrets_are_sealed_at_rest_and_open_under_every_key_of_a_rotation():
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    secret = new_secret(os.urandom(32))
    sealed = sealed_secrets(SecretBox([old_key]), [(secret, None)])
    assert secret.removeprefix("whsec_") not in str(sealed)
    rotated = SecretBox.from_secrets(f"{new_key.decode()},{old_key.decode()}", None)
    assert rotated is not None and opened_secrets(rotated, sealed) == [(secret, None)]


def test_the_key_comes_from_the_setting_else_from_the_session_secret_else_nowhere():
    with pytest.raises(ValueError, match="DELIVERY_SECRETS_KEY"):
        SecretBox.from_secrets("not-a-key", None)
    assert SecretBox.from_secrets(None, None) is None
    derived = SecretBox.from_secrets(None, "a-session-secret")
    sealed = derived.seal("whsec_x")
    assert SecretBox.from_secrets(None, "a-session-secret").open(sealed) == "whsec_x"  # every process: same key


def test_the_book_holds_the_files_and_the_apis_subscriptions_and_leaves_out_what_it_cannot_open():
    box = SecretBox([Fernet.generate_key()])
    book = SubscriptionBook(FILE, box, allow_private=False)
    assert not book.loaded and set(book) == {"crm"}
    stranger = row(SecretBox([Fernet.generate_key()]), "sealed-elsewhere")
    expired = row(box, "expired-key", [(new_secret(bytes(32)), NOW - timedelta(seconds=1)),
                                       (new_secret(bytes(range(32))), None)])
    book.load([row(box), stranger, expired, row(box, "crm")], NOW)
    assert book.loaded and set(book) == {"crm", "slack", "expired-key"} and book.unopened == ("sealed-elsewhere",)
    assert book.source("crm") == "file" and book.source("slack") == "api"
    assert book["expired-key"].secrets == (new_secret(bytes(range(32))),)
    assert book["crm"] == FILE["crm"]  # the file's wins over a row of the same id


def test_the_consumer_decodes_only_the_event_types_some_subscription_in_force_asks_for():
    import types

    from delivery.service import wanted_record

    def headers(event_type, to_stage=None):
        return [("ce_id", b"x"), ("ce_type", event_type.encode()),
                *([("ce_tostage", to_stage.encode())] if to_stage else [])]

    box = SecretBox([Fernet.generate_key()])
    book = SubscriptionBook(FILE, box, allow_private=False)
    ctx = types.SimpleNamespace(subscriptions=book)
    # Before the API's subscriptions are read, any of them might want any deliverable type.
    assert wanted_record(headers("lead.queued"), ctx) and not wanted_record(headers("lead.scored"), ctx)
    book.load([], NOW)
    assert wanted_record(headers("lead.routed"), ctx) and not wanted_record(headers("lead.queued"), ctx)
    book.load([row(box)], NOW)  # slack, made through the API, wants lead.queued
    assert wanted_record(headers("lead.queued"), ctx) and not wanted_record(headers("lead.stage_changed"), ctx)
    book.load([{**row(box), "events": ["lead.stage_changed"]}], NOW)
    # Sales' dispositions are delivered; the pipeline's own steps are passed over without being read.
    assert wanted_record(headers("lead.stage_changed", "accepted"), ctx)
    assert wanted_record(headers("lead.stage_changed", "lost"), ctx)
    assert not wanted_record(headers("lead.stage_changed", "enriched"), ctx)
    assert not wanted_record(headers("lead.stage_changed", "routed"), ctx)


def test_the_consumer_decodes_every_erasure_though_no_subscription_asks_for_it():
    """Passed over unread, an erasure would leave its lead's bodies, which hold the person's contact, as they were."""
    import types

    from delivery.service import wanted_record

    book = SubscriptionBook(FILE, SecretBox([Fernet.generate_key()]), allow_private=False)
    book.load([], NOW)  # crm, the file's alone, asks for lead.routed
    assert wanted_record([("ce_type", b"lead.erased")], types.SimpleNamespace(subscriptions=book))


def test_the_consumer_decodes_every_rejection_though_no_subscription_asks_for_it_nor_filters_on_grade():
    """A rejection lets the leads a grade filter took go: passed over while no subscription filtered on grade (one
    whose filter was PATCHed away for a week, then back), the lead it took before stayed followed, and the B
    subscription went on hearing of it after a touch recycled it as an A, another rep's. Only the rejection: the
    other steps of the lifecycle change nothing remembered."""
    import types

    from delivery.service import wanted_record

    def rejection(to_stage="rejected"):
        return [("ce_type", b"lead.stage_changed"), ("ce_tostage", to_stage.encode())]

    box = SecretBox([Fernet.generate_key()])
    book = SubscriptionBook(FILE, box, allow_private=False)
    ctx = types.SimpleNamespace(subscriptions=book)
    book.load([{**row(box), "events": ["lead.routed"], "filter": {"grade": "B"}}], NOW)
    assert wanted_record(rejection(), ctx) and not wanted_record(rejection("accepted"), ctx)
    book.load([{**row(box), "events": ["lead.queued"], "filter": {"grade": "B"}}], NOW)  # takes no lead
    assert wanted_record(rejection(), ctx) and not wanted_record(rejection("accepted"), ctx)


@pytest.mark.parametrize(("secrets_key", "session_secret", "named"), [
    (None, None, "neither DELIVERY_SECRETS_KEY nor LEADPIPE_SESSION_SECRET"),
    (None, "a session secret rotated since", "derived from LEADPIPE_SESSION_SECRET (DELIVERY_SECRETS_KEY is unset)"),
    (Fernet.generate_key().decode(), None, "with DELIVERY_SECRETS_KEY"),
], ids=["no key", "rotated session secret", "changed secrets key"])
def test_a_stored_subscription_that_cannot_be_opened_is_held_against_the_key_the_operator_set(
        secrets_key, session_secret, named):
    from prometheus_client import REGISTRY

    book = SubscriptionBook(FILE, SecretBox.from_secrets(secrets_key, session_secret), allow_private=False)
    book.load([row(SecretBox.from_secrets(None, "the session secret it was sealed with"))], NOW)
    assert set(book) == {"crm"} and book.unopened == ("slack",)
    assert REGISTRY.get_sample_value("delivery_subscriptions_unopened") == 1
    with pytest.raises(UnopenedSubscriptions, match=r"\(slack\) cannot be opened") as refused:
        book.require_opened()
    assert named in str(refused.value)
    book.load([], NOW)  # deleted through the API
    book.require_opened()
    assert REGISTRY.get_sample_value("delivery_subscriptions_unopened") == 0


class Store:
    """The API's subscriptions as the refresh reads them; what waits for subscriptions in neither the file nor the
    API's (given the file's ids, each time it is asked)."""

    def __init__(self, rows: list[dict], stranded: dict[str, int] | None = None) -> None:
        self.rows = rows
        self.stranded_waiting = stranded or {}
        self.in_file_when_asked: list[set[str]] = []

    async def api_subscriptions(self):
        return self.rows

    async def stranded(self, in_file):
        self.in_file_when_asked.append(set(in_file))
        return {sub: n for sub, n in self.stranded_waiting.items() if sub not in in_file}

    async def reseal_secrets(self, subscription_id, read, resealed):
        """Written only over the secrets read, as the table's UPDATE does."""
        for i, r in enumerate(self.rows):
            if r["id"] == subscription_id and r["secrets"] == read:
                self.rows[i] = {**r, "secrets": resealed}
                return True
        return False




async def test_the_refresh_fails_readiness_while_a_stored_subscription_cannot_be_opened():
    store = Store([row(SecretBox([Fernet.generate_key()]))])

    book = SubscriptionBook(FILE, SecretBox([Fernet.generate_key()]), allow_private=False)
    refresh = BookRefresh(book, unit_of_work_over(store), lambda: NOW, every_s=5)
    with pytest.raises(UnopenedSubscriptions):  # the loop marks itself failing: /readyz names it
        await refresh.step()
    store.rows = []
    assert await refresh.step() == 0


async def test_at_start_what_waits_for_a_subscription_no_longer_in_the_file_is_named_once_with_the_command():
    """Removed from the file, a subscription's waiting deliveries are claimed by nobody; given up at a start, a
    process started with an older file (a rolling deploy, a rollback) gave up those of subscriptions added since."""
    store = Store([], stranded={"old-crm": 3, "slack": 1})
    refresh = BookRefresh(SubscriptionBook(FILE, None, allow_private=False), unit_of_work_over(store), lambda: NOW,
                          every_s=5)
    with structlog.testing.capture_logs() as lines:
        await refresh.step()
        await refresh.step()
    warned = [(line["log_level"], line["subscription"], line["waiting"], line["command"])
              for line in lines if "subscription" in line]
    assert warned == [("warning", "old-crm", 3, "leadpipe-delivery forget --subscription old-crm"),
                      ("warning", "slack", 1, "leadpipe-delivery forget --subscription slack")]
    assert store.in_file_when_asked == [{"crm"}]  # the file is read only at a start


def test_while_a_stored_subscription_cannot_be_opened_every_deliverable_type_is_decoded():
    import types

    from delivery.service import wanted_record

    book = SubscriptionBook(FILE, None, allow_private=False)
    ctx = types.SimpleNamespace(subscriptions=book)
    queued = [("ce_id", b"x"), ("ce_type", b"lead.queued")]
    book.load([row(SecretBox([Fernet.generate_key()]))], NOW)  # slack wants lead.queued; the file's crm does not
    assert wanted_record(queued, ctx)  # passed over, its offset would be committed and slack would never get it
    book.load([], NOW)
    assert not wanted_record(queued, ctx)


def test_a_stored_subscription_no_longer_valid_here_holds_delivery_back_naming_why():
    """Made to a private address while DELIVERY_ALLOW_PRIVATE_TARGETS was on, then the setting turned off: left
    out, its events were consumed and never queued for it (lost to it), and it vanished from the listing."""
    box = SecretBox.from_secrets(None, "a session secret")
    private = {**row(box), "url": "http://10.0.0.5/hook"}
    allowed = SubscriptionBook(FILE, box, allow_private=True)
    allowed.load([private], NOW)
    allowed.require_opened()
    book = SubscriptionBook(FILE, box, allow_private=False)
    book.load([private], NOW)
    assert set(book) == {"crm"} and book.unopened == ("slack",) and "private" in book.invalid["slack"]
    with pytest.raises(UnopenedSubscriptions, match=r"subscription slack .* is no longer valid here \(.*10\.0\.0\.5"):
        book.require_opened()


async def test_a_refresh_that_read_before_a_change_does_not_undo_it_when_it_lands_after():
    """The refresh reads, a change commits and reloads, then the refresh's older rows arrive: they are not put in
    force, or the change would be undone in the process that took it until the next refresh."""
    import asyncio

    box = SecretBox([Fernet.generate_key()])
    before, after = row(box), {**row(box), "url": "https://hooks.example.com/moved"}

    class Table:
        def __init__(self) -> None:
            self.rows, self.answers = [before], [asyncio.Event(), asyncio.Event()]  # each read's answer comes when set

        async def api_subscriptions(self) -> list[dict]:
            rows, answer = list(self.rows), self.answers.pop(0)  # what this read sees
            await answer.wait()
            return rows

    table, book = Table(), SubscriptionBook(FILE, box, allow_private=False)
    stale_answer, changed_answer = table.answers
    stale = asyncio.create_task(book.reload(table, NOW))  # the refresh's read, slow to come back
    await asyncio.sleep(0)
    table.rows = [after]  # the change commits...
    changed = asyncio.create_task(book.reload(table, NOW))  # ...and its own reload reads it
    await asyncio.sleep(0)
    changed_answer.set()
    await changed
    stale_answer.set()  # the refresh's rows, from before the change, land last
    assert (await stale)[0]["url"] == "https://hooks.example.com/s"
    assert book["slack"].url == "https://hooks.example.com/moved"


async def test_a_refresh_seals_again_under_the_first_key_what_only_an_old_key_opens_so_the_old_key_can_go():
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    secret = new_secret(os.urandom(32))
    store = Store([row(SecretBox([old_key]), "slack", [(secret, NOW + timedelta(hours=1))]),
                   row(SecretBox([new_key]), "already-new")])
    untouched = store.rows[1]
    book = SubscriptionBook(FILE, SecretBox([new_key, old_key]), allow_private=False)
    unit_of_work = unit_of_work_over(store)
    refresh = BookRefresh(book, unit_of_work, lambda: NOW, every_s=5)
    with structlog.testing.capture_logs() as lines:
        await refresh.step()
        await refresh.step()  # nothing left to seal again: nothing written
    assert unit_of_work.commits == 1 and store.rows[1] is untouched
    assert opened_secrets(SecretBox([new_key]), store.rows[0]["secrets"]) == [(secret, NOW + timedelta(hours=1))]
    assert [(line["count"], line["subscriptions"]) for line in lines if "count" in line] == [(1, ["slack"])]
    assert secret.removeprefix("whsec_") not in str(lines)
    book.box = SecretBox([new_key])  # the old key dropped
    await refresh.step()
    assert set(book) == {"crm", "slack", "already-new"} and not book.unopened


async def test_a_reseal_never_writes_over_secrets_changed_since_they_were_read():
    """Two processes, or a rotation through the API, between the read and the write: the later write is not
    lost under secrets sealed again from the earlier read."""
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    stale = row(SecretBox([old_key]))
    rotated = {**stale, "secrets": sealed_secrets(SecretBox([new_key]), [(new_secret(os.urandom(32)), None)])}
    store = Store([rotated])
    book = SubscriptionBook(FILE, SecretBox([new_key, old_key]), allow_private=False)
    assert await book.reseal(store, [stale]) == []
    assert store.rows == [rotated]


def test_only_a_secret_that_a_later_key_alone_opens_is_sealed_again():
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    box = SecretBox([new_key, old_key])
    assert box.resealed(SecretBox([new_key]).seal("whsec_x")) is None
    assert SecretBox([new_key]).open(box.resealed(SecretBox([old_key]).seal("whsec_x"))) == "whsec_x"
    assert SecretBox([old_key]).resealed(SecretBox([old_key]).seal("whsec_x")) is None  # one key: nothing to do


def test_a_subscription_sealed_under_a_former_session_secrets_key_names_the_command_that_prints_that_key():
    book = SubscriptionBook(FILE, SecretBox.from_secrets(None, "the session secret now"), allow_private=False)
    book.load([row(SecretBox.from_secrets(None, "the session secret before"))], NOW)
    with pytest.raises(UnopenedSubscriptions, match="leadpipe-delivery derived-key --stdin"):
        book.require_opened()
    keyed = SubscriptionBook(FILE, SecretBox([Fernet.generate_key()]), allow_private=False)
    keyed.load([row(SecretBox([Fernet.generate_key()]))], NOW)
    with pytest.raises(UnopenedSubscriptions) as refused:  # a key the operator set: the operator has the old one
        keyed.require_opened()
    assert "derived-key" not in str(refused.value)
