"""routing's handlers and SLA watch with an in-memory unit of work: no broker, no Postgres."""

import copy
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog.testing
from prometheus_client import REGISTRY

from leadpipe_common import topics
from leadpipe_common.consumer import BatchApplier, Rejected
from leadpipe_common.envelope import decode, new_traceparent
from leadpipe_common.events import Attribution, LeadDispositioned, LeadRouted, Touch
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork
from routing.domain import Away, Refused, Repeated, parse_routing_data, teams_waiting
from routing.handlers import (
    Routing, hand_over, handle_lead_dispositioned, handle_lead_scored, record_disposition, record_merge,
)
from routing.reference import Reference, RoutingFiles
from routing.service import SERVICE
from routing.sla import SlaWatch, act_on_missed_deadlines, hand_out_waiting_leads

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DATA = parse_routing_data({
    "reps": [{"id": "ana", "name": "Ana", "team": "emea", "weight": 1},
             {"id": "ben", "name": "Ben", "team": "emea", "weight": 1}],
    "accounts": [],
    "territories": {"regions": {"emea": ["DE"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all", "teams": [{"team": "emea", "region": "emea"}],
                    "default_team": "emea"},
    "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"},
    "sla": {"acceptance": {"B": "15m"}, "max_reassignments": 1},
    "reasons": {"rejected": {"not-a-fit": "Not our ICP"}},
})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def ctx() -> Routing:
    return Routing(Reference(DATA, "v-test"), clock=Clock())


def data(message):
    return decode(message.headers, message.key, message.value).data


async def route(uow, ctx, lead):
    env = factories.envelope(topics.SCORED, lead)
    async with uow:
        outcomes = await handle_lead_scored(uow, [env], ctx)
        await uow.commit()
    return outcomes[env.id]


async def say(uow, ctx, lead_id, **report):
    env = factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=lead_id, **report))
    async with uow:
        outcomes = await handle_lead_dispositioned(uow, [env], ctx)
        await uow.commit()
    return outcomes[env.id]


async def test_an_mql_is_routed_and_its_hand_off_holds_the_deadline_and_the_trace(uow, ctx):
    lead = factories.scored("mql", country="DE")
    routed, step = await route(uow, ctx, lead)
    assert (routed.topic, step.topic) == (topics.ROUTED, topics.LIFECYCLE)
    owner = data(routed).assignment.owner_id
    assert owner in {"ana", "ben"} and data(step).due_at == T0 + timedelta(minutes=15)
    held = uow.store.handoffs[lead.lead_id]
    assert (held.handoff.owner_id, held.handoff.due_at) == (owner, T0 + timedelta(minutes=15))
    assert held.traceparent == routed.header("traceparent")
    assert uow.store.turns == {"emea": 1}


async def test_a_nurture_lead_is_applied_without_being_routed(uow, ctx):
    assert await route(uow, ctx, factories.scored("nurture", country="DE")) == []
    assert uow.store.assignments == {}


async def test_a_second_scored_event_for_a_routed_lead_changes_nothing(uow, ctx):
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    assert await route(uow, ctx, lead) == []  # the same lead under a new event id
    assert len(uow.store.assignments) == 1 and uow.store.turns == {"emea": 1}


async def test_the_holder_accepting_on_the_topic_moves_the_lead_on(uow, ctx):
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    [step] = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner)
    assert (data(step).from_stage, data(step).to_stage, data(step).owner_id) == ("routed", "accepted", owner)
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_a_stranger_s_report_on_the_topic_goes_to_the_dead_letters_with_the_reason(uow, ctx):
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    stranger = ({"ana", "ben"} - {owner}).pop()
    verdict = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=stranger)
    assert isinstance(verdict, Rejected) and f"held by {owner}" in verdict.reason
    assert uow.store.handoffs[lead.lead_id].handoff.status == "routed"


async def test_a_report_on_a_lead_routing_never_routed_is_rejected(uow, ctx):
    verdict = await say(uow, ctx, uuid.uuid4(), outcome="accepted", rep_id="ana")
    assert isinstance(verdict, Rejected) and "no routed lead" in verdict.reason


async def test_a_report_on_the_topic_dated_after_routing_recorded_it_is_dated_when_routing_recorded_it(uow, ctx):
    """A CRM writing its local wall-clock time with a Z dates an acceptance at 09:05 10:05: read as given, the SLA
    report counted a miss and velocity grew by an hour. A report dated earlier keeps its date."""
    late, early = factories.scored("mql", country="DE"), factories.scored("mql", country="DE")
    owners = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in (late, early)]
    ctx.clock.now = T0 + timedelta(minutes=5)
    [ahead] = await say(uow, ctx, late.lead_id, outcome="accepted", rep_id=owners[0], at=T0 + timedelta(hours=1))
    [before] = await say(uow, ctx, early.lead_id, outcome="accepted", rep_id=owners[1], at=T0 + timedelta(minutes=1))
    assert (data(ahead).at, data(before).at) == (T0 + timedelta(minutes=5), T0 + timedelta(minutes=1))


async def posted(uow, ctx, lead_id, **report):
    """A report as the HTTP API applies it: one dated before its answer could be given is refused, not re-dated."""
    async with uow:
        result = await record_disposition(uow.store, LeadDispositioned(lead_id=lead_id, **report), ctx.data,
                                          ctx.clock(), refuse_early=True)
        uow.publish(result.messages)
        await uow.commit()
    return result


#: A New York CRM writing its local wall-clock time with a Z: every answer dated five hours early.
NEW_YORK_AS_UTC = timedelta(hours=5)


async def test_an_acceptance_on_the_topic_dated_hours_before_its_routing_is_dated_at_its_routing(uow, ctx):
    """Read as given, the SLA report held the hand-off as met and velocity the acceptance as 0 s. One dated a
    minute or two early (a clock a little behind) keeps its date."""
    early, skewed = factories.scored("mql", country="DE"), factories.scored("mql", country="DE")
    owners = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in (early, skewed)]
    ctx.clock.now = T0 + timedelta(minutes=10)
    [bounded] = await say(uow, ctx, early.lead_id, outcome="accepted", rep_id=owners[0], at=T0 - NEW_YORK_AS_UTC)
    [kept] = await say(uow, ctx, skewed.lead_id, outcome="accepted", rep_id=owners[1], at=T0 - timedelta(minutes=2))
    assert (data(bounded).at, data(kept).at) == (T0, T0 - timedelta(minutes=2))


async def test_an_acceptance_over_http_dated_hours_before_its_routing_is_refused_and_mended_is_the_topics_event(
        uow, ctx):
    """Nothing is stored of the refused report. Event ids derive from the lead and the stage, not the date: the
    mended report over HTTP and the first on the topic (dated at the routing) are one event."""
    ids, lead, fresh = [], factories.scored("mql", country="DE"), uow
    for path in ("http", "topic"):
        uow = MemoryUnitOfWork(type(fresh.store)())  # the same lead, in a routing of its own for each path
        owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
        if path == "http":
            refused = await posted(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner, at=T0 - NEW_YORK_AS_UTC)
            assert isinstance(refused.verdict, Refused) and refused.verdict.field == "at" and not refused.messages
            assert uow.store.handoffs[lead.lead_id].handoff.status == "routed"
            messages = (await posted(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner)).messages
        else:
            messages = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner, at=T0 - NEW_YORK_AS_UTC)
        ids += [m.header("ce_id") for m in messages]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_an_acceptance_of_a_lead_handed_over_is_judged_from_the_hand_over_not_the_routing(uow, ctx):
    [routed] = await leads_of(uow, ctx, "ana", 1)
    lead_id = data(routed).lead_id
    ctx.clock.now = handed = T0 + timedelta(days=1)
    await handed_over(uow, ctx, "ana", "ben")
    ctx.clock.now = handed + timedelta(minutes=10)
    refused = await posted(uow, ctx, lead_id, outcome="accepted", rep_id="ben", at=T0 + timedelta(hours=1))
    assert isinstance(refused.verdict, Refused) and "the hand-off to ben" in refused.verdict.reason
    [step] = await say(uow, ctx, lead_id, outcome="accepted", rep_id="ben", at=T0 + timedelta(hours=1))
    assert data(step).at == handed


async def test_a_win_reported_by_the_new_holder_with_the_date_the_old_one_won_it_is_kept_but_not_one_before_routing(
        uow, ctx):
    """Rep A won the deal in the CRM, then a manager handed the lead to B, who reports the win with the CRM's date:
    nothing about a lead happens in sales before its first routing, whoever holds it now."""
    deals = [data(m).lead_id for m in await leads_of(uow, ctx, "ana", 2)]
    for lead_id in deals:
        await say(uow, ctx, lead_id, outcome="accepted", rep_id="ana")
    ctx.clock.now = T0 + timedelta(days=2)
    await handed_over(uow, ctx, "ana", "ben")
    win = {"outcome": "won", "rep_id": "ben", "amount": "1200", "currency": "EUR"}
    kept = await posted(uow, ctx, deals[0], **win, at=T0 + timedelta(days=1))
    assert [data(m).at for m in kept.messages] == [T0 + timedelta(days=1)]
    refused = await posted(uow, ctx, deals[1], **win, at=T0 - NEW_YORK_AS_UTC)
    assert isinstance(refused.verdict, Refused) and "first routing" in refused.verdict.reason
    [bounded] = await say(uow, ctx, deals[1], **win, at=T0 - NEW_YORK_AS_UTC)
    assert data(bounded).at == T0


async def test_a_resend_of_an_acceptance_is_a_repeat_though_a_hand_over_since_began_after_its_date(uow, ctx):
    """A sales tool retrying a report it is unsure was taken must not hear of a wrong date it did not have."""
    [routed] = await leads_of(uow, ctx, "ana", 1)
    accepted = {"outcome": "accepted", "rep_id": "ana", "at": T0 + timedelta(minutes=1)}
    await say(uow, ctx, data(routed).lead_id, **accepted)
    ctx.clock.now = T0 + timedelta(days=1)
    await handed_over(uow, ctx, "ana", "ben")
    again = await posted(uow, ctx, data(routed).lead_id, **accepted)
    assert isinstance(again.verdict, Repeated) and again.messages == []


async def won(uow, ctx, amount="50000"):
    """A lead routed, accepted and won for ``amount`` EUR; its id and holder."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner)
    await say(uow, ctx, lead.lead_id, outcome="won", rep_id=owner, amount=amount, currency="EUR")
    return lead.lead_id, owner


async def test_a_won_report_again_with_another_amount_on_the_topic_is_a_correction_not_a_second_win(uow, ctx):
    lead_id, owner = await won(uow, ctx)
    ctx.clock.now += timedelta(days=2)
    [message] = await say(uow, ctx, lead_id, outcome="won", rep_id=owner, amount="5000", currency="EUR",
                          reason="typo")
    corrected = data(message)
    assert (message.topic, corrected.type, corrected.lead_id) == (
        topics.LIFECYCLE, "lead.won_amount_corrected", lead_id)
    assert (str(corrected.amount), corrected.currency, str(corrected.previous_amount), corrected.previous_currency,
            corrected.correction, corrected.by, corrected.at) == ("5000.00", "EUR", "50000.00", "EUR", 1, owner,
                                                                  ctx.clock.now)
    assert (corrected.owner_id, corrected.team) == (owner, "emea") and corrected.reason.endswith(": typo")
    assert uow.store.handoffs[lead_id].handoff.status == "won"
    assert [str(d.amount) for d in uow.store.handoffs[lead_id].handoff.history if d.outcome == "won"] == [
        "50000.00", "5000.00"]
    assert await say(uow, ctx, lead_id, outcome="won", rep_id=owner, amount="5000", currency="EUR",
                     reason="typo") == []  # a resend: a repeat


async def test_the_same_correction_over_http_and_over_the_topic_is_one_event(uow, ctx):
    """Sent both ways (a CRM that posts and also produces), each path finds the lead as the other would: the
    correction has one id, and the second to arrive is a repeat."""
    ids, lead, fresh = [], factories.scored("mql", country="DE"), uow
    for path in ("http", "topic"):
        uow = MemoryUnitOfWork(type(fresh.store)())  # the same lead, in a routing of its own for each path
        owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
        await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner)
        await say(uow, ctx, lead.lead_id, outcome="won", rep_id=owner, amount="50000", currency="EUR")
        correction = {"outcome": "won", "rep_id": owner, "amount": "5000", "currency": "EUR"}
        if path == "http":
            async with uow:
                result = await record_disposition(uow.store, LeadDispositioned(lead_id=lead.lead_id, **correction),
                                                  ctx.data, ctx.clock())
                await uow.commit()
            messages = result.messages
            assert await say(uow, ctx, lead.lead_id, **correction) == []  # then on the topic: a repeat
        else:
            messages = await say(uow, ctx, lead.lead_id, **correction)
        ids += [m.header("ce_id") for m in messages]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_a_correction_of_a_won_deal_by_a_rep_who_does_not_hold_it_goes_to_the_dead_letters_for_good(uow, ctx):
    lead_id, owner = await won(uow, ctx)
    stranger = ({"ana", "ben"} - {owner}).pop()
    verdict = await say(uow, ctx, lead_id, outcome="won", rep_id=stranger, amount="5000", currency="EUR")
    assert isinstance(verdict, Rejected) and verdict.final and f"held by {owner}" in verdict.reason
    assert [d.amount for d in uow.store.handoffs[lead_id].handoff.history if d.outcome == "won"] == [50000]


def runner(uow, ctx) -> BatchApplier:
    """routing's consumer as it runs, its unit of work in memory."""
    return BatchApplier(service="routing", handlers=SERVICE.handlers(ctx), unit_of_work=lambda: uow, clock=ctx.clock)


def report(lead_id, **fields):
    return factories.message(topics.FEEDBACK, LeadDispositioned(lead_id=lead_id, **fields))


async def test_a_report_refused_on_the_topic_stays_refused_when_read_again_after_the_move_became_legal(uow, ctx):
    """Offsets are committed after the batch: a crash redelivers the refused report after the acceptance that
    made its move legal. It gets the letter it got, and the lead is not won by it."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    won = report(lead.lead_id, outcome="won", rep_id=owner, amount="1200", currency="EUR")
    [letter] = await runner(uow, ctx).apply([factories.consumed(won, 0)])
    assert letter.topic == topics.DEADLETTER and "while it is routed" in letter.header("dlq.error.message")
    await runner(uow, ctx).apply([factories.consumed(report(lead.lead_id, outcome="accepted", rep_id=owner), 1)])
    ctx.clock.now += timedelta(minutes=1)  # a letter made again would carry a later dlq.at
    assert await runner(uow, ctx).apply([factories.consumed(won, 0)]) == [letter]
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_a_report_naming_a_reason_code_routing_lacks_is_applied_when_redriven_after_the_files_are_fixed(
        uow, ctx):
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    rejected = report(lead.lead_id, outcome="rejected", rep_id=owner, reason_code="no-budget")
    [letter] = await runner(uow, ctx).apply([factories.consumed(rejected, 0)])
    assert letter.header("dlq.error.message").startswith("reason_code:")
    fixed = DATA.model_dump()
    fixed["reasons"]["rejected"]["no-budget"] = "No budget this year"
    ctx.reference = Reference(parse_routing_data(fixed), "v-fixed")
    rejected_step, nurture_step = await runner(uow, ctx).apply([factories.consumed(rejected, 7)])  # as leadpipe-redrive sends it
    assert (data(rejected_step).to_stage, data(nurture_step).to_stage) == ("rejected", "nurture")


def locked(store) -> list:
    """The rows a unit of work locked, in the order it first asked for each."""
    return list(dict.fromkeys(store.locks))


async def counting_writes(uow, work):
    """What ``work`` (a batch or a round over ``uow``, not yet begun) returned, run in a unit of work of its own and
    committed, the store's statements writing over stored rows (``updates``, ``leads_written``, ``reassigned``)
    counted from it on."""
    uow.store.updates.clear()
    uow.store.leads_written.clear()
    uow.store.reassigned.clear()
    async with uow:
        done = await work
        await uow.commit()
    return done


def one_write(leads) -> list:
    """What the store records of one statement writing the rows of ``leads``, each once, in lead id order."""
    return [sorted(lead.lead_id for lead in leads)]


async def merge(uow, ctx, lead_id, survivor_id, rep_id):
    async with uow:
        result = await record_merge(uow.store, lead_id, survivor_id, rep_id, "one person", ctx.data, ctx.clock())
        uow.publish(result.messages)
        await uow.commit()
    return result


async def test_a_merge_is_said_by_a_rep_in_the_reps_file_who_holds_the_lead_it_closes(uow, ctx):
    leads = [factories.scored("mql", country="DE") for _ in range(2)]
    holders = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    duplicate, survivor = (lead.lead_id for lead in leads)
    published = len(uow.published)
    unknown = (await merge(uow, ctx, duplicate, survivor, "anna.schmidt")).verdict
    assert (unknown.kind, unknown.field) == ("invalid", "rep_id")
    stranger = (await merge(uow, ctx, duplicate, survivor, holders[1])).verdict  # the survivor's holder
    assert (stranger.kind, stranger.field) == ("conflict", "rep_id")
    assert uow.store.handoffs[duplicate].handoff.status == "routed" and len(uow.published) == published
    merged = await merge(uow, ctx, duplicate, survivor, holders[0])
    assert uow.store.handoffs[duplicate].handoff.merged_into == survivor
    assert [data(m).type for m in merged.messages] == ["lead.merged"] and data(merged.messages[0]).by == holders[0]


async def test_a_lead_sales_works_is_not_merged_into_one_rejected_but_takes_it_in_and_its_reports_go_on(uow, ctx):
    """S, the person's old address, was rejected; D, the new one, is being worked. Merged into S, D could never be
    qualified, nor S: the person's revenue would never reach the reports. S merged into D, D is, and a report on S
    (a CRM keeping both records) is refused for good, naming D."""
    leads = [factories.scored("mql", country="DE") for _ in range(2)]
    s, d = (lead.lead_id for lead in leads)
    s_holder, d_holder = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    await runner(uow, ctx).apply([
        factories.consumed(report(s, outcome="accepted", rep_id=s_holder), 0),
        factories.consumed(report(s, outcome="rejected", rep_id=s_holder, reason_code="not-a-fit"), 1),
        factories.consumed(report(d, outcome="accepted", rep_id=d_holder), 2),
        factories.consumed(report(d, outcome="contacted", rep_id=d_holder), 3)])
    published = len(uow.published)
    refused = (await merge(uow, ctx, d, s, d_holder)).verdict
    assert (refused.kind, refused.field) == ("conflict", "survivor_id") and f"merge {s} into {d} instead" in refused.reason
    assert uow.store.handoffs[d].handoff.status == "contacted" and len(uow.published) == published
    assert (await merge(uow, ctx, s, d, s_holder)).verdict.handoff.merged_into == d
    [qualified] = await runner(uow, ctx).apply([factories.consumed(report(d, outcome="qualified", rep_id=d_holder), 4)])
    assert data(qualified).to_stage == "qualified"
    [letter] = await runner(uow, ctx).apply([factories.consumed(report(s, outcome="qualified", rep_id=s_holder), 5)])
    assert letter.topic == topics.DEADLETTER and letter.header("dlq.final") == "true"
    assert f"merged into {d}; report on {d} instead" in letter.header("dlq.error.message")


async def test_a_lead_merged_into_one_merged_on_since_sends_sales_to_the_lead_holding_the_person_now(uow, ctx):
    """D was merged into S, then S into T: a report on D is refused naming T, not S (whose refusal would name T in
    turn), on the topic as over HTTP; a retry of D into S is a repeat, and a merge into S is refused naming T. The
    rows keep their survivors: nothing is written but the merges."""
    leads = [factories.scored("mql", country="DE") for _ in range(4)]
    d, s, t, other = (lead.lead_id for lead in leads)
    holders = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    await merge(uow, ctx, d, s, holders[0])
    await merge(uow, ctx, s, t, holders[1])
    [letter] = await runner(uow, ctx).apply([factories.consumed(report(d, outcome="accepted", rep_id=holders[0]), 0)])
    assert f"merged into {t}; report on {t} instead" in letter.header("dlq.error.message")
    async with uow:
        over_http = await record_disposition(uow.store, LeadDispositioned(lead_id=d, outcome="accepted",
                                                                          rep_id=holders[0]), ctx.data, ctx.clock())
    assert over_http.verdict.reason == f"the lead is closed as merged into {t}; report on {t} instead"
    published = len(uow.published)
    retried = (await merge(uow, ctx, d, s, holders[0])).verdict
    assert isinstance(retried, Repeated) and retried.handoff.merged_into == t
    into_s = (await merge(uow, ctx, other, s, holders[3])).verdict
    assert into_s.field == "survivor_id" and f"{t} holds the person now; merge into that lead" in into_s.reason
    assert len(uow.published) == published
    assert [uow.store.handoffs[i].handoff.merged_into for i in (d, s)] == [s, t]


async def test_a_merge_chain_that_loops_ends_its_lookup(uow, ctx):
    """The merge rules make a loop impossible; a row broken by hand must not hang the consumer."""
    leads = [factories.scored("mql", country="DE") for _ in range(2)]
    d, s = (lead.lead_id for lead in leads)
    holders = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    for lead_id, into in ((d, s), (s, d)):
        held = uow.store.handoffs[lead_id]
        uow.store.handoffs[lead_id] = replace(held, handoff=replace(held.handoff, status="merged", merged_into=into))
    [letter] = await runner(uow, ctx).apply([factories.consumed(report(d, outcome="accepted", rep_id=holders[0]), 0)])
    assert letter.topic == topics.DEADLETTER and "closed as merged" in letter.header("dlq.error.message")


async def test_a_merge_names_who_held_each_lead_for_receivers_following_either(uow):
    """The duplicate is emea's (ana's or ben's, grade B), the survivor dach's cy's (grade A): lead.merged names
    both holders, their teams and grades, or delivery could pass it to no subscription filtered on them."""
    raw = {"reps": [{"id": "ana", "name": "Ana", "team": "emea"}, {"id": "ben", "name": "Ben", "team": "emea"},
                    {"id": "cy", "name": "Cy", "team": "dach"}],
           "accounts": [],
           "territories": {"regions": {"emea": ["DE"], "dach": ["AT"]},
                           "segments": [{"name": "all", "min_employees": 0}], "unknown_size_segment": "all",
                           "teams": [{"team": "emea", "region": "emea"}, {"team": "dach", "region": "dach"}],
                           "default_team": "emea"},
           "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                             "end": "24:00"},
           "sla": {"acceptance": {"A": "15m", "B": "1h"}}}
    ctx = Routing(Reference(parse_routing_data(raw), "v-test"), clock=Clock())
    duplicate = factories.scored("mql", country="DE")
    survivor = factories.scored("mql", country="AT")
    survivor = survivor.model_copy(update={"score": survivor.score.model_copy(update={"grade": "A"})})
    holder = data((await route(uow, ctx, duplicate))[0]).assignment.owner_id
    await route(uow, ctx, survivor)
    [message] = (await merge(uow, ctx, duplicate.lead_id, survivor.lead_id, holder)).messages
    merged = data(message)
    assert (merged.owner_id, merged.team, merged.grade) == (holder, "emea", "B") and holder in {"ana", "ben"}
    assert (merged.survivor_owner_id, merged.survivor_team, merged.survivor_grade) == ("cy", "dach", "A")


async def test_a_batch_locks_the_hand_offs_it_reports_on_or_touches_in_lead_id_order_not_in_log_order(uow, ctx):
    """A merge locks its two leads in id order: a batch locking the same two in the other order could deadlock
    with it, each holding the row the other waits for."""
    leads = sorted((factories.scored("mql", country="DE") for _ in range(2)), key=lambda lead: lead.lead_id)
    owners = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    ids = [lead.lead_id for lead in leads]
    uow.store.locks.clear()
    await runner(uow, ctx).apply([factories.consumed(report(ids[1], outcome="accepted", rep_id=owners[1]), 0),
                                  factories.consumed(report(ids[0], outcome="accepted", rep_id=owners[0]), 1)])
    assert locked(uow.store) == ids
    uow.store.locks.clear()
    await runner(uow, ctx).apply([factories.consumed(factories.message(topics.SCORED, touch_of(leads[1])), 0),
                                  factories.consumed(factories.message(topics.SCORED, touch_of(leads[0])), 1)])
    assert locked(uow.store) == ids


async def test_a_batch_of_reports_reads_its_hand_offs_in_the_one_up_front_lock_not_again_report_by_report(uow, ctx):
    """Each report selected its lead's hand-off again, already locked: a statement a report (N+1 a batch)."""
    leads = sorted((factories.scored("mql", country="DE") for _ in range(3)), key=lambda lead: lead.lead_id)
    owners = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    uow.store.locks.clear()
    batch = [factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome="accepted",
                                                                   rep_id=owner))
             for lead, owner in reversed(list(zip(leads, owners, strict=True)))]
    async with uow:
        outcomes = await handle_lead_dispositioned(uow, batch, ctx)
        await uow.commit()
    assert uow.store.locks == [lead.lead_id for lead in leads]  # once each, together, in lead id order
    assert all(len(outcomes[env.id]) == 1 for env in batch)
    assert {uow.store.handoffs[lead.lead_id].handoff.status for lead in leads} == {"accepted"}


async def test_a_batch_of_reports_stores_the_hand_offs_it_changed_in_one_write_each_as_its_last_report_left_it(
        uow, ctx):
    """One UPDATE a report made a batch of N reports N round trips inside the transaction holding their locks. A
    report repeated, refused or about no routed lead changes nothing, so writes nothing. A report changes no lead:
    written back by a process on an older version (a rolling update), a lead would lose the fields its model does
    not know, so the hand-offs are written alone."""
    taken, worked, refused, repeated = leads = [factories.scored("mql", country="DE") for _ in range(4)]
    owners = {lead.lead_id: data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads}
    await say(uow, ctx, repeated.lead_id, outcome="accepted", rep_id=owners[repeated.lead_id])
    said = [(taken, "accepted", {}), (worked, "accepted", {}), (worked, "contacted", {}),
            (refused, "won", {"amount": "1200", "currency": "EUR"}), (repeated, "accepted", {})]
    batch = [factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome=outcome,
                                                                   rep_id=owners[lead.lead_id], **fields))
             for lead, outcome, fields in said]
    batch.append(factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=uuid.uuid4(), outcome="accepted",
                                                                       rep_id="ana")))
    outcomes = await counting_writes(uow, handle_lead_dispositioned(uow, batch, ctx))
    answers = [outcomes[env.id] for env in batch]
    assert [len(a) for a in answers[:3]] == [1, 1, 1] and answers[4] == []  # the repeat emits nothing
    assert isinstance(answers[3], Rejected) and isinstance(answers[5], Rejected)
    assert uow.store.updates == one_write([taken, worked])
    assert uow.store.leads_written == []
    assert [uow.store.handoffs[lead.lead_id].handoff.status for lead in leads] == [
        "accepted", "contacted", "routed", "accepted"]


async def test_reports_about_one_lead_in_one_batch_each_meet_the_lead_where_the_one_before_left_it(uow, ctx):
    """Accepted, contacted, then the acceptance again (a resend): the contact is legal only after the acceptance,
    and the resend is a repeat only if the acceptance is already in the lead's history."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    accepted, contacted, again = (
        factories.envelope(topics.FEEDBACK, LeadDispositioned(lead_id=lead.lead_id, outcome=outcome, rep_id=owner))
        for outcome in ("accepted", "contacted", "accepted"))
    async with uow:
        outcomes = await handle_lead_dispositioned(uow, [accepted, contacted, again], ctx)
        await uow.commit()
    assert [[data(m).to_stage for m in outcomes[env.id]] for env in (accepted, contacted)] == [
        ["accepted"], ["contacted"]]
    assert outcomes[again.id] == []  # a harmless repeat: nothing emitted, nothing refused
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.status, [d.outcome for d in held.history]) == ("contacted", ["accepted", "contacted"])


async def test_a_batch_of_scores_and_reports_locks_every_hand_off_it_may_change_before_any_rotation(uow, ctx):
    """One unit of work for the whole batch: were the reports' hand-offs locked after the scores' rotation rows,
    the SLA watch (a hand-off, then its team's rotation) could wait for the batch while the batch waits for it."""
    reported, touched = sorted((factories.scored("mql", country="DE") for _ in range(2)), key=lambda lead: lead.lead_id)
    owner = data((await route(uow, ctx, reported))[0]).assignment.owner_id
    await route(uow, ctx, touched)
    uow.store.locks.clear()
    await runner(uow, ctx).apply([factories.consumed(factories.message(topics.SCORED, factories.scored("mql", country="DE")), 0),
                                  factories.consumed(factories.message(topics.SCORED, touch_of(touched)), 1),
                                  factories.consumed(report(reported.lead_id, outcome="accepted", rep_id=owner), 0)])
    assert locked(uow.store) == [reported.lead_id, touched.lead_id, "emea"]
    assert uow.store.handoffs[reported.lead_id].handoff.status == "accepted"


async def test_a_batch_with_a_report_between_two_scores_locks_its_teams_once_in_name_order(uow):
    """A fetch returns its records partition by partition, so feedback often sits between two runs of scores:
    each run locking its own teams took 'emea' then 'apac', and a process with the mirror batch the reverse."""
    two_teams = DATA.model_dump()
    two_teams["reps"].append({"id": "kim", "name": "Kim", "team": "apac", "weight": 1})
    two_teams["territories"]["regions"]["apac"] = ["JP"]
    two_teams["territories"]["teams"].append({"team": "apac", "region": "apac"})
    ctx = Routing(Reference(parse_routing_data(two_teams), "v-two-teams"), clock=Clock())
    reported = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, reported))[0]).assignment.owner_id
    uow.store.locks.clear()
    await runner(uow, ctx).apply([factories.consumed(factories.message(topics.SCORED, factories.scored("mql", country="DE")), 0),
                                  factories.consumed(report(reported.lead_id, outcome="accepted", rep_id=owner), 0),
                                  factories.consumed(factories.message(topics.SCORED, factories.scored("mql", country="JP")), 1)])
    assert [lock for lock in uow.store.locks if isinstance(lock, str)] == ["apac", "emea"]


async def test_a_missed_deadline_hands_the_lead_on_once_within_its_trace(uow, ctx):
    lead = factories.scored("mql", country="DE")
    routed, _ = await route(uow, ctx, lead)
    first = data(routed).assignment.owner_id
    ctx.clock.now = T0 + timedelta(minutes=14)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 0
    ctx.clock.now = T0 + timedelta(minutes=16)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        assert uow.published == []  # nothing leaves before the commit
        await uow.commit()
    breached, rerouted = uow.published
    assert data(breached).owner_id == first and data(breached).action == "reassigned"
    assert data(rerouted).assignment.owner_id == data(breached).next_owner_id != first
    trace = routed.header("traceparent").split("-")[1]
    assert {m.header("traceparent").split("-")[1] for m in uow.published} == {trace}
    async with uow:  # the new holder's deadline is 15 minutes away: nothing more is due
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 0


async def test_a_lead_escalated_for_good_after_its_last_reassignment_is_not_said_to_wait_for_the_queue_watch(
        uow, ctx):
    """Escalated for good, only a rep taking it moves it on: no lead.queued, which says the watch will hand it out."""
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    for minutes in (16, 32):  # ana's, then ben's deadline (max_reassignments: 1)
        ctx.clock.now = T0 + timedelta(minutes=minutes)
        async with uow:
            assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
            await uow.commit()
    breached, rerouted = uow.published[-2:]
    assert (data(breached).action, data(breached).breach, data(rerouted).assignment.owner_id) == (
        "escalated", 2, "queue:emea")
    assert "lead.queued" not in [m.header("ce_type") for m in uow.published]
    assert uow.store.handoffs[lead.lead_id].handoff.waiting_since is None


async def test_a_rounds_missed_deadlines_are_stored_in_one_write_and_each_lead_handed_on_once(uow, ctx):
    """One UPDATE a lead made a round of 200 missed deadlines 200 round trips inside the transaction holding their
    locks."""
    leads = [factories.scored("mql", country="DE") for _ in range(3)]
    owners = [data((await route(uow, ctx, lead))[0]).assignment.owner_id for lead in leads]
    ctx.clock.now = T0 + timedelta(minutes=16)
    assert await counting_writes(uow, act_on_missed_deadlines(uow, ctx, limit=10)) == 3
    assert uow.store.updates == one_write(leads)
    breached = [data(m) for m in uow.published if m.topic == topics.LIFECYCLE]
    assert sorted(b.lead_id for b in breached) == sorted(lead.lead_id for lead in leads)
    held = [uow.store.handoffs[lead.lead_id].handoff for lead in leads]
    assert [(h.owner_id != owner, h.reassignments) for h, owner in zip(held, owners, strict=True)] == [(True, 1)] * 3


BUNDLED = Path(__file__).parents[1] / "src" / "routing" / "data"


def bundled(now: datetime) -> Routing:
    """Routing with the shipped reference files: regional teams overflow to global-inbound, whose only active rep,
    alex.moreau, is on around the clock."""
    files = RoutingFiles(*(BUNDLED / n for n in ("reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml",
                                                  "reasons.yaml")))
    clock = Clock()
    clock.now = now
    return Routing(files.load(), clock=clock)


async def test_a_lead_the_overflow_desk_let_pass_at_night_waits_for_its_own_team_and_goes_out_in_the_morning(uow):
    """A German enterprise lead at 02:00 on a Tuesday overflows to alex.moreau, who misses the deadline. It used to
    land in global-inbound's queue with no waiting mark, where only alex could take it, for good."""
    night = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 02:00 in Berlin
    ctx = bundled(night)
    lead = factories.scored("mql", country="DE", employees=5000)
    routed, *_ = await route(uow, ctx, lead)
    assert (data(routed).assignment.owner_id, data(routed).assignment.method) == ("alex.moreau", "overflow")
    ctx.clock.now = night + timedelta(hours=1, minutes=1)  # a B lead's hour has run out
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    breached, rerouted, queued = uow.published
    assert (data(breached).action, data(rerouted).assignment.owner_id) == ("escalated", "queue:emea-enterprise")
    # Told apart from an escalation for good, which only a rep taking it moves on: it waits for the queue watch.
    assert (data(queued).type, data(queued).team, queued.topic) == ("lead.queued", "emea-enterprise", topics.LIFECYCLE)
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.team, held.waiting_since, held.due_at) == ("emea-enterprise", ctx.clock.now, None)
    ctx.clock.now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # 09:00 in Berlin and Stockholm
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1
        await uow.commit()
    assigned, rerouted = uow.published[3:]
    assert data(assigned).owner_id in {"lena.fischer", "tom.berg"} and data(assigned).team == "emea-enterprise"
    assert uow.store.handoffs[lead.lead_id].handoff.due_at == ctx.clock.now + timedelta(hours=1)


async def test_a_missed_deadline_overflows_the_lead_with_the_overflow_teams_rotation_locked_and_turned(uow):
    ctx = bundled(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))  # 10:00 in Berlin
    uow.store.away["tom.berg"] = [Away(ctx.clock.now, ctx.clock.now + timedelta(days=1), "holiday")]
    lead = factories.scored("mql", country="DE", employees=5000)
    routed, _ = await route(uow, ctx, lead)
    assert data(routed).assignment.owner_id == "lena.fischer"
    ctx.clock.now += timedelta(hours=1, minutes=1)
    uow.store.locks.clear()
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    breached, rerouted = uow.published
    assert (data(breached).action, data(breached).next_owner_id) == ("reassigned", "alex.moreau")
    assert data(rerouted).assignment.method == "overflow" and "tom.berg out of office" in data(rerouted).assignment.reason
    assert uow.store.locks == ["emea-enterprise", "global-inbound"]  # the overflow's rotation locked too
    assert uow.store.turns == {"emea-enterprise": 1, "global-inbound": 1}


def touch_of(lead, decision="mql", points=40):
    """``lead`` touched again (a demo request via ads), scored ``decision`` with ``points`` of intent for it."""
    from leadpipe_common.events import Attribution, ScoreReason, Touch

    touch = Touch(touch_id=uuid.uuid4(), at=T0, attribution=Attribution(offer="demo", utm_source="ads"))
    reason = ScoreReason(rule="Demo", category="intent", points=points, touch_id=touch.touch_id, touch_at=T0)
    score = lead.score.model_copy(update={"decision": decision, "reasons": [*lead.score.reasons, reason]})
    return lead.model_copy(update={"touch": touch, "score": score})


async def test_a_touch_of_a_held_lead_tells_its_holder_with_the_same_deadline(uow, ctx):
    lead = factories.scored("mql", country="DE").model_copy(update={"person_id": uuid.uuid4()})
    first = data((await route(uow, ctx, lead))[0])
    routed, reengaged = await route(uow, ctx, touch_of(lead))
    assert data(routed).assignment == first.assignment and data(routed).touch is not None
    assert (data(reengaged).type, data(reengaged).owner_id) == ("lead.reengaged", first.assignment.owner_id)
    assert "asked for demo via ads" in data(reengaged).reason
    assert str(lead.person_id) in routed.value.decode() and b"person_id" not in reengaged.value  # the lead alone
    assert uow.store.handoffs[lead.lead_id].handoff.due_at == T0 + timedelta(minutes=15)  # the clock stands
    assert uow.store.turns == {"emea": 1}  # no second routing


async def test_a_touch_that_raises_a_leads_grade_holds_its_next_holder_to_the_new_grades_deadline_not_its_holder(
        uow):
    """A C lead gives Ana a day; a demo request makes it an A. Ana keeps the day she was told (no event would tell
    her a shorter one), but when she misses it Ben gets an A lead with an A's 15 minutes, not a C's day."""
    graded = parse_routing_data({**DATA.model_dump(), "sla": {"acceptance": {"A": "15m", "C": "1d"},
                                                              "max_reassignments": 1}})
    ctx = Routing(Reference(graded, "v-graded"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    lead = lead.model_copy(update={"score": lead.score.model_copy(update={"grade": "C"})})
    assert data((await route(uow, ctx, lead))[0]).assignment.owner_id == "ana"  # first in an unturned rotation
    ctx.clock.now = T0 + timedelta(hours=1)
    demo = touch_of(lead)
    told, reengaged = await route(uow, ctx, demo.model_copy(update={"score": demo.score.model_copy(
        update={"grade": "A"})}))
    assert (data(reengaged).grade, data(reengaged).held_grade, data(told).held_grade) == ("A", "A", "A")
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.grade, held.due_at) == ("A", T0 + timedelta(days=1))  # her clock is not restarted nor shortened
    ctx.clock.now = T0 + timedelta(days=1, minutes=1)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    breached, rerouted = uow.published
    assert (data(breached).grade, data(breached).next_owner_id, data(rerouted).held_grade) == ("A", "ben", "A")
    assert data(breached).next_due_at == ctx.clock.now + timedelta(minutes=15)
    assert uow.store.handoffs[lead.lead_id].handoff.due_at == ctx.clock.now + timedelta(minutes=15)


async def test_a_contact_change_scored_lower_as_its_intent_decayed_does_not_lower_the_grade_the_lead_is_held_by(
        uow, ctx):
    """A weeks-old A lead whose person gives a new phone is scored C (its demo request's points halved since): stored,
    the next holder would get a C's day, and a subscription to grade A leads would not hear that it was won."""
    lead = factories.scored("mql", country="DE")
    lead = lead.model_copy(update={"score": lead.score.model_copy(update={"grade": "A"})})
    await route(uow, ctx, lead)
    moved = touch_of(lead, points=0)
    moved = moved.model_copy(update={"contact": moved.contact.model_copy(update={"phone": "+49 30 901820"}),
                                     "score": moved.score.model_copy(update={"grade": "C"})})
    _, reengaged = await route(uow, ctx, moved)
    assert data(reengaged).grade == "C"  # the score now, as told
    assert uow.store.handoffs[lead.lead_id].handoff.grade == "A"


def scored_as(lead, grade):
    return lead.model_copy(update={"score": lead.score.model_copy(update={"grade": grade})})


async def test_a_consent_withdrawn_by_a_touch_scored_below_the_leads_grade_is_told_at_the_grade_the_lead_is_held_at(
        uow, ctx):
    """An A lead's person unticks consent; the touch, its intent decayed, scores B. Both events say the touch's B and
    the A routing holds the lead at, which its later steps carry: a webhook filtered on A, which took the lead, is
    sent the withdrawal as it is sent the acceptance."""
    lead = scored_as(factories.scored("mql", country="DE"), "A")
    consenting = lead.model_copy(update={"contact": lead.contact.model_copy(
        update={"marketing_consent": True, "marketing_consent_at": T0})})
    first = data((await route(uow, ctx, consenting))[0])
    assert (first.score.grade, first.held_grade) == ("A", "A")
    told, reengaged = map(data, await route(uow, ctx, scored_as(touch_of(lead, points=0), "B")))
    assert told.contact.marketing_consent is False
    assert (told.score.grade, told.held_grade, reengaged.grade, reengaged.held_grade) == ("B", "A", "B", "A")
    [accepted] = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=told.assignment.owner_id)
    assert data(accepted).grade == "A"


async def test_a_lead_stored_without_the_grade_it_is_held_at_is_handed_on_saying_its_hand_offs(uow, ctx):
    """Stored by a routing older than lead.routed v6 (or written back by one, in a rolling update), the lead does not
    say the grade it is held at, and its score's is a touch's, below it: the record a missed deadline or a hand-over
    sends says the hand-off's, as their lifecycle steps do."""
    lead = factories.scored("mql", country="DE")  # a B: 15 minutes
    await route(uow, ctx, lead)
    await route(uow, ctx, scored_as(touch_of(lead), "C"))

    def stored_before_v6():
        held = uow.store.handoffs[lead.lead_id]
        uow.store.handoffs[lead.lead_id] = replace(held, lead=held.lead.model_copy(update={"held_grade": None}))

    def sent_since(published):
        [routed] = [data(m) for m in uow.published[published:] if m.topic == topics.ROUTED]
        return routed

    stored_before_v6()
    ctx.clock.now = T0 + timedelta(minutes=16)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    reassigned = sent_since(0)
    assert (reassigned.assignment.owner_id, reassigned.score.grade, reassigned.held_grade) == ("ben", "C", "B")
    stored_before_v6()
    published = len(uow.published)
    await handed_over(uow, ctx, "ben", "ana")
    assert sent_since(published).held_grade == "B"


async def test_a_re_engagement_overtaken_by_the_reassignment_after_it_is_told_stale_by_its_number(uow, ctx):
    """The broker away, routing commits a touch's re-engagement of a lead and its own send of it waits (backing off
    up to 30 s); the deadline passes and the SLA watch hands the lead on through the outbox, whose relay sends
    first. A consumer of leads.routed gets the new holder's record, then the old one's: it keeps the new holder by
    the numbers, whichever comes last."""
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    told, _ = await route(uow, ctx, touch_of(lead))  # the consumer's own send of it, held up
    ctx.clock.now = T0 + timedelta(minutes=16)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    [reassigned] = [m for m in uow.published if m.topic == topics.ROUTED]  # the outbox's, sent first
    for arrival in ([reassigned, told], [told, reassigned]):
        kept = None
        for event in map(data, arrival):
            if kept is None or event.handoff_seq >= kept.handoff_seq:
                kept = event
        assert kept is not None and kept.assignment.owner_id == uow.store.handoffs[lead.lead_id].handoff.owner_id
    assert data(told).assignment.owner_id != data(reassigned).assignment.owner_id


async def test_every_lead_routed_of_a_lead_carries_the_number_of_the_hand_off_it_announces(uow):
    """One more at every change of holder, whichever path announces it (a routing, a hand-out from the queue, a
    reassignment, a hand-over, a recycle); a touch telling the holder again announces the same hand-off."""
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")

    def sent_since(published: int) -> LeadRouted:
        """The lead.routed the outbox got after its first ``published`` messages."""
        [message] = [m for m in uow.published[published:] if m.topic == topics.ROUTED]
        return data(message)

    queued = data((await route(uow, ctx, lead))[0])
    ctx.clock.now = T0 + timedelta(hours=1)  # the shift starts
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1
        await uow.commit()
    handed_out = sent_since(0)
    told = data((await route(uow, ctx, touch_of(lead)))[0])
    ctx.clock.now += timedelta(minutes=16)
    published = len(uow.published)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 1
        await uow.commit()
    reassigned = sent_since(published)
    told_again = data((await route(uow, ctx, touch_of(lead)))[0])
    published = len(uow.published)
    await handed_over(uow, ctx, reassigned.assignment.owner_id, handed_out.assignment.owner_id)
    handed = sent_since(published)
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=handed.assignment.owner_id, reason_code="not-a-fit")
    _, recycled, _ = await route(uow, ctx, touch_of(lead))
    numbered = [queued, handed_out, told, reassigned, told_again, handed, data(recycled)]
    assert [e.handoff_seq for e in numbered] == [1, 2, 2, 3, 3, 4, 5]
    assert [e.assignment.owner_id == f.assignment.owner_id for e, f in zip(numbered, numbered[1:])] == [
        False, True, False, True, False, False]
    assert uow.store.handoffs[lead.lead_id].handoff.seq == 5


async def test_a_touch_that_earns_nothing_of_its_own_is_no_news_to_the_holder(uow, ctx):
    """The same form sent again within scoring's repeat window (a double click) earns no intent points, nor does a
    touch no intent rule rewards: its holder and the sales tools are not told of it again."""
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    assert await route(uow, ctx, touch_of(lead, points=0)) == []
    assert len(await route(uow, ctx, touch_of(lead))) == 2  # one that earns points is told


async def test_a_touch_withdrawing_consent_is_told_to_the_holder_though_it_earns_nothing_and_kept_for_the_next(
        uow, ctx):
    """The sales tools must hear of a withdrawn consent; a reassignment later sends the lead as last told."""
    lead = factories.scored("mql", country="DE")
    consenting = lead.model_copy(update={"contact": lead.contact.model_copy(
        update={"marketing_consent": True, "marketing_consent_at": T0})})
    await route(uow, ctx, consenting)
    withdrawn = touch_of(lead, points=0)  # the contact as capture merged it: the no wins
    routed, reengaged = await route(uow, ctx, withdrawn)
    assert data(routed).contact.marketing_consent is False and data(reengaged).type == "lead.reengaged"
    assert uow.store.handoffs[lead.lead_id].lead.contact.marketing_consent is False
    assert await route(uow, ctx, touch_of(lead, points=0)) == []  # the same again: no news now


async def test_a_consent_withdrawn_in_the_batch_that_routes_its_lead_is_what_the_hand_off_keeps(uow, ctx):
    lead = factories.scored("mql", country="DE")
    consenting = lead.model_copy(update={"contact": lead.contact.model_copy(
        update={"marketing_consent": True, "marketing_consent_at": T0})})
    batch = [factories.envelope(topics.SCORED, e) for e in (consenting, touch_of(lead, points=0))]
    async with uow:
        outcomes = await handle_lead_scored(uow, batch, ctx)
        await uow.commit()
    routed, _ = outcomes[batch[1].id]
    assert data(routed).contact.marketing_consent is False
    assert uow.store.handoffs[lead.lead_id].lead.contact.marketing_consent is False


async def test_touches_scored_in_the_batch_that_routes_their_lead_are_told_to_its_new_holder(uow, ctx):
    """A person who submits twice in a moment: the lead's first score and its touch's reach routing together."""
    lead = factories.scored("mql", country="DE")
    touches = (touch_of(lead), touch_of(lead, "nurture"), touch_of(lead, points=0))
    batch = [factories.envelope(topics.SCORED, e) for e in (lead, *touches)]
    async with uow:
        outcomes = await handle_lead_scored(uow, batch, ctx)
        await uow.commit()
    (routed, _), *touches, repeated = (outcomes[env.id] for env in batch)
    assert repeated == []  # earned nothing of its own: nothing to tell
    for rerouted, reengaged in touches:
        assert data(rerouted).assignment == data(routed).assignment and data(rerouted).touch is not None
        assert (data(reengaged).type, data(reengaged).owner_id) == ("lead.reengaged",
                                                                   data(routed).assignment.owner_id)
    assert uow.store.turns == {"emea": 1}  # routed once


async def test_a_batch_of_touches_told_to_their_holders_stores_the_told_leads_in_one_write(uow, ctx):
    """An importer re-sending known people: one write for the batch, not one a touch inside the transaction holding
    their locks; a lead told twice is written once, as last told, and one told nothing is not written."""
    a, b, c = (factories.scored("mql", country="DE") for _ in range(3))
    for lead in (a, b, c):
        await route(uow, ctx, lead)
    touches = (touch_of(a), touch_of(b), touch_of(a), touch_of(c, points=0))
    batch = [factories.envelope(topics.SCORED, e) for e in touches]
    outcomes = await counting_writes(uow, handle_lead_scored(uow, batch, ctx))
    assert [len(outcomes[env.id]) for env in batch] == [2, 2, 2, 0]
    assert uow.store.updates == one_write([a, b])
    assert uow.store.handoffs[a.lead_id].lead.touch == touches[2].touch


async def test_a_recycled_lead_and_a_later_touch_of_it_in_the_same_batch_are_stored_in_one_write(uow, ctx):
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    touches = (touch_of(lead), touch_of(lead))
    batch = [factories.envelope(topics.SCORED, e) for e in touches]
    outcomes = await counting_writes(uow, handle_lead_scored(uow, batch, ctx))
    _, routed, _ = outcomes[batch[0].id]
    told, _ = outcomes[batch[1].id]
    assert data(told).assignment == data(routed).assignment and data(routed).assignment.owner_id != owner
    held = uow.store.handoffs[lead.lead_id]
    assert (held.handoff.status, held.handoff.cycle, held.lead.touch) == ("routed", 1, touches[1].touch)
    assert uow.store.updates == one_write([lead])


async def test_leads_recycled_in_one_batch_have_their_new_assignments_stored_in_one_write(uow, ctx):
    leads = [factories.scored("mql", country="DE") for _ in range(2)]
    for lead in leads:
        owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
        await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    batch = [factories.envelope(topics.SCORED, touch_of(lead)) for lead in leads]
    await counting_writes(uow, handle_lead_scored(uow, batch, ctx))
    assert uow.store.reassigned == one_write(leads)
    for lead in leads:
        assert uow.store.assignments[lead.lead_id]["owner_id"] == uow.store.handoffs[lead.lead_id].handoff.owner_id


async def test_a_lead_sales_rejected_is_recycled_when_a_touch_lifts_it_back_to_the_bar(uow, ctx):
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    assert await route(uow, ctx, touch_of(lead, decision="nurture")) == []  # below the bar: stays in nurture
    ctx.clock.now = T0 + timedelta(days=3)
    back, routed, step = await route(uow, ctx, touch_of(lead))
    assert [(data(m).from_stage, data(m).to_stage) for m in (back, step)] == [("nurture", "mql"), ("mql", "routed")]
    assert back.header("ce_id") != step.header("ce_id")  # two steps: a consumer keeping one per id keeps both
    held = uow.store.handoffs[lead.lead_id].handoff
    assert held.status == "routed" and held.due_at == T0 + timedelta(days=3, minutes=15)  # a new clock
    assert uow.store.turns == {"emea": 2}


async def test_a_recycled_lead_keeps_its_first_routing_as_the_earliest_date_of_reports_on_it(uow, ctx):
    """Sales had the lead from its first routing: the recycle's new hand-off bounds its acceptance, not the rest."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    ctx.clock.now = T0 + timedelta(days=3)
    _, routed, _ = await route(uow, ctx, touch_of(lead))
    holder = data(routed).assignment.owner_id
    assert uow.store.handoffs[lead.lead_id].handoff.first_routed_at == T0
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=holder)
    contacted = await posted(uow, ctx, lead.lead_id, outcome="contacted", rep_id=holder, at=T0 + timedelta(days=1))
    assert [data(m).at for m in contacted.messages] == [T0 + timedelta(days=1)]


async def test_a_lead_a_rep_rejected_from_the_queue_is_recycled_to_someone_else(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id="ana", reason_code="not-a-fit")
    assert uow.store.handoffs[lead.lead_id].handoff.owner_id == "ana"
    ctx.clock.now = T0 + timedelta(hours=1)  # both on shift; Ana first in the file, so first in an unturned rotation
    _, routed, _ = await route(uow, ctx, touch_of(lead))
    assert data(routed).assignment.owner_id == "ben"


async def test_a_rejection_says_the_number_of_the_hand_off_it_ended_and_the_recycle_is_numbered_after_it(uow, ctx):
    """Delivery reads leads.routed apart from the lifecycle and orders a rejection against a lead.routed by these
    numbers: the times each carries are set by whichever routing process recorded it, whose clocks may differ. A
    rep rejecting from the team's queue takes the lead first (a hand-off of its own): the number is that one's."""
    lead = factories.scored("mql", country="DE")
    routed, _ = await route(uow, ctx, lead)
    rejected, back = await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=data(routed).assignment.owner_id,
                               reason_code="not-a-fit")
    assert (data(rejected).to_stage, data(rejected).handoff_seq) == ("rejected", data(routed).handoff_seq)
    assert data(back).handoff_seq is None  # the step after it ends nothing
    _, recycled, _ = await route(uow, ctx, touch_of(lead))
    assert data(recycled).handoff_seq == data(rejected).handoff_seq + 1
    queued = factories.scored("mql", country="DE")
    await route(uow, Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock()), queued)  # nobody on shift: queued
    from_queue, _ = await say(uow, ctx, queued.lead_id, outcome="rejected", rep_id="ana", reason_code="not-a-fit")
    assert data(from_queue).handoff_seq == 2


async def test_a_recycle_names_the_reason_code_of_the_rejection_it_came_after(uow, ctx):
    """Whoever reads the lifecycle from the recycle on (the what-if) can tell what it came after."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    back, _, step = await route(uow, ctx, touch_of(lead))
    assert (data(back).to_stage, data(back).reason_code) == ("mql", "not-a-fit")
    assert data(step).reason_code is None  # the routing itself is no answer of sales


async def test_a_touch_that_adds_no_intent_leaves_a_lead_sales_rejected_in_nurture(uow, ctx):
    """Scoring never hears of the rejection: the lead stays an MQL there, so a newsletter sign-up that earns
    nothing would have sent it straight back to sales."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="not-a-fit")
    assert await route(uow, ctx, touch_of(lead, points=0)) == []
    assert uow.store.handoffs[lead.lead_id].handoff.status == "rejected"


#: Sales' word on noise: a lead rejected as spam is not theirs again, whatever it downloads.
NOISE = parse_routing_data({**DATA.model_dump(), "reasons": {"rejected": {
    "not-a-fit": "Not our ICP", "spam": {"text": "Spam or a test submission", "recycle": False}}}})


async def test_a_lead_sales_rejected_as_spam_stays_in_nurture_when_a_touch_lifts_it_and_the_log_says_why(uow):
    ctx = Routing(Reference(NOISE, "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="spam")
    with structlog.testing.capture_logs() as lines:
        assert await route(uow, ctx, touch_of(lead)) == []
    assert uow.store.handoffs[lead.lead_id].handoff.status == "rejected"
    assert uow.store.turns == {"emea": 1}  # routed once
    assert [line["reason_code"] for line in lines if "does not recycle" in line["event"]] == ["spam"]


async def test_a_lead_recycled_once_stays_in_nurture_when_its_new_holder_rejects_it_as_spam(uow):
    ctx = Routing(Reference(NOISE, "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    first = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=first, reason_code="not-a-fit")
    _, routed, _ = await route(uow, ctx, touch_of(lead))  # recycled: not-a-fit recycles
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=data(routed).assignment.owner_id,
              reason_code="spam")
    assert await route(uow, ctx, touch_of(lead)) == []
    assert uow.store.turns == {"emea": 2}


async def test_a_persons_next_lead_is_routed_though_sales_rejected_their_last_one_as_spam(uow):
    """The rejection ends recycling for that lead only: once it is closed (disqualified, say), the person's next
    submission is a new lead, routed like any."""
    ctx = Routing(Reference(NOISE, "v-test"), clock=Clock())
    person = uuid.uuid4()
    lead, later = (factories.scored("mql", country="DE").model_copy(update={"person_id": person}) for _ in "ab")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=owner, reason_code="spam")
    routed, _ = await route(uow, ctx, later)
    assert data(routed).lead_id == later.lead_id and uow.store.turns == {"emea": 2}


async def test_a_recycled_lead_goes_to_a_new_holder_not_back_to_the_account_owner_who_rejected_it(uow):
    accounts = [{"domain": "bigco.com", "name": "BigCo", "owner": "ana"}]
    ctx = Routing(Reference(parse_routing_data({**DATA.model_dump(), "accounts": accounts}), "v-test"), clock=Clock())
    lead = factories.scored("mql", email="jo@bigco.com", country="DE")
    first = data((await route(uow, ctx, lead))[0]).assignment
    assert (first.method, first.owner_id) == ("account", "ana")
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=first.owner_id, reason_code="not-a-fit")
    back, routed, step = await route(uow, ctx, touch_of(lead))
    again = data(routed).assignment
    assert again.owner_id != first.owner_id and again.method in ("territory", "overflow", "queue")
    assert first.owner_id in uow.store.handoffs[lead.lead_id].handoff.holders  # nor by a missed deadline later


async def test_a_recycled_lead_only_its_rejecter_may_take_is_escalated_to_the_queue_not_left_waiting_for_ever(uow):
    """With the shipped files, global-inbound (the default team) has one active rep. A lead it rejected, recycled,
    was marked waiting for a rep who is not its rejecter: the queue watch claimed it every round and never handed
    it out."""
    ctx = bundled(T0)
    lead = factories.scored("mql", country="EG")  # no territory: the default team
    assert data((await route(uow, ctx, lead))[0]).assignment.owner_id == "alex.moreau"
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id="alex.moreau", reason_code="not-a-fit")
    ctx.clock.now = T0 + timedelta(days=3)
    out = await route(uow, ctx, touch_of(lead))
    assert [data(m).type for m in out] == ["lead.stage_changed", "lead.routed", "lead.stage_changed"]  # not queued
    assert data(out[1]).assignment.reason.endswith("escalated to the global-inbound queue")
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.waiting_since, held.due_at) == ("queue:global-inbound", None, None)
    assert teams_waiting(await uow.store.queue_tallies()) == set()
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="alex.moreau")  # the new touch changed their mind
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_a_rejection_and_a_touch_read_in_one_batch_recycle_the_lead_rather_than_re_engage_its_rejecter(
        uow, ctx):
    """The two topics have no order between them: sales' report goes first, so the touch meets the lead where
    sales left it."""
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await runner(uow, ctx).apply([factories.consumed(factories.message(topics.SCORED, touch_of(lead)), 1),
                                  factories.consumed(report(lead.lead_id, outcome="rejected", rep_id=owner,
                                                            reason_code="not-a-fit"), 0)])
    held = uow.store.handoffs[lead.lead_id].handoff
    assert held.status == "routed" and held.owner_id != owner  # recycled to the next rep, with a new clock
    assert uow.store.turns == {"emea": 2}


async def test_a_recycled_leads_second_hand_off_has_events_of_its_own(uow):
    """Consumers (reporting's steps, delivery's webhooks) keep one event per id: the second time round's missed
    deadline and acceptance are new events, not repeats of the first hand-off's. (Three reps: the one who
    rejected it is passed over the second time round, and its holder then misses the deadline too.)"""
    cy = {"id": "cy", "name": "Cy", "team": "emea", "weight": 1}
    ctx = Routing(Reference(parse_routing_data({**DATA.model_dump(), "reps": [*DATA.model_dump()["reps"], cy]}),
                            "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")

    async def first_deadline_missed() -> tuple[set[str], str]:
        """The ids of what the watch published, and who holds the lead now."""
        ctx.clock.now += timedelta(minutes=16)
        async with uow:
            await act_on_missed_deadlines(uow, ctx, limit=10)
            await uow.commit()
        published, uow.published[:] = list(uow.published), []
        [rerouted] = [m for m in published if m.topic == topics.ROUTED]
        return {m.header("ce_id") for m in published}, data(rerouted).assignment.owner_id

    await route(uow, ctx, lead)
    breached_first, holder = await first_deadline_missed()
    accepted_first = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=holder)
    await say(uow, ctx, lead.lead_id, outcome="rejected", rep_id=holder, reason_code="not-a-fit")
    await route(uow, ctx, touch_of(lead))  # recycled: a second hand-off
    breached_again, holder = await first_deadline_missed()
    accepted_again = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=holder)

    assert len(breached_first) == len(breached_again) == 2 and not breached_first & breached_again
    assert [data(m).to_stage for m in accepted_first + accepted_again] == ["accepted", "accepted"]
    assert accepted_first[0].header("ce_id") != accepted_again[0].header("ce_id")


LATE_SHIFT = parse_routing_data({**DATA.model_dump(), "working_hours": {
    "days": ["mon", "tue", "wed", "thu", "fri"], "start": "10:00", "end": "17:00"}})


async def test_an_mql_carries_the_version_of_the_routing_data_that_routed_it(uow, ctx):
    routed, _ = await route(uow, ctx, factories.scored("mql", country="DE"))
    assert data(routed).routing_data_version == "v-test"


async def test_a_reload_while_a_batch_is_applied_leaves_the_whole_batch_on_the_version_it_began_with(uow, ctx):
    reported = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, reported))[0]).assignment.owner_id
    lock_handoffs = uow.store.lock_handoffs

    async def reloaded_meanwhile(lead_ids):  # noqa: ANN001, ANN202
        ctx.reference = Reference(DATA, "v-reloaded")  # what the routing data's watch does between two awaits
        return await lock_handoffs(lead_ids)

    uow.store.lock_handoffs = reloaded_meanwhile
    fresh = factories.scored("mql", country="DE")
    outputs = await runner(uow, ctx).apply([factories.consumed(report(reported.lead_id, outcome="accepted",
                                                                      rep_id=owner), 0),
                                            factories.consumed(factories.message(topics.SCORED, fresh), 0)])
    [routed] = [m for m in outputs if m.topic == topics.ROUTED]
    assert data(routed).routing_data_version == "v-test"
    assert ctx.reference.version == "v-reloaded"  # the next batch takes it


async def test_a_lead_nobody_can_take_waits_in_its_queue_until_the_first_shift_starts(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # 09:00 on a Monday; shifts start at 10:00
    lead = factories.scored("mql", country="DE")
    routed, step, queued = await route(uow, ctx, lead)
    assert data(routed).assignment.owner_id == "queue:emea" and data(step).due_at is None
    assert data(queued).type == "lead.queued" and "ana off shift, ben off shift" in data(queued).reason
    assert uow.store.handoffs[lead.lead_id].handoff.waiting_since == T0
    ctx.clock.now = T0 + timedelta(minutes=59)
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 0
    ctx.clock.now = T0 + timedelta(hours=1)
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1
        await uow.commit()
    assigned, rerouted = uow.published
    owner = data(rerouted).assignment.owner_id
    assert owner in {"ana", "ben"} and data(assigned).owner_id == owner
    assert (data(assigned).queued_at, data(assigned).due_at) == (T0, T0 + timedelta(hours=1, minutes=15))
    assert data(rerouted).routed_at == T0 + timedelta(hours=1) and data(rerouted).routing_data_version == "v-late"
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.waiting_since, held.due_at) == (owner, None, T0 + timedelta(hours=1, minutes=15))
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 0  # handed out once


#: Lena owns Siemens; she and Tom are ent's reps, on shift from 09:00 to 17:00 in Berlin, and ent's leads wait in
#: its queue when neither can take them.
NAMED_ACCOUNTS = parse_routing_data({
    "reps": [{"id": "lena", "name": "Lena", "team": "ent", "weight": 1, "timezone": "Europe/Berlin"},
             {"id": "tom", "name": "Tom", "team": "ent", "weight": 1, "timezone": "Europe/Berlin"}],
    "accounts": [{"domain": "siemens.com", "name": "Siemens AG", "owner": "lena"}],
    "territories": {"regions": {"emea": ["DE"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all", "teams": [{"team": "ent", "region": "emea"}],
                    "default_team": "ent"},
    "teams": {"ent": {"when_nobody_available": "wait"}},
    "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
    "sla": {"acceptance": {"B": "15m"}, "max_reassignments": 1},
})


async def test_named_account_leads_that_waited_in_the_queue_go_to_the_account_owner_not_by_rotation(uow):
    ctx = Routing(Reference(NAMED_ACCOUNTS, "v-accounts"), clock=Clock())
    ctx.clock.now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 02:00 on a Monday in Berlin: nobody on shift
    leads = [factories.scored("mql", email=f"{who}@siemens.com", country="DE") for who in ("jo", "kim")]
    for lead in leads:
        routed, _, queued = await route(uow, ctx, lead)
        assert data(routed).assignment.owner_id == "queue:ent" and "owner of account Siemens AG" in data(queued).reason
    ctx.clock.now = datetime(2026, 11, 23, 8, 5, tzinfo=UTC)  # 09:05 in Berlin: Lena and Tom on shift
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 2
        await uow.commit()
    rerouted = [data(m) for m in uow.published if m.topic == topics.ROUTED]
    assert [(r.assignment.owner_id, r.assignment.method) for r in rerouted] == [("lena", "account")] * 2
    assert all("owner of account Siemens AG" in r.assignment.reason for r in rerouted)
    assert [data(m).owner_id for m in uow.published if m.topic == topics.LIFECYCLE] == ["lena", "lena"]
    assert uow.store.turns.get("ent", 0) == 0  # the owner takes her accounts' leads without a turn of the rotation


async def test_a_lead_waiting_in_a_team_s_queue_stays_that_team_s_though_its_account_owner_moved_to_another(uow):
    ctx = Routing(Reference(NAMED_ACCOUNTS, "v-accounts"), clock=Clock())
    ctx.clock.now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 02:00 on a Monday in Berlin: nobody on shift
    lead = factories.scored("mql", email="jo@siemens.com", country="DE")
    await route(uow, ctx, lead)
    raw = NAMED_ACCOUNTS.model_dump()
    moved = parse_routing_data({**raw, "reps": [*raw["reps"], {"id": "ida", "name": "Ida", "team": "keys",
                                                               "timezone": "Europe/Berlin"}],
                                "accounts": [{"domain": "siemens.com", "name": "Siemens AG", "owner": "ida"}],
                                "teams": {**raw["teams"], "keys": {"when_nobody_available": "wait"}}})
    ctx.reference = Reference(moved, "v-moved")
    ctx.clock.now = datetime(2026, 11, 23, 8, 5, tzinfo=UTC)
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1
        await uow.commit()
    [rerouted] = [data(m) for m in uow.published if m.topic == topics.ROUTED]
    assert (rerouted.assignment.team, rerouted.assignment.method) == ("ent", "territory")
    assert rerouted.assignment.owner_id in {"lena", "tom"}


async def test_a_rounds_waiting_leads_are_stored_in_one_write_as_they_are_handed_out(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the leads are queued
    leads = [factories.scored("mql", country="DE") for _ in range(3)]
    for lead in leads:
        await route(uow, ctx, lead)
    ctx.clock.now = T0 + timedelta(hours=1)
    waiting = teams_waiting(await uow.store.queue_tallies())
    assert await counting_writes(uow, hand_out_waiting_leads(uow, ctx, waiting, limit=10)) == 3
    assert uow.store.updates == one_write(leads)
    held = [uow.store.handoffs[lead.lead_id] for lead in leads]
    assert all(h.handoff.waiting_since is None and h.lead.assignment.owner_id == h.handoff.owner_id in {"ana", "ben"}
               for h in held)


async def test_a_touch_of_a_lead_a_rep_took_from_the_queue_re_sends_it_naming_that_rep_not_the_queue(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")
    queued, *_ = await route(uow, ctx, lead)
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana")
    routed, reengaged = await route(uow, ctx, touch_of(lead))
    assert data(reengaged).owner_id == "ana"
    a = data(routed).assignment
    assert (a.owner_id, a.owner_name, a.team) == ("ana", "Ana", "emea") and "taken from the queue by Ana" in a.reason
    assert uow.store.handoffs[lead.lead_id].lead.assignment == a  # kept as told
    # Ana's is a hand-off after the queue's: a consumer that got them out of order keeps hers.
    assert (data(queued).handoff_seq, data(routed).handoff_seq) == (1, 2)


async def test_waiting_leads_go_out_longest_waiting_first_and_only_as_far_as_capacity_allows(uow):
    capped = parse_routing_data({**LATE_SHIFT.model_dump(), "reps": [
        {**r.model_dump(), "capacity": 1} for r in LATE_SHIFT.reps]})
    ctx = Routing(Reference(capped, "v-capped"), clock=Clock())
    leads = [factories.scored("mql", country="DE") for _ in range(3)]
    for i, lead in enumerate(leads):
        ctx.clock.now = T0 + timedelta(minutes=i)
        await route(uow, ctx, lead)
    ctx.clock.now = T0 + timedelta(hours=1)
    async with uow:
        # ana and ben hold one each
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 2
        await uow.commit()
    handoffs = uow.store.handoffs
    assert {handoffs[lead.lead_id].handoff.owner_id for lead in leads[:2]} == {"ana", "ben"}
    assert handoffs[leads[2].lead_id].handoff.waiting_since == T0 + timedelta(minutes=2)
    await say(uow, ctx, leads[0].lead_id, outcome="accepted", rep_id=handoffs[leads[0].lead_id].handoff.owner_id)
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1  # a slot freed
        await uow.commit()


async def test_leads_waiting_longer_for_a_rep_who_is_away_do_not_hold_up_a_lead_a_free_rep_may_take(uow, ctx):
    """Three leads Ben let pass wait for Ana, who is away; a later one waits for anyone. The queue watch used to
    claim the oldest three (its limit) every round, hand none out, and never reach the fourth."""
    ana_away = Away(T0, T0 + timedelta(days=1), "holiday")
    uow.store.away["ana"] = [ana_away]
    passed = [factories.scored("mql", country="DE") for _ in range(3)]
    for lead in passed:
        await route(uow, ctx, lead)  # to Ben
    ctx.clock.now = T0 + timedelta(minutes=16)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 3  # nobody but Ana left for them: they wait
        await uow.commit()
    ctx.clock.now += timedelta(minutes=1)
    uow.store.away["ben"] = [Away(ctx.clock.now, ctx.clock.now + timedelta(minutes=1))]
    later = factories.scored("mql", country="DE")
    await route(uow, ctx, later)
    assert [uow.store.handoffs[lead.lead_id].handoff.owner_id for lead in (*passed, later)] == ["queue:emea"] * 4
    ctx.clock.now += timedelta(minutes=1)  # Ben is back
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=3) == 1
        await uow.commit()
    assert uow.store.handoffs[later.lead_id].handoff.owner_id == "ben"
    assert all(uow.store.handoffs[lead.lead_id].handoff.waiting_since is not None for lead in passed)


async def test_a_round_hands_out_no_more_waiting_leads_than_its_limit(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the leads are queued
    for _ in range(3):
        await route(uow, ctx, factories.scored("mql", country="DE"))
    ctx.clock.now = T0 + timedelta(hours=1)
    for expected in (2, 1, 0):
        async with uow:
            assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=2) == expected
            await uow.commit()


async def test_a_rep_at_a_cap_larger_than_a_teammates_gets_no_lead_past_it(uow):
    capped = parse_routing_data({**DATA.model_dump(), "reps": [
        {**DATA.reps[0].model_dump(), "capacity": 1}, {**DATA.reps[1].model_dump(), "capacity": 3}]})
    ctx = Routing(Reference(capped, "v-capped"), clock=Clock())
    leads = [factories.scored("mql", country="DE") for _ in range(5)]
    for lead in leads:
        await route(uow, ctx, lead)
    handoffs = [uow.store.handoffs[lead.lead_id].handoff for lead in leads]
    held = [h.owner_id for h in handoffs if h.waiting_since is None]
    assert sorted(held) == ["ana", "ben", "ben", "ben"]  # each up to their own cap, Ben's the larger
    assert handoffs[4].waiting_since is not None  # both full: it waits, though Ben's count passed Ana's cap


def renamed(before, team="emea-inbound"):
    """``before``'s files after a reorganisation: team emea is called ``team`` everywhere in them."""
    raw = before.model_dump()
    return parse_routing_data({
        **raw, "reps": [{**r, "team": team} for r in raw["reps"]],
        "territories": {**raw["territories"], "teams": [{**rule, "team": team} for rule in raw["territories"]["teams"]],
                        "default_team": team}})


#: How long after a lead was routed or moved the SLA watch may move it out of a queue.
SETTLE = timedelta(minutes=1)


def watch(uow, ctx) -> SlaWatch:
    """The SLA watch over the in-memory unit of work: it asks its runtime for nothing else."""
    return SlaWatch(SimpleNamespace(context=ctx, unit_of_work=lambda: uow), every_s=1, batch_max=10,  # type: ignore[arg-type]
                    settle_s=SETTLE.total_seconds())


async def test_a_lead_waiting_in_the_queue_of_a_team_renamed_in_the_files_moves_to_its_routes_queue_and_goes_out(uow):
    """Renamed from emea, emea-inbound takes emea's leads from now on; one waiting in queue:emea used to wait there
    for ever, for no rep is of emea any more."""
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    ctx.reference = Reference(renamed(LATE_SHIFT), "v-renamed")
    ctx.clock.now = T0 + SETTLE
    with structlog.testing.capture_logs() as logs:
        assert await watch(uow, ctx).step() == 1
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert (warning["team"], warning["open_leads"], warning["queued"]) == ("emea", 1, 1)
    [moved] = uow.published
    assert data(moved).assignment.owner_id == "queue:emea-inbound" and "from the emea queue" in data(
        moved).assignment.reason
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.team, held.waiting_since) == ("queue:emea-inbound", "emea-inbound", T0)
    ctx.clock.now = T0 + timedelta(hours=1)  # the shift starts
    async with uow:
        assert await hand_out_waiting_leads(uow, ctx, teams_waiting(await uow.store.queue_tallies()), limit=10) == 1
        await uow.commit()
    assigned, rerouted = uow.published[1:]
    assert data(assigned).team == "emea-inbound" and data(assigned).queued_at == T0
    assert [data(m).handoff_seq for m in (moved, rerouted)] == [2, 3]  # each a hand-off of its own


async def test_a_round_of_the_sla_watch_reads_which_teams_have_leads_waiting_once_and_hands_out_the_leads_it_moved(
        uow):
    """The move out of orphaned queues and the hand-out each asked for the teams with leads waiting, every few
    seconds; the hand-out now takes the move's answer, with the queues the move just filled."""
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    ctx.reference = Reference(renamed(LATE_SHIFT), "v-renamed")
    ctx.clock.now = T0 + timedelta(hours=1)  # the shift starts, long after the lead settled in queue:emea
    reads, queue_tallies = 0, uow.store.queue_tallies

    async def counted() -> list:
        nonlocal reads
        reads += 1
        return await queue_tallies()

    uow.store.queue_tallies = counted
    assert await watch(uow, ctx).step() == 1
    moved, assigned, rerouted = uow.published
    assert data(moved).assignment.owner_id == "queue:emea-inbound"
    assert data(assigned).team == "emea-inbound" and data(rerouted).assignment.owner_id in {"ana", "ben"}
    assert reads == 1


async def escalated_for_good(uow, ctx, lead) -> None:  # noqa: ANN001
    """``lead`` (a German MQL) routed, then missed by ana and ben in turn: escalated to queue:emea for good."""
    await route(uow, ctx, lead)
    for minutes in (16, 32):
        ctx.clock.now = T0 + timedelta(minutes=minutes)
        async with uow:
            await act_on_missed_deadlines(uow, ctx, limit=10)
            await uow.commit()


def queue_gauge(team: str) -> dict[str, float | None]:
    return {kind: REGISTRY.get_sample_value("routing_queue_leads", {"team": team, "kind": kind})
            for kind in ("waiting", "escalated")}


async def test_each_round_of_the_queue_watch_counts_every_teams_queue_by_kind_and_a_renamed_teams_until_it_empties(
        uow):
    ctx = Routing(Reference(DATA, "v-test"), clock=Clock())
    await escalated_for_good(uow, ctx, factories.scored("mql", country="DE"))
    ctx.reference = Reference(LATE_SHIFT, "v-late")  # nobody on shift until 10:00: the next lead waits
    await route(uow, ctx, factories.scored("mql", country="DE"))
    rounds = watch(uow, ctx)
    await rounds.step()
    assert queue_gauge("emea") == {"waiting": 1, "escalated": 1}
    ctx.reference = Reference(renamed(LATE_SHIFT), "v-renamed")
    ctx.clock.now += SETTLE
    await rounds.step()  # counted as the round found them, then moved to emea-inbound's queue
    assert (queue_gauge("emea"), queue_gauge("emea-inbound")) == ({"waiting": 1, "escalated": 1},
                                                                  {"waiting": 0, "escalated": 0})
    await rounds.step()
    assert (queue_gauge("emea"), queue_gauge("emea-inbound")) == ({"waiting": None, "escalated": None},
                                                                  {"waiting": 1, "escalated": 1})


async def test_a_lead_escalated_to_the_queue_of_a_team_since_renamed_moves_where_the_new_teams_reps_may_take_it(uow):
    ctx = Routing(Reference(DATA, "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    await escalated_for_good(uow, ctx, lead)
    assert uow.store.handoffs[lead.lead_id].handoff.owner_id == "queue:emea"
    ctx.reference = Reference(renamed(DATA), "v-renamed")
    assert isinstance(await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana"), Rejected)
    ctx.clock.now += SETTLE
    await watch(uow, ctx).step()
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.waiting_since, held.due_at) == ("queue:emea-inbound", None, None)
    assert data(uow.published[-1]).assignment.owner_id == "queue:emea-inbound"
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana")
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_leads_the_reps_of_a_renamed_team_hold_are_warned_of_once_per_version_of_the_files_and_stay_theirs(uow):
    ctx = Routing(Reference(DATA, "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    owner = data((await route(uow, ctx, lead))[0]).assignment.owner_id
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=owner)
    published = len(uow.published)
    ctx.reference = Reference(renamed(DATA), "v-renamed")
    sla = watch(uow, ctx)
    with structlog.testing.capture_logs() as logs:
        assert await sla.step() == 0
        await sla.step()  # the same files: not checked again
        ctx.reference = Reference(renamed(DATA, "emea-north"), "v-renamed-again")
        await sla.step()
    warnings = [(line["team"], line["version"]) for line in logs if line["log_level"] == "warning"]
    assert warnings == [("emea", "v-renamed"), ("emea", "v-renamed-again")]
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.team, held.status) == (owner, "emea", "accepted") and len(uow.published) == published
    ctx.reference = Reference(DATA, "v-test")  # emea is back: nothing to warn of
    with structlog.testing.capture_logs() as logs:
        await sla.step()
    assert not [line for line in logs if line["log_level"] == "warning"]


def desk_only(before):
    """``before``'s files with emea's reps moved to a desk: emea, left with no reps, overflows to it."""
    raw = before.model_dump()
    return parse_routing_data({**raw, "reps": [{**r, "team": "desk"} for r in raw["reps"]],
                               "teams": {"emea": {"when_nobody_available": "overflow", "overflow_to": "desk"}}})


async def test_a_lead_the_desk_lets_pass_at_the_last_reassignment_escalates_to_the_desks_queue_not_its_emptied_teams(uow):
    """Emea is accepted with no reps as it overflows to the desk, but only emea's own reps may take a lead from
    emea's queue: escalated there, as it was, nobody ever could."""
    ctx = Routing(Reference(desk_only(DATA), "v-desk"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    for minutes in (16, 32):  # ana and ben each miss it
        ctx.clock.now = T0 + timedelta(minutes=minutes)
        await watch(uow, ctx).step()
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.team, held.waiting_since, held.due_at) == ("queue:desk", "desk", None, None)
    assert data(uow.published[-1]).assignment.owner_id == "queue:desk"
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana")
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_a_lead_escalated_to_a_team_since_left_with_no_reps_of_its_own_moves_to_its_overflows_queue(uow):
    ctx = Routing(Reference(DATA, "v-test"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    await escalated_for_good(uow, ctx, lead)
    ctx.reference = Reference(desk_only(DATA), "v-desk")
    assert isinstance(await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana"), Rejected)
    ctx.clock.now += SETTLE
    with structlog.testing.capture_logs() as logs:
        assert await watch(uow, ctx).step() == 1
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert (warning["team"], warning["escalated"]) == ("emea", 1)
    held = uow.store.handoffs[lead.lead_id].handoff
    assert (held.owner_id, held.team, held.waiting_since) == ("queue:desk", "desk", None)
    await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id="ana")
    assert uow.store.handoffs[lead.lead_id].handoff.status == "accepted"


async def test_a_lead_waiting_in_a_team_since_left_with_no_reps_of_its_own_stays_for_its_overflow_to_hand_out(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v-late"), clock=Clock())  # nobody on shift yet: the lead is queued
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    ctx.reference = Reference(desk_only(LATE_SHIFT), "v-desk")
    with structlog.testing.capture_logs() as logs:
        assert await watch(uow, ctx).step() == 0
    assert not [line for line in logs if line["log_level"] == "warning"]
    assert uow.store.handoffs[lead.lead_id].handoff.owner_id == "queue:emea"
    ctx.clock.now = T0 + timedelta(hours=1)  # the shift starts
    await watch(uow, ctx).step()
    held = uow.store.handoffs[lead.lead_id].handoff
    assert held.owner_id in {"ana", "ben"} and held.team == "desk"


async def test_a_lead_moved_to_a_queue_back_and_there_again_by_changes_of_the_files_is_sent_each_time_with_its_own_id(
        uow):
    """Delivery keeps one row per event id: an id repeated by the third move was dropped, and the sales tool kept the
    queue the lead had left."""
    ctx = Routing(Reference(LATE_SHIFT, "v1"), clock=Clock())  # nobody on shift: the lead waits in queue:emea
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    sla = watch(uow, ctx)
    for version, files in (("v2", renamed(LATE_SHIFT)), ("v3", LATE_SHIFT), ("v4", renamed(LATE_SHIFT))):
        ctx.reference = Reference(files, version)
        ctx.clock.now += SETTLE
        assert await sla.step() == 1
    sent = [(m.header("ce_id"), data(m).assignment.owner_id) for m in uow.published]
    assert [owner for _, owner in sent] == ["queue:emea-inbound", "queue:emea", "queue:emea-inbound"]
    assert len({event_id for event_id, _ in sent}) == 3


async def test_a_move_out_of_a_queue_retried_after_its_round_was_lost_is_sent_with_the_same_id(uow):
    ctx = Routing(Reference(LATE_SHIFT, "v1"), clock=Clock())
    lead = factories.scored("mql", country="DE")
    await route(uow, ctx, lead)
    ctx.reference, ctx.clock.now = Reference(renamed(LATE_SHIFT), "v2"), T0 + SETTLE
    before = copy.deepcopy(uow.store)
    await watch(uow, ctx).step()
    retried = MemoryUnitOfWork(before)  # the round's transaction rolled back: the store as it was
    ctx.clock.now += timedelta(seconds=5)
    await watch(retried, ctx).step()
    [first], [again] = (u.published[-1:] for u in (uow, retried))
    assert first.header("ce_id") == again.header("ce_id")


async def test_two_processes_on_different_files_move_a_waiting_lead_between_their_queues_once_a_minute_at_most(uow):
    """In a rolling update each finds the other's queue orphaned: they moved the lead back and forth every round."""
    old = Routing(Reference(LATE_SHIFT, "old"), clock=Clock())  # nobody on shift: the lead waits in queue:emea
    lead = factories.scored("mql", country="DE")
    await route(uow, old, lead)
    new = Routing(Reference(renamed(LATE_SHIFT), "new"), clock=old.clock)
    updated, not_yet = watch(uow, new), watch(uow, old)
    old.clock.now = T0 + SETTLE
    for _ in range(5):
        await updated.step()
        await not_yet.step()
        old.clock.now += timedelta(seconds=5)
    assert [data(m).assignment.owner_id for m in uow.published] == ["queue:emea-inbound"]
    old.clock.now += SETTLE
    await not_yet.step()
    assert [data(m).assignment.owner_id for m in uow.published] == ["queue:emea-inbound", "queue:emea"]


#: The reps file after ana left the company, and cy joined.
ANA_LEFT = parse_routing_data({**DATA.model_dump(), "reps": [{"id": "ben", "name": "Ben", "team": "emea", "weight": 1},
                                                             {"id": "cy", "name": "Cy", "team": "emea", "weight": 1}]})


async def leads_of(uow, ctx, owner, n):
    """``n`` leads routed to ``owner`` (of as many routed as it takes), each with the message that routed it."""
    held = []
    while len(held) < n:
        routed = (await route(uow, ctx, factories.scored("mql", country="DE")))[0]
        if data(routed).assignment.owner_id == owner:
            held.append(routed)
    return held


async def handed_over(uow, ctx, rep_id, to, limit=500, after=None):
    async with uow:
        result = await hand_over(uow.store, rep_id, ctx.data.rep(to) if to else None, "sales-ops",
                                 "left the company", ctx.reference, ctx.clock(), limit, after=after)
        uow.publish(result.messages)
        await uow.commit()
    return result


async def test_the_open_leads_of_a_rep_who_left_go_to_the_named_rep_as_they_stood_each_re_sent_beside_a_hand_over(
        uow, ctx):
    accepted, waiting, rejected = await leads_of(uow, ctx, "ana", 3)
    await say(uow, ctx, data(accepted).lead_id, outcome="accepted", rep_id="ana")
    await say(uow, ctx, data(rejected).lead_id, outcome="rejected", rep_id="ana", reason_code="not-a-fit")
    ctx.reference, ctx.clock.now = Reference(ANA_LEFT, "v2"), T0 + timedelta(hours=1)
    published = len(uow.published)
    result = await handed_over(uow, ctx, "ana", "cy")
    moved = {h.lead_id: h for h in result.moved}
    assert sorted(moved) == sorted(data(m).lead_id for m in (accepted, waiting)) and not result.more
    assert (moved[data(accepted).lead_id].status, moved[data(accepted).lead_id].due_at) == ("accepted", None)
    assert moved[data(waiting).lead_id].due_at == ctx.clock.now + timedelta(minutes=15)  # cy's own deadline
    assert uow.store.handoffs[data(rejected).lead_id].handoff.owner_id == "ana"  # closed: nobody's to hand over
    sent = uow.published[published:]
    assert [m.topic for m in sent] == [topics.LIFECYCLE, topics.ROUTED] * 2
    facts = {data(m).lead_id: data(m) for m in sent if m.topic == topics.LIFECYCLE}
    assert {(f.from_owner_id, f.owner_id, f.stage, f.by) for f in facts.values()} == {
        ("ana", "cy", "accepted", "sales-ops"), ("ana", "cy", "routed", "sales-ops")}
    # The hand-off each ended, for reporting to close: ana's deadline on the unaccepted lead, none on the other.
    assert [(facts[data(m).lead_id].from_team, facts[data(m).lead_id].from_due_at) for m in (accepted, waiting)] == [
        ("emea", None), ("emea", T0 + timedelta(minutes=15))]
    assert all(data(m).assignment.owner_id == "cy" and data(m).routing_data_version == "v2"
               for m in sent if m.topic == topics.ROUTED)
    trace = accepted.header("traceparent").split("-")[1]  # the lead's own trace goes on
    assert {m.header("traceparent").split("-")[1] for m in sent if data(m).lead_id == data(accepted).lead_id} == {
        trace}
    assert await say(uow, ctx, data(accepted).lead_id, outcome="contacted", rep_id="cy")  # cy carries it on
    assert (await handed_over(uow, ctx, "ana", "cy")).moved == []  # the same request again moves nothing
    assert len(uow.published) == published + 4  # and sends nothing


async def test_the_leads_of_a_rep_handed_back_through_routing_are_placed_as_a_missed_deadline_places_them(uow, ctx):
    [held] = await leads_of(uow, ctx, "ana", 1)
    ctx.reference = Reference(ANA_LEFT, "v2")
    turns = uow.store.turns["emea"]
    uow.store.locks.clear()
    result = await handed_over(uow, ctx, "ana", None)
    [moved] = result.moved
    assert moved.owner_id in {"ben", "cy"} and moved.due_at == T0 + timedelta(minutes=15)
    assert moved.holders == ("ana",) and moved.reassignments == 0  # no deadline was missed
    assert uow.store.turns["emea"] == turns + 1  # a normal turn of the rotation
    assert uow.store.locks == [data(held).lead_id, "emea"]  # hand-offs, then rotation, as every path locks
    [fact] = [data(m) for m in uow.published if m.topic == topics.LIFECYCLE and m.header("ce_type") == "lead.handed_over"]
    assert fact.reason.startswith("handed over from ana by sales-ops: left the company; territory emea")


#: Ana left, and Ben and Cy start at 10:00: before then nobody can take a lead.
ANA_LEFT_LATE = parse_routing_data({**ANA_LEFT.model_dump(), "working_hours": {
    "days": ["mon", "tue", "wed", "thu", "fri"], "start": "10:00", "end": "17:00"}})


async def test_through_routing_the_accepted_leads_nobody_can_take_now_stay_with_the_rep_and_are_answered_apart(
        uow, ctx):
    """In a team's queue they would stay for ever (the queue watch, and the move out of a queue the files stop
    staffing, take only leads waiting to be accepted; a rep of the team may only accept or reject one there). The
    unaccepted lead waits in the queue, as after a missed deadline. Later, with reps on shift, the same call moves
    the kept leads."""
    accepted, contacted, waiting = await leads_of(uow, ctx, "ana", 3)
    for lead in (accepted, contacted):
        await say(uow, ctx, data(lead).lead_id, outcome="accepted", rep_id="ana")
    await say(uow, ctx, data(contacted).lead_id, outcome="contacted", rep_id="ana")
    ctx.reference, ctx.clock.now = Reference(ANA_LEFT_LATE, "v2"), T0 + timedelta(minutes=30)
    published = len(uow.published)
    result = await handed_over(uow, ctx, "ana", None)
    [moved] = result.moved
    assert (moved.lead_id, moved.owner_id, moved.waiting_since) == (data(waiting).lead_id, "queue:emea", ctx.clock.now)
    kept = {k.handoff.lead_id: k.reason for k in result.kept}
    assert sorted(kept) == sorted(data(m).lead_id for m in (accepted, contacted)) and not result.more
    assert all("nobody in emea can take it now (ben off shift, cy off shift)" in r and r.endswith("stays with ana")
               for r in kept.values())
    assert {(uow.store.handoffs[i].handoff.owner_id, uow.store.handoffs[i].handoff.status) for i in kept} == {
        ("ana", "accepted"), ("ana", "contacted")}
    assert {data(m).lead_id for m in uow.published[published:]} == {moved.lead_id}  # nothing said of the kept
    # The moved one's wait is said, as a new lead's is: a hand-over to a queue alone reads like an escalation.
    assert [m.header("ce_type") for m in uow.published[published:]] == ["lead.handed_over", "lead.routed",
                                                                        "lead.queued"]
    ctx.clock.now = T0 + timedelta(hours=1, minutes=30)  # Ben and Cy are on shift
    later = await handed_over(uow, ctx, "ana", None)
    assert sorted(h.lead_id for h in later.moved) == sorted(kept) and later.kept == []
    carrier = uow.store.handoffs[data(contacted).lead_id].handoff.owner_id
    assert carrier in {"ben", "cy"}
    assert await say(uow, ctx, data(contacted).lead_id, outcome="qualified", rep_id=carrier)  # carried on


async def test_a_page_of_kept_leads_does_not_hold_up_the_rep_s_leads_after_it(uow, ctx):
    """Kept leads stay the rep's, first by lead id: a next page starting from the first again would find them
    again, for ever when a whole page is kept."""
    held = sorted(data(m).lead_id for m in await leads_of(uow, ctx, "ana", 3))
    for lead_id in held:
        await say(uow, ctx, lead_id, outcome="accepted", rep_id="ana")
    ctx.reference, ctx.clock.now = Reference(ANA_LEFT_LATE, "v2"), T0 + timedelta(minutes=30)
    first = await handed_over(uow, ctx, "ana", None, limit=2)
    second = await handed_over(uow, ctx, "ana", None, limit=2, after=first.next_after)
    assert [([k.handoff.lead_id for k in p.kept], p.more, p.next_after) for p in (first, second)] == [
        (held[:2], True, held[1]), (held[2:], False, None)]


async def test_a_large_holding_is_handed_over_a_page_at_a_time_saying_while_more_remain(uow, ctx):
    held = sorted(data(m).lead_id for m in await leads_of(uow, ctx, "ana", 3))
    pages = [await handed_over(uow, ctx, "ana", "ben", limit=2) for _ in range(3)]
    assert [([h.lead_id for h in p.moved], p.more) for p in pages] == [(held[:2], True), (held[2:], False), ([], False)]


async def test_a_lead_handed_to_a_rep_back_and_to_them_again_is_sent_each_time_with_ids_of_its_own(uow, ctx):
    """Delivery keeps one row per event id: a repeated id would leave the sales tool with the holder before."""
    await leads_of(uow, ctx, "ana", 1)
    published = len(uow.published)
    for rep_id, to in (("ana", "ben"), ("ben", "ana"), ("ana", "ben")):
        ctx.clock.now += timedelta(minutes=1)
        assert len((await handed_over(uow, ctx, rep_id, to)).moved) == 1
    ids = [m.header("ce_id") for m in uow.published[published:]]
    assert len(ids) == 6 == len(set(ids))


async def test_a_hand_over_retried_after_its_transaction_was_lost_is_sent_with_the_same_ids(uow, ctx):
    await leads_of(uow, ctx, "ana", 1)
    before = copy.deepcopy(uow.store)
    await handed_over(uow, ctx, "ana", "ben")
    retried = MemoryUnitOfWork(before)  # the transaction rolled back: the store as it was
    ctx.clock.now += timedelta(seconds=5)
    await handed_over(retried, ctx, "ana", "ben")
    assert [m.header("ce_id") for m in uow.published[-2:]] == [m.header("ce_id") for m in retried.published]


def types_of(messages):
    return [m.header("ce_type") for m in messages]


async def lead_of(uow, ctx, owner):
    """A lead routed to ``owner`` (of as many routed as it takes), as scoring scored it."""
    while True:
        lead = factories.scored("mql", country="DE")
        if data((await route(uow, ctx, lead))[0]).assignment.owner_id == owner:
            return lead


#: Ana is still in the reps file, but inactive: she left last week.
ANA_INACTIVE = parse_routing_data({**DATA.model_dump(), "reps": [{**DATA.reps[0].model_dump(), "active": False},
                                                                 DATA.reps[1].model_dump()]})


async def test_a_touch_of_an_unaccepted_lead_whose_holder_left_hands_it_on_through_routing_to_a_holder_told_of_it(
        uow, ctx):
    """As a manager's hand-over through routing would, by routing: Ana is not told (she is gone), Ben or Cy is,
    with a deadline of their own from now; the missed-deadline count stays."""
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    ctx.reference, ctx.clock.now = Reference(ANA_LEFT, "v2"), T0 + timedelta(minutes=5)
    demo = touch_of(lead)
    env = replace(factories.envelope(topics.SCORED, demo), traceparent=new_traceparent())
    async with uow:
        sent = (await handle_lead_scored(uow, [env], ctx))[env.id]
        await uow.commit()
    assert types_of(sent) == ["lead.handed_over", "lead.routed", "lead.reengaged"]
    handed, told, reengaged = map(data, sent)
    new = told.assignment.owner_id
    assert new in {"ben", "cy"} and (reengaged.owner_id, reengaged.team, handed.owner_id) == (new, "emea", new)
    assert (handed.from_owner_id, handed.by, handed.stage) == ("ana", "routing", "routed")
    assert handed.reason.startswith("ana is no longer active; territory emea")
    assert reengaged.reason.endswith(f"; ana is no longer active: handed on to {told.assignment.owner_name}")
    assert reengaged.reason.startswith("asked for demo via ads") and reengaged.holder_away_until is None
    assert (told.touch, told.handoff_seq, told.routing_data_version) == (demo.touch, 2, "v2")
    held = uow.store.handoffs[lead_id]
    assert (held.handoff.owner_id, held.handoff.holders, held.handoff.reassignments) == (new, ("ana",), 0)
    assert held.handoff.due_at == ctx.clock.now + timedelta(minutes=15) == handed.due_at
    assert held.lead.touch == demo.touch  # what the next holder is sent on
    trace = env.traceparent.split("-")[1]  # the touch's trace goes on
    assert {m.header("traceparent").split("-")[1] for m in sent} == {trace}


async def test_a_touch_of_an_accepted_lead_whose_holder_is_inactive_hands_it_to_a_rep_who_carries_it_on(uow, ctx):
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    await say(uow, ctx, lead_id, outcome="accepted", rep_id="ana")
    ctx.reference = Reference(ANA_INACTIVE, "v2")
    handed, told, reengaged = map(data, await route(uow, ctx, touch_of(lead)))
    assert (handed.stage, handed.owner_id, handed.due_at, told.assignment.owner_id) == ("accepted", "ben", None, "ben")
    assert reengaged.owner_id == "ben" and "Ana is no longer active: handed on to Ben" in reengaged.reason
    assert await say(uow, ctx, lead_id, outcome="contacted", rep_id="ben")  # Ben carries it on


async def test_an_accepted_lead_nobody_can_take_now_stays_with_its_inactive_holder_and_the_re_engagement_says_why(
        uow, ctx):
    """A lead sales accepted does not wait in a queue (``Kept``): Ana's record goes on as before, and the reason
    tells whoever reads it that she is gone and why routing could not hand it on."""
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    await say(uow, ctx, lead_id, outcome="accepted", rep_id="ana")
    ctx.reference, ctx.clock.now = Reference(ANA_LEFT_LATE, "v2"), T0 + timedelta(minutes=30)  # before 10:00
    turns, published = dict(uow.store.turns), len(uow.published)
    sent = await route(uow, ctx, touch_of(lead))
    assert types_of(sent) == ["lead.routed", "lead.reengaged"]
    told, reengaged = map(data, sent)
    assert (told.assignment.owner_id, told.handoff_seq, reengaged.owner_id) == ("ana", 1, "ana")
    assert "; ana is no longer active; " in reengaged.reason
    assert "nobody in emea can take it now (ben off shift, cy off shift)" in reengaged.reason
    assert reengaged.reason.endswith("it stays with ana")
    held = uow.store.handoffs[lead_id].handoff
    assert (held.owner_id, held.status, held.holders) == ("ana", "accepted", ())
    assert uow.store.turns == turns and len(uow.published) == published  # no turn taken, nothing else sent


async def test_a_holder_out_of_office_keeps_the_lead_and_the_re_engagement_says_until_when(uow, ctx):
    """A holiday is no reason to lose one's accounts; a manager or a sales tool can see the touch waits for her."""
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    await say(uow, ctx, lead_id, outcome="accepted", rep_id="ana")
    back = T0 + timedelta(days=14)
    uow.store.away["ana"] = [Away(T0, back, "holiday")]
    told, reengaged = map(data, await route(uow, ctx, scored_as(touch_of(lead), "A")))
    assert (told.assignment.owner_id, reengaged.owner_id, reengaged.holder_away_until) == ("ana", "ana", back)
    assert reengaged.reason.endswith(f"; Ana is out of office until {back.isoformat()}")
    assert uow.store.handoffs[lead_id].handoff.owner_id == "ana"  # an A-grade touch too


async def test_a_second_touch_in_the_batch_that_handed_its_lead_on_is_told_to_the_new_holder(uow, ctx):
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    ctx.reference = Reference(ANA_LEFT, "v2")
    batch = [factories.envelope(topics.SCORED, touch_of(lead)) for _ in range(2)]
    async with uow:
        outcomes = await handle_lead_scored(uow, batch, ctx)
        await uow.commit()
    first, second = (outcomes[env.id] for env in batch)
    assert types_of(first) == ["lead.handed_over", "lead.routed", "lead.reengaged"]
    assert types_of(second) == ["lead.routed", "lead.reengaged"]
    new = uow.store.handoffs[lead_id].handoff.owner_id
    assert data(second[1]).owner_id == new and "no longer active" not in data(second[1]).reason
    assert (data(second[0]).assignment.owner_id, data(second[0]).handoff_seq) == (new, 2)


async def test_a_batch_handing_a_touched_lead_on_and_routing_a_new_one_locks_the_rotations_once_after_the_hand_offs(
        uow, ctx):
    """Two rotation locks in one unit of work could deadlock with another process taking them the other way
    round (``handle_scored_and_dispositioned``)."""
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    ctx.reference = Reference(ANA_LEFT, "v2")
    uow.store.locks.clear()
    batch = [factories.envelope(topics.SCORED, e) for e in (factories.scored("mql", country="DE"),
                                                             touch_of(lead))]
    async with uow:
        outcomes = await handle_lead_scored(uow, batch, ctx)
        await uow.commit()
    assert [len(outcomes[env.id]) for env in batch] == [2, 3]
    assert uow.store.locks == [lead_id, "emea"]


async def test_an_unaccepted_lead_handed_on_by_a_touch_counts_against_its_new_holders_capacity_in_the_same_batch(
        uow, ctx):
    """Ben may hold one unaccepted lead: the one a touch hands him, so the new lead of the batch waits."""
    lead = await lead_of(uow, ctx, "ana")
    lead_id = lead.lead_id
    ben_alone = parse_routing_data({**DATA.model_dump(), "reps": [{**DATA.reps[1].model_dump(), "capacity": 1}]})
    ctx.reference = Reference(ben_alone, "v2")
    batch = [factories.envelope(topics.SCORED, e) for e in (touch_of(lead),
                                                             factories.scored("mql", country="DE"))]
    async with uow:
        outcomes = await handle_lead_scored(uow, batch, ctx)
        await uow.commit()
    assert uow.store.handoffs[lead_id].handoff.owner_id == "ben"
    assert data(outcomes[batch[1].id][0]).assignment.owner_id == "queue:emea"


async def test_only_a_batch_telling_a_holder_of_a_touch_reads_out_of_office_periods_and_only_theirs(uow, ctx):
    """The drain path (first scores) and a batch of touches that are no news read nobody's beyond the teams'."""
    lead = await lead_of(uow, ctx, "ana")
    asked = []
    presence = uow.store.presence

    async def recorded(rep_ids, now, *, up_to=None):
        asked.append(sorted(set(rep_ids)))
        return await presence(rep_ids, now, up_to=up_to)

    uow.store.presence = recorded
    await route(uow, ctx, factories.scored("mql", country="DE"))
    assert await route(uow, ctx, touch_of(lead, points=0)) == []  # a double click: no news
    assert len(await route(uow, ctx, touch_of(lead))) == 2
    assert asked == [["ana", "ben"], [], ["ana"]]


async def test_an_erased_leads_routed_copy_and_inbox_are_cleared_its_hand_off_closed_and_the_lifecycle_told(uow, ctx):
    from leadpipe_common.events import LeadErased
    from routing.handlers import handle_lead_erased

    lead = factories.scored(email="maria@sap.com", country="DE")
    lead = lead.model_copy(update={"contact": lead.contact.model_copy(update={"first_name": "Maria"})})
    scored = factories.envelope(topics.SCORED, lead)
    erasure = factories.envelope(topics.SCORED, LeadErased(lead_id=lead.lead_id, at=T0, by="dpo"))
    outcomes = await factories.one_batch(uow, (handle_lead_scored, [scored], ctx),
                                         (handle_lead_erased, [erasure], ctx))
    [told] = outcomes[erasure.id]
    assert told.topic == topics.LIFECYCLE and data(told) == erasure.data
    held = uow.store.handoffs[lead.lead_id]
    assert (held.lead.contact.email, held.lead.contact.first_name) == ("", None)
    assert (held.handoff.owner_id, held.handoff.status) == (uow.store.assignments[lead.lead_id]["owner_id"], "erased")
    assert held.handoff.due_at is None and held.handoff.waiting_since is None
    assert held.lead.assignment.owner_id == held.handoff.owner_id
    assert not any(b"maria" in m.value.lower() for m in uow.inbox[scored.id])


async def test_a_lead_erased_before_routing_held_it_is_not_routed_when_its_dead_letter_is_redriven(uow, ctx):
    from leadpipe_common.events import LeadErased
    from routing.handlers import handle_lead_erased

    lead = factories.scored(email="maria@sap.com", country="DE")
    erasure = factories.envelope(topics.SCORED, LeadErased(lead_id=lead.lead_id, at=T0, by="dpo"))
    await factories.one_batch(uow, (handle_lead_erased, [erasure], ctx))
    redriven = factories.envelope(topics.SCORED, lead)
    outcomes = await factories.one_batch(uow, (handle_lead_scored, [redriven], ctx))
    assert outcomes == {redriven.id: []}
    assert lead.lead_id not in uow.store.handoffs and lead.lead_id not in uow.store.assignments


async def test_a_late_touch_of_an_erased_lead_routing_holds_is_not_told_to_its_holder(uow, ctx):
    from leadpipe_common.events import LeadErased
    from routing.handlers import handle_lead_erased

    lead = factories.scored(email="maria@sap.com", country="DE")
    await factories.one_batch(uow, (handle_lead_scored, [factories.envelope(topics.SCORED, lead)], ctx))
    erasure = factories.envelope(topics.SCORED, LeadErased(lead_id=lead.lead_id, at=T0, by="dpo"))
    await factories.one_batch(uow, (handle_lead_erased, [erasure], ctx))
    touch = factories.envelope(topics.SCORED, lead.model_copy(update={"touch": Touch(
        touch_id=uuid.uuid4(), at=T0 + timedelta(days=1), attribution=Attribution(offer="demo"))}))
    outcomes = await factories.one_batch(uow, (handle_lead_scored, [touch], ctx))
    assert outcomes == {touch.id: []}
    assert uow.store.handoffs[lead.lead_id].lead.contact.email == ""


async def test_an_erased_leads_hand_off_is_not_handed_on_at_its_deadline_and_no_report_on_it_is_taken(uow, ctx):
    from leadpipe_common.events import LeadErased
    from routing.handlers import handle_lead_erased

    lead = factories.scored("mql", country="DE")
    routed, _ = await route(uow, ctx, lead)
    erasure = factories.envelope(topics.SCORED, LeadErased(lead_id=lead.lead_id, at=T0, by="dpo"))
    await factories.one_batch(uow, (handle_lead_erased, [erasure], ctx))
    ctx.clock.now = T0 + timedelta(hours=2)
    async with uow:
        assert await act_on_missed_deadlines(uow, ctx, limit=10) == 0
        await uow.commit()
    refused = await say(uow, ctx, lead.lead_id, outcome="accepted", rep_id=data(routed).assignment.owner_id,
                        at=ctx.clock.now)
    assert isinstance(refused, Rejected) and refused.final and "the lead was erased" in refused.reason


async def test_an_erased_lead_sales_won_stays_won_and_its_amount_may_still_be_corrected(uow, ctx):
    """The person goes; sales' record stays: closed as erased, a won deal read as never won in its hand-off, and
    the anonymous revenue the reports keep could no longer be corrected."""
    from leadpipe_common.events import LeadErased
    from routing.handlers import handle_lead_erased

    lead = factories.scored("mql", country="DE")
    routed, _ = await route(uow, ctx, lead)
    rep = data(routed).assignment.owner_id
    for outcome, more in (("accepted", {}), ("won", {"amount": Decimal("50000"), "currency": "EUR"})):
        assert isinstance(await say(uow, ctx, lead.lead_id, outcome=outcome, rep_id=rep, **more), list)
    erasure = factories.envelope(topics.SCORED, LeadErased(lead_id=lead.lead_id, at=T0, by="dpo"))
    await factories.one_batch(uow, (handle_lead_erased, [erasure], ctx))
    assert uow.store.handoffs[lead.lead_id].handoff.status == "won"
    corrected = await say(uow, ctx, lead.lead_id, outcome="won", rep_id=rep, amount=Decimal("5000"), currency="EUR")
    assert [data(m).type for m in corrected] == ["lead.won_amount_corrected"]
