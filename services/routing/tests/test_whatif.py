"""what-if's history, read from topics faked in memory: what routing's handlers wrote, as a scan reads it back."""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

import routing.handlers
import routing.whatif
from leadpipe_common import topics
from leadpipe_common.envelope import decode
from leadpipe_common.events import Attribution, LeadDispositioned, ScoreReason, Touch
from leadpipe_common.testing import factories
from routing.domain import parse_routing_data
from routing.handlers import Routing, handle_lead_dispositioned, handle_lead_scored
from routing.reference import Reference

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DATA = parse_routing_data({
    "reps": [{"id": "ana", "name": "Ana", "team": "emea"}, {"id": "ben", "name": "Ben", "team": "emea"}],
    "accounts": [],
    "territories": {"regions": {"emea": ["DE"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all", "teams": [{"team": "emea", "region": "emea"}],
                    "default_team": "emea"},
    "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"},
    "reasons": {"rejected": {"not-a-fit": "Not our ICP"}},
})


class Topics:
    """What a scan of leads.scored, leads.routed and the lifecycle reads: every record written, in order."""

    def __init__(self) -> None:
        self.records: list[SimpleNamespace] = []
        #: What the scan says of partitions that lost their first records: (topic, partition) -> first held.
        self.first_held: dict[tuple[str, int], datetime | None] = {}

    def add(self, message) -> None:
        offset = sum(r.topic == message.topic for r in self.records)
        self.records.append(SimpleNamespace(topic=message.topic, partition=0, offset=offset, key=message.key,
                                            value=message.value, headers=list(message.headers)))

    def scan(self, settings, wanted, *, since):
        records = [r for r in self.records if r.topic in wanted]
        cut = {TopicPartition(topic, p): at for (topic, p), at in self.first_held.items()
               if topic in wanted}

        class Scan:
            total = len(records)
            first_held = cut

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return None

            async def batches(self):
                yield records

        return Scan()


@pytest.fixture
def log(monkeypatch) -> Topics:
    t = Topics()
    monkeypatch.setattr(routing.whatif, "TopicScan", t.scan)
    return t


def touch_of(lead):
    """``lead`` touched again (a demo request), an MQL with intent points for that touch, as scoring names it."""
    touch = Touch(touch_id=uuid.uuid4(), at=T0, attribution=Attribution(offer="demo"))
    reason = ScoreReason(rule="Demo", category="intent", points=40, touch_id=touch.touch_id, touch_at=T0)
    score = lead.score.model_copy(update={"decision": "mql", "reasons": [*lead.score.reasons, reason]})
    return lead.model_copy(update={"touch": touch, "score": score})


async def test_the_history_holds_every_routing_of_an_mql_touched_or_not_and_no_re_engagement(uow, log):
    """A lead a touch lifts from nurture, and a lead recycled after sales rejected it, are routed with their touch
    on the score: each routing counts, with its own time, holder and answer; a touch told to a lead's holder does
    not."""
    now = T0
    ctx = Routing(Reference(DATA, "v-test"), clock=lambda: now)

    async def score(lead) -> str | None:
        return await routed_by(uow, ctx, log, lead)

    plain, lifted, recycled, held = (factories.scored(d, country="DE") for d in ("mql", "nurture", "mql", "mql"))
    plain_owner = await score(plain)
    assert await score(lifted) is None  # nurture: not routed
    first_owner, held_owner = await score(recycled), await score(held)
    now = T0 + timedelta(minutes=10)
    await rejected(uow, ctx, log, recycled, first_owner, "not-a-fit")
    now = T0 + timedelta(hours=1)
    lifted_owner, second_owner = await score(touch_of(lifted)), await score(touch_of(recycled))
    assert await score(touch_of(held)) == held_owner  # re-engaged: its holder told on leads.routed too
    waiting = factories.scored("mql", country="DE")
    log.add(factories.message(topics.SCORED, waiting))  # scored, not routed yet

    history = await routing.whatif.read_history(None, T0)

    assert history.skipped == 0
    assert Counter((p.lead.lead_id, p.at, p.actual and p.actual.owner_id, p.answered_at) for p in history.leads) \
        == Counter([
            (plain.lead_id, T0, plain_owner, None),
            (recycled.lead_id, T0, first_owner, T0 + timedelta(minutes=10)),  # answered by the rejection
            (held.lead_id, T0, held_owner, None),  # once: its touch re-engaged its holder
            (lifted.lead_id, T0 + timedelta(hours=1), lifted_owner, None),
            (recycled.lead_id, T0 + timedelta(hours=1), second_owner, None),  # the rejection came before it
            (waiting.lead_id, waiting.scored_at, None, None),
        ])
    # Each routing keeps its score's place in leads.scored: leads routed at one moment are replayed as read.
    assert len({p.position for p in history.leads}) == len(history.leads)
    # A recycled routing names the rejection it came after, which the data in force may no longer recycle.
    assert [(p.lead.lead_id, p.recycled_after) for p in history.leads if p.recycled_after] == [
        (recycled.lead_id, "not-a-fit")]
    # And the rep who rejected it, whom live routing passed over.
    assert [(p.lead.lead_id, p.rejected_by) for p in history.leads if p.rejected_by] == [
        (recycled.lead_id, first_owner)]


async def routed_by(uow, ctx, log, lead) -> str | None:
    """Score ``lead`` as scoring would, let routing handle it, and log both: the owner it got, if routed."""
    message = factories.message(topics.SCORED, lead)
    log.add(message)
    env = decode(message.headers, message.key, message.value)
    async with uow:
        out = (await handle_lead_scored(uow, [env], ctx))[env.id]
        await uow.commit()
    for m in out:
        log.add(m)
    return next((decode(m.headers, m.key, m.value).data.assignment.owner_id for m in out
                 if m.topic == topics.ROUTED), None)


async def rejected(uow, ctx, log, lead, owner, reason_code) -> None:
    env = factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome="rejected",
                                                                rep_id=owner, reason_code=reason_code))
    async with uow:
        for m in (await handle_lead_dispositioned(uow, [env], ctx))[env.id]:
            log.add(m)
        await uow.commit()


async def test_a_recycle_whose_rejection_came_before_the_window_still_names_it(uow, log):
    ctx = Routing(Reference(DATA, "v-test"), clock=lambda: T0)
    lead = factories.scored("mql", country="DE")
    await rejected(uow, ctx, log, lead, await routed_by(uow, ctx, log, lead), "not-a-fit")
    log.records.clear()  # the window starts here: the first routing and its rejection are before it
    await routed_by(uow, ctx, log, touch_of(lead))

    history = await routing.whatif.read_history(None, T0)

    assert [(p.lead.lead_id, p.recycled_after) for p in history.leads] == [(lead.lead_id, "not-a-fit")]


async def test_a_recycle_recorded_before_recycles_named_their_rejection_names_the_one_read_in_the_window(
        uow, log, monkeypatch):
    monkeypatch.setattr(routing.handlers, "rejected_as", lambda handoff: None)  # routing as it was then
    ctx = Routing(Reference(DATA, "v-test"), clock=lambda: T0)
    inside, outside = factories.scored("mql", country="DE"), factories.scored("mql", country="DE")
    await rejected(uow, ctx, log, outside, await routed_by(uow, ctx, log, outside), "not-a-fit")
    log.records.clear()  # the window starts here: outside's rejection is before it
    await rejected(uow, ctx, log, inside, await routed_by(uow, ctx, log, inside), "not-a-fit")
    await routed_by(uow, ctx, log, touch_of(inside))
    await routed_by(uow, ctx, log, touch_of(outside))

    history = await routing.whatif.read_history(None, T0)

    recycled = {p.lead.lead_id: p.recycled_after for p in history.leads if p.lead.touch is not None}
    assert recycled == {inside.lead_id: "not-a-fit", outside.lead_id: None}


async def test_the_history_says_when_each_partition_that_lost_its_first_records_begins_now(log):
    """What the report needs to tell a --since older than the topics' retention from a quiet week, and a partition
    that lost every record it had from one never written to."""
    log.first_held = {(topics.SCORED, 3): T0, (topics.LIFECYCLE, 0): T0 + timedelta(days=1), (topics.ROUTED, 1): None}
    history = await routing.whatif.read_history(None, T0 - timedelta(days=90))
    assert sorted(history.first_held, key=lambda held: held[0]) == [
        (topics.LIFECYCLE, T0 + timedelta(days=1)), (topics.ROUTED, None), (topics.SCORED, T0)]


async def test_a_merge_survivor_routed_before_the_window_is_not_routed_again_by_its_score_after_the_merge(uow, log):
    """Scoring scores a merge's survivor again with the duplicate's touches, no touch of its own: routing passes it
    over (routed long ago), and the what-if took it for a lead's first score, not routed yet, and routed it."""
    from leadpipe_common.events import LeadMerged

    ctx = Routing(Reference(DATA, "v-test"), clock=lambda: T0)
    survivor, duplicate = factories.scored("mql", country="DE"), factories.scored("mql", country="DE")
    await routed_by(uow, ctx, log, survivor)
    await routed_by(uow, ctx, log, duplicate)
    log.records.clear()  # the window starts here: both routings are before it
    log.add(factories.message(topics.LIFECYCLE, LeadMerged(
        lead_id=duplicate.lead_id, survivor_id=survivor.lead_id, at=T0, by="ana", reason="one person",
        attribution=Attribution())))
    log.add(factories.message(topics.SCORED, survivor.model_copy(update={"scored_at": T0 + timedelta(minutes=1)})))

    history = await routing.whatif.read_history(None, T0)

    assert history.leads == []
