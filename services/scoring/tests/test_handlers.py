"""scoring's handler with an in-memory unit of work: no broker, no Postgres."""

import uuid
from datetime import UTC, datetime, timedelta

from leadpipe_common import topics
from leadpipe_common.envelope import decode
from leadpipe_common.erasure import erased_event
from leadpipe_common.testing import factories
from leadpipe_common.events import Attribution, LeadMerged, Touch
from leadpipe_common.uow import MemoryUnitOfWork
from scoring.domain import TouchFacts, parse_rules
from scoring.handlers import Scoring, handle_lead_enriched, handle_lead_merged

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULES = {
    "version": "test-1", "grades": {"A": 80, "B": 60, "C": 35}, "thresholds": {"mql": 50, "nurture": 10},
    "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30}],
    "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 40, "half_life_days": 30},
               {"rule": "White paper", "field": "offer", "equals": "whitepaper", "points": 20}],
    "disqualify": [{"rule": "Disposable", "field": "is_disposable", "equals": True}],
    # The touches made here come within the same instant: each counts, so a test can tell them apart.
    "repeats_within_minutes": 0,
}
CTX = Scoring(parse_rules(RULES), clock=lambda: NOW)


def decoded(message):
    return decode(message.headers, message.key, message.value).data


class MemoryScores:
    """scoring's store in memory: the latest score row per lead and every touch."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict] = {}
        self.touch_rows: dict[tuple[uuid.UUID, uuid.UUID], dict] = {}

    async def standing(self, lead_ids):
        return {i: (self.rows[i]["decision"], self.rows[i]["lead"]) for i in lead_ids if i in self.rows}

    async def touches(self, lead_ids):
        ids = set(lead_ids)
        out = {i: [] for i in ids}
        for (lead_id, _), row in self.touch_rows.items():
            if lead_id in ids:
                out[lead_id].append(TouchFacts(row["touch_id"], row["at"], row["facts"]))
        return out

    async def save_touches(self, rows):
        for row in rows:
            self.touch_rows.setdefault((row["lead_id"], row["touch_id"]), row)

    async def save(self, rows):
        # The lead kept as JSON, as Postgres gives it back.
        self.rows.update({row["lead_id"]: {**row, "lead": row["lead"].model_dump(mode="json")} for row in rows})

    async def erase(self, erased):
        for lead_id, at in erased.items():
            if lead_id in self.rows:
                self.rows[lead_id] |= {"decision": "erased", "lead": erased_event(self.rows[lead_id]["lead"])}
            else:  # scoring never held it: a mark, closed and holding no one, as the store inserts
                self.rows[lead_id] = {"lead_id": lead_id, "score": 0, "grade": "", "decision": "erased",
                                      "rules_version": "", "reasons": [], "scored_at": at, "lead": None}

    async def merge(self, survivors):
        def end_of_chain(lead_id):
            while (onward := self.rows.get(lead_id, {}).get("merged_into")) is not None:
                lead_id = onward
            return lead_id

        for duplicate, survivor in sorted(survivors.items()):
            holder = end_of_chain(survivor)
            for (lead_id, touch_id), row in list(self.touch_rows.items()):
                if lead_id == duplicate:
                    del self.touch_rows[(lead_id, touch_id)]
                    self.touch_rows[(holder, touch_id)] = {**row, "lead_id": holder}
            self.rows[duplicate] |= {"decision": "merged", "merged_into": survivor}
        return {duplicate: end_of_chain(survivor) for duplicate, survivor in survivors.items()}


async def score(lead, store=None):
    uow = MemoryUnitOfWork(store or MemoryScores())
    env = factories.envelope(topics.ENRICHED, lead)
    async with uow:
        outcomes = await handle_lead_enriched(uow, [env], CTX)
    return uow, outcomes[env.id]


def touched(lead, offer, days_later=0.0):
    at = lead.captured_at + timedelta(days=days_later)
    return lead.model_copy(update={"touch": Touch(touch_id=uuid.uuid4(), at=at, attribution=Attribution(offer=offer))})


async def test_a_nurture_lead_that_asks_for_a_demo_is_recycled_to_mql():
    store = MemoryScores()
    lead = factories.enriched("reader@smallco.example", offer="whitepaper")
    _, (_, first) = await score(lead, store)
    assert decoded(first).to_stage == "nurture"
    _, (scored, step) = await score(touched(lead, "demo"), store)
    assert (decoded(step).from_stage, decoded(step).to_stage) == ("nurture", "mql")
    assert "recycled" in decoded(step).reason
    intent = [(r.rule, r.points) for r in decoded(scored).score.reasons if r.category == "intent"]
    assert sorted(intent) == [("Demo", 40), ("White paper", 20)]  # summed over both touches
    assert store.rows[lead.lead_id]["decision"] == "mql"


async def test_a_touch_of_an_mql_is_rescored_without_moving_the_lead():
    store = MemoryScores()
    lead = factories.enriched("cmo@bigco.example", employees=5000, offer="demo")
    await score(lead, store)
    _, outputs = await score(touched(lead, "whitepaper"), store)
    assert [m.topic for m in outputs] == [topics.SCORED]  # routing re-engages the holder; no new step
    assert decoded(outputs[0]).touch is not None and decoded(outputs[0]).score.value == 90


async def test_a_message_is_scored_for_the_touch_that_wrote_it_not_again_for_each_later_touch():
    """The contact form's message stays on the person's contact (capture keeps what a shorter form left out):
    three white-paper downloads after it carried it too, and each was scored as having written it."""
    ctx = Scoring(parse_rules({**RULES, "intent": [
        *RULES["intent"], {"rule": "Wrote a message", "field": "has_message", "equals": True, "points": 5}]}),
        clock=lambda: NOW)
    store = MemoryScores()
    lead = factories.enriched("reader@smallco.example", offer="whitepaper")
    lead = lead.model_copy(update={"contact": lead.contact.model_copy(update={"message": "Call me about pricing"})})
    outputs = []
    for event in (lead, *(touched(lead, "whitepaper", days) for days in (1, 2, 3))):
        uow, env = MemoryUnitOfWork(store), factories.envelope(topics.ENRICHED, event)
        async with uow:
            outputs = (await handle_lead_enriched(uow, [env], ctx))[env.id]
    reasons = [r.rule for r in decoded(outputs[0]).score.reasons]
    assert reasons.count("Wrote a message") == 1 and reasons.count("White paper") == 4


async def test_a_late_touch_of_a_disqualified_lead_changes_nothing():
    store = MemoryScores()
    lead = factories.enriched("x@smallco.example")
    await score(lead, store)
    assert store.rows[lead.lead_id]["decision"] == "disqualified"
    from prometheus_client import REGISTRY

    def counted() -> float:
        return REGISTRY.get_sample_value("scoring_touches_of_closed_leads_total", {"decision": "disqualified"}) or 0

    before = counted()
    _, outputs = await score(touched(lead, "demo"), store)
    assert outputs == [] and len(store.touch_rows) == 2  # kept, for the record
    assert counted() == before + 1  # and said: the person's request went no further


async def test_an_enriched_lead_that_reaches_the_bar_becomes_an_mql_with_its_reasons_stored():
    lead = factories.enriched("cmo@bigco.example", employees=5000, offer="demo")
    uow, (scored, step) = await score(lead)
    assert (scored.topic, step.topic) == (topics.SCORED, topics.LIFECYCLE)
    assert decoded(scored).score.decision == "mql" and decoded(scored).scored_at == NOW
    assert (decoded(step).from_stage, decoded(step).to_stage) == ("enriched", "mql")
    row = uow.store.rows[lead.lead_id]
    assert (row["score"], row["rules_version"]) == (70, "test-1")
    assert [r.rule for r in row["reasons"]] == ["Enterprise", "Demo"]


async def test_a_lead_below_the_bar_is_scored_for_nurture():
    lead = factories.enriched("reader@smallco.example", offer="demo")
    _, (scored, step) = await score(lead)
    assert decoded(scored).score.decision == "nurture"
    assert decoded(step).to_stage == "nurture"


def merge_of(duplicate, survivor):
    return factories.envelope(topics.ENRICHED, LeadMerged(
        lead_id=duplicate.lead_id, survivor_id=survivor.lead_id, at=NOW, by="ana", reason="same person",
        attribution=duplicate.attribution))


async def merged(store, duplicate, survivor, *more):
    """The outcomes of merging ``duplicate`` into ``survivor`` (and each further pair of ``more``) in one batch."""
    pairs = [(duplicate, survivor), *zip(more[::2], more[1::2], strict=True)]
    uow = MemoryUnitOfWork(store)
    async with uow:
        return list((await handle_lead_merged(uow, [merge_of(d, s) for d, s in pairs], CTX)).values())


def intent_rules(message):
    return sorted(r.rule for r in decoded(message).score.reasons if r.category == "intent")


async def test_a_merged_duplicates_touches_count_for_the_survivor_at_once_and_the_duplicate_moves_no_more():
    store = MemoryScores()
    survivor = factories.enriched("reader@smallco.example", offer="whitepaper")
    duplicate = factories.enriched("reader.private@smallco.example", offer="demo")
    await score(survivor, store)
    await score(duplicate, store)
    [(scored, step)] = await merged(store, duplicate, survivor)
    assert decoded(scored).lead_id == survivor.lead_id
    intent = sorted(r.rule for r in decoded(scored).score.reasons if r.category == "intent")
    assert intent == ["Demo", "White paper"]  # the duplicate's demo request counts for the survivor now
    assert (decoded(step).from_stage, decoded(step).to_stage) == ("nurture", "mql")
    assert decoded(step).reason.startswith("recycled by a merge")
    _, (rescored,) = await score(touched(survivor, "whitepaper"), store)
    intent = sorted(r.rule for r in decoded(rescored).score.reasons if r.category == "intent")
    assert intent == ["Demo", "White paper", "White paper"]
    _, outputs = await score(touched(duplicate, "demo"), store)
    assert outputs == []


async def test_a_touch_scored_before_the_merge_reached_scoring_is_counted_by_the_merge():
    store = MemoryScores()
    survivor = factories.enriched("buyer@smallco.example", offer="demo")
    duplicate = factories.enriched("buyer.private@smallco.example", offer="whitepaper")
    await score(survivor, store)
    await score(duplicate, store)
    await score(touched(survivor, "whitepaper"), store)  # the survivor's touch overtook the merge
    [(scored,)] = await merged(store, duplicate, survivor)  # an MQL already: no step
    intent = sorted(r.rule for r in decoded(scored).score.reasons if r.category == "intent")
    assert intent == ["Demo", "White paper", "White paper"]
    assert store.rows[duplicate.lead_id]["decision"] == "merged"


async def chain(in_one_batch: bool, onward_first: bool):
    """D (a demo request) merged into S, S merged into T: T's last score, in the given order of the merges."""
    store = MemoryScores()
    low, mid, high = sorted(uuid.uuid4() for _ in "dst")  # a batch merges in duplicate id order
    d = factories.enriched("d.buyer@smallco.example", offer="demo").model_copy(
        update={"lead_id": high if onward_first else low})
    s = factories.enriched("s.buyer@smallco.example", offer="whitepaper").model_copy(
        update={"lead_id": low if onward_first else high})
    t = factories.enriched("t.buyer@smallco.example", offer="whitepaper").model_copy(update={"lead_id": mid})
    for lead in (d, s, t):
        await score(lead, store)
    order = [(s, t), (d, s)] if onward_first else [(d, s), (s, t)]
    if in_one_batch:
        outputs = await merged(store, *order[0], *order[1])
    else:
        outputs = await merged(store, *order[0]) + await merged(store, *order[1])
    scored = [m for out in outputs for m in out if m.topic == topics.SCORED]
    if in_one_batch or onward_first:  # (D into S a batch before S's merge on re-scores S, open then)
        assert {decoded(m).lead_id for m in scored} == {t.lead_id}  # never S, merged on
    last_of_t = scored[-1]
    assert {lead_id for lead_id, _ in store.touch_rows} == {t.lead_id}
    return last_of_t


async def test_a_duplicate_merged_into_a_lead_merged_on_counts_where_the_chain_ends_whatever_the_order():
    for in_one_batch in (True, False):
        for onward_first in (True, False):
            assert intent_rules(await chain(in_one_batch, onward_first)) == ["Demo", "White paper", "White paper"]


#: A lead at exactly the bar of 60 when scored at once: 30 points of fit and a demo's 30, halving every 30 days.
AT_THE_BAR = Scoring(parse_rules({**RULES, "thresholds": {"mql": 60, "nurture": 10}, "intent": [
    {"rule": "Demo", "field": "offer", "equals": "demo", "points": 30, "half_life_days": 30},
    RULES["intent"][1]]}), clock=lambda: NOW)


async def handled(event, late: timedelta, store=None, ctx=AT_THE_BAR):
    """The outcome of ``event`` (a lead.enriched or a merge) handled ``late`` after NOW, when it happened."""
    uow = MemoryUnitOfWork(store or MemoryScores())
    env = factories.envelope(topics.ENRICHED, event)
    handle = handle_lead_merged if isinstance(event, LeadMerged) else handle_lead_enriched
    async with uow:
        return (await handle(uow, [env], Scoring(ctx.rules, clock=lambda: NOW + late)))[env.id]


def enriched_at(at, offer="demo", employees=5000):
    return factories.enriched("cmo@bigco.example", employees=employees, offer=offer).model_copy(
        update={"captured_at": at})


async def test_the_same_lead_handled_late_scores_the_same():
    """Handled 18 hours late (a backlog, a dead-letter redrive) it scored 59 and went to nurture, not to sales."""
    for late in (timedelta(0), timedelta(hours=18)):
        scored, step = await handled(enriched_at(NOW), late)
        assert (decoded(scored).score.value, decoded(step).to_stage) == (60, "mql")
        assert decoded(scored).scored_at == NOW + late  # stamped when it was scored


async def test_the_same_touch_handled_late_scores_the_same():
    lead = enriched_at(NOW - timedelta(days=60), offer="whitepaper")
    values = []
    for late in (timedelta(0), timedelta(hours=18)):
        store = MemoryScores()
        await handled(lead, timedelta(days=-60), store)
        touch = touched(lead, "demo", days_later=60)  # at NOW
        values.append([decoded(m).score.value for m in await handled(touch, late, store)
                       if m.topic == topics.SCORED])
    assert values == [[80], [80]]  # 30 fit, 20 for the white paper (no half-life), 30 for the demo at once


async def test_an_old_touch_redriven_after_newer_ones_scores_as_of_the_newest_not_its_own_time():
    """A demo request dead-lettered 120 days ago and redriven today was scored as of then, today's touches counted
    at full points: a moment the lead never had, which sent it to sales on intent long faded."""
    lead = enriched_at(NOW - timedelta(days=150), offer="whitepaper")
    demo, today = touched(lead, "demo", days_later=30), touched(lead, "whitepaper", days_later=150)
    finals = []
    # In order, each when it came; and today's touch first, the demo redriven after it, both handled now.
    for order in (((demo, timedelta(days=-120)), (today, timedelta(0))), ((today, timedelta(0)), (demo, timedelta(0)))):
        store = MemoryScores()
        await handled(lead, timedelta(days=-150), store)
        for touch, late in order:
            scored = [decoded(m).score.value for m in await handled(touch, late, store) if m.topic == topics.SCORED]
        finals.append(scored)
    assert finals[0] == finals[1]


async def test_the_same_merge_handled_late_scores_the_same():
    values = []
    for late in (timedelta(0), timedelta(hours=18)):
        store = MemoryScores()
        survivor, duplicate = enriched_at(NOW, offer=None), enriched_at(NOW, employees=None)
        await handled(survivor, timedelta(0), store)
        await handled(duplicate, timedelta(0), store)
        (scored, *_) = await handled(LeadMerged(lead_id=duplicate.lead_id, survivor_id=survivor.lead_id, at=NOW,
                                                by="ana", reason="same person", attribution=duplicate.attribution),
                                     late, store)
        values.append(decoded(scored).score.value)
    assert values == [60, 60]


async def test_an_event_dated_ahead_of_the_clock_is_scored_as_of_now():
    """A touch dated a month ahead (a sender's clock) would decay the lead's earlier demo by a month not yet
    passed, as of its own time."""
    store = MemoryScores()
    lead = enriched_at(NOW - timedelta(days=30))
    await handled(lead, timedelta(days=-30), store)
    (scored, *_) = await handled(touched(lead, "whitepaper", days_later=60), timedelta(0), store)
    assert [(r.rule, r.points) for r in decoded(scored).score.reasons if r.category == "intent"] == [
        ("Demo", 15), ("White paper", 20)]


async def test_an_erased_lead_is_cleared_from_the_score_kept_and_the_inbox_closed_and_passed_on_to_routing():
    from leadpipe_common.events import LeadErased
    from scoring.handlers import handle_lead_erased

    store = MemoryScores()
    lead = factories.enriched("reader@smallco.example", offer="demo")
    lead = lead.model_copy(update={"contact": lead.contact.model_copy(update={"first_name": "Reader"})})
    uow = MemoryUnitOfWork(store)
    enriched = factories.envelope(topics.ENRICHED, lead)
    erasure = factories.envelope(topics.ENRICHED, LeadErased(lead_id=lead.lead_id, at=NOW, by="dpo"))
    outcomes = await factories.one_batch(uow, (handle_lead_enriched, [enriched], CTX),
                                         (handle_lead_erased, [erasure], CTX))
    [passed_on] = outcomes[erasure.id]
    assert passed_on.topic == topics.SCORED and decoded(passed_on) == erasure.data
    assert store.rows[lead.lead_id]["lead"]["contact"]["email"] == ""
    assert not any(b"reader" in m.value for m in uow.inbox[enriched.id])
    _, outputs = await score(touched(lead, "demo"), store)
    assert outputs == []  # closed: a late touch of it moves nothing


async def erased_first(lead, store):
    from leadpipe_common.events import LeadErased
    from scoring.handlers import handle_lead_erased

    erasure = factories.envelope(topics.ENRICHED, LeadErased(lead_id=lead.lead_id, at=NOW, by="dpo"))
    await factories.one_batch(MemoryUnitOfWork(store), (handle_lead_erased, [erasure], CTX))


async def test_a_lead_erased_before_scoring_held_it_is_not_scored_when_its_dead_letter_is_redriven():
    store = MemoryScores()
    lead = factories.enriched("reader@bigco.example", offer="demo")
    await erased_first(lead, store)
    uow, outputs = await score(lead, store)
    assert outputs == []
    assert store.rows[lead.lead_id]["decision"] == "erased" and store.rows[lead.lead_id]["lead"] is None
    assert store.touch_rows == {}


async def test_a_late_merge_of_an_erased_duplicate_keeps_it_erased_and_sends_nothing():
    store = MemoryScores()
    survivor, duplicate = factories.enriched("a@bigco.example"), factories.enriched("b@bigco.example")
    await score(survivor, store)
    await erased_first(duplicate, store)
    merge = factories.envelope(topics.ENRICHED, LeadMerged(lead_id=duplicate.lead_id, survivor_id=survivor.lead_id,
                                                           at=NOW, by="ana", reason="same person",
                                                           attribution=duplicate.attribution))
    outcomes = await factories.one_batch(MemoryUnitOfWork(store), (handle_lead_merged, [merge], CTX))
    assert outcomes[merge.id] == [] and store.rows[duplicate.lead_id]["decision"] == "erased"
