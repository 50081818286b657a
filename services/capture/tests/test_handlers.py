import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from capture.domain import capture_lead
from capture.handlers import (
    captured_lead_messages, handle_lead_merged, handle_lead_stage_changed, is_terminal_step, lead_messages,
    touch_messages,
)
from capture.store import Unpublished, UnpublishedTouch
from leadpipe_common.envelope import Envelope, decode, derive_id
from leadpipe_common.outbox import Unbuildable
from leadpipe_common.events import (
    Attribution, LeadMerged, LeadStageChanged, LeadTouched, LeadTouchRecorded, Touch,
)
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def a_row(event: bytes | None = None) -> Unpublished:
    """A lead's row as the relay claims it, its stored event ``event`` if given."""
    lead = capture_lead({"email": "ada@example.com", "utm_source": "google"}, lead_id=uuid.uuid4(),
                        received_at=NOW, form_id="demo-request")
    return Unpublished(seq=1, request_id=uuid.uuid4(), captured_at=NOW,
                       traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                       event=event if event is not None else lead.model_dump_json().encode(), lead_id=lead.lead_id)


def test_republishing_a_lead_rebuilds_byte_identical_events():
    row = a_row()
    assert captured_lead_messages(row) == captured_lead_messages(row)


def test_the_captured_event_and_its_lifecycle_step_have_distinct_ids():
    captured, changed = captured_lead_messages(a_row())
    assert captured.topic == "leads.captured" and changed.topic == "leads.lifecycle"
    assert captured.header("ce_id") != changed.header("ce_id")
    assert changed.header("ce_time") == captured.header("ce_time") == "2026-11-23T09:30:00Z"


def test_a_stored_lead_that_no_longer_validates_is_handed_to_the_relay_to_set_aside_not_raised():
    """A stored row that stopped validating after a model change failed the relay's claim every round: every lead
    behind it waited for good, while their senders had their 202."""
    good = a_row()
    stored = good.event.replace(b'"email":"ada@example.com",', b"")
    assert stored != good.event
    row = dataclasses.replace(good, event=stored)
    [aside] = lead_messages(row)
    assert isinstance(aside, Unbuildable)
    assert aside.error.startswith("stored lead.captured violates its schema: contact.email")
    assert "ada@" not in aside.error  # the reason goes to a log and a letter: no lead's address in it
    captured = captured_lead_messages(good)[0]
    assert (aside.stored.topic, aside.stored.key, aside.stored.value, aside.stored.header("ce_id")) == (
        captured.topic, str(row.lead_id).encode(), stored, captured.header("ce_id"))


def a_touch_row() -> UnpublishedTouch:
    """A touch's row as the relay claims it: the person's second submission, with all they said."""
    first = capture_lead({"email": "ada@example.com", "utm_source": "google"}, lead_id=uuid.uuid4(),
                         received_at=NOW, form_id="demo-request")
    again = capture_lead({"email": "ada@example.com", "phone": "+1 415 555 2671", "message": "Call me at home",
                          "utm_source": "newsletter", "offer": "ebook"}, lead_id=uuid.uuid4(),
                         received_at=NOW + timedelta(days=2), form_id="ebook")
    touched = LeadTouched(lead_id=first.lead_id, captured_at=first.captured_at, contact=again.contact,
                          attribution=first.attribution, person_id=uuid.uuid4(),
                          touch=Touch(touch_id=again.lead_id, at=again.captured_at, attribution=again.attribution))
    return UnpublishedTouch(seq=1, touch_id=again.lead_id, touched_at=again.captured_at,
                            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                            event=touched.model_dump_json().encode(), lead_id=first.lead_id)


def test_a_touch_goes_to_enrichment_whole_and_to_the_lifecycle_without_what_the_person_said():
    """The lifecycle is kept for ever and read by analysts: a touch there carried its person's e-mail, phone
    and message for good. Enrichment still gets them, to enrich and score the lead again."""
    row = a_touch_row()
    sent, kept = touch_messages(row)
    assert (sent.topic, sent.header("ce_type"), kept.topic, kept.header("ce_type")) == (
        "leads.captured", "lead.touched", "leads.lifecycle", "lead.touch_recorded")
    assert b"ada@example.com" in sent.value and b"415 555 2671" in sent.value and b"Call me" in sent.value
    # The phone whole, as written and as E.164: its digits alone ("555") are hex, and a value's ids held them
    # in about one run in forty.
    for personal in (b"ada@", b"415 555 2671", b"4155552671", b"Call me", b"contact", b"person_id"):
        assert personal not in kept.value
    recorded, touched = decode(kept.headers, kept.key, kept.value).data, LeadTouched.model_validate_json(row.event)
    assert isinstance(recorded, LeadTouchRecorded)  # the touch, and the lead's first touch, as before
    assert (recorded.lead_id, recorded.touch, recorded.attribution) == (
        touched.lead_id, touched.touch, touched.attribution)


def test_a_touchs_lifecycle_event_keeps_the_id_its_earlier_lead_touched_had():
    """A touch published before the upgrade and re-driven after it is one event to reporting's timeline, which
    de-duplicates by id, not a second touch."""
    row = a_touch_row()
    assert [m.header("ce_id") for m in touch_messages(row)] == [
        str(derive_id(row.touch_id, f"lead.touched@{topic}")) for topic in ("leads.captured", "leads.lifecycle")]


def test_capture_follows_only_terminal_lifecycle_steps_by_their_header():
    from capture.handlers import is_terminal_step

    captured_step = captured_lead_messages(a_row())[1]
    assert captured_step.header("ce_tostage") == "captured"
    assert not is_terminal_step(captured_step.headers)
    assert is_terminal_step((("ce_type", b"lead.stage_changed"), ("ce_tostage", b"routed")))


class Outcomes:
    def __init__(self) -> None:
        self.recorded: list[dict] = []
        self.closed: list = []
        self.calls: list[tuple[str, object]] = []

    async def record_outcomes(self, outcomes) -> None:
        self.recorded.extend(outcomes)
        self.calls.append(("record_outcomes", [o["b_lead_id"] for o in outcomes]))

    async def close_leads(self, lead_ids) -> None:
        self.closed.extend(lead_ids)
        self.calls.append(("close_leads", list(lead_ids)))

    async def lock_people(self, lead_ids) -> None:
        self.calls.append(("lock_people", list(lead_ids)))

    async def redirect_people(self, survivors) -> None:
        self.calls.append(("redirect_people", list(survivors)))


def a_merge() -> Envelope:
    merged = LeadMerged(lead_id=uuid.uuid4(), survivor_id=uuid.uuid4(), at=NOW, by="rep", reason="same person",
                        attribution=Attribution())
    return factories.envelope("leads.lifecycle", merged)


def a_step(to_stage: str) -> Envelope:
    step = LeadStageChanged(lead_id=uuid.uuid4(), from_stage=None, to_stage=to_stage, at=NOW, by="t", reason="r",
                            attribution=Attribution())
    return factories.envelope("leads.lifecycle", step)


async def test_capture_notes_terminal_outcomes_so_the_re_driver_leaves_those_leads_alone():
    uow = MemoryUnitOfWork(Outcomes())
    routed, enriched, nurture = a_step("routed"), a_step("enriched"), a_step("nurture")
    async with uow:
        answer = await handle_lead_stage_changed(uow, [routed, enriched, nurture])
    assert answer == {routed.id: [], enriched.id: [], nurture.id: []}
    assert [(o["b_lead_id"], o["b_stage"]) for o in uow.store.recorded] == [
        (routed.data.lead_id, "routed"), (nurture.data.lead_id, "nurture")]


async def test_a_won_lost_or_disqualified_lead_is_closed_for_its_persons_next_submission():
    uow = MemoryUnitOfWork(Outcomes())
    steps = [a_step(stage) for stage in ("won", "lost", "disqualified", "nurture", "accepted")]
    async with uow:
        await handle_lead_stage_changed(uow, steps)
    assert sorted(uow.store.closed) == sorted(s.data.lead_id for s in steps[:3])


def test_only_terminal_and_closing_steps_are_read_at_all():
    assert is_terminal_step([("ce_tostage", b"routed")]) and is_terminal_step([("ce_tostage", b"deadlettered")])
    assert is_terminal_step([("ce_tostage", b"won")]) and is_terminal_step([("ce_tostage", b"lost")])
    assert not is_terminal_step([("ce_tostage", b"enriched")]) and not is_terminal_step([])


async def test_a_batch_locks_the_people_of_every_lead_it_closes_or_merges_at_once_before_anything_else():
    """Applied run by run in log order, a close, a merge and a close would lock their people in three statements,
    out of the order every write round locks people in: a deadlock with a round holding one and waiting for
    another."""
    uow = MemoryUnitOfWork(Outcomes())
    won, merged, routed, lost = a_step("won"), a_merge(), a_step("routed"), a_step("lost")
    async with uow:
        answer = await handle_lead_merged(uow, [won, merged, routed, lost])
    assert answer == {won.id: [], merged.id: [], routed.id: [], lost.id: []}
    closing = [won.data.lead_id, merged.data.lead_id, lost.data.lead_id]
    assert uow.store.calls[0] == ("lock_people", sorted(closing))
    assert [call for call, _ in uow.store.calls[1:]] == ["record_outcomes", "close_leads", "redirect_people",
                                                         "record_outcomes", "close_leads"]  # in log order


def test_the_runner_gives_closing_steps_and_merges_to_one_call_so_a_batch_locks_its_people_once():
    from capture.service import SERVICE

    handlers = SERVICE.handlers(None)
    assert handlers[LeadStageChanged.type] is handlers[LeadMerged.type]
