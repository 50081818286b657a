"""Routing that knows who is at work, through the real stack: a lead nobody can take waits in its team's queue and
goes out when a rep can take it; out-of-office periods and a reload of the reps file take effect without a restart.

The test stacks' SHIFT_TEAM has one rep whose shift starts twelve hours after the stack started; leads from
SHIFT_COUNTRY go to that team, which waits for its own reps.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
import pytest

from leadpipe_common import topics
from leadpipe_common.testing.kafka import read_topic
from leadpipe_common.testing.plugin import (
    KEY_HEADERS, SHIFT_COUNTRY, SHIFT_REP, SHIFT_TEAM, routing_files, write_test_reps,
)

pytestmark = pytest.mark.asyncio

ALWAYS = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}


def url(stack, service: str) -> str:  # noqa: ANN001
    return next(p.url for p in stack.processes if p.service == service)


async def sol(routing: httpx.AsyncClient) -> dict[str, Any]:
    answer = await routing.get(f"/v1/reps/{SHIFT_REP}/availability", headers=KEY_HEADERS)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def version(routing: httpx.AsyncClient) -> str:
    return (await routing.get("/v1/reps", headers=KEY_HEADERS)).json()["routing_data_version"]


async def in_shift_queue(routing: httpx.AsyncClient, lead_id: str) -> dict[str, Any] | None:
    """``lead_id`` as the shift team's queue lists it, page after page; None: not in it."""
    url: str | None = f"/v1/queues/{SHIFT_TEAM}?limit=1000"
    while url is not None:
        answer = await routing.get(url, headers=KEY_HEADERS)
        assert answer.status_code == 200, answer.text
        found = next((lead for lead in answer.json()["leads"] if lead["lead_id"] == lead_id), None)
        if found is not None:
            return found
        url = answer.links.get("next", {}).get("url")
    return None


async def waiting_counted(routing: httpx.AsyncClient) -> float:
    """The leads waiting in the shift team's queue, as routing's /metrics last counted them (0: not yet)."""
    metrics = (await routing.get("/metrics", headers=KEY_HEADERS)).text
    # Parsed, not matched as text: the exposition writes labels in an order of its own.
    return next((sample.value for family in text_string_to_metric_families(metrics) for sample in family.samples
                 if sample.name == "routing_queue_leads" and sample.labels == {"team": SHIFT_TEAM, "kind": "waiting"}),
                0.0)


async def test_a_lead_nobody_can_take_waits_until_its_rep_is_on_shift_and_back_from_leave(stack, bootstrap):
    async with httpx.AsyncClient(base_url=url(stack, "routing"), timeout=30) as routing, \
            httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        assert (await sol(routing))["unavailable_because"] == "off shift"
        first_version = await version(routing)
        started = datetime.now(UTC) - timedelta(seconds=1)
        answer = await capture.post("/v1/leads", json={
            "email": f"ada.{uuid.uuid4().hex[:8]}@novartis.com", "job_title": "Chief Marketing Officer",
            "country": SHIFT_COUNTRY, "offer": "demo"})
        lead_id = answer.json()["lead_id"]
        steps = await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() == lead_id,
                                 until=lambda found: any(r.type == "lead.queued" for r in found))
        [queued] = [r.json() for r in steps if r.type == "lead.queued"]
        assert queued["team"] == SHIFT_TEAM and f"{SHIFT_REP} off shift" in queued["reason"]
        waiting = (await routing.get(f"/v1/leads/{lead_id}/handoff", headers=KEY_HEADERS)).json()
        assert (waiting["owner_id"], waiting["due_at"]) == (f"queue:{SHIFT_TEAM}", None)
        # What a sales manager sees: the lead waiting in the team's queue since it was routed, and the team's count.
        listed = await in_shift_queue(routing, lead_id)
        assert listed is not None and (listed["kind"], listed["handoff_seq"]) == ("waiting", waiting["handoff_seq"])
        assert started <= datetime.fromisoformat(listed["since"]) <= datetime.fromisoformat(queued["at"])
        teams = {q["team"]: q for q in (await routing.get("/v1/queues", headers=KEY_HEADERS)).json()["queues"]}
        assert teams[SHIFT_TEAM]["waiting"] >= 1 and teams[SHIFT_TEAM]["may_take"] == [SHIFT_REP]
        for _ in range(40):  # the queue watch counts every ROUTING_SLA_CHECK_S (0.5 s here)
            if await waiting_counted(routing) >= 1:
                break
            await asyncio.sleep(0.25)
        assert await waiting_counted(routing) >= 1

        # Out of office for a few seconds more, then on shift around the clock (the file, reloaded live).
        back_at = datetime.now(UTC) + timedelta(seconds=6)
        away = await routing.put(f"/v1/reps/{SHIFT_REP}/availability", headers=KEY_HEADERS, json={"away": [
            {"starts_at": (back_at - timedelta(days=1)).isoformat(), "ends_at": back_at.isoformat(),
             "reason": "training"}]})
        assert away.status_code == 200, away.text
        write_test_reps(stack.data_dir, ALWAYS)
        for _ in range(40):
            if await version(routing) != first_version:
                break
            await asyncio.sleep(0.25)
        assert await version(routing) != first_version  # reloaded without a restart
        assert (await sol(routing))["unavailable_because"].startswith("out of office (training) until")

        steps = await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() == lead_id,
                                 until=lambda found: any(r.type == "lead.assigned" for r in found))
        [assigned] = [r.json() for r in steps if r.type == "lead.assigned"]
        assert assigned["owner_id"] == SHIFT_REP and datetime.fromisoformat(assigned["at"]) >= back_at
        assert datetime.fromisoformat(assigned["due_at"]) > datetime.fromisoformat(assigned["at"])
        routed = await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id,
                                  until=lambda found: len(found) >= 2)
        assert [(r.json()["assignment"]["owner_id"], r.json()["routing_data_version"]) for r in routed] == [
            (f"queue:{SHIFT_TEAM}", first_version), (SHIFT_REP, await version(routing))]
        held = (await routing.get(f"/v1/leads/{lead_id}/handoff", headers=KEY_HEADERS)).json()
        assert held["owner_id"] == SHIFT_REP
        assert await in_shift_queue(routing, lead_id) is None  # Sol holds it: out of the queue
        assert datetime.fromisoformat(held["due_at"]) == datetime.fromisoformat(assigned["due_at"])

    # What-if over this history with the reps file as it is now: Sol, on shift, would have had it at once.
    env = {**stack.env(), "ROUTING_PORT": "0", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "routing", "what-if", "--since", started.isoformat(), "--reps",
                           str(routing_files(stack.data_dir)["reps"])], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in done.stdout.splitlines()}
    assert ("", SHIFT_REP, "1", "0", "+1") in rows and ("", f"queue:{SHIFT_TEAM}", "0", "1", "-1") in rows
    assert "nothing was written" in done.stdout


async def test_availability_updates_are_checked_and_need_a_key(stack):
    async with httpx.AsyncClient(base_url=url(stack, "routing"), timeout=30) as routing:
        now = datetime.now(UTC)
        backwards = await routing.put(f"/v1/reps/{SHIFT_REP}/availability", headers=KEY_HEADERS, json={"away": [
            {"starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()}]})
        assert backwards.status_code == 422 and backwards.json()["errors"] == [
            {"field": "away.0.ends_at", "reason": "ends_at must come after starts_at"}]
        nobody = await routing.put("/v1/reps/no.such.rep/availability", headers=KEY_HEADERS, json={"away": []})
        assert nobody.status_code == 404
        anonymous = await routing.put(f"/v1/reps/{SHIFT_REP}/availability", json={"away": []})
        assert anonymous.status_code == 401
        reload = await routing.post("/v1/routing-data/reload", headers=KEY_HEADERS)
        assert reload.status_code == 200 and reload.json()["routing_data_version"] == await version(routing)


async def test_a_period_already_over_is_declared_again_from_the_same_start(stack):
    """A rep back early, then away again: the new period may start where the one that ended did."""
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS, timeout=30) as routing:

        async def away(until: datetime, reason: str) -> httpx.Response:
            return await routing.put(f"/v1/reps/{SHIFT_REP}/availability", json={"away": [
                {"starts_at": start.isoformat(), "ends_at": until.isoformat(), "reason": reason}]})

        start = datetime.now(UTC) - timedelta(minutes=1)
        first = await away(datetime.now(UTC) + timedelta(seconds=1), "dentist")
        assert first.status_code == 200, first.text
        await asyncio.sleep(1.5)  # over now: kept as a record
        again = await away(datetime.now(UTC) + timedelta(hours=1), "dentist, again")
        assert again.status_code == 200, again.text
        assert (await sol(routing))["unavailable_because"].startswith("out of office (dentist, again) until")
        assert (await routing.put(f"/v1/reps/{SHIFT_REP}/availability", json={"away": []})).status_code == 200


async def test_the_leads_a_rep_holds_are_handed_to_another_rep_once_as_they_stood(stack, bootstrap):
    """Sol accepts a lead of the shift team (taken from its queue, or routed to Sol on shift); a manager hands Sol's
    leads to a rep of the shipped files. It stays accepted, re-sent with its new owner beside lead.handed_over; the
    same call again moves nothing. A target not in the files is refused naming `to`; a rep routing never handed a
    lead is not found."""
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS, timeout=30) as routing, \
            httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        answer = await capture.post("/v1/leads", json={
            "email": f"ada.{uuid.uuid4().hex[:8]}@novartis.com", "job_title": "Chief Marketing Officer",
            "country": SHIFT_COUNTRY, "offer": "demo"})
        lead_id = answer.json()["lead_id"]
        await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id, until=bool)
        accepted = await routing.post(f"/v1/leads/{lead_id}/disposition",
                                      json={"outcome": "accepted", "rep_id": SHIFT_REP})
        assert accepted.status_code == 200, accepted.text
        to = next(r["id"] for r in (await routing.get("/v1/reps")).json()["reps"]
                  if r["active"] and r["id"] != SHIFT_REP)

        nobody = await routing.post(f"/v1/reps/{SHIFT_REP}/handover", json={"to": "no.such.rep"})
        assert nobody.status_code == 422 and nobody.json()["errors"] == [
            {"field": "to", "reason": "no rep 'no.such.rep' in the reps file"}]
        assert (await routing.post("/v1/reps/never.a.rep/handover", json={"to": to})).status_code == 404

        handed = await routing.post(f"/v1/reps/{SHIFT_REP}/handover", json={"to": to, "reason": "moved to partners"})
        assert handed.status_code == 200, handed.text
        moved = {m["lead_id"]: m for m in handed.json()["moved"]}
        assert (moved[lead_id]["owner_id"], moved[lead_id]["status"], moved[lead_id]["due_at"]) == (
            to, "accepted", None)
        assert handed.json()["more"] is False
        steps = await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() == lead_id,
                                 until=lambda found: any(r.type == "lead.handed_over" for r in found))
        [fact] = [r.json() for r in steps if r.type == "lead.handed_over"]
        assert (fact["from_owner_id"], fact["owner_id"], fact["stage"]) == (SHIFT_REP, to, "accepted")
        assert "moved to partners" in fact["reason"]
        await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id,
                         until=lambda found: any(r.json()["assignment"]["owner_id"] == to for r in found))
        handoff = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()
        assert (handoff["owner_id"], handoff["status"]) == (to, "accepted")

        again = await routing.post(f"/v1/reps/{SHIFT_REP}/handover", json={"to": to})
        assert again.status_code == 200 and (again.json()["count"], again.json()["moved"]) == (0, [])


async def test_a_touch_of_a_lead_whose_holder_is_out_of_office_is_told_to_them_saying_until_when(stack, bootstrap):
    """Sol accepts a lead of the shift team and goes on holiday; the prospect asks about pricing. The lead stays
    Sol's (a holiday is no reason to lose one's accounts), and the re-engagement says when Sol is back, for a
    manager or a sales tool to act on. Sol's periods are cleared after, whatever the outcome."""
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS, timeout=30) as routing, \
            httpx.AsyncClient(base_url=url(stack, "capture"), headers=KEY_HEADERS, timeout=30) as capture:
        email = f"ada.{uuid.uuid4().hex[:8]}@novartis.com"
        answer = await capture.post("/v1/leads", json={
            "email": email, "job_title": "Chief Marketing Officer", "country": SHIFT_COUNTRY, "offer": "demo"})
        lead_id = answer.json()["lead_id"]
        await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id, until=bool)
        accepted = await routing.post(f"/v1/leads/{lead_id}/disposition",
                                      json={"outcome": "accepted", "rep_id": SHIFT_REP})
        assert accepted.status_code == 200, accepted.text
        back = (datetime.now(UTC) + timedelta(days=14)).replace(microsecond=0)
        try:
            away = await routing.put(f"/v1/reps/{SHIFT_REP}/availability", json={"away": [
                {"starts_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "ends_at": back.isoformat(),
                 "reason": "holiday"}]})
            assert away.status_code == 200, away.text
            touch = await capture.post("/v1/leads", json={"email": email, "offer": "pricing"})
            assert touch.status_code == 202, touch.text
            steps = await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() == lead_id,
                                     until=lambda found: any(r.type == "lead.reengaged" for r in found))
        finally:
            await routing.put(f"/v1/reps/{SHIFT_REP}/availability", json={"away": []})
        [told] = [r.json() for r in steps if r.type == "lead.reengaged"]
        assert (told["owner_id"], datetime.fromisoformat(told["holder_away_until"])) == (SHIFT_REP, back)
        assert told["reason"].endswith(f"Sol Shift is out of office until {back.isoformat()}"), told["reason"]
        assert not any(r.type == "lead.handed_over" for r in steps)
        handoff = (await routing.get(f"/v1/leads/{lead_id}/handoff")).json()
        assert (handoff["owner_id"], handoff["status"]) == (SHIFT_REP, "accepted")
