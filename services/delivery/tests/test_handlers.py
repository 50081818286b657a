"""delivery's handler with an in-memory unit of work: no broker, no Postgres."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from leadpipe_common import topics
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork
from delivery.domain import DELIVERABLE, Mark, parse_subscriptions
from delivery.handlers import Delivery, handle_deliverable, handle_lead_erased
from delivery.subscriptions import SecretBox, SubscriptionBook, UnopenedSubscriptions, sealed_secrets

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
#: When routing recorded the rejection of raised_from_b_to_a's lead: after its first routing, before its recycle.
REJECTED_AT = NOW + timedelta(days=1)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUBS = parse_subscriptions({"subscriptions": [
    {"id": "crm", "url": "https://crm.example.com/h", "secrets": [SECRET], "events": ["lead.stage_changed"]},
    {"id": "slack", "url": "https://hooks.example.com/s", "secrets": [SECRET], "events": ["lead.stage_changed"],
     "filter": {"team": "na"}},
]}, allow_private=False)


class Queue:
    def __init__(self, subscribed: set[str] = frozenset(), api_rows: list[dict] = ()) -> None:
        self.rows: list[dict] = []
        self.subscribed = subscribed  # the API subscriptions the database holds
        self.api_rows = list(api_rows)  # ...and their rows, as the book reads them
        self.erased: list[dict] = []  # each call's leads erased (``enqueue``'s), with their times
        self.followed: dict[tuple[str, uuid.UUID], Mark] = {}  # the (subscription, lead) pairs held, taken at
        self.rejected: dict[uuid.UUID, Mark] = {}  # each lead's last rejection noted
        self.asked: list[set] = []  # each lookup's pairs

    async def api_subscriptions(self) -> list[dict]:
        return self.api_rows

    async def enqueue(self, rows, *, taken={}, let_go={}, erased={}) -> None:  # noqa: B006 (read only)
        """As the store's: rejections noted (the latest kept) let go what was taken at the hand-offs they ended, and
        none is taken at a hand-off its lead's last rejection ended."""
        if erased:
            self.erased.append(dict(erased))
        self.rows += rows
        self.rejected |= {lead: mark.latest(self.rejected.get(lead, mark)) for lead, mark in let_go.items()}

        def since_rejected(pair, mark) -> bool:
            return pair[1] not in self.rejected or not mark.no_later_than(self.rejected[pair[1]])

        self.followed = {pair: mark for pair, mark in self.followed.items() if since_rejected(pair, mark)}
        self.followed |= {pair: mark.latest(self.followed.get(pair, mark)) for pair, mark in taken.items()
                          if since_rejected(pair, mark)}

    async def following(self, pairs) -> tuple[dict, dict]:
        if not pairs:  # as the store: no statement
            return {}, {}
        self.asked.append(set(pairs))
        return ({pair: at for pair, at in self.followed.items() if pair in pairs},
                {lead: at for lead, at in self.rejected.items() if lead in {lead for _, lead in pairs}})

    async def still_subscribed(self, ids) -> set[str]:
        return set(ids) & self.subscribed


def step(to_stage: str, team: str = "emea"):
    from leadpipe_common.events import Attribution, LeadStageChanged

    return LeadStageChanged(lead_id=factories.captured().lead_id, from_stage="routed", to_stage=to_stage, at=NOW,
                            by="ana", reason="r", attribution=Attribution(), owner_id="ana", team=team)


async def test_a_disposition_is_queued_once_for_each_subscription_that_wants_it_as_a_cloudevent():
    uow = MemoryUnitOfWork(Queue())
    accepted, enriched = factories.envelope(topics.LIFECYCLE, step("accepted")), factories.envelope(
        topics.LIFECYCLE, step("enriched"))
    async with uow:
        outcomes = await handle_deliverable(uow, [accepted, enriched], Delivery(SubscriptionBook(SUBS, None, allow_private=False), clock=lambda: NOW, http=None))
    assert outcomes == {accepted.id: [], enriched.id: []}  # nothing is produced
    [row] = uow.store.rows  # the enrichment step is no disposition; slack's filter wants team na
    assert (row["subscription_id"], row["event_id"]) == ("crm", accepted.id)
    # Due by Postgres's clock, which the store queues it by: this host's may be ahead of it.
    assert not {"created_at", "next_at"} & row.keys()
    body = json.loads(row["body"])
    assert (body["id"], body["type"], body["data"]["to_stage"]) == (str(accepted.id), "lead.stage_changed", "accepted")


async def test_nothing_is_queued_for_an_api_subscription_another_process_deleted_meanwhile():
    box = SecretBox.from_secrets(None, "a session secret")
    book = SubscriptionBook(SUBS, box, allow_private=False)
    book.load([{"id": name, "url": f"https://{name}.example.com/h", "events": ["lead.stage_changed"], "filter": {},
                "retry_hours": None, "contact": None, "secrets": sealed_secrets(box, [(SECRET, None)])} for name in ("kept", "gone")],
              NOW)
    uow = MemoryUnitOfWork(Queue(subscribed={"kept"}))  # "gone" was deleted; this process has not heard yet
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, step("accepted"))],
                                 Delivery(book, clock=lambda: NOW, http=None))
    assert sorted(row["subscription_id"] for row in uow.store.rows) == ["crm", "kept"]  # the file's: no lookup


def api_row(name: str, box: SecretBox) -> dict:
    return {"id": name, "url": f"https://{name}.example.com/h", "events": ["lead.stage_changed"], "filter": {},
            "retry_hours": None, "contact": None, "secrets": sealed_secrets(box, [(SECRET, None)])}


@pytest.mark.parametrize("key", [None, "the session secret after its rotation"])
async def test_no_event_is_consumed_while_a_stored_subscription_cannot_be_opened(key):
    # Sealed under the session secret before it was rotated (or unset): this process cannot open it.
    stored = api_row("hubspot", SecretBox.from_secrets(None, "the session secret before its rotation"))
    book = SubscriptionBook(SUBS, SecretBox.from_secrets(None, key), allow_private=False)
    uow = MemoryUnitOfWork(Queue(subscribed={"hubspot"}, api_rows=[stored]))
    batch = [factories.envelope(topics.LIFECYCLE, step("accepted"))]
    async with uow:
        with pytest.raises(UnopenedSubscriptions, match="hubspot.*LEADPIPE_SESSION_SECRET"):
            await handle_deliverable(uow, batch, Delivery(book, clock=lambda: NOW, http=None))
    assert uow.store.rows == []  # the runner retries the batch; nothing is committed past it
    uow.store.api_rows = []  # deleted through the API: the retried batch goes to the file's subscriptions
    async with uow:
        await handle_deliverable(uow, batch, Delivery(book, clock=lambda: NOW, http=None))
    assert [row["subscription_id"] for row in uow.store.rows] == ["crm"]


async def test_a_subscription_naming_contact_fields_is_queued_a_body_with_those_alone():
    from leadpipe_common.envelope import structured
    from leadpipe_common.events import Assignment, Contact, LeadRouted, ScoreReason, Sourced

    lead = factories.scored("mql")
    lead = lead.model_copy(update={
        "contact": Contact(email="jo@example.com", first_name="Jo", company="Acme", job_title="Head of Growth",
                           phone="+1 415 555 0100", message="call me after 5"),
        # What enrichment reads from the phone and the job title tells them too.
        "enrichment": lead.enrichment.model_copy(update={
            "phone_e164": Sourced[str](value="+14155550100", source="form"),
            "country": Sourced[str](value="US", source="phone"),
            "seniority": Sourced[str](value="head", source="job_title")}),
        # ... and so does a reason whose rule read the job title; a company's does not.
        "score": lead.score.model_copy(update={"reasons": [
            ScoreReason(rule="Enterprise size", category="fit", points=20, reads=[]),
            ScoreReason(rule="Decision maker (C-level or VP)", category="fit", points=20, reads=["job_title"])]})})
    routed = LeadRouted(**dict(lead), assignment=Assignment(owner_id="ana", owner_name="Ana", team="na",
                                                            method="territory", reason="r"), routed_at=NOW)
    subs = parse_subscriptions({"subscriptions": [
        {"id": "crm", "url": "https://crm.example.com/h", "secrets": [SECRET], "events": ["lead.routed"]},
        {"id": "slack", "url": "https://hooks.example.com/s", "secrets": [SECRET], "events": ["lead.routed"],
         "contact": ["first_name", "company"]},
    ]}, allow_private=False)
    env = factories.envelope(topics.ROUTED, routed)
    uow = MemoryUnitOfWork(Queue())
    async with uow:
        await handle_deliverable(uow, [env], Delivery(SubscriptionBook(subs, None, allow_private=False),
                                                      clock=lambda: NOW, http=None))
    bodies = {row["subscription_id"]: row["body"] for row in uow.store.rows}
    assert bodies["crm"] == structured(env)  # the whole event, as before
    slack = json.loads(bodies["slack"])
    assert slack["data"]["contact"] == {"first_name": "Jo", "company": "Acme"}
    for told in ("call me", "4155550100", "415 555", "Growth", '"head"', '"US"', "Decision maker"):
        assert told not in bodies["slack"].decode(), told
    assert slack["data"]["enrichment"]["email_domain"] == "example.com"  # about the company: kept
    assert [r["rule"] for r in slack["data"]["score"]["reasons"]] == ["Enterprise size"]
    assert slack["data"]["score"]["value"] == routed.score.value  # the numbers stay: receivers route on them
    # Said, so a receiver can tell a field left out from one never given; without the email the schema requires,
    # the body no longer claims to adhere to it.
    assert "dataschema" not in slack
    assert json.loads(bodies["crm"])["dataschema"].endswith(f"lead.routed:v{LeadRouted.version}")
    assert slack.pop("withheld") == ("contact.country,contact.email,contact.job_title,contact.last_name,"
                                     "contact.marketing_consent,contact.marketing_consent_at,contact.message,"
                                     "contact.phone,enrichment.country,enrichment.phone_e164,enrichment.seniority,"
                                     "score.reasons[1]")
    assert "withheld" not in json.loads(bodies["crm"])
    assert {k: v for k, v in slack.items() if k != "data"} == {k: v for k, v in json.loads(bodies["crm"]).items()
                                                               if k not in ("data", "dataschema")}  # same id ...


async def test_a_lead_routed_is_sent_with_the_number_of_the_hand_off_it_announces_whatever_contact_is_withheld():
    """Routing's records of one lead may reach leads.routed out of order (README: Order of a lead's events), and delivery
    sends them in the order it read them: a receiver keeps the holder of the highest number."""
    from leadpipe_common.events import Assignment, LeadRouted

    routed = LeadRouted(**dict(factories.scored("mql")), routed_at=NOW, handoff_seq=3, assignment=Assignment(
        owner_id="ana", owner_name="Ana", team="na", method="territory", reason="r"))
    subs = parse_subscriptions({"subscriptions": [
        {"id": "crm", "url": "https://crm.example.com/h", "secrets": [SECRET], "events": ["lead.routed"]},
        {"id": "slack", "url": "https://hooks.example.com/s", "secrets": [SECRET], "events": ["lead.routed"],
         "contact": []},
    ]}, allow_private=False)
    uow = MemoryUnitOfWork(Queue())
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, routed)],
                                 Delivery(SubscriptionBook(subs, None, allow_private=False), clock=lambda: NOW,
                                          http=None))
    assert {row["subscription_id"]: json.loads(row["body"])["data"]["handoff_seq"] for row in uow.store.rows} == {
        "crm": 3, "slack": 3}


def _deliverable_examples() -> dict:
    """One event of each type a subscription may ask for, as routing writes it."""
    from decimal import Decimal

    from leadpipe_common.events import (
        Assignment, Attribution, LeadAssigned, LeadErased, LeadHandedOver, LeadMerged, LeadQueued, LeadReengaged,
        LeadRouted, LeadSlaBreached, Touch,
    )

    lead = factories.scored("mql", seniority="vp", country="DE")  # enrichment read from the contact: withheld too
    lead_id, there = lead.lead_id, Attribution(utm_source="tests")
    return {
        "lead.routed": LeadRouted(**dict(lead), routed_at=NOW, handoff_seq=1, held_grade="B", assignment=Assignment(
            owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="territory emea / all")),
        "lead.sla_breached": LeadSlaBreached(
            lead_id=lead_id, owner_id="ana", team="emea", grade="B", due_at=NOW, breached_at=NOW, breach=1,
            action="reassigned", next_owner_id="ola", next_owner_name="Ola", next_due_at=NOW, next_team="overflow",
            attribution=there),
        "lead.queued": LeadQueued(lead_id=lead_id, team="emea", at=NOW, reason="nobody on shift", grade="B",
                                  attribution=there),
        "lead.assigned": LeadAssigned(lead_id=lead_id, owner_id="ana", owner_name="Ana", team="emea", at=NOW,
                                      queued_at=NOW, due_at=NOW, reason="on shift", grade="B", attribution=there),
        "lead.handed_over": LeadHandedOver(
            lead_id=lead_id, from_owner_id="ana", from_team="emea", from_due_at=None, owner_id="ben",
            owner_name="Ben", team="dach", stage="accepted", at=NOW, by="sales-ops", reason="ana left",
            due_at=None, grade="B", attribution=there),
        "lead.stage_changed": step("won").model_copy(update={"amount": Decimal("1200.00"), "currency": "EUR"}),
        "lead.reengaged": LeadReengaged(
            lead_id=lead_id, touch=Touch(touch_id=uuid.uuid4(), at=NOW, attribution=there), owner_id="ana",
            team="emea", at=NOW, reason="asked for a demo", attribution=there, score=80, grade="A",
            held_grade="A"),
        "lead.merged": LeadMerged(lead_id=lead_id, survivor_id=uuid.uuid4(), at=NOW, by="ana", reason="same person",
                                  owner_id="ana", team="emea", grade="B", survivor_owner_id="ana",
                                  survivor_team="emea", survivor_grade="A", attribution=there),
        "lead.erased": LeadErased(lead_id=lead_id, at=NOW, by="dpo"),
    }


@pytest.fixture(scope="module")
def delivery_openapi() -> dict:
    from leadpipe_common.local.openapi import document

    return document("delivery")


@pytest.mark.parametrize("event_type", DELIVERABLE)
async def test_every_deliverable_type_has_a_webhook_whose_body_schema_takes_what_is_queued_for_it_cut_or_whole(
        event_type, delivery_openapi):
    import jsonschema

    examples = _deliverable_examples()
    assert event_type in examples, f"give {event_type} an example here: its webhook must take what is queued"
    subs = parse_subscriptions({"subscriptions": [
        {"id": "crm", "url": "https://crm.example.com/h", "secrets": [SECRET], "events": [event_type]},
        # Sent neither the e-mail address the event requires nor what enrichment read from the job title.
        {"id": "slack", "url": "https://hooks.example.com/s", "secrets": [SECRET], "events": [event_type],
         "contact": ["first_name"]},
    ]}, allow_private=False)
    topic = topics.ROUTED if event_type == "lead.routed" else topics.LIFECYCLE
    uow = MemoryUnitOfWork(Queue())
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topic, examples[event_type])],
                                 Delivery(SubscriptionBook(subs, None, allow_private=False), clock=lambda: NOW,
                                          http=None))
    bodies = [json.loads(row["body"]) for row in uow.store.rows]
    assert len(bodies) == 2
    webhook = delivery_openapi["webhooks"][event_type]["post"]
    ref = webhook["requestBody"]["content"]["application/cloudevents+json"]["schema"]["$ref"]
    validator = jsonschema.Draft202012Validator({"$ref": ref, "components": delivery_openapi["components"]})
    documented = delivery_openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    for body in bodies:
        validator.validate(body)
        # The schema lets a CloudEvent carry attributes it does not name: every one delivery sends is named.
        assert set(body) <= set(documented), set(body) - set(documented)
    if event_type == "lead.routed":  # its contact was cut, the address the schema requires with it
        assert "contact.email" in bodies[1]["withheld"] and "dataschema" not in bodies[1]


async def test_an_erasure_has_the_store_give_up_and_clear_its_leads_deliveries_in_one_call_for_the_batch():
    """The store gives up and clears a whole batch's leads at once (``DeliveryStore.enqueue``'s ``erased``): one
    statement each, however many leads."""
    from leadpipe_common.events import LeadErased

    first, second = factories.captured().lead_id, factories.captured().lead_id
    later = NOW.replace(hour=10)
    batch = [factories.envelope(topics.LIFECYCLE, LeadErased(lead_id=lead, at=at, by="dpo"))
             for lead, at in ((first, NOW), (second, later), (first, later))]  # the first's, read again
    uow = MemoryUnitOfWork(Queue())
    async with uow:
        outcomes = await handle_lead_erased(uow, batch, Delivery(SubscriptionBook(SUBS, None, allow_private=False),
                                                                 clock=lambda: NOW, http=None))
    assert uow.store.erased == [{first: NOW, second: later}]
    assert outcomes == {env.id: [] for env in batch}  # nothing is produced


async def test_an_erasure_is_queued_holding_no_one_for_every_subscription_that_asks_for_it_after_its_lead_is_cleared():
    from leadpipe_common.events import LeadErased

    subs = parse_subscriptions({"subscriptions": [
        {"id": "crm", "url": "https://crm.example.com/h", "secrets": [SECRET], "events": ["lead.routed", "lead.erased"],
         "filter": {"team": "emea"}},
        {"id": "slack", "url": "https://hooks.example.com/s", "secrets": [SECRET], "events": ["lead.routed"]},
    ]}, allow_private=False)
    erasure = factories.envelope(topics.LIFECYCLE, LeadErased(lead_id=factories.captured().lead_id, at=NOW, by="dpo"))
    uow = MemoryUnitOfWork(Queue())
    async with uow:
        await handle_lead_erased(uow, [erasure], Delivery(SubscriptionBook(subs, None, allow_private=False),
                                                          clock=lambda: NOW, http=None))
    assert uow.store.erased == [{erasure.data.lead_id: NOW}]
    [row] = uow.store.rows  # slack does not ask for it
    assert (row["subscription_id"], row["lead_id"], row["event_type"]) == ("crm", erasure.data.lead_id, "lead.erased")
    assert json.loads(row["body"])["data"] == {"lead_id": str(erasure.data.lead_id), "at": "2026-11-23T09:00:00Z",
                                               "by": "dpo"}


GRADED = parse_subscriptions({"subscriptions": [
    {"id": "crm-b", "url": "https://crm.example.com/b", "secrets": [SECRET], "filter": {"grade": "B"},
     "events": ["lead.routed", "lead.reengaged", "lead.stage_changed"]},
    {"id": "crm-a", "url": "https://crm.example.com/a", "secrets": [SECRET], "filter": {"grade": "A"},
     "events": ["lead.routed", "lead.reengaged", "lead.stage_changed"]},
    {"id": "apac", "url": "https://crm.example.com/apac", "secrets": [SECRET], "filter": {"team": "apac"},
     "events": ["lead.routed", "lead.reengaged", "lead.stage_changed"]},
]}, allow_private=False)


def sent(rows: list[dict]) -> list[tuple[str, str]]:
    return [(row["subscription_id"], json.loads(row["body"])["data"].get("to_stage") or row["event_type"])
            for row in rows]


async def test_a_subscription_filtered_on_grade_hears_of_a_lead_it_took_after_a_touch_raises_it_to_its_win(
        raised_from_b_to_a):
    """The CRM behind the B subscription holds the lead its rep still holds: it hears of the re-engagement, the
    acceptance and the win. The A subscription takes the lead from the re-engagement's lead.routed on, as before;
    one lookup a batch, for the pairs whose answer it may change."""
    lead = raised_from_b_to_a
    first, told = lead.first, lead.told
    uow, ctx = MemoryUnitOfWork(Queue()), Delivery(SubscriptionBook(GRADED, None, allow_private=False),
                                                   clock=lambda: NOW, http=None)
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, first)], ctx)
    assert sent(uow.store.rows) == [("crm-b", "lead.routed")]
    # A first routing: nothing looked up.
    assert uow.store.followed == {("crm-b", first.lead_id): Mark(NOW, 1)} and uow.store.asked == []
    uow.store.rows = []
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, told)], ctx)
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, e)
                                       for e in (lead.reengaged, lead.accepted, lead.won)], ctx)
    assert sent(uow.store.rows) == [
        ("crm-b", "lead.routed"), ("crm-a", "lead.routed"),
        ("crm-b", "lead.reengaged"), ("crm-a", "lead.reengaged"),
        ("crm-b", "accepted"), ("crm-a", "accepted"), ("crm-b", "won"), ("crm-a", "won")]
    assert uow.store.asked == [{("crm-b", first.lead_id)}] * 2
    assert uow.store.followed == {("crm-b", first.lead_id): Mark(NOW, 1), ("crm-a", first.lead_id): Mark(NOW, 1)}


async def test_a_rejection_lets_the_lead_go_though_no_subscription_asks_for_it_and_its_recycle_is_judged_anew(
        raised_from_b_to_a):
    """Sales reject the lead; a touch recycles it as an A, a new routing to another rep: the B subscription, which
    had it, is not sent it (nor anything of it after), as the A one is."""
    lead = raised_from_b_to_a
    routed_only = parse_subscriptions({"subscriptions": [
        {"id": f"crm-{grade.lower()}", "url": f"https://crm.example.com/{grade}", "secrets": [SECRET],
         "filter": {"grade": grade}, "events": ["lead.routed"]} for grade in "BA"]}, allow_private=False)
    uow, ctx = MemoryUnitOfWork(Queue()), Delivery(SubscriptionBook(routed_only, None, allow_private=False),
                                                   clock=lambda: NOW, http=None)
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, lead.first)], ctx)
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, lead.rejected, time=REJECTED_AT)], ctx)
        assert uow.store.followed == {}
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, lead.recycled)], ctx)
    assert [row["subscription_id"] for row in uow.store.rows] == ["crm-b", "crm-a"]
    assert uow.store.followed == {("crm-a", lead.first.lead_id): Mark(lead.recycled.routed_at, 2)}


async def test_a_lead_routed_read_after_the_rejection_of_its_hand_off_leaves_the_lead_to_nobody_and_its_recycle_anew(
        raised_from_b_to_a):
    """Delivery reads leads.routed apart from the lifecycle: after downtime, or a redrive of the lead.routed, the
    rejection is read first, though routing recorded it after the hand-off it ends. That lead.routed, read late, is
    sent to the B subscription (its filter passes it), and takes nothing: the recycle as an A, another rep's, and its
    acceptance go to the A subscription alone, not to the B one for good."""
    lead = raised_from_b_to_a
    uow, ctx = MemoryUnitOfWork(Queue()), Delivery(SubscriptionBook(GRADED, None, allow_private=False),
                                                   clock=lambda: NOW, http=None)
    ben_accepts = lead.accepted.model_copy(update={"owner_id": "ben"})
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, lead.rejected, time=REJECTED_AT)], ctx)
        # Read in one batch, in leads.routed's order: the batch's lookup says when the lead was rejected.
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, e) for e in (lead.first, lead.recycled)], ctx)
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, ben_accepts)], ctx)
    # The rejection, of the lead raised to A, read before the B subscription took it: the A one's by its grade.
    assert sent(uow.store.rows) == [("crm-a", "rejected"), ("crm-b", "lead.routed"), ("crm-a", "lead.routed"),
                                    ("crm-a", "accepted")]
    assert uow.store.followed == {("crm-a", lead.first.lead_id): Mark(lead.recycled.routed_at, 2)}


async def test_a_lead_routed_read_after_its_rejection_takes_nothing_though_a_routing_clock_ahead_dated_it_after(
        raised_from_b_to_a):
    """The routing process that recorded the rejection ran 2 s behind the one that routed the hand-off: by the
    times, the lead.routed read late (the re-engagement's, which the A subscription is sent) came after its
    rejection. The rejection says the hand-off it ended, and the batch's lookup and the store's insert go by that
    number: the lead is nobody's."""
    lead = raised_from_b_to_a
    uow, ctx = MemoryUnitOfWork(Queue()), Delivery(SubscriptionBook(GRADED, None, allow_private=False),
                                                   clock=lambda: NOW, http=None)
    rejected = lead.rejected.model_copy(update={"handoff_seq": lead.first.handoff_seq})
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, rejected,
                                                          time=NOW - timedelta(seconds=2))], ctx)
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, lead.told)], ctx)
    assert sent(uow.store.rows) == [("crm-a", "rejected"), ("crm-a", "lead.routed")]
    assert uow.store.rejected == {lead.first.lead_id: Mark(NOW - timedelta(seconds=2), 1)}
    assert uow.store.followed == {}


async def test_a_lead_is_not_remembered_for_an_api_subscription_another_process_deleted_meanwhile(raised_from_b_to_a):
    box = SecretBox.from_secrets(None, "a session secret")
    book = SubscriptionBook({}, box, allow_private=False)
    book.load([{**api_row(name, box), "events": ["lead.routed"], "filter": {"grade": "B"}}
               for name in ("kept", "gone")], NOW)
    first = raised_from_b_to_a.first
    uow = MemoryUnitOfWork(Queue(subscribed={"kept"}))
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.ROUTED, first)],
                                 Delivery(book, clock=lambda: NOW, http=None))
    assert uow.store.followed == {("kept", first.lead_id): Mark(first.routed_at, 1)}


def test_every_deliverable_type_goes_to_one_handler_so_a_batch_takes_its_locks_in_one_call():
    """The runner calls a handler once for each run of a batch's events going to it: a type with a handler of its own
    (erasures had one) cuts a batch into calls, each taking leads' locks, and a later call's subscription locks come
    after them, against the store's LOCK ORDER."""
    from delivery.service import SERVICE

    handlers = SERVICE.handlers(object())
    assert set(handlers) == set(DELIVERABLE)
    assert len(set(handlers.values())) == 1
