"""Bots are answered as people and kept out of the pipeline; a false positive is released exactly once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import sqlalchemy as sa

from leadpipe_common import topics
from leadpipe_common.testing.kafka import read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS


def url(stack, service: str) -> str:  # noqa: ANN001
    return next(p.url for p in stack.processes if p.service == service)


async def test_a_bot_flood_creates_no_lead_while_every_person_gets_through(stack, bootstrap, db):
    run = uuid.uuid4().hex[:8]

    async def post(client: httpx.AsyncClient, i: int, bot: bool) -> tuple[bool, httpx.Response]:
        fields = {"email": f"{'bot' if bot else 'person'}{i}-{run}@example.com", "utm_source": f"flood-{run}"}
        if bot:
            fields["_gotcha"] = "http://cheap-pills.example"
        return bot, await client.post("/v1/forms/demo-request", data=fields, headers={"accept": "application/json"})

    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as client:
        answers = await asyncio.gather(*(post(client, i, bot=i % 2 == 0) for i in range(40)))
    assert {r.status_code for _, r in answers} == {202}  # a bot learns nothing from the answer
    assert {tuple(sorted(r.json())) for _, r in answers} == {("captured_at", "form_id", "lead_id", "status")}
    bots = {r.json()["lead_id"] for bot, r in answers if bot}
    people = {r.json()["lead_id"] for bot, r in answers if not bot}

    captured = await read_topic(bootstrap, topics.CAPTURED, where=lambda r: r.key.decode() in bots | people,
                                until=lambda found: len({r.key for r in found}) >= len(people))
    assert {r.key.decode() for r in captured} == people
    quarantined = await read_topic(bootstrap, topics.QUARANTINED, where=lambda r: r.key.decode() in bots,
                                   until=lambda found: len({r.key for r in found}) >= len(bots))
    assert {r.key.decode() for r in quarantined} == bots
    assert all(r.json()["reasons"] == ["the hidden field _gotcha was filled in"] for r in quarantined)
    await asyncio.sleep(1)  # a bot's lifecycle step would have been published with the people's
    lifecycle = await read_topic(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() in bots,
                                 until=lambda found: False, timeout=2)
    assert lifecycle == []
    async with db.connect() as conn:
        leads = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE lead_id::text = ANY(:ids)"),
                                    {"ids": list(bots)})).scalar_one()
    assert leads == 0


async def test_a_released_submission_enters_the_pipeline_exactly_once(stack, bootstrap):
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        answer = await capture.post("/v1/leads", json={
            "email": "false-positive@stripe.com", "job_title": "Chief Marketing Officer", "offer": "demo",
            "country": "US", "_gotcha": "autofill", "utm_source": "released"})
        lead_id = answer.json()["lead_id"]
        listed = await capture.get("/v1/quarantine", headers=KEY_HEADERS)
        assert any(q["lead_id"] == lead_id and q["fields"]["email"] == "false-positive@stripe.com"
                   for q in listed.json())
        both = await asyncio.gather(*(capture.post(f"/v1/quarantine/{lead_id}/release", headers=KEY_HEADERS)
                                      for _ in range(2)))
        assert sorted(r.json()["repeated"] for r in both) == [False, True]
        again = await capture.post(f"/v1/quarantine/{lead_id}/release", headers=KEY_HEADERS)
        assert again.status_code == 200 and again.json()["repeated"] is True
        missing = await capture.post(f"/v1/quarantine/{uuid.uuid4()}/release", headers=KEY_HEADERS)
        assert missing.status_code == 404
    routed = await read_topic(bootstrap, topics.ROUTED, where=lambda r: r.key.decode() == lead_id,
                              until=lambda found: bool(found))
    await asyncio.sleep(1)
    captured = await read_topic(bootstrap, topics.CAPTURED, where=lambda r: r.key.decode() == lead_id,
                                until=lambda found: False, timeout=2)
    assert len({r.id for r in captured}) == 1 and routed  # once, and all the way to sales


async def test_only_an_admin_key_sees_or_releases_the_quarantine(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        assert (await capture.get("/v1/quarantine")).status_code == 401
        assert (await capture.post(f"/v1/quarantine/{uuid.uuid4()}/release")).status_code == 401
