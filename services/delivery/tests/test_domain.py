"""What goes to which webhook, and what follows each attempt: pure, with the time passed in."""

import base64
from datetime import UTC, datetime, timedelta

import pytest

from leadpipe_common.testing import factories
from delivery.app import load_subscriptions
from delivery.domain import (
    CONTACT_FIELDS, LONGEST_KEEP_DAYS, Following, Mark, Verdict, after_attempt, lets_go, may_follow,
    parse_subscriptions, purge_after, remembers, retry_after_s, switched_off, target_problem, wants, withheld,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def subscription(**over):
    spec = {"id": "crm", "url": "https://crm.example.com/hooks", "secrets": [SECRET], "events": ["lead.routed"],
            **over}
    return parse_subscriptions({"subscriptions": [spec]}, allow_private=False)["crm"]


def routed(team="emea", utm_source="tests"):
    lead = factories.scored("mql")
    from leadpipe_common.events import Assignment, LeadRouted

    assignment = Assignment(owner_id="ana", owner_name="Ana", team=team, method="territory", reason="r")
    return LeadRouted(**dict(lead) | {"attribution": lead.attribution.model_copy(update={"utm_source": utm_source})},
                      assignment=assignment, routed_at=NOW)


def test_a_subscription_gets_the_events_it_asked_for_that_pass_its_filter():
    assert wants(subscription(), routed())
    assert wants(subscription(filter={"team": ["emea", "dach"]}), routed("dach"))
    assert not wants(subscription(filter={"team": "emea"}), routed("na"))
    assert not wants(subscription(filter={"source": "partners"}), routed())
    assert not wants(subscription(events=["lead.sla_breached"]), routed())


def test_a_hand_over_goes_to_subscriptions_following_the_team_or_holder_it_left_or_went_to():
    """A CRM following emea-enterprise's leads hears that one left it for dach: filtered on the new team alone,
    it never did, and kept the lead as its own."""
    from leadpipe_common.events import Attribution, LeadHandedOver

    handed = LeadHandedOver(lead_id=routed().lead_id, from_owner_id="ana", from_team="emea-enterprise",
                            from_due_at=None, owner_id="ben", owner_name="Ben", team="dach", stage="accepted", at=NOW,
                            by="sales-ops", reason="ana left", due_at=None, grade="A",
                            attribution=Attribution(utm_source="tests"))

    def following(**flt):
        return subscription(events=["lead.handed_over"], filter=flt)

    assert wants(following(), handed)
    assert all(wants(following(**flt), handed) for flt in (
        {"team": "emea-enterprise"}, {"team": "dach"}, {"owner": "ana"}, {"owner": "ben"},
        {"team": "emea-enterprise", "owner": "ana"}, {"team": "dach", "owner": "ben", "grade": "A"},
        {"team": ["apac", "dach"]}))
    assert not any(wants(following(**flt), handed) for flt in (
        {"team": "apac"}, {"owner": "cy"}, {"team": "dach", "grade": "B"}))
    assert not wants(subscription(), handed)  # not asked for


def test_a_hand_over_passes_a_filter_only_when_the_side_it_left_or_the_side_it_went_to_holds_it_whole():
    """ana of emea hands a lead to ben of dach: a receiver following emea's ben hears nothing of it (ben was
    never emea's), nor one following dach's ana."""
    from leadpipe_common.events import Attribution, LeadHandedOver

    handed = LeadHandedOver(lead_id=routed().lead_id, from_owner_id="ana", from_team="emea", from_due_at=None,
                            owner_id="ben", owner_name="Ben", team="dach", stage="accepted", at=NOW, by="sales-ops",
                            reason="ana left", due_at=None, grade="A", attribution=Attribution(utm_source="tests"))

    def following(**flt):
        return subscription(events=["lead.handed_over"], filter=flt)

    assert not any(wants(following(**flt), handed) for flt in (
        {"team": "emea", "owner": "ben"}, {"team": "dach", "owner": "ana"},
        {"team": "emea", "owner": ["ben", "cy"]}))
    assert wants(following(team=["emea", "dach"], owner="ben"), handed)  # the side it went to: dach's ben


def breached(**over):
    from leadpipe_common.events import Attribution, LeadSlaBreached

    fields = {"lead_id": routed().lead_id, "owner_id": "ana", "team": "emea", "grade": "A", "due_at": NOW,
              "breached_at": NOW, "breach": 1, "action": "reassigned", "next_owner_id": "ola",
              "next_owner_name": "Ola", "next_due_at": NOW + timedelta(minutes=15), "next_team": "overflow-team",
              "attribution": Attribution(utm_source="tests")}
    return LeadSlaBreached(**fields | over)


def test_a_breach_goes_to_subscriptions_following_the_team_or_holder_it_sent_the_lead_to():
    """ana of emea misses her deadline and the lead goes along the overflow to ola of overflow-team: a receiver
    following overflow-team (or ola) hears of the breach that sent it the lead, not only one following emea."""
    def following(**flt):
        return subscription(events=["lead.sla_breached"], filter=flt)

    assert all(wants(following(**flt), breached()) for flt in (
        {"team": "emea"}, {"owner": "ana"}, {"team": "overflow-team"}, {"owner": "ola"},
        {"team": "overflow-team", "owner": "ola", "grade": "A", "source": "tests"}))
    escalated = breached(action="escalated", next_owner_id="queue:overflow-team", next_owner_name="overflow-team queue",
                         next_due_at=None)
    assert wants(following(team="overflow-team"), escalated)
    assert not any(wants(following(**flt), breached()) for flt in (
        {"team": "apac"}, {"owner": "cy"}, {"team": "overflow-team", "grade": "B"}))


def test_a_breach_passes_a_filter_only_when_the_missed_holder_or_the_next_holder_holds_it_whole():
    """Each side is judged whole: ola was never emea's, nor ana overflow-team's."""
    def following(**flt):
        return subscription(events=["lead.sla_breached"], filter=flt)

    assert not any(wants(following(**flt), breached()) for flt in (
        {"team": "emea", "owner": "ola"}, {"team": "overflow-team", "owner": "ana"}))


def test_a_breach_from_before_v2_passes_no_team_filter_on_the_side_it_went_to():
    """A v1 breach does not say the next holder's team: it may be an overflow's, so emea is not guessed."""
    v1 = breached(next_team=None, next_owner_id="ben")

    def following(**flt):
        return subscription(events=["lead.sla_breached"], filter=flt)

    assert wants(following(owner="ben"), v1)
    assert not wants(following(team="emea", owner="ben"), v1)
    assert wants(following(team="emea", owner="ana"), v1)


def merged(**over):
    from leadpipe_common.events import Attribution, LeadMerged

    fields = {"lead_id": routed().lead_id, "survivor_id": routed().lead_id, "at": NOW, "by": "ana",
              "reason": "same person", "owner_id": "ana", "team": "emea-enterprise", "grade": "B",
              "survivor_owner_id": "cy", "survivor_team": "dach", "survivor_grade": "A",
              "attribution": Attribution(utm_source="tests")}
    return LeadMerged(**fields | over)


def following_merges(**flt):
    return subscription(events=["lead.merged"], filter=flt)


def test_a_merge_goes_to_subscriptions_following_the_team_holder_or_grade_of_either_lead():
    """ana of emea-enterprise holds the lead merged into cy's of dach: a CRM following emea-enterprise (the
    README's own subscription) must hear its lead is closed, or it offers routing dispositions it refuses (409);
    one following dach hears its lead took in another."""
    assert all(wants(following_merges(**flt), merged()) for flt in (
        {"team": "emea-enterprise"}, {"team": "dach"}, {"owner": "ana"}, {"owner": "cy"}, {"grade": "B"},
        {"grade": "A"}, {"team": "emea-enterprise", "owner": "ana", "grade": "B", "source": "tests"},
        {"team": "dach", "owner": "cy", "grade": "A"}, {"team": ["apac", "dach"]}))
    assert not any(wants(following_merges(**flt), merged()) for flt in (
        {"team": "apac"}, {"owner": "ben"}, {"grade": "C"}))
    assert not wants(subscription(filter={"team": "emea-enterprise"}), merged())  # not asked for


def test_a_merge_passes_a_filter_only_when_one_lead_meets_it_whole():
    """Each lead is judged whole: cy never held emea-enterprise's lead, nor was the survivor graded B; and the
    event carries the first-touch source of the lead merged away alone, not the survivor's."""
    assert not any(wants(following_merges(**flt), merged()) for flt in (
        {"team": "emea-enterprise", "owner": "cy"}, {"team": "dach", "owner": "ana"}, {"team": "dach", "grade": "B"},
        {"team": "dach", "source": "tests"}))
    assert wants(following_merges(source="tests"), merged())


def test_an_erasure_goes_to_every_subscription_that_asks_for_it_whatever_its_filter():
    """It names the lead alone: judged by a filter it would pass none, and the CRM following the lead's team would
    keep the person it was sent."""
    from leadpipe_common.events import LeadErased

    erased = LeadErased(lead_id=routed().lead_id, at=NOW, by="dpo")
    assert all(wants(subscription(events=["lead.erased"], filter=flt), erased) for flt in (
        {}, {"team": "emea"}, {"owner": "ana", "grade": ["A", "B"]}, {"source": "partners"}))
    assert not wants(subscription(filter={"team": "emea"}), erased)  # not asked for


def test_a_merge_from_before_v2_passes_a_filter_on_its_source_alone():
    """A v1 merge names neither holder nor grade: whose leads they were is not guessed (not from ``by``, who
    need not have held it), so a team, owner or grade filter passes none, as before v2; a source filter still."""
    from leadpipe_common.events import parse_event

    v1 = merged().model_dump(mode="json", exclude={"owner_id", "team", "grade", "survivor_owner_id",
                                                   "survivor_team", "survivor_grade"})
    old = parse_event("lead.merged", 1, v1)
    assert wants(following_merges(), old) and wants(following_merges(source="tests"), old)
    assert not any(wants(following_merges(**flt), old) for flt in (
        {"team": "emea-enterprise"}, {"team": "dach"}, {"owner": "ana"}, {"grade": "B"},
        {"owner": "ana", "source": "tests"}))


def a_leads_events(routed_as, touch_scored, held):
    """A lead routed at grade ``routed_as``, then touched, its person withdrawing consent, the touch scored
    ``touch_scored`` and the lead held at ``held`` since, as routing sends them: the first lead.routed, the
    re-engagement's lead.routed and lead.reengaged, and sales' acceptance."""
    from leadpipe_common.events import Attribution, LeadReengaged, LeadStageChanged, Touch

    first = routed()
    first = first.model_copy(update={"score": first.score.model_copy(update={"grade": routed_as}),
                                     "held_grade": routed_as})
    touch = Touch(touch_id=first.lead_id, at=NOW, attribution=Attribution(form_id="preferences"))
    told = first.model_copy(update={"contact": first.contact.model_copy(update={"marketing_consent": False}),
                                    "score": first.score.model_copy(update={"grade": touch_scored}),
                                    "touch": touch, "held_grade": held})
    reengaged = LeadReengaged(lead_id=first.lead_id, touch=touch, owner_id="ana", team="emea", at=NOW,
                              reason="came back", attribution=first.attribution, score=told.score.value,
                              grade=touch_scored, held_grade=held)
    accepted = LeadStageChanged(lead_id=first.lead_id, from_stage="routed", to_stage="accepted", at=NOW, by="ana",
                                reason="r", attribution=first.attribution, owner_id="ana", team="emea", grade=held)
    return first, told, reengaged, accepted


def following_grades(*grades):
    return subscription(events=["lead.routed", "lead.reengaged", "lead.stage_changed"],
                        filter={"grade": list(grades)})


def test_a_consent_withdrawn_by_a_touch_scored_below_the_leads_grade_goes_to_the_subscription_that_took_the_lead():
    """Routed as an A, the lead went to the A subscription. Its person unticks consent; the touch, its intent decayed,
    scores B, but routing holds the lead at A, as its acceptance says: the withdrawal the CRM must act on goes to the
    A subscription with every other event of the lead, and none to the B one, which never had it."""
    events = a_leads_events("A", "B", held="A")
    assert [wants(following_grades("A"), e) for e in events] == [True] * 4
    assert [wants(following_grades("B"), e) for e in events] == [False] * 4


def test_a_grade_filter_follows_the_grade_routing_holds_the_lead_at_when_each_event_is_sent():
    """A B lead a touch raises to A is an A lead from then on for the subscriptions that never took it: the A one
    hears of it from the re-engagement's lead.routed, with the whole lead, on, and the B one, judged by its filter
    alone, would not (what it took is kept beside: the next test)."""
    events = a_leads_events("B", "A", held="A")
    assert [wants(following_grades("B"), e) for e in events] == [True, False, False, False]
    assert [wants(following_grades("A"), e) for e in events] == [False, True, True, True]
    assert [wants(following_grades("A", "B"), e) for e in events] == [True] * 4


def test_a_subscription_filtered_on_grade_that_took_a_lead_is_sent_its_later_events_whatever_grade_it_is_raised_to():
    """The B subscription's CRM holds the lead routed as a B, and the same rep holds it after the touch that makes it
    an A: the re-engagement, the acceptance and the win must reach that CRM, or its closed-loop reports lose them.
    Another B lead, which it never took, is still judged by its grade."""
    events = a_leads_events("B", "A", held="A")
    took = events[0].lead_id
    assert [wants(following_grades("B"), e, {took}) for e in events] == [True] * 4
    assert [wants(following_grades("B"), e, {routed().lead_id}) for e in events] == [True, False, False, False]
    assert [may_follow(following_grades("B"), e) for e in events] == [set(), {took}, {took}, {took}]


def test_following_a_lead_passes_the_grade_key_alone_for_team_and_owner_follow_the_holder():
    """A CRM following emea's B leads that took one hears of it, raised to A, while emea holds it: that it left emea
    for dach (the side it left is emea's), and nothing after, as a team filter always did."""
    from leadpipe_common.events import Attribution, LeadHandedOver

    sub = subscription(events=["lead.routed", "lead.handed_over", "lead.stage_changed"],
                       filter={"grade": "B", "team": "emea"})
    _, _, _, accepted = a_leads_events("B", "A", held="A")
    lead = accepted.lead_id
    handed = LeadHandedOver(lead_id=lead, from_owner_id="ana", from_team="emea", from_due_at=None, owner_id="ben",
                            owner_name="Ben", team="dach", stage="accepted", at=NOW, by="sales-ops",
                            reason="ana left", due_at=None, grade="A", attribution=Attribution())
    won_in_dach = accepted.model_copy(update={"to_stage": "won", "team": "dach", "owner_id": "ben"})
    assert wants(sub, accepted, {lead}) and wants(sub, handed, {lead})
    assert not wants(sub, won_in_dach, {lead}) and may_follow(sub, won_in_dach) == set()
    assert not remembers(subscription(events=["lead.routed"], filter={"team": "emea"}))
    assert not remembers(subscription(events=["lead.stage_changed"], filter={"grade": "B"}))  # never takes a lead


def test_a_merge_passes_the_grade_key_of_the_side_of_a_lead_the_subscription_took():
    """The B subscription took the survivor, an A by now: it hears that its lead took in another; one that took the
    lead merged away (a B) passes by its grade anyway."""
    sub = subscription(events=["lead.routed", "lead.merged"], filter={"grade": "B", "team": "dach"})
    merge = merged()  # emea-enterprise's B merged into dach's A
    assert not wants(sub, merge) and may_follow(sub, merge) == {merge.survivor_id}
    assert wants(sub, merge, {merge.survivor_id}) and not wants(sub, merge, {merge.lead_id})


def test_a_leads_first_routing_asks_for_no_lookup_for_nothing_can_have_taken_it_before():
    """The bulk of what delivery reads: each lead.routed of a new lead would cost a lookup for every grade it is
    not; its first hand-off, with no touch, is the lead's first, whatever the grade."""
    first, told, _, _ = a_leads_events("A", "A", held="A")
    assert may_follow(following_grades("B"), first.model_copy(update={"handoff_seq": 1})) == set()
    assert may_follow(following_grades("B"), first.model_copy(update={"handoff_seq": 2})) == {first.lead_id}
    assert may_follow(following_grades("B"), first) == {first.lead_id}  # routed before v5: not said
    assert may_follow(following_grades("B"), told.model_copy(update={"handoff_seq": 1})) == {first.lead_id}


#: When routing recorded the rejections below, and routed the recycles that follow them.
REJECTED_AT, RECYCLED_AT = NOW + timedelta(hours=1), NOW + timedelta(hours=2)


def rejected_and_recycled(grade="A"):
    """A lead routed as a B and raised to A (``a_leads_events``), its rejection, and a recycle at ``grade``."""
    first, told, reengaged, accepted = a_leads_events("B", "A", held="A")
    rejected = accepted.model_copy(update={"from_stage": "accepted", "to_stage": "rejected"})
    recycled = told.model_copy(update={"handoff_seq": 2, "held_grade": grade, "routed_at": RECYCLED_AT,
                                       "score": told.score.model_copy(update={"grade": grade})})
    return first, told, reengaged, accepted, rejected, recycled


def test_a_rejection_lets_the_lead_go_and_its_recycle_is_judged_by_its_grade_as_a_new_leads_routing():
    """Read in order, a batch: the B subscription takes the lead at its routing, hears of it raised to A and of its
    rejection; the touch that recycles it scores A, a new routing that is not the B subscription's. A second lead,
    rejected then recycled as a B, is taken again, at its recycle's time."""
    first, told, reengaged, accepted, rejected, recycled = rejected_and_recycled()
    accepted_again = accepted.model_copy(update={"owner_id": "ben"})
    other = routed().model_copy(update={"handoff_seq": 3, "held_grade": "B", "routed_at": RECYCLED_AT})
    other_rejected = rejected.model_copy(update={"lead_id": other.lead_id, "grade": "B"})
    sub = following_grades("B")
    following = Following(known={("crm", other.lead_id): Mark(NOW)})
    sent = []
    for event in (first, told, reengaged, accepted, other_rejected, rejected, recycled, accepted_again, other):
        sent.append(wants(sub, event, following.of(sub, event)))
        following.read(event, [sub] if sent[-1] else [], REJECTED_AT if lets_go(event) else NOW)
    assert sent == [True, True, True, True, True, True, False, False, True]
    assert lets_go(rejected) == first.lead_id and lets_go(accepted) is None and lets_go(first) is None
    assert following.forgotten == {first.lead_id: Mark(REJECTED_AT), other.lead_id: Mark(REJECTED_AT)}
    # The first's taken, then let go within the batch.
    assert following.taken == {("crm", other.lead_id): Mark(RECYCLED_AT, 3)}


def test_a_lead_routed_read_after_the_rejection_of_its_hand_off_takes_the_lead_for_nobody_and_a_recycle_does():
    """Delivery reads leads.routed apart from the lifecycle: after downtime, or a redrive of the lead.routed, the
    rejection is read first. The hand-off it ended, read late, is sent to the B subscription (its filter passes it)
    but takes nothing, or the B subscription would hear of the lead's recycle, another rep's, and all after it, for
    good. A recycle, routed after the rejection, is a new routing: taken by the subscription it passes."""
    first, told, _, accepted, rejected, recycled = rejected_and_recycled(grade="B")
    sub = following_grades("B")
    following = Following(known={}, rejected={first.lead_id: Mark(REJECTED_AT)})  # noted by an earlier batch
    following.read(first, [sub], NOW)
    following.read(told, [sub], NOW)  # the same hand-off told again, raised to A
    assert following.taken == {} and not wants(sub, accepted, following.of(sub, accepted))
    following.read(recycled, [sub], NOW)
    assert following.taken == {("crm", first.lead_id): Mark(RECYCLED_AT, 2)}
    in_one_batch = Following(known={})
    in_one_batch.read(rejected, [], REJECTED_AT)
    in_one_batch.read(first, [sub], NOW)
    assert in_one_batch.taken == {} and in_one_batch.forgotten == {first.lead_id: Mark(REJECTED_AT)}


def test_a_rejection_read_after_a_recycle_the_subscription_took_lets_go_only_what_was_taken_before_it():
    """The recycle, routed as a B after the rejection, read before it: the B subscription took the lead anew. The
    rejection, read late, ends the hand-off before it, not the recycle's."""
    first, _, _, _, rejected, recycled = rejected_and_recycled(grade="B")
    sub = following_grades("B")
    following = Following(known={("crm", first.lead_id): Mark(NOW)})
    following.read(recycled, [sub], NOW)
    following.read(rejected, [sub], REJECTED_AT)
    assert following.known == following.taken == {("crm", first.lead_id): Mark(RECYCLED_AT, 2)}
    assert following.forgotten == {first.lead_id: Mark(REJECTED_AT)}


def test_a_recycle_sent_only_for_a_lead_the_subscription_follows_does_not_outlive_the_rejection_read_after_it():
    """The recycle, routed as an A, read before the rejection it follows: the B subscription, which had the lead, is
    sent it (nothing yet says the lead was rejected), but its filter alone would not give it the lead: it continues
    the old take, which the rejection, read late, ends."""
    first, _, _, accepted, rejected, recycled = rejected_and_recycled(grade="A")
    sub = following_grades("B")
    following = Following(known={("crm", first.lead_id): Mark(NOW)})
    assert wants(sub, recycled, following.of(sub, recycled))
    following.read(recycled, [sub], NOW)
    assert following.taken == {}
    following.read(rejected, [sub], REJECTED_AT)
    assert following.known == {} and not wants(sub, accepted, following.of(sub, accepted))


def skewed(seconds):
    """A time ``seconds`` after NOW, as a routing process whose clock is off by as much may read it."""
    return NOW + timedelta(seconds=seconds)


def test_a_lead_routed_and_a_rejection_are_ordered_by_the_hand_off_number_whatever_the_routing_processes_clocks():
    """Routing runs several processes, whose clocks it allows minutes apart: the hand-off (the lead reassigned) routed
    by one 2 s ahead, the CRM's automatic rejection a second later recorded by another. Read late, after the
    rejection, that hand-off's lead.routed looks newer by the times: it must take nothing, or the B subscription
    follows the lead for good. The recycle, routed by the process behind, looks older than the rejection by the
    times, and is taken: its number is the higher."""
    first, _, _, _, rejected, recycled = rejected_and_recycled(grade="B")
    reassigned = first.model_copy(update={"handoff_seq": 2, "routed_at": skewed(2)})
    rejection = rejected.model_copy(update={"handoff_seq": 2})
    recycle = recycled.model_copy(update={"handoff_seq": 3, "routed_at": skewed(0.5)})
    sub = following_grades("B")
    following = Following(known={})
    following.read(rejection, [sub], skewed(1))
    following.read(reassigned, [sub], skewed(2))
    assert following.taken == {} and following.forgotten == {first.lead_id: Mark(skewed(1), 2)}
    following.read(recycle, [sub], skewed(0.5))
    assert following.taken == {("crm", first.lead_id): Mark(skewed(0.5), 3)}


def test_a_rejection_read_late_lets_go_what_was_taken_at_the_hand_off_it_ended_by_its_number_and_the_rest_by_time():
    """Read after the subscriptions took the lead again: the take at the hand-off it ended (routed by a process
    ahead, dated after it) goes, a recycle's (routed by a process behind, dated before it) stays; a take whose
    lead.routed said no number (routed before v5) is judged by the times, as before."""
    first, _, _, _, rejected, _ = rejected_and_recycled(grade="B")
    ended, recycle, unnumbered = ("ended", first.lead_id), ("recycle", first.lead_id), ("old", first.lead_id)
    following = Following(known={ended: Mark(skewed(20), 2), recycle: Mark(skewed(5), 3), unnumbered: Mark(NOW)})
    following.read(rejected.model_copy(update={"handoff_seq": 2}), [], skewed(10))
    assert following.known == {recycle: Mark(skewed(5), 3)}


def test_a_lead_routed_sent_by_what_the_store_holds_is_not_taken_again():
    """The store holds it already: written again, it would cost a statement for nothing."""
    _, told, _, _ = a_leads_events("B", "A", held="A")
    following = Following(known={("crm", told.lead_id): Mark(NOW)})
    following.read(told, [following_grades("A", "B")], NOW)
    assert following.taken == {}
    following.read(told, [subscription(events=["lead.routed"], filter={"team": "emea"})], NOW)  # remembers nothing
    assert following.taken == {}


def test_a_re_engagement_from_before_it_said_the_grade_the_lead_is_held_at_is_judged_by_the_touchs_grade_as_before():
    """lead.routed before v6 and lead.reengaged before v3 do not say the grade routing held the lead at, which is not
    guessed: the score's grade, the hand-off's but after a touch scored below it, is judged, as it always was."""
    from leadpipe_common.events import parse_event

    _, told, reengaged, _ = a_leads_events("A", "B", held="A")
    old = (parse_event("lead.routed", 5, told.model_dump(mode="json", exclude={"held_grade"})),
           parse_event("lead.reengaged", 2, reengaged.model_dump(mode="json", exclude={"held_grade"})))
    assert [wants(following_grades("B"), e) for e in old] == [True, True]
    assert [wants(following_grades("A"), e) for e in old] == [False, False]


def test_a_subscription_naming_contact_fields_is_sent_those_alone_and_one_naming_none_the_whole_contact():
    lead = routed()
    assert withheld(subscription(), lead) is None
    left_out = withheld(subscription(contact=["email", "company"]), lead)["contact"]
    assert left_out == {"first_name", "last_name", "job_title", "phone", "country", "message", "marketing_consent",
                        "marketing_consent_at"}
    assert lead.model_dump(mode="json", exclude={"contact": left_out})["contact"] == {
        "email": lead.contact.email, "company": lead.contact.company}
    assert withheld(subscription(contact=[]), lead) == {"contact": set(type(lead.contact).model_fields)}


def test_what_enrichment_read_from_a_contact_field_left_out_is_left_out_with_it():
    from leadpipe_common.events import Sourced

    def enriched(**fields):
        lead = routed()
        return lead.model_copy(update={"enrichment": lead.enrichment.model_copy(update={
            name: Sourced[str](value=value, source=source) for name, (value, source) in fields.items()})})

    told = enriched(phone_e164=("+14155550100", "form"), country=("US", "phone"), seniority=("vp", "job_title"),
                    department=("marketing", "job_title"), company_name=("Acme", "form"))
    assert withheld(subscription(contact=["email", "first_name"]), told)["enrichment"] == {
        "phone_e164", "country", "seniority", "department", "company_name"}
    # The country read from the phone goes with the phone, not with the country the form had (none here).
    assert "enrichment" not in withheld(subscription(contact=["email", "phone", "job_title", "company"]), told)
    # A company name found in the companies file, a country typed in the form: not read from the phone.
    looked_up = enriched(company_name=("Acme Inc", "companies"), country=("DE", "form"))
    assert "enrichment" not in withheld(subscription(contact=["email", "country"]), looked_up)


def scored_with(*reads):
    """A routed lead whose reasons read ``reads`` (one list, or None, a reason each)."""
    from leadpipe_common.events import ScoreReason

    lead = routed()
    reasons = [ScoreReason(rule=f"Rule {i}", category="fit", points=5, reads=r) for i, r in enumerate(reads)]
    return lead.model_copy(update={"score": lead.score.model_copy(update={"reasons": reasons})})


def test_a_reason_whose_rule_read_a_contact_field_left_out_is_left_out_with_it_and_the_numbers_stay():
    """A decision maker's reason tells the seniority of a job title left out, a served country's read from the
    phone tells of the phone; a company's head count tells of no contact field."""
    lead = scored_with([], ["job_title"], ["country", "phone"], ["message"])
    cut = withheld(subscription(contact=["email", "country", "message"]), lead)
    assert cut["score"] == {"reasons": {1, 2}}
    sent = lead.model_dump(mode="json", exclude=cut)["score"]
    assert [r["rule"] for r in sent["reasons"]] == ["Rule 0", "Rule 3"]
    assert {k: v for k, v in sent.items() if k != "reasons"} == {
        k: v for k, v in lead.score.model_dump(mode="json").items() if k != "reasons"}
    assert "score" not in withheld(subscription(contact=["email", "job_title", "country", "phone", "message"]), lead)


def test_a_reason_that_does_not_say_what_it_read_is_left_out_whenever_a_contact_field_is():
    """Scored before reasons said what they read: any of them may tell of the field left out."""
    lead = scored_with(None, [])
    assert withheld(subscription(contact=[*CONTACT_FIELDS[:-1]]), lead)["score"] == {"reasons": {0}}
    assert withheld(subscription(contact=list(CONTACT_FIELDS)), lead) is None
    assert withheld(subscription(), lead) is None


def test_an_event_without_a_contact_is_sent_whole_whatever_fields_a_subscription_names():
    from leadpipe_common.events import Attribution, LeadQueued

    queued = LeadQueued(lead_id=routed().lead_id, team="emea", at=NOW, reason="r", grade="A", attribution=Attribution())
    assert withheld(subscription(contact=["email"], events=["lead.queued"]), queued) is None


def test_a_secret_without_base64_padding_is_taken_as_the_standard_webhooks_libraries_take_it():
    unpadded = "whsec_" + base64.b64encode(bytes(range(32))).decode().rstrip("=")
    assert subscription(secrets=[unpadded]).secrets == (unpadded,)


def test_a_refused_secret_is_named_by_its_place_and_none_of_it_is_said():
    with pytest.raises(ValueError) as refused:
        subscription(secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "sk_live_9f8e7d6c5b4a"])
    assert "secrets[1]" in str(refused.value) and "sk_live" not in str(refused.value)


@pytest.mark.parametrize(("spec", "message"), [
    ({"url": "ftp://x.example"}, "not an http"),
    ({"url": "http://10.0.0.5/hooks"}, "private"),
    ({"url": "http://127.0.0.1:9000/"}, "private, loopback"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "link-local"),
    ({"url": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data"}, "link-local"),  # NAT64 to the same
    ({"url": "http://localhost:8080/"}, "this machine"),
    ({"secrets": ["shh"]}, "whsec_"),
    ({"secrets": []}, "at least one"),
    ({"events": ["lead.captured"]}, "events"),
    ({"events": [["lead.routed"]]}, r"subscriptions\[0\]\.events: a list of lead\.routed"),
    ({"filter": {"colour": "red"}}, r"filter: unknown keys \['colour'\] \(known: team, owner, grade, source\)"),
    ({"retry_hour": 5}, r"unknown keys \['retry_hour'\] \(known: id, url, secrets, events, filter, retry_hours, "
                        r"contact\)"),
    ({"contact": ["email", "phon"]}, r"subscriptions\[0\]\.contact: unknown fields \['phon'\] \(known: email, "),
    ({"contact": "email"}, r"contact: a list of the contact fields"),
    ({"id": "has space"}, "id"),
    ({"retry_hours": 0}, "retry_hours"),
    ({"retry_hours": 1e9}, "at most 720"), ({"retry_hours": float("inf")}, "retry_hours"),
    ({"retry_hours": float("nan")}, "retry_hours"),
    # URLs the HTTP client would refuse at every attempt: each attempt failed unrecorded, sent again for ever.
    ({"url": "http://0177.0.0.1/hook"}, r"url: 0177\.0\.0\.1 is not an IPv4 address"),
    ({"url": "https://crm.example.com:abc/h"}, r"url: not a URL: what follows the host's colon is no port number"),
    ({"url": "https://crm.example.com:99999/h"}, r"url: not a URL: its port is not from 0 to 65535"),
    ({"url": "https://crm.example.com/a\tb"}, r"url: the URL holds a control character"),
    ({"url": "http://[1.2.3.4]/"}, r"subscriptions\[0\]\.url: not a URL: a host in brackets is no IPv6 address"),
    ({"filter": {"team": ["emea\x00"]}}, r"filter\.team: a value holds a control character"),
    # A grade no lead gets matched nothing, without a word.
    ({"filter": {"grade": ["A", "b"]}}, r"filter\.grade: 'b' is no grade a lead gets \(grades: A, B, C, D; grades "
                                        r"are upper case\)"),
    ({"filter": {"grade": "E"}}, r"filter\.grade: 'E' is no grade a lead gets \(grades: A, B, C, D\), so"),
])
def test_a_bad_subscription_is_refused_naming_the_entry(spec, message):
    with pytest.raises(ValueError, match=message):
        subscription(**spec)


@pytest.mark.parametrize(("url", "message"), [
    ("hooks.slack.com/services/T0/B0/SECRET", r"url: not an http\(s\) URL \(its scheme: none\)$"),
    ("ftp://u:SECRET@crm.example.com/h", r"url: not an http\(s\) URL \(its scheme: ftp\)$"),
    ("https:///SECRET", r"url: not an http\(s\) URL \(no host\)$"),
    ("https://crm:SECRET/h", r"url: not a URL: what follows the host's colon is no port number"),
    ("https://crm:SECRET\uff03@crm.example.com/h", r"url: not a URL: its user, password or host holds"),
    ("https://crm.example.com/SECRET\t", r"url: the URL holds a control character$"),
])
def test_a_refused_subscription_url_is_named_by_its_entry_not_written_out(url, message):
    """A refused subscriptions file is written to the log at start-up: a URL holds a hook's token, a password."""
    with pytest.raises(ValueError, match=message) as refused:
        subscription(url=url)
    assert "SECRET" not in str(refused.value)


def test_a_stored_subscription_whose_grade_filter_is_no_grade_is_read_back_matching_nothing_as_before():
    """The API took any grade before they were checked: refusing one read back would stop every delivery."""
    from delivery.domain import parse_subscription

    stored = parse_subscription({"id": "crm", "url": "https://crm.example.com/hooks", "secrets": [SECRET],
                                 "events": ["lead.routed"], "filter": {"grade": ["a"]}}, "subscription crm",
                                allow_private=False, stored=True)
    assert stored.filter == {"grade": frozenset({"a"})}


def test_a_misspelt_key_at_the_top_of_the_subscriptions_file_is_refused_naming_it():
    """``subscription:`` for ``subscriptions:`` left every webhook out without a word."""
    with pytest.raises(ValueError, match=r"unknown keys \['subscription'\] \(known: subscriptions\)"):
        parse_subscriptions({"subscription": [{"id": "crm"}]}, allow_private=False)


def test_a_subscriptions_file_that_is_a_list_at_the_top_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "subscriptions.yaml"
    path.write_text("- id: crm\n  url: https://crm.example.com/hooks\n")
    with pytest.raises(ValueError, match=rf"{path}: expected a mapping with subscriptions: at the top level"):
        load_subscriptions(path, allow_private=False)


def test_a_second_secrets_line_in_a_subscription_is_refused_naming_the_line_not_put_in_place_of_the_first(
        tmp_path):
    """Added below the old one during a rotation, the new secret replaced it: receivers still checking the old
    one refused every delivery."""
    path = tmp_path / "subscriptions.yaml"
    path.write_text("subscriptions:\n  - id: crm\n    url: https://crm.example.com/hooks\n"
                    f"    secrets: [{SECRET}]\n    secrets: [whsec_{'A' * 32}]\n    events: [lead.routed]\n")
    with pytest.raises(ValueError, match=rf"^{path}:5:5: 'secrets' is given again \(first on line 4\)"):
        load_subscriptions(path, allow_private=False)


def test_a_subscriptions_file_of_a_shape_no_check_foresaw_is_refused_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "subscriptions.yaml"
    path.write_text("subscriptions: []\n")

    def unforeseen(raw, *, allow_private):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr("delivery.app.parse_subscriptions", unforeseen)
    with pytest.raises(ValueError, match=rf"{path}: invalid \(TypeError: unhashable type: 'list'\)"):
        load_subscriptions(path, allow_private=False)


def test_private_targets_are_allowed_only_when_asked_and_names_are_judged_by_what_they_resolve_to():
    assert target_problem("http://127.0.0.1:9000/", allow_private=True) is None
    assert target_problem("http://[::1]:9000/", allow_private=True) is None  # loopback: allowed with the switch
    assert target_problem("http://10.0.0.5/", allow_private=True) is None
    assert target_problem("http://localhost:8080/", allow_private=True) is None
    assert target_problem("https://crm.example.com/", allow_private=False) is None
    assert target_problem("https://[2606:4700::1111]/", allow_private=False) is None  # a public IPv6 address


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "http://169.254.170.2/v2/credentials", "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/", "http://[fd00:ec2::254]/latest/meta-data", "http://100.100.100.200/latest/meta-data",
    # IPv6 forms that carry 169.254.169.254: mapped, translated, NAT64, 6to4, compatible
    "http://[::ffff:169.254.169.254]/", "http://[::ffff:0:a9fe:a9fe]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::1]/", "http://[::a9fe:a9fe]/",
    # multicast, of global scope too ("global" to Python)
    "http://224.0.0.1/", "http://239.255.255.250/", "http://224.0.1.1/", "http://[ff02::1]/", "http://[ff0e::1]/",
    "http://[::ffff:224.0.0.1]/",
])
def test_metadata_link_local_and_multicast_targets_are_refused_even_when_private_targets_are_allowed(url):
    """DELIVERY_ALLOW_PRIVATE_TARGETS=true turned every check off: a subscription could have the instance's
    metadata service asked from inside, its answer kept as the delivery's last response."""
    for allow_private in (True, False):
        problem = target_problem(url, allow_private=allow_private)
        assert "refused even with DELIVERY_ALLOW_PRIVATE_TARGETS=true" in problem


@pytest.mark.parametrize("url", [
    "http://[fec0::1]/",  # site-local (deprecated)
    "http://[::ffff:0:127.0.0.1]/", "http://[::ffff:0:a00:5]/",  # IPv4-translated: loopback, 10.0.0.5
])
def test_site_local_and_ipv4_translated_addresses_that_python_calls_global_are_not_public(url):
    assert "not a public address" in target_problem(url, allow_private=False)


def test_a_success_delivers_and_410_means_gone():
    assert after_attempt(204, None, attempts=1, refused_before=0, first_at=NOW, now=NOW, window=timedelta(hours=72),
                         jitter=0.5).outcome == "delivered"
    assert after_attempt(410, None, attempts=1, refused_before=0, first_at=NOW, now=NOW, window=timedelta(hours=72),
                         jitter=0.5).outcome == "gone"


def test_a_410_holds_a_files_subscription_off_only_while_the_file_sends_it_to_the_url_that_answered():
    """A process still on the older file (a rolling deploy) got 410 from the url the file has left: the new url
    is live, and a switch-off from it would have stopped every process until an operator enabled it again."""
    in_file = {"crm": subscription()}
    assert switched_off({"crm": "https://crm.example.com/hooks"}, in_file) == {"crm"}
    assert switched_off({"crm": "https://old-crm.example.com/hooks"}, in_file) == set()
    assert switched_off({"crm": None}, in_file) == {"crm"}  # switched off before the url was kept: not known


def test_a_subscription_made_through_the_api_stays_off_whatever_its_url_is_now_until_it_is_enabled():
    """Its 410 switched it off only from the url it had then (the store checks); a change since leaves it off."""
    assert switched_off({"slack": "https://hooks.example.com/old"}, {"crm": subscription()}) == {"slack"}


def test_failures_back_off_exponentially_with_jitter_and_retry_after_is_honoured():
    def wait(status, attempts, jitter=0.0, retry_after=None):
        v = after_attempt(status, retry_after, attempts=attempts, refused_before=0, first_at=NOW, now=NOW,
                          window=timedelta(hours=72), jitter=jitter)
        return (v.next_at - NOW).total_seconds()

    assert [wait(500, n) for n in (1, 2, 3)] == [2.5, 5.0, 10.0]  # half of 5 s, doubling, at the least jitter
    assert wait(None, 1, jitter=0.999) < 5.0
    assert wait(500, 30) == 1800.0  # capped at an hour, halved by the jitter
    assert wait(429, 1, retry_after=120) == 120 and wait(503, 1, retry_after=7) == 7
    assert wait(500, 1, retry_after=120) == 2.5  # Retry-After counts on 429 and 503 only
    # Asked to come back at once (0, or a date gone by): the backoff still applies, or the receiver would be
    # asked again as fast as it answers, for the whole window.
    assert wait(429, 3, retry_after=0) == wait(503, 3, retry_after=1) == 10.0


def test_a_retry_after_longer_than_the_backoffs_longest_wait_is_waited_that_long_and_asked_again():
    """A proxy's Retry-After of a year parked the delivery, and every later one of its lead, until its window's
    end (30 days under the longest), and nothing could send it sooner once the receiver was back."""
    year = after_attempt(503, 365 * 86_400, attempts=1, refused_before=0, first_at=NOW, now=NOW,
                         window=timedelta(hours=720), jitter=0.5)
    assert (year.outcome, year.next_at) == ("retry", NOW + timedelta(hours=1))
    assert after_attempt(429, 1800, attempts=1, refused_before=0, first_at=NOW, now=NOW,
                         window=timedelta(hours=72), jitter=0.5).next_at == NOW + timedelta(minutes=30)


def test_a_url_that_cannot_be_sent_to_is_refused_in_a_row_as_a_4xx_is_not_retried_for_the_window():
    """A name resolving to a private address, a host httpx cannot encode: no retry changes it, and retried as an
    outage it held the lead's later deliveries back for the whole window."""
    verdicts, before = [], 0
    for n in range(1, 4):
        verdicts.append(after_attempt(None, None, attempts=n, refused_before=before, first_at=NOW, now=NOW,
                                      window=timedelta(hours=72), jitter=0.0, refused_attempts=3, refused_here=True))
        before = verdicts[-1].refused_in_a_row
    assert [(v.outcome, v.refused_in_a_row) for v in verdicts] == [("retry", 1), ("retry", 2), ("dead", 3)]
    assert verdicts[-1].reason == "refused: its url cannot be sent to, refusing 3 attempts in a row"
    outage = after_attempt(None, None, attempts=3, refused_before=2, first_at=NOW, now=NOW,
                           window=timedelta(hours=72), jitter=0.0, refused_attempts=3)
    assert (outage.outcome, outage.refused_in_a_row) == ("retry", 0)  # a timeout starts the count again


def test_after_the_retry_window_a_delivery_is_dead():
    v = after_attempt(500, None, attempts=9, refused_before=0, first_at=NOW - timedelta(hours=71, minutes=59),
                      now=NOW, window=timedelta(hours=72), jitter=0.5)
    assert v.outcome == "dead"


def test_a_retry_after_past_the_window_gets_one_last_attempt_at_its_end():
    """It made the delivery dead at once: a receiver that said when it takes deliveries again never got it."""
    first_at, window = NOW - timedelta(hours=71), timedelta(hours=72)
    last = after_attempt(503, 7200, attempts=3, refused_before=0, first_at=first_at, now=NOW, window=window,
                         jitter=0.5)
    assert (last.outcome, last.next_at) == ("retry", NOW + timedelta(hours=1))
    # That attempt, at the window's end, is the last, whatever it is told.
    assert after_attempt(429, 60, attempts=4, refused_before=0, first_at=first_at, now=last.next_at, window=window,
                         jitter=0.5).outcome == "dead"


def answered(*statuses: int | None, refused_attempts: int = 3) -> list[Verdict]:
    """The verdicts of a delivery's attempts answered ``statuses`` in turn, each judged with the refusals in a row
    its previous verdict counted, as the store keeps them between attempts."""
    verdicts, refused_before = [], 0
    for n, status in enumerate(statuses, 1):
        verdicts.append(after_attempt(status, None, attempts=n, refused_before=refused_before, first_at=NOW,
                                      now=NOW, window=timedelta(hours=72), jitter=0.0,
                                      refused_attempts=refused_attempts))
        refused_before = verdicts[-1].refused_in_a_row
    return verdicts


def test_a_receiver_that_refuses_a_delivery_gives_it_up_after_the_refused_attempts_so_the_leads_next_event_goes():
    """A CRM that cannot map ``queue:emea`` answered 422 for the whole 72 h window, 105 attempts, while the
    lead's next events (the rep who now holds it) waited behind it."""
    verdicts = answered(422, 400, 422)
    assert [(v.outcome, v.refused_in_a_row) for v in verdicts] == [("retry", 1), ("retry", 2), ("dead", 3)]
    # Spaced by the usual backoff, not sent again at once.
    assert (verdicts[1].next_at - NOW).total_seconds() == 5.0
    assert verdicts[2].reason == "refused: the receiver answered 422, refusing 3 attempts in a row"
    # A redirect too: deliveries follow none, so the same answer comes back every time.
    for status in (300, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 413, 415, 422, 451, 499):
        assert answered(status, status, status)[-1].outcome == "dead", status


def test_a_refusal_after_hours_of_failures_is_retried_until_the_receiver_has_refused_the_refused_attempts_in_a_row():
    """Counted among every attempt since it was queued, a delivery that failed through an outage (30 attempts)
    was given up at the first 404 of its receiver's bad deploy, though that was rolled back a minute later."""
    outage = [500] * 15 + [None] * 15
    assert [(v.outcome, v.refused_in_a_row) for v in answered(*outage, 404)[-1:]] == [("retry", 1)]
    assert answered(*outage, 404, 404, 204)[-1].outcome == "delivered"
    assert answered(*outage, 404, 404, 404)[-1].outcome == "dead"


def test_refusals_after_an_outage_are_paced_by_their_count_so_they_take_minutes_not_hours():
    """Backed off to half an hour or more by 30 attempts through an outage, a delivery's refusals in a row were
    spaced as far apart: some 4 to 8 hours of them, the lead's later deliveries waiting behind, before it was
    given up. Spaced as a new delivery's are, they take the minutes DELIVERY_REFUSED_ATTEMPTS is."""
    outage = [500] * 30

    def waits(*statuses):
        verdicts = answered(*outage, *statuses, refused_attempts=8)[len(outage):]
        return [(v.next_at - NOW).total_seconds() for v in verdicts]

    assert waits(500) == [1800.0]  # the outage's backoff, capped at an hour, halved by the jitter
    assert waits(*[404] * 7) == [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0]
    assert waits(404, 404, 503) == [2.5, 5.0, 1800.0]  # an outage again: its own backoff


@pytest.mark.parametrize("between", [500, 502, 503, None, 408, 409, 425, 429])
def test_any_other_answer_between_refusals_starts_their_count_again(between):
    """Refusals broken by an outage (a receiver's deploy answering 404, then 503 while it restarts) are no
    receiver refusing the message: it gets its refused attempts in a row anew."""
    verdicts = answered(422, 422, between, 422, 422)
    assert [v.refused_in_a_row for v in verdicts] == [1, 2, 0, 1, 2]
    assert {(v.outcome, v.reason) for v in verdicts} == {("retry", None)}
    assert answered(422, 422, between, 422, 422, 422)[-1].outcome == "dead"


def test_a_4xx_that_asks_for_the_message_later_is_retried_for_the_whole_window_as_an_outage_is():
    for status in (408, 409, 425, 429, 500, 502, 503, None):
        v = after_attempt(status, None, attempts=50, refused_before=2, first_at=NOW, now=NOW,
                          window=timedelta(hours=72), jitter=0.5, refused_attempts=3)
        assert (v.outcome, v.reason, v.refused_in_a_row) == ("retry", None, 0), status


def test_a_410_still_switches_the_subscription_off_rather_than_giving_up_the_delivery():
    v = after_attempt(410, None, attempts=3, refused_before=2, first_at=NOW, now=NOW, window=timedelta(hours=72),
                      jitter=0.5, refused_attempts=3)
    assert (v.outcome, v.refused_in_a_row) == ("gone", 0)


def test_one_refused_attempt_gives_a_delivery_up_at_its_first_refusal():
    [v] = answered(400, refused_attempts=1)
    assert (v.outcome, v.next_at, v.reason) == ("dead", None, "refused: the receiver answered 400, refusing 1 attempt "
                                                              "in a row")


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_s("30", NOW) == 30
    assert retry_after_s("Mon, 23 Nov 2026 09:01:00 GMT", NOW) == 60
    assert retry_after_s("soon", NOW) is None and retry_after_s(None, NOW) is None
    assert retry_after_s("\u00b2", NOW) is None  # a digit to str.isdigit, not to float()
    assert retry_after_s("Mon, 01 Jan 2024 00:00:00 +99999999999999999999", NOW) is None  # no OverflowError


def test_a_retry_after_in_https_other_date_forms_is_read_as_gmt():
    """asctime's form and a -0000 zone are read without a zone: compared with an aware moment they raised, and
    the header was taken for none (the next attempt seconds later, not when the receiver asked)."""
    assert retry_after_s("Mon Nov 23 09:01:00 2026", NOW) == 60
    assert retry_after_s("Mon, 23 Nov 2026 09:01:00 -0000", NOW) == 60


def test_no_answer_and_no_attempt_count_can_keep_a_delivery_from_its_verdict():
    """A verdict that raised left the delivery unrecorded: sent again every lease, for ever."""
    window = timedelta(hours=72)
    far = after_attempt(503, 999_999_999_999, attempts=1, refused_before=0, first_at=NOW, now=NOW, window=window,
                        jitter=0.5)
    # Far past the window, and past datetime's years: waited as long as the backoff's longest wait.
    assert (far.outcome, far.next_at) == ("retry", NOW + timedelta(hours=1))
    endless = after_attempt(503, retry_after_s("9" * 400, NOW), attempts=1, refused_before=0, first_at=NOW, now=NOW,
                            window=window, jitter=0.5)
    assert (endless.outcome, endless.next_at) == ("retry", NOW + timedelta(hours=1))
    many = after_attempt(500, None, attempts=5_000, refused_before=0, first_at=NOW, now=NOW, window=window,
                         jitter=0.0)
    assert (many.outcome, many.next_at) == ("retry", NOW + timedelta(seconds=1800))  # the cap, halved


async def test_a_receivers_answer_is_read_only_as_far_as_the_delivery_log_keeps_it():
    import gzip

    import httpx

    from delivery.dispatcher import RESPONSE_BYTES, head_of

    bomb = gzip.compress(b"0" * 50_000_000)  # ~50 KB that a client decoding it would unpack to 50 MB

    async def sent(chunks):  # noqa: ANN001, ANN202
        for chunk in chunks:
            yield chunk

    def receiver(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/bomb":
            return httpx.Response(503, headers={"content-encoding": "gzip"}, content=sent([bomb]))
        return httpx.Response(500, content=sent(b"x" * 1000 for _ in range(10**9)))

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        async with client.stream("POST", "https://crm.example.com/bomb") as reply:
            kept = await head_of(reply)
        assert len(kept) <= RESPONSE_BYTES and "0" * 100 not in kept  # the bytes as sent, not unpacked
        async with client.stream("POST", "https://crm.example.com/endless") as reply:
            assert await head_of(reply) == "x" * RESPONSE_BYTES


async def test_a_receivers_answer_with_nul_bytes_is_kept_as_text_postgres_can_store():
    """A gzipped answer (its header holds NUL bytes) made the attempt's recording fail every time: the delivery
    was sent again at every lease, never marked delivered, and the lead's later deliveries waited for ever."""
    import gzip

    import httpx

    from delivery.dispatcher import head_of

    async def sent(chunk: bytes):  # noqa: ANN202
        yield chunk

    answer = gzip.compress(b"ok")
    assert b"\x00" in answer
    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, headers={"content-encoding": "gzip"}, content=sent(answer)))) as client:
        async with client.stream("POST", "https://crm.example.com/h") as reply:
            kept = await head_of(reply)
    assert "\x00" not in kept and kept.startswith("\x1f\ufffd\x08\ufffd")


def test_a_finished_delivery_loses_its_body_once_it_finished_longer_ago_than_the_retention():
    assert purge_after(30) == timedelta(days=30)
    assert purge_after(0.5) == timedelta(hours=12)
    assert purge_after(LONGEST_KEEP_DAYS) == timedelta(days=LONGEST_KEEP_DAYS)


@pytest.mark.parametrize("keep_days", [0, LONGEST_KEEP_DAYS + 1, 1e9, float("inf")])
def test_a_retention_of_0_or_of_longer_than_any_delivery_is_old_purges_nothing(keep_days):
    """0 is "for ever"; a retention of millennia overflowed the date, and every round failed on it (in Postgres
    now, whose dates go back no further than 4713 BC)."""
    assert purge_after(keep_days) is None


def test_an_erasure_lets_its_lead_go_for_every_subscription_so_its_later_events_in_the_batch_reach_no_follower():
    """The store lets an erased lead go for every subscription once the batch is read: an event of the lead after
    the erasure, in the same batch, reaches a B subscription that followed it no more than it would in a later
    batch, or cut into batches of one record."""
    from leadpipe_common.events import LeadErased

    first, _, _, accepted, _, _ = rejected_and_recycled(grade="A")
    sub = following_grades("B")
    following = Following(known={("crm", first.lead_id): Mark(NOW)})
    assert wants(sub, accepted, following.of(sub, accepted))
    erased = LeadErased(lead_id=first.lead_id, at=NOW, by="dpo")
    following.read(erased, [sub], NOW)
    assert not wants(sub, accepted, following.of(sub, accepted))
    assert following.known == following.taken == {}
