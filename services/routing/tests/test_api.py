"""routing's HTTP API over the in-memory store: what the hand-over of a rep's leads answers, who a sales tool's
report is written down as coming from, and what a manager is shown of a team's queue."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import structlog
from fastapi import FastAPI

from leadpipe_common import auth, topics
from leadpipe_common.envelope import decode
from leadpipe_common.events import Assignment, LeadRouted
from leadpipe_common.http import install_problem_handlers
from leadpipe_common.moments import written
from leadpipe_common.testing import factories
from leadpipe_common.throttle import parse_rate
from routing.api import _rep_state, _state, queues_router, reps_router, router
from routing.domain import Handoff, parse_routing_data
from routing.handlers import Routing
from routing.reference import Reference
from routing.store import Held

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ADMIN = auth.Principal(key_id="abc123", name="sales-ops", scopes=frozenset({auth.ADMIN}))
SALES_TOOL = auth.Principal(key_id="def456", name="crm", scopes=frozenset({"feedback:write"}))
#: Ana left: she is gone from the files.
DATA = parse_routing_data({
    "reps": [{"id": "ben", "name": "Ben", "team": "emea"}, {"id": "cy", "name": "Cy", "team": "emea",
                                                            "active": False}],
    "accounts": [],
    "territories": {"regions": {"emea": ["DE"]}, "segments": [{"name": "all", "min_employees": 0}],
                    "unknown_size_segment": "all", "teams": [{"team": "emea", "region": "emea"}],
                    "default_team": "emea"},
    "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"},
    "sla": {"acceptance": {"B": "15m"}},
})


class Keys:
    def __init__(self, principal: auth.Principal) -> None:
        self.principal = principal

    async def authenticate(self, key: str) -> auth.Principal:
        return self.principal

    def seen_valid(self, token: str) -> bool:
        return True


def serving(uow, principal: auth.Principal = ADMIN) -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(reps_router)
    app.include_router(router)
    app.include_router(queues_router)
    app.state.keys, app.state.wrong_keys = Keys(principal), auth.WrongKeys(parse_rate("30/minute", "test"))
    app.state.runtime = SimpleNamespace(request_unit_of_work=lambda: uow,
                                        context=Routing(Reference(DATA, "v1"), clock=lambda: NOW))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing",
                             headers={"Authorization": "Bearer lp_abc123_secret"})


def holding(uow, owner: str, n: int, status: str = "accepted") -> list[uuid.UUID]:
    """``n`` leads ``owner`` holds, stored as routing stores them; their ids, in order."""
    for _ in range(n):
        lead = factories.scored("mql", country="DE")
        routed = LeadRouted.model_construct(**dict(lead), routed_at=NOW - timedelta(days=3), routing_data_version="v0",
                                            assignment=Assignment(owner_id=owner, owner_name=owner, team="emea",
                                                                  method="territory", reason="territory emea / all"))
        handoff = Handoff(lead_id=lead.lead_id, status=status, owner_id=owner, team="emea", grade="B", due_at=None)
        uow.store.handoffs[lead.lead_id] = Held(handoff, routed, None)
    return sorted(lead_id for lead_id, h in uow.store.handoffs.items() if h.handoff.owner_id == owner)


async def test_the_leads_of_a_rep_who_left_are_handed_over_a_page_at_a_time_and_a_repeat_moves_nothing(uow):
    leads = holding(uow, "ana", 3)
    async with serving(uow) as client:
        pages = [await client.post("/v1/reps/ana/handover", params={"limit": 2},
                                   json={"to": "ben", "reason": "left the company"}) for _ in range(3)]
    assert [p.status_code for p in pages] == [200, 200, 200], pages[0].text
    first, second, repeat = (p.json() for p in pages)
    assert ([m["lead_id"] for m in first["moved"]], first["count"], first["more"]) == (
        [str(i) for i in leads[:2]], 2, True)
    assert first["moved"][0] == {"lead_id": str(leads[0]), "owner_id": "ben", "team": "emea", "status": "accepted",
                                 "due_at": None}
    assert ([m["lead_id"] for m in second["moved"]], second["more"]) == ([str(leads[2])], False)
    assert (repeat["count"], repeat["moved"], repeat["more"]) == (0, [], False)
    assert [m.topic for m in uow.published] == [topics.LIFECYCLE, topics.ROUTED] * 3  # committed with the moves


async def test_a_hand_over_asked_with_a_misspelt_parameter_moves_nothing_and_names_it(uow):
    """?limt=1 was dropped: the hand-over asked for one lead moved every lead the rep held (500 a page)."""
    holding(uow, "ana", 3)
    async with serving(uow) as client:
        asked = await client.post("/v1/reps/ana/handover", params={"limt": 1}, json={"to": "ben"})
        paged = await client.post("/v1/reps/ana/handover", params={"next_after": "x"}, json={"to": "ben"})
    assert asked.status_code == 422, asked.text
    assert asked.json()["errors"] == [{"field": "limt", "reason": "is not a parameter this takes: did you mean limit?"}]
    assert paged.status_code == 422 and paged.json()["errors"][0]["field"] == "next_after"
    assert uow.published == [] and {h.handoff.owner_id for h in uow.store.handoffs.values()} == {"ana"}


async def test_through_routing_accepted_leads_nobody_can_take_are_answered_apart_and_the_next_page_starts_after_them(
        uow):
    """Ben held them before Ana, and Cy is inactive: nobody may take them, and they stay Ana's."""
    leads = holding(uow, "ana", 3)
    for lead_id in leads:
        h = uow.store.handoffs[lead_id]
        uow.store.handoffs[lead_id] = replace(h, handoff=replace(h.handoff, holders=("ben",)))
    async with serving(uow) as client:
        first = await client.post("/v1/reps/ana/handover", params={"limit": 2}, json={"to": None})
        second = await client.post("/v1/reps/ana/handover", params={"limit": 2, "after": first.json()["next_after"]},
                                   json={"to": None})
        bad = await client.post("/v1/reps/ana/handover", params={"after": "the-last-one"}, json={"to": None})
    assert (first.status_code, second.status_code) == (200, 200), first.text
    first, second = first.json(), second.json()
    assert (first["count"], first["moved"], first["more"], first["next_after"]) == (0, [], True, str(leads[1]))
    assert [k["lead_id"] for k in first["kept"]] == [str(i) for i in leads[:2]]
    assert first["kept"][0] == {"lead_id": str(leads[0]), "status": "accepted", "reason": (
        "territory emea / all; nobody in emea can take it now (ben has held it, cy inactive); a lead sales accepted "
        "does not wait in a queue: it stays with ana")}
    assert ([k["lead_id"] for k in second["kept"]], second["more"], second["next_after"]) == (
        [str(leads[2])], False, None)
    assert bad.status_code == 422 and [e["field"] for e in bad.json()["errors"]] == ["after"]
    assert uow.published == [] and {h.handoff.owner_id for h in uow.store.handoffs.values()} == {"ana"}


async def test_a_hand_over_to_a_rep_not_in_the_files_or_inactive_is_refused_naming_to_and_moves_nothing(uow):
    holding(uow, "ana", 1)
    async with serving(uow) as client:
        unknown = await client.post("/v1/reps/ana/handover", json={"to": "zed"})
        inactive = await client.post("/v1/reps/ana/handover", json={"to": "cy"})
        unsaid = await client.post("/v1/reps/ana/handover", json={})
    assert (unknown.status_code, unknown.json()["errors"]) == (
        422, [{"field": "to", "reason": "no rep 'zed' in the reps file"}])
    assert (inactive.status_code, inactive.json()["errors"][0]["field"]) == (422, "to")
    assert unsaid.status_code == 422  # through routing is said with "to": null, never by leaving it out
    assert uow.published == [] and {h.handoff.owner_id for h in uow.store.handoffs.values()} == {"ana"}


async def test_a_rep_routing_never_handed_a_lead_is_not_found(uow):
    async with serving(uow) as client:
        nobody = await client.post("/v1/reps/no.such.rep/handover", json={"to": "ben"})
        known = await client.post("/v1/reps/ben/handover", json={"to": None})  # in the files, holding nothing
    assert nobody.status_code == 404 and "no.such.rep" in nobody.json()["error"]
    assert (known.status_code, known.json()["count"]) == (200, 0)


async def test_a_teams_queue_is_not_a_rep_to_hand_over_and_is_refused_naming_rep_id(uow):
    async with serving(uow) as client:
        queue = await client.post("/v1/reps/queue:emea/handover", json={"to": "ben"})
    assert (queue.status_code, [e["field"] for e in queue.json()["errors"]]) == (422, ["rep_id"])


async def test_a_hand_over_needs_the_admin_scope(uow):
    holding(uow, "ana", 1)
    async with serving(uow, SALES_TOOL) as client:
        answer = await client.post("/v1/reps/ana/handover", json={"to": "ben"})
    assert answer.status_code == 403 and uow.published == []


async def test_a_report_a_sales_tool_makes_for_a_rep_is_logged_with_the_key_that_made_it_once(uow):
    """A ``feedback:write`` key speaks for any rep it names: the audit line says which key named whom."""
    [lead] = holding(uow, "ben", 1, status="routed")
    with structlog.testing.capture_logs() as lines:
        async with serving(uow, SALES_TOOL) as client:
            answers = [await client.post(f"/v1/leads/{lead}/disposition", json={"outcome": "accepted", "rep_id": "ben"})
                       for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and answers[1].json()["repeated"], answers[0].text
    recorded = [line for line in lines if line["event"] == "disposition recorded"]
    assert [(r["lead_id"], r["rep_id"], r["key_name"], r["key_id"], r["outcome"]) for r in recorded] == [
        (str(lead), "ben", "crm", "def456", "accepted")]


async def test_a_merge_a_sales_tool_makes_for_a_rep_is_logged_with_the_key_that_made_it(uow):
    duplicate, survivor = holding(uow, "ben", 2)
    with structlog.testing.capture_logs() as lines:
        async with serving(uow, SALES_TOOL) as client:
            answer = await client.post(f"/v1/leads/{duplicate}/merge",
                                       json={"survivor_id": str(survivor), "rep_id": "ben"})
    assert answer.status_code == 200, answer.text
    assert [(r["lead_id"], r["rep_id"], r["key_name"], r["survivor_id"]) for r in lines
            if r["event"] == "merge recorded"] == [(str(duplicate), "ben", "crm", str(survivor))]


async def test_a_report_dated_well_after_routing_records_it_is_refused_naming_at_and_one_just_after_is_dated_now(uow):
    """A CRM writing its local wall-clock time with a Z is told so, not believed; a clock a little ahead is not an
    error, but its answer cannot be dated after routing recorded it."""
    lead, other = holding(uow, "ben", 2, status="routed")
    async with serving(uow, SALES_TOOL) as client:
        ahead = await client.post(f"/v1/leads/{lead}/disposition", json={
            "outcome": "accepted", "rep_id": "ben", "at": (NOW + timedelta(hours=1)).isoformat()})
        skewed = await client.post(f"/v1/leads/{other}/disposition", json={
            "outcome": "accepted", "rep_id": "ben", "at": (NOW + timedelta(minutes=2)).isoformat()})
    assert (ahead.status_code, [e["field"] for e in ahead.json()["errors"]]) == (422, ["at"]), ahead.text
    assert uow.store.handoffs[lead].handoff.status == "routed"
    assert skewed.status_code == 200, skewed.text
    [step] = uow.published
    assert step.topic == topics.LIFECYCLE and decode(step.headers, step.key, step.value).data.at == NOW


async def test_an_acceptance_dated_hours_before_its_hand_off_is_refused_naming_at_and_one_minutes_before_is_kept(uow):
    """A New York CRM writing its local wall-clock time with a Z is told so, not believed; a clock a little behind
    is not an error. (The leads were handed to ben three days ago.)"""
    lead, other = holding(uow, "ben", 2, status="routed")
    handed = NOW - timedelta(days=3)
    async with serving(uow, SALES_TOOL) as client:
        early = await client.post(f"/v1/leads/{lead}/disposition", json={
            "outcome": "accepted", "rep_id": "ben", "at": (handed - timedelta(hours=5)).isoformat()})
        skewed = await client.post(f"/v1/leads/{other}/disposition", json={
            "outcome": "accepted", "rep_id": "ben", "at": (handed - timedelta(minutes=2)).isoformat()})
    assert (early.status_code, [e["field"] for e in early.json()["errors"]]) == (422, ["at"]), early.text
    assert "is the time zone right?" in early.json()["error"]
    assert uow.store.handoffs[lead].handoff.status == "routed"
    assert skewed.status_code == 200, skewed.text
    [step] = uow.published
    assert decode(step.headers, step.key, step.value).data.at == handed - timedelta(minutes=2)


async def test_merging_a_lead_sales_works_into_one_it_rejected_answers_409_saying_to_merge_the_other_way(uow):
    [rejected] = holding(uow, "ben", 1, status="rejected")
    [worked] = [lead for lead in holding(uow, "ben", 1) if lead != rejected]
    async with serving(uow, SALES_TOOL) as client:
        answer = await client.post(f"/v1/leads/{worked}/merge", json={"survivor_id": str(rejected), "rep_id": "ben"})
    assert answer.status_code == 409, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "survivor_id" and f"merge {rejected} into {worked} instead" in error["reason"]
    assert uow.store.handoffs[worked].handoff.status == "accepted"


async def test_a_merge_naming_a_lead_routing_does_not_hold_says_which_one(uow):
    """Both were one 404, "L and S must both be leads...": a client could not tell the path from the body."""
    [held] = holding(uow, "ben", 1)
    nowhere = uuid.uuid4()
    async with serving(uow, SALES_TOOL) as client:
        into_nowhere = await client.post(f"/v1/leads/{held}/merge", json={"survivor_id": str(nowhere), "rep_id": "ben"})
        from_nowhere = await client.post(f"/v1/leads/{nowhere}/merge", json={"survivor_id": str(held), "rep_id": "ben"})
    assert into_nowhere.status_code == 404 and into_nowhere.json()["errors"] == [
        {"field": "survivor_id", "reason": "is not a lead routing handed to sales"}]
    assert from_nowhere.status_code == 404 and from_nowhere.json() == {"error": f"no routed lead {nowhere}"}
    assert uow.published == [] and uow.store.handoffs[held].handoff.status == "accepted"


async def test_the_hand_off_of_a_lead_merged_into_one_merged_on_since_names_the_lead_holding_the_person_now(uow):
    d, s, t = holding(uow, "ben", 3)
    async with serving(uow) as client:
        merges = [await client.post(f"/v1/leads/{lead}/merge", json={"survivor_id": str(into), "rep_id": "ben"})
                  for lead, into in ((d, s), (s, t))]
        handoff = await client.get(f"/v1/leads/{d}/handoff")
        report = await client.post(f"/v1/leads/{d}/disposition", json={"outcome": "contacted", "rep_id": "ben"})
    assert [m.status_code for m in merges] == [200, 200], merges[0].text
    assert handoff.status_code == 200
    assert (handoff.json()["status"], handoff.json()["merged_into"]) == ("merged", str(t))
    assert report.status_code == 409 and report.json()["error"] == (
        f"the lead is closed as merged into {t}; report on {t} instead")


async def test_a_won_deal_s_amount_is_corrected_by_its_holder_and_the_answer_says_it_was_a_correction(uow):
    [lead] = holding(uow, "ben", 1, status="qualified")
    won = {"outcome": "won", "rep_id": "ben", "amount": "50000", "currency": "EUR"}
    with structlog.testing.capture_logs() as lines:
        async with serving(uow, SALES_TOOL) as client:
            first = await client.post(f"/v1/leads/{lead}/disposition", json=won)
            corrected = await client.post(f"/v1/leads/{lead}/disposition", json={**won, "amount": "5000"})
            again = await client.post(f"/v1/leads/{lead}/disposition", json={**won, "amount": "5000"})
            stranger = await client.post(f"/v1/leads/{lead}/disposition",
                                         json={**won, "rep_id": "cy", "amount": "500"})
    assert (first.status_code, first.json()["corrected"]) == (200, False), first.text
    assert corrected.status_code == 200, corrected.text
    answer = corrected.json()
    assert (answer["status"], answer["corrected"], answer["repeated"], len(answer["events"])) == ("won", True, False, 1)
    assert [d["amount"] for d in answer["dispositions"] if d["outcome"] == "won"] == ["50000.00", "5000.00"]
    assert (again.json()["repeated"], again.json()["corrected"], again.json()["events"]) == (True, False, [])
    assert (stranger.status_code, [e["field"] for e in stranger.json()["errors"]]) == (409, ["rep_id"])
    assert [data.type for data in (decode(m.headers, m.key, m.value).data for m in uow.published)] == [
        "lead.stage_changed", "lead.won_amount_corrected"]
    assert [r["event"] for r in lines if r.get("rep_id") == "ben"] == ["disposition recorded", "won amount corrected"]


def _held_as(uow, lead_id: uuid.UUID, **changes) -> None:
    h = uow.store.handoffs[lead_id]
    uow.store.handoffs[lead_id] = replace(h, handoff=replace(h.handoff, **changes))


async def test_a_disposition_s_and_a_hand_off_s_answers_are_what_the_routes_build_under_their_models(uow):
    """Their models describe the answers for clients' types: no key is dropped or moved, no null left out, no time
    written again (``+00:00`` stays)."""
    waiting, worked = holding(uow, "ben", 2, status="routed")
    _held_as(uow, waiting, due_at=NOW + timedelta(minutes=15))
    _held_as(uow, worked, status="qualified")
    won = {"outcome": "won", "rep_id": "ben", "amount": "50000", "currency": "EUR"}
    async with serving(uow, SALES_TOOL) as client:
        handoff = await client.get(f"/v1/leads/{waiting}/handoff")
        await client.post(f"/v1/leads/{worked}/disposition", json=won)
        corrected = await client.post(f"/v1/leads/{worked}/disposition", json={**won, "amount": "5000"})
    assert handoff.json()["due_at"] == written(NOW + timedelta(minutes=15)), handoff.text
    assert handoff.json()["due_at"].endswith("Z")  # as the queues, the events and every other answer write it
    assert list(handoff.json().items()) == list(_state(uow.store.handoffs[waiting].handoff).items())
    assert list(corrected.json().items()) == list({
        **_state(uow.store.handoffs[worked].handoff), "repeated": False, "corrected": True,
        "events": [uow.published[-1].header("ce_id")]}.items())


async def test_a_merge_s_answer_is_what_the_route_builds_under_its_model(uow):
    duplicate, survivor = holding(uow, "ben", 2)
    async with serving(uow, SALES_TOOL) as client:
        merge = await client.post(f"/v1/leads/{duplicate}/merge", json={"survivor_id": str(survivor), "rep_id": "ben"})
    assert merge.json()["merged_into"] == str(survivor), merge.text
    assert list(merge.json().items()) == list({
        **_state(uow.store.handoffs[duplicate].handoff), "survivor_id": str(survivor), "repeated": False,
        "events": [m.header("ce_id") for m in uow.published]}.items())


async def test_a_rep_s_availability_answers_are_what_the_routes_build_under_their_models(uow):
    away = {"starts_at": written(NOW + timedelta(hours=1)), "ends_at": written(NOW + timedelta(days=1)),
            "reason": "dentist"}
    async with serving(uow) as client:
        put = await client.put("/v1/reps/ben/availability", json={"away": [away]})
        got = await client.get("/v1/reps/ben/availability")
        reps = await client.get("/v1/reps")
    presence = await uow.store.presence([rep.id for rep in DATA.reps], NOW)
    ben = _rep_state(DATA.rep("ben"), DATA, presence, NOW)
    assert ben["away"] == [away], put.text
    assert list(put.json().items()) == list(got.json().items()) == list(ben.items())
    assert list(reps.json().items()) == list({"routing_data_version": "v1", "at": written(NOW), "reps": [
        _rep_state(rep, DATA, presence, NOW) for rep in DATA.reps]}.items())
READER = auth.Principal(key_id="aaa111", name="dashboard", scopes=frozenset({"reports:read"}))
IMPORTER = auth.Principal(key_id="bbb222", name="import", scopes=frozenset({"capture:write"}))


def in_queue(uow, team: str, *, waiting_since: datetime | None = None, sent_at: datetime = NOW - timedelta(days=1),
             grade: str = "B", status: str = "routed") -> uuid.UUID:
    """A lead routing sent to ``team``'s queue at ``sent_at``, waiting since ``waiting_since`` or (None) escalated
    there after two missed deadlines; its id."""
    lead = factories.scored("mql", country="DE")
    lead_id = lead.lead_id
    routed = LeadRouted.model_construct(**dict(lead), routed_at=sent_at,
                                        routing_data_version="v0", assignment=Assignment(
                                            owner_id=f"queue:{team}", owner_name=f"{team} queue", team=team,
                                            method="queue", reason="nobody could take it"))
    handoff = Handoff(lead_id=lead_id, status=status, owner_id=f"queue:{team}", team=team, grade=grade, due_at=None,
                      reassignments=0 if waiting_since else 2, holders=("ana", "ben"), waiting_since=waiting_since,
                      seq=3)
    uow.store.handoffs[lead_id] = Held(handoff, routed, None)
    return lead_id


async def test_every_team_of_the_files_is_listed_with_its_queue_counted_by_kind_and_grade_and_a_renamed_teams_too(
        uow):
    """emea-old was renamed emea in the files: the lead escalated to its queue is still counted, under its name."""
    in_queue(uow, "emea", waiting_since=NOW - timedelta(hours=2), grade="B")
    in_queue(uow, "emea", waiting_since=NOW - timedelta(minutes=5), grade="A")
    in_queue(uow, "emea", grade="A")
    in_queue(uow, "emea-old")
    in_queue(uow, "emea", status="merged")  # closed in the queue: no longer in it
    holding(uow, "ben", 1, status="routed")  # held by a rep: in no queue
    async with serving(uow, READER) as client:
        answer = await client.get("/v1/queues")
    assert answer.status_code == 200, answer.text
    assert answer.json()["at"] == "2026-11-23T09:00:00Z" and answer.json()["routing_data_version"] == "v1"
    emea, old = answer.json()["queues"]
    assert emea == {"team": "emea", "in_files": True, "waiting": 2, "escalated": 1,
                    "oldest_waiting_since": "2026-11-23T07:00:00Z", "oldest_wait_s": 7200.0,
                    "grades": [{"grade": "A", "waiting": 1, "escalated": 1}, {"grade": "B", "waiting": 1, "escalated": 0}],
                    "may_take": ["ben"]}  # cy is inactive
    assert old == {"team": "emea-old", "in_files": False, "waiting": 0, "escalated": 1, "oldest_waiting_since": None,
                   "oldest_wait_s": None, "grades": [{"grade": "B", "waiting": 0, "escalated": 1}], "may_take": []}


async def test_a_team_of_the_files_with_nobody_in_its_queue_is_listed_with_none(uow):
    async with serving(uow, READER) as client:
        listed = await client.get("/v1/queues")
        one = await client.get("/v1/queues/emea")
    assert [(q["team"], q["waiting"], q["escalated"], q["grades"]) for q in listed.json()["queues"]] == [
        ("emea", 0, 0, [])]
    assert one.status_code == 200 and (one.json()["waiting"], one.json()["leads"]) == (0, [])


async def test_a_teams_queue_is_listed_oldest_first_page_by_page_the_link_naming_the_next_until_the_last(uow):
    """An escalated lead stands by when routing sent it to the queue, a waiting one by when its wait began; leads
    queued at one moment (a batch) by lead id."""
    at = NOW - timedelta(hours=3)
    escalated = in_queue(uow, "emea", sent_at=at)
    batch = sorted(in_queue(uow, "emea", waiting_since=at + timedelta(minutes=1), sent_at=at - timedelta(days=2))
                   for _ in range(2))
    last = in_queue(uow, "emea", waiting_since=at + timedelta(minutes=2))
    in_queue(uow, "apac", waiting_since=at - timedelta(days=1))  # another team's
    answers, url = [], "/v1/queues/emea?limit=2"
    async with serving(uow, READER) as client:
        while url is not None and len(answers) < 3:  # a page that named itself next would loop for ever
            answers.append(await client.get(url))
            assert answers[-1].status_code == 200, answers[-1].text
            url = answers[-1].links.get("next", {}).get("url")
    assert [[lead["lead_id"] for lead in a.json()["leads"]] for a in answers] == [
        [str(escalated), str(batch[0])], [str(batch[1]), str(last)]]
    assert answers[0].links["next"]["url"].startswith("/v1/queues/emea?limit=2&after=")
    first = answers[0].json()
    assert first["leads"][0] == {"lead_id": str(escalated), "grade": "B", "kind": "escalated",
                                 "since": "2026-11-23T06:00:00Z", "waited_s": 10800.0, "reassignments": 2,
                                 "handoff_seq": 3}
    assert (first["leads"][1]["kind"], first["leads"][1]["since"]) == ("waiting", "2026-11-23T06:01:00Z")
    assert (first["team"], first["waiting"], first["escalated"], first["may_take"]) == ("emea", 3, 1, ["ben"])


async def test_an_unknown_team_is_not_found_naming_it_but_one_renamed_in_the_files_lists_while_leads_are_in_its_queue(
        uow):
    lead = in_queue(uow, "emea-old")
    async with serving(uow, READER) as client:
        unknown = await client.get("/v1/queues/nowhere")
        renamed = await client.get("/v1/queues/emea-old")
    assert unknown.status_code == 404 and "'nowhere'" in unknown.json()["error"]
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["in_files"], renamed.json()["may_take"]) == (False, [])
    assert [q["lead_id"] for q in renamed.json()["leads"]] == [str(lead)]


async def test_the_next_page_of_a_team_whose_name_a_path_must_quote_is_named_quoted_and_found(uow):
    leads = sorted(in_queue(uow, "emea west?", waiting_since=NOW) for _ in range(2))
    async with serving(uow, READER) as client:
        first = await client.get("/v1/queues/emea%20west%3F", params={"limit": 1})
        url = first.links["next"]["url"]
        second = await client.get(url)
    assert url.startswith("/v1/queues/emea%20west%3F?limit=1&after=")
    assert [a.json()["leads"][0]["lead_id"] for a in (first, second)] == [str(i) for i in leads]


async def test_a_page_position_the_list_did_not_give_is_refused_naming_after(uow):
    async with serving(uow, READER) as client:
        answer = await client.get("/v1/queues/emea", params={"after": "the-last-one"})
        too_many = await client.get("/v1/queues/emea", params={"limit": 1001})
    assert (answer.status_code, [e["field"] for e in answer.json()["errors"]]) == (422, ["after"])
    assert too_many.status_code == 422


async def test_the_queues_are_read_by_a_key_that_reads_reports_or_a_sales_tools_and_by_no_other(uow):
    answers = {}
    for principal in (READER, SALES_TOOL, IMPORTER):
        async with serving(uow, principal) as client:
            answers[principal.name] = [(await client.get(path)).status_code for path in ("/v1/queues",
                                                                                          "/v1/queues/emea")]
    assert answers == {"dashboard": [200, 200], "crm": [200, 200], "import": [403, 403]}
