"""reporting's handlers with an in-memory unit of work: lifecycle events become one projection per batch."""

import uuid
from datetime import UTC, datetime, timedelta

from leadpipe_common.consumer import BatchApplier
from leadpipe_common.envelope import Message, decode, encode
from leadpipe_common.events import Attribution, LeadSlaBreached, LeadStageChanged, LeadTouchRecorded, Touch
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork
from reporting.handlers import Reporting, handle_lead_sla_breached, handle_lead_stage_changed
from reporting.service import SERVICE

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEAD = uuid.UUID(int=5)


class Projections:
    def __init__(self, unrecorded=()) -> None:
        self.saved = []
        self._unrecorded = set(unrecorded)  # the events whose steps it holds from before 0005

        self.lookups = 0

    async def any_unrecorded(self) -> bool:
        return bool(self._unrecorded)

    async def unrecorded(self, event_ids) -> set[uuid.UUID]:
        self.lookups += 1
        return self._unrecorded & set(event_ids)

    async def save(self, projection) -> None:
        self.saved.append(projection)


def step(to_stage, minutes=0, **kw):
    return factories.envelope("leads.lifecycle", LeadStageChanged(
        lead_id=LEAD, from_stage=None, to_stage=to_stage, at=T0 + timedelta(minutes=minutes), by="t", reason="r",
        attribution=Attribution(utm_source="google"), **kw))


async def test_a_batch_of_steps_is_folded_into_one_projection_of_the_lead():
    uow = MemoryUnitOfWork(Projections())
    batch = [step("captured"), step("enriched", 1), step("mql", 2)]
    async with uow:
        assert await handle_lead_stage_changed(uow, batch, Reporting()) == {}
    [projection] = uow.store.saved
    facts = projection.leads[LEAD]
    assert facts.attribution["utm_source"] == "google" and facts.first_at["mql"] == T0 + timedelta(minutes=2)
    assert sorted(s["event_id"] for s in projection.steps) == sorted(env.id for env in batch)


async def test_a_missed_deadline_closes_the_holders_hand_off_and_opens_the_next():
    breach = factories.envelope("leads.lifecycle", LeadSlaBreached(
        lead_id=LEAD, owner_id="ana", team="emea", grade="A", due_at=T0, breached_at=T0 + timedelta(seconds=1),
        breach=1, action="reassigned", next_owner_id="ben", next_owner_name="Ben",
        next_due_at=T0 + timedelta(minutes=15), attribution=Attribution()))
    uow = MemoryUnitOfWork(Projections())
    async with uow:
        await handle_lead_sla_breached(uow, [breach], Reporting())
    [projection] = uow.store.saved
    assert {key: (h.owner_id, h.breached_at) for key, h in projection.handoffs.items()} == {
        (LEAD, "ana", T0): ("ana", T0 + timedelta(seconds=1)),
        (LEAD, "ben", T0 + timedelta(minutes=15)): ("ben", None)}


def scoring_step(from_stage: str, to_stage: str):
    """A step as scoring records it: dated, and on the stream at, the moment its batch began."""
    m = encode("leads.lifecycle", LeadStageChanged(lead_id=LEAD, from_stage=from_stage, to_stage=to_stage, at=T0,
                                                   by="scoring", reason="r", attribution=Attribution()),
               event_id=uuid.uuid4(), source="leadpipe/scoring", time=T0)
    return decode(m.headers, m.key, m.value)


async def test_a_lead_scored_and_lifted_to_mql_in_one_batch_of_scoring_is_an_mql_however_reporting_gets_the_steps():
    """Its first score put it in nurture, a touch in the same batch lifted it to MQL: both steps carry one time.
    Left in nurture, the funnel counted it out of the funnel while it waited for routing."""
    nurtured, lifted = scoring_step("enriched", "nurture"), scoring_step("nurture", "mql")
    for batches in ([[nurtured, lifted]], [[lifted, nurtured]], [[nurtured], [lifted]], [[lifted], [nurtured]]):
        uow, ctx = MemoryUnitOfWork(Projections()), Reporting()
        async with uow:
            for batch in batches:
                await handle_lead_stage_changed(uow, batch, ctx)
        first, *later = (projection.leads[LEAD] for projection in uow.store.saved)
        for facts in later:  # what the store keeps of the batches, by the same rule
            first.merge(facts)
        assert (first.latest.from_stage, first.latest.to_stage) == ("nurture", "mql")


async def test_a_redelivered_step_the_store_holds_from_before_0005_is_applied_again_as_it_was_then():
    """Its step has no recorded time: neither has it as the lead's latest step, nor the hand-off it began."""
    routed, accepted = step("routed", 2, owner_id="ana", team="emea", due_at=T0 + timedelta(minutes=17)), step(
        "accepted", 5)
    uow, ctx = MemoryUnitOfWork(Projections(unrecorded={routed.id})), Reporting()
    async with uow:
        await handle_lead_stage_changed(uow, [routed], ctx)
        await handle_lead_stage_changed(uow, [accepted], ctx)
    before, after = uow.store.saved
    assert before.leads[LEAD].latest.recorded_at == T0 + timedelta(minutes=2)  # its own time, as 0008 kept it
    assert [h.started_at for h in before.handoffs.values()] == [None]
    assert after.leads[LEAD].latest.recorded_at == accepted.time  # one applied since is as it was recorded


async def test_tables_that_hold_no_step_from_before_0005_are_asked_once_not_at_every_batch():
    uow, ctx = MemoryUnitOfWork(Projections()), Reporting()
    async with uow:
        for minutes in range(3):
            await handle_lead_stage_changed(uow, [step("captured", minutes)], ctx)
    assert ctx.unrecorded_steps is False and uow.store.lookups == 0


#: A later touch as capture wrote it onto leads.lifecycle before lead.touch_recorded: lead.touched v1, with the
#: person's contact. The topic keeps such records for ever.
EARLIER_TOUCH = Message(
    topic="leads.lifecycle", key=str(LEAD).encode(),
    value=(b'{"lead_id":"%s","captured_at":"2026-11-01T09:00:00Z","contact":{"email":"jo@x.example",'
           b'"phone":"+1 415 555 2671","message":"call me","marketing_consent":false},"attribution":'
           b'{"utm_source":"google"},"person_id":"%s","touch":{"touch_id":"%s","at":"2026-11-23T09:00:00Z",'
           b'"attribution":{"utm_source":"newsletter","offer":"ebook"}}}'
           % (str(LEAD).encode(), str(uuid.UUID(int=6)).encode(), str(uuid.UUID(int=7)).encode())),
    headers=(("ce_id", str(uuid.UUID(int=8)).encode()), ("ce_type", b"lead.touched"),
             ("ce_source", b"leadpipe/capture"), ("ce_specversion", b"1.0"), ("ce_time", b"2026-11-23T09:00:00Z"),
             ("ce_subject", str(LEAD).encode()), ("content-type", b"application/json"),
             ("ce_dataschema", b"urn:leadpipe:schema:lead.touched:v1")))


async def test_a_touch_the_lifecycle_holds_from_an_earlier_version_with_its_contact_is_read_as_a_touch_is_now():
    """Both reach reporting's handler through the runner, as a replay of the whole topic reads them, and give the
    lead the same touch: its id, time and attribution."""
    now = factories.message("leads.lifecycle", LeadTouchRecorded(
        lead_id=LEAD, attribution=Attribution(utm_source="google"),
        touch=Touch(touch_id=uuid.UUID(int=7), at=T0, attribution=Attribution(utm_source="newsletter", offer="ebook"))))
    touches = []
    for record in (EARLIER_TOUCH, now):
        uow = MemoryUnitOfWork(Projections())
        applier = BatchApplier(service="reporting", handlers=SERVICE.handlers(Reporting()), unit_of_work=lambda: uow)
        assert await applier.apply([factories.consumed(record, 0)]) == []  # nothing dead-lettered
        [projection] = uow.store.saved
        touches.append(projection.touches)
    assert touches[0] == touches[1] == {(LEAD, uuid.UUID(int=7)): {
        "lead_id": LEAD, "touch_id": uuid.UUID(int=7), "at": T0, "utm_source": "newsletter", "utm_medium": None,
        "utm_campaign": None, "utm_content": None, "form_id": None, "offer": "ebook"}}


def correction(number, amount, currency="EUR"):
    from decimal import Decimal

    from leadpipe_common.events import LeadWonAmountCorrected

    return factories.message("leads.lifecycle", LeadWonAmountCorrected(
        lead_id=LEAD, amount=Decimal(amount), currency=currency, previous_amount=Decimal("50000"),
        previous_currency="EUR", correction=number, at=T0 + timedelta(days=number), by="ana", reason="typo",
        owner_id="ana", team="emea", grade="A", attribution=Attribution(utm_source="google")))


async def test_corrections_of_a_won_deal_reach_the_handler_and_the_latest_stands_for_the_deal_whatever_their_order():
    """The win and two corrections, the older correction last (each path routing sends by may overtake the other):
    the second correction's amount is the lead's."""
    from decimal import Decimal

    won = factories.message("leads.lifecycle", LeadStageChanged(
        lead_id=LEAD, from_stage="accepted", to_stage="won", at=T0, by="ana", reason="won by Ana",
        attribution=Attribution(utm_source="google"), amount=Decimal("50000"), currency="EUR"))
    uow = MemoryUnitOfWork(Projections())
    applier = BatchApplier(service="reporting", handlers=SERVICE.handlers(Reporting()), unit_of_work=lambda: uow)
    records = [won, correction(2, "5000", "USD"), correction(1, "5000")]
    assert await applier.apply([factories.consumed(r, i) for i, r in enumerate(records)]) == []
    [projection] = uow.store.saved
    facts = projection.leads[LEAD]
    assert (facts.won_amount, facts.won_currency, facts.won_correction) == (Decimal("5000.00"), "USD", 2)
    assert sorted(s["to_stage"] for s in projection.steps) == ["won", "won_amount_corrected", "won_amount_corrected"]
