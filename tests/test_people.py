"""One person, one lead: retries, duplicates, re-engagement and recycling, through the real stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from leadpipe_common import topics
from leadpipe_common.testing.kafka import read_all, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS

pytestmark = pytest.mark.asyncio

SALES_READY = {"job_title": "Chief Marketing Officer", "country": "US", "offer": "demo"}


def url(stack, service: str) -> str:  # noqa: ANN001
    return next(p.url for p in stack.processes if p.service == service)


def address(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}@stripe.com"


async def post(stack, body: dict[str, Any], **headers: str) -> httpx.Response:  # noqa: ANN001
    """An importer's post (a capture:write key): its answer says whether the person was known (``existing``)."""
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30, headers=KEY_HEADERS) as capture:
        return await capture.post("/v1/leads", json=body, headers=headers)


async def steps_of(bootstrap: str, lead_id: str, until: Any, timeout: float = 30) -> list[Any]:
    return await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() == lead_id, until=until,
                            timeout=timeout)


async def test_fifty_simultaneous_submissions_of_one_address_make_one_lead_routed_once(stack, bootstrap):
    email = address("jane.doe")
    spellings = [email, email.upper(), email.replace("@", "+webinar@")]
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=60, headers=KEY_HEADERS) as capture:
        answers = await asyncio.gather(*(
            capture.post("/v1/leads", json={"email": spellings[i % 3], **SALES_READY, "utm_source": f"s{i}"})
            for i in range(50)))
    assert {r.status_code for r in answers} == {202}
    [lead_id] = {r.json()["lead_id"] for r in answers}
    assert sorted(r.json()["existing"] for r in answers) == [False] + [True] * 49

    def routings(found: list[Any]) -> list[Any]:
        return [r for r in found if r.json()["touch"] is None]

    def settled(found: list[Any]) -> bool:
        return (sum(r.type == "lead.touch_recorded" for r in found) >= 49
                and any(r.type == "lead.stage_changed" and r.json()["to_stage"] == "routed" for r in found))

    touches = await steps_of(bootstrap, lead_id, settled)
    assert len({r.id for r in touches if r.type == "lead.touch_recorded"}) == 49
    # The lifecycle names nobody: not in a touch, nor in any step.
    assert not any("contact" in r.json() or email.split("@")[0] in r.value.decode().lower() for r in touches)
    assert sum(r.type == "lead.stage_changed" and r.json()["to_stage"] == "routed" for r in touches) == 1
    # One routing; the other records tell its holder of the touches (those scored in the routing's own batch
    # too), all with the one owner.
    await asyncio.sleep(2)
    routed = await read_all(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id)
    assert len({r.id for r in routings(routed)}) == 1
    assert len({r.json()["assignment"]["owner_id"] for r in routed}) == 1


async def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer_and_creates_nothing(stack, db):
    import sqlalchemy as sa

    body = {"email": address("retry"), "offer": "newsletter"}
    key = str(uuid.uuid4())
    first = await post(stack, body, **{"Idempotency-Key": key})
    again = await post(stack, body, **{"Idempotency-Key": key})
    other = await post(stack, {**body, "offer": "demo"}, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    async with db.connect() as conn:
        leads = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE email = :e"),
                                    {"e": body["email"]})).scalar_one()
        touches = (await conn.execute(sa.text("SELECT count(*) FROM capture.touches WHERE lead_id = :id"),
                                      {"id": first.json()["lead_id"]})).scalar_one()
    assert (leads, touches) == (1, 0)
    bad = await post(stack, body, **{"Idempotency-Key": "x" * 300})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_a_post_without_a_key_is_not_told_whether_its_person_had_an_open_lead(stack, db):
    """Anyone may post an address: told `existing`, or the open lead's id (which their next post would name
    again), they learned whether that person is in a sales pipeline. They are told the id of their own touch."""
    import sqlalchemy as sa

    email = address("ceo")
    opened = await post(stack, {"email": email, "offer": "newsletter"})
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        known = await capture.post("/v1/leads", json={"email": email, "offer": "demo"})
        new = await capture.post("/v1/forms/demo-request", json={"email": address("nobody")},
                                 headers={"accept": "application/json"})
    assert opened.json()["existing"] is False
    assert known.status_code == new.status_code == 202
    assert set(known.json()) == set(new.json()) == {"lead_id", "status", "captured_at", "form_id"}
    async with db.connect() as conn:
        touched = (await conn.execute(sa.text("SELECT lead_id::text FROM capture.touches WHERE touch_id = :t"),
                                      {"t": uuid.UUID(known.json()["lead_id"])})).scalar_one()
    assert touched == opened.json()["lead_id"] != known.json()["lead_id"]


async def test_a_nurture_lead_that_asks_for_a_demo_is_recycled_and_routed_once(stack, bootstrap):
    email = f"reader.{uuid.uuid4().hex[:8]}@smallshop.example"  # no company on file: fit alone is not enough
    first = await post(stack, {"email": email, "job_title": "Marketing Manager", "country": "US",
                               "offer": "whitepaper-lead-scoring"})
    lead_id = first.json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "nurture" for r in f))
    again = await post(stack, {"email": email, "offer": "demo", "utm_source": "retargeting"})
    assert again.json()["lead_id"] == lead_id and again.json()["existing"] is True
    steps = await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    moves = [(r.json()["from_stage"], r.json()["to_stage"]) for r in steps if r.type == "lead.stage_changed"]
    assert moves[-3:] == [("enriched", "nurture"), ("nurture", "mql"), ("mql", "routed")], moves
    await asyncio.sleep(1)
    routed = await read_all(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id)
    assert len({r.id for r in routed}) == 1


async def test_a_lead_with_sales_is_reengaged_without_a_second_routing_or_sla_clock(stack, bootstrap):
    """The same form sent again moments later (a double click) earns nothing and tells nobody; the touch after it
    does, and, read in order behind it, proves the repeat was passed over, not still on its way."""
    email = address("buyer")
    lead_id = (await post(stack, {"email": email, **SALES_READY})).json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        before = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()
        for offer in ("pricing", "pricing", "whitepaper-lead-scoring"):
            await post(stack, {"email": email, "offer": offer, "utm_source": "newsletter"})
        steps = await steps_of(bootstrap, lead_id, lambda f: sum(r.type == "lead.reengaged" for r in f) >= 2)
        after = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()
    reengaged = [r.json() for r in steps if r.type == "lead.reengaged"]
    assert ["asked for pricing via newsletter" in reengaged[0]["reason"],
            "asked for whitepaper-lead-scoring via newsletter" in reengaged[1]["reason"]] == [True, True], reengaged
    assert len(reengaged) == 2 and {r["owner_id"] for r in reengaged} == {before["owner_id"]}
    assert after["due_at"] == before["due_at"] and after["owner_id"] == before["owner_id"]
    routed = await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id,
                              until=lambda f: len({r.id for r in f}) >= 3)
    fresh = [r.json() for r in routed if r.json()["touch"]]
    assert fresh and fresh[0]["assignment"] == next(r.json() for r in routed if not r.json()["touch"])["assignment"]
    assert sum(r.json().get("to_stage") == "routed" for r in steps if r.type == "lead.stage_changed") == 1


async def test_a_consent_withdrawn_by_the_same_form_sent_again_reaches_the_sales_tools(stack, bootstrap):
    """The second demo request earns nothing (a repeat), but its no to marketing is news sales tools must get."""
    email = address("changed.mind")
    lead_id = (await post(stack, {"email": email, **SALES_READY, "marketing_consent": True})).json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    await post(stack, {"email": email, **SALES_READY, "marketing_consent": False})
    routed = await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id,
                              until=lambda f: len({r.id for r in f}) >= 2)
    once = {r.id: r.json() for r in routed}.values()  # a redelivery may publish a record twice, under one id
    consents = [(r["touch"] is not None, r["contact"]["marketing_consent"]) for r in once]
    assert consents == [(False, True), (True, False)], consents
    # Both say the grade routing holds the lead at, its routing's: what a webhook filtered on grade follows.
    first = next(iter(once))
    assert [r["held_grade"] for r in once] == [first["score"]["grade"]] * 2, once


async def test_a_lead_sales_rejected_and_a_touch_sent_back_has_a_second_hand_off_of_its_own(stack, bootstrap):
    """Consumers keep one event per id (reporting's steps, delivery's webhooks): the second hand-off's
    acceptance is a step of its own, and so is the recycled lead's way back to MQL beside its routing."""
    email = address("second.chance")
    lead_id = (await post(stack, {"email": email, **SALES_READY})).json()["lead_id"]

    def steps_to(stage: str, count: int):  # noqa: ANN202
        return lambda found: sum(r.type == "lead.stage_changed" and r.json()["to_stage"] == stage
                                 for r in found) >= count

    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:

        async def accept_and_reject() -> None:
            owner = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()["owner_id"]
            for report in ({"outcome": "accepted"}, {"outcome": "rejected", "reason_code": "not-a-fit"}):
                answer = await routing.post(f"/v1/leads/{lead_id}/disposition", json={**report, "rep_id": owner})
                assert answer.status_code == 200, answer.text

        await steps_of(bootstrap, lead_id, steps_to("routed", 1))
        await accept_and_reject()
        await post(stack, {"email": email, "offer": "pricing", "utm_source": "retargeting"})  # recycles it
        await steps_of(bootstrap, lead_id, steps_to("routed", 2))
        await accept_and_reject()
    steps = await steps_of(bootstrap, lead_id, steps_to("rejected", 2))
    moves = [(r.json()["from_stage"], r.json()["to_stage"], r.id) for r in steps if r.type == "lead.stage_changed"]
    for stage in ("accepted", "rejected", "routed"):
        assert len({i for _, to, i in moves if to == stage}) == 2, moves
    assert ("nurture", "mql") in {(a, b) for a, b, _ in moves}


async def test_a_lead_sales_rejected_as_spam_stays_in_nurture_when_it_asks_for_a_demo(stack, bootstrap):
    """The bundled reasons.yaml says spam does not recycle: the touch is scored, but no second routing."""
    email = address("test.submission")
    lead_id = (await post(stack, {"email": email, **SALES_READY})).json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        owner = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()["owner_id"]
        answer = await routing.post(f"/v1/leads/{lead_id}/disposition",
                                    json={"outcome": "rejected", "reason_code": "spam", "rep_id": owner})
        assert answer.status_code == 200, answer.text
        await post(stack, {"email": email, "offer": "pricing", "utm_source": "retargeting"})  # would recycle it
        await read_topic(bootstrap, topics.SCORED, where=lambda r: r.key.decode() == lead_id and r.json()["touch"],
                         until=bool)
        await asyncio.sleep(2)  # routing reads the touch's score (and emits nothing for it)
        assert (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()["status"] == "rejected"
    routed = await read_all(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id)
    assert len({r.id for r in routed}) == 1
    steps = await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "nurture" for r in f))
    [back] = [r.json() for r in steps if r.json().get("from_stage") == "rejected"]
    assert back["reason"] == "returned to marketing: spam; its touches do not send it back to sales"


async def test_a_closed_leads_person_starts_a_new_lead_with_the_same_person_id(stack, bootstrap):
    email = address("returning")
    lead_id = (await post(stack, {"email": email, **SALES_READY})).json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        owner = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()["owner_id"]
        for report in ({"outcome": "accepted"}, {"outcome": "lost", "reason_code": "price"}):
            answer = await routing.post(f"/v1/leads/{lead_id}/disposition", json={**report, "rep_id": owner})
            assert answer.status_code == 200, answer.text
    async with asyncio.timeout(30):  # capture learns of the close from the lifecycle
        while (again := await post(stack, {"email": email, "offer": "demo"})).json()["existing"]:
            await asyncio.sleep(0.5)
    new_id = again.json()["lead_id"]
    assert new_id != lead_id
    captured = await read_topic(bootstrap, topics.CAPTURED, where=lambda r: r.key.decode() in {lead_id, new_id}
                                and r.type == "lead.captured", until=lambda f: len({r.key for r in f}) >= 2)
    people = {r.key.decode(): r.json()["person_id"] for r in captured}
    assert people[lead_id] == people[new_id] is not None


def rescore(stack, rules_file, *args: str) -> str:  # noqa: ANN001
    import subprocess
    import sys

    env = {**stack.env(), "SCORING_RULES_FILE": str(rules_file), "SCORING_PORT": "0", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "scoring", "rescore", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_rescore_dry_run_says_exactly_what_the_real_run_then_does(stack, bootstrap, tmp_path):
    import importlib.resources
    from datetime import UTC, datetime

    import yaml

    email = f"reader.{uuid.uuid4().hex[:8]}@smallshop.example"
    lead_id = (await post(stack, {"email": email, "job_title": "Marketing Manager", "country": "US",
                                  "offer": "whitepaper-lead-scoring", "utm_source": "rescore-test"})).json()["lead_id"]
    await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "nurture" for r in f))
    rules = yaml.safe_load((importlib.resources.files("scoring") / "data" / "rules.yaml").read_text())
    rules["version"], rules["thresholds"]["mql"] = "lower-bar-1", 40  # marketing lowers the bar
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    at = datetime.now(UTC).isoformat()

    dry = rescore(stack, rules_file, "--dry-run", "--at", at)
    real = rescore(stack, rules_file, "--at", at)

    from scoring.commands import MOVES

    def what(out: str) -> list[str]:
        # Each run's own closing line: the dry run's "nothing was written", the real run's outbox note.
        said = [line.removeprefix("dry run: ").replace("would change", "changed")
                for line in out.splitlines()
                if not line.startswith("nothing was written") and "in scoring's outbox" not in line]
        for would, did, _ in MOVES.values():  # each move's line as the real run prints it
            said = [line.replace(would, did) for line in said]
        return said

    assert dry.startswith("dry run: ") and what(dry) == what(real), (dry, real)
    assert "moved to MQL (recycled to sales): 0" not in what(real)
    assert "events are in scoring's outbox: the running scoring service publishes them" in real
    assert any("rescore-test" in line for line in real.splitlines())
    steps = await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    moves = [(r.json()["from_stage"], r.json()["to_stage"]) for r in steps if r.type == "lead.stage_changed"]
    assert moves[-2:] == [("nurture", "mql"), ("mql", "routed")], moves


async def test_a_rescore_leaves_out_a_lead_sales_has_won_since_and_counts_it_apart(stack, bootstrap, tmp_path):
    """Rules that score nothing put every MQL below the bar: the one sales holds is counted so; the one sales won
    (still an MQL to scoring, which never reads sales' answers) is not among the moves but among the closed."""
    import importlib.resources

    import yaml

    run = uuid.uuid4().hex[:8]
    won, held = [(await post(stack, {"email": address(name), **SALES_READY, "utm_source": f"rescore-{name}-{run}"}))
                 .json()["lead_id"] for name in ("won", "held")]
    for lead_id in (won, held):
        await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        owner = (await routing.get(f"/v1/leads/{won}/handoff")).json()["owner_id"]
        for report in ({"outcome": "accepted"}, {"outcome": "won", "amount": "900.00", "currency": "EUR"}):
            answer = await routing.post(f"/v1/leads/{won}/disposition", json={**report, "rep_id": owner})
            assert answer.status_code == 200, answer.text
    await steps_of(bootstrap, won, lambda f: any(r.json().get("to_stage") == "won" for r in f))
    rules = yaml.safe_load((importlib.resources.files("scoring") / "data" / "rules.yaml").read_text())
    rules.update(version=f"scores-nothing-{run}", fit=[], intent=[], thresholds={"mql": 100, "nurture": 0})
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))

    out = rescore(stack, rules_file, "--dry-run")

    assert f"rescore-held-{run}" in out and f"rescore-won-{run}" not in out, out
    [closed] = [line for line in out.splitlines() if line.startswith("left out as closed")]
    assert int(closed.rsplit(": ", 1)[1].replace(",", "")) >= 1, out


async def test_sales_merge_two_leads_of_one_person_and_reports_count_them_once(stack, bootstrap):
    run = uuid.uuid4().hex[:8]
    earlier = (await post(stack, {"email": f"ann.{run}@stripe.com", **SALES_READY,
                                  "utm_source": f"merge-a-{run}"})).json()["lead_id"]
    later = (await post(stack, {"email": f"ann.private.{run}@stripe.com", **SALES_READY,
                                "utm_source": f"merge-b-{run}"})).json()["lead_id"]
    for lead_id in (earlier, later):
        await steps_of(bootstrap, lead_id, lambda f: any(r.json().get("to_stage") == "routed" for r in f))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        # A merge is said by a rep who may report on the lead it closes: its holder (or any rep of its team's queue).
        held = {lead_id: (await routing.get(f"/v1/leads/{lead_id}/handoff")).json() for lead_id in (earlier, later)}
        holder = held[earlier]["owner_id"]
        rep = holder if not holder.startswith("queue:") else next(
            r["id"] for r in (await routing.get("/v1/reps")).json()["reps"]
            if r["team"] == holder.removeprefix("queue:"))
        stranger = await routing.post(f"/v1/leads/{earlier}/merge", json={"survivor_id": later, "rep_id": "x"})
        merged = await routing.post(f"/v1/leads/{earlier}/merge", json={"survivor_id": later, "rep_id": rep})
        again = await routing.post(f"/v1/leads/{earlier}/merge", json={"survivor_id": later, "rep_id": rep})
        itself = await routing.post(f"/v1/leads/{later}/merge", json={"survivor_id": later, "rep_id": rep})
        unknown = await routing.post(f"/v1/leads/{uuid.uuid4()}/merge", json={"survivor_id": later, "rep_id": rep})
        other_way = await routing.post(f"/v1/leads/{later}/merge", json={"survivor_id": earlier, "rep_id": rep})
    assert stranger.status_code == 422 and stranger.json()["errors"][0]["field"] == "rep_id", stranger.text
    assert merged.status_code == 200 and merged.json()["status"] == "merged" and not merged.json()["repeated"]
    assert again.json()["repeated"] is True and again.json()["events"] == []
    assert (itself.status_code, unknown.status_code, other_way.status_code) == (422, 404, 409)
    found = await steps_of(bootstrap, earlier, lambda f: any(r.type == "lead.merged" for r in f))
    # It names who held each lead as routing showed them, for webhooks filtered on either's team, rep or grade.
    [merge] = [r.json() for r in found if r.type == "lead.merged"]
    assert [merge[f"{side}{k}"] for side in ("", "survivor_") for k in ("owner_id", "team", "grade")] == [
        held[lead_id][k] for lead_id in (earlier, later) for k in ("owner_id", "team", "grade")]
    # The person's next submission, under the merged lead's address, is a touch of the survivor.
    async with asyncio.timeout(30):
        while (touch := await post(stack, {"email": f"ann.{run}@stripe.com", "offer": "pricing"})).json()[
                "lead_id"] != later:
            await asyncio.sleep(0.5)
    assert touch.json()["existing"] is True
    # The survivor's score now sums the duplicate's touches too (its first touch bears its id).
    rescored = await read_topic(bootstrap, topics.SCORED, where=lambda r: r.key.decode() == later, until=lambda f: any(
        reason.get("touch_id") == earlier for r in f for reason in r.json()["score"]["reasons"]))
    assert any(reason.get("touch_id") == earlier for r in rescored for reason in r.json()["score"]["reasons"])
    async with httpx.AsyncClient(base_url=url(stack, "reporting"), headers=KEY_HEADERS) as reporting:
        async with asyncio.timeout(30):
            while True:
                by_source = {r["value"]: r["captured"] for r in (await reporting.get(
                    "/v1/reports/funnel/by/source")).json()["rows"] if r["value"].endswith(run)}
                if by_source == {f"merge-a-{run}": 1}:
                    break  # one person, counted by the survivor under the earliest first touch
                await asyncio.sleep(0.5)
        linear = {r["value"]: r["captured"] for r in (await reporting.get(
            "/v1/reports/attribution/source", params={"model": "linear"})).json()["rows"] if r["value"].endswith(run)}
        timeline = (await reporting.get(f"/v1/leads/{later}/timeline")).json()
    # Every touch of both shares the survivor's credit: one capture each (and the later touches, with no source).
    assert set(linear) == {f"merge-a-{run}", f"merge-b-{run}"} and len(set(linear.values())) == 1
    assert any(s["to_stage"] == "merged" for s in timeline["steps"])
