"""Bots are answered as people and kept out of the pipeline; a false positive is released exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from leadpipe_common import topics
from leadpipe_common.testing.kafka import read_all, read_topic
from leadpipe_common.testing.captcha import SECRET as CAPTCHA_SECRET
from leadpipe_common.testing.captcha import VERIFIER
from leadpipe_common.testing.plugin import CAPTCHA_FORMS, KEY_HEADERS, TOKEN_FILL_S, TOKEN_FORM, TOKEN_SECRET

from capture.domain import issue_form_token


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
    assert not any("fields" in r.json() for r in quarantined)  # what was sent stays in capture's quarantine
    await asyncio.sleep(1)  # a bot's lifecycle step would have been published with the people's
    lifecycle = await read_all(bootstrap, topics.LIFECYCLE, where=lambda r: r.key.decode() in bots)
    assert lifecycle == []
    async with db.connect() as conn:
        leads = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE lead_id::text = ANY(:ids)"),
                                    {"ids": list(bots)})).scalar_one()
    assert leads == 0


async def test_a_released_submission_enters_the_pipeline_exactly_once(stack, bootstrap):
    source = f"released-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        answer = await capture.post("/v1/leads", json={
            "email": "false-positive@stripe.com", "job_title": "Chief Marketing Officer", "offer": "demo",
            "country": "US", "_gotcha": "autofill", "utm_source": source})
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
    captured = await read_all(bootstrap, topics.CAPTURED, where=lambda r: r.key.decode() == lead_id)
    assert len({r.id for r in captured}) == 1 and routed  # once, and all the way to sales
    async with httpx.AsyncClient(base_url=url(stack, "reporting"), headers=KEY_HEADERS) as reporting:
        async with asyncio.timeout(30):  # the spam report counts it as a false positive
            while (spam := (await reporting.get("/v1/reports/spam", params={"source": source})).json())[
                    "released"] < 1:
                await asyncio.sleep(0.3)
    assert (spam["quarantined"], spam["released"], spam["spam"], spam["false_positive_rate"]) == (1, 1, 0, 1.0)


async def test_only_an_admin_key_sees_or_releases_the_quarantine(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture")) as capture:
        assert (await capture.get("/v1/quarantine")).status_code == 401
        assert (await capture.post(f"/v1/quarantine/{uuid.uuid4()}/release")).status_code == 401


async def where_each_went(db, lead_ids: list[str]) -> dict[str, str]:  # noqa: ANN001
    """``lead`` or ``quarantine``, by lead id: where capture stored each submission."""
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT lead_id::text, 'lead' FROM capture.leads WHERE lead_id::text = ANY(:ids) UNION ALL "
            "SELECT lead_id::text, 'quarantine' FROM capture.quarantine WHERE lead_id::text = ANY(:ids)"),
            {"ids": lead_ids})).all()
    return dict(rows)  # type: ignore[arg-type]


async def test_form_tokens_keep_hasty_forged_and_expired_submissions_out_while_people_get_through(stack, db):
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        async def token() -> str:
            answer = await capture.get(f"/v1/forms/{TOKEN_FORM}/token")
            assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
            assert answer.json()["field"] == "_token"
            return answer.json()["token"]

        async def post(name: str, **extra: str) -> str:
            answer = await capture.post(f"/v1/forms/{TOKEN_FORM}", data={"email": f"{name}@example.com", **extra},
                                        headers={"accept": "application/json"})
            assert answer.status_code == 202  # the same answer for everyone
            return answer.json()["lead_id"]

        shown = [await token() for _ in range(3)]
        hasty = [await post(f"hasty{i}", _token=t) for i, t in enumerate(shown)]
        stamp, mac = shown[0].split(".")
        forged = [await post("forged", _token=f"{format(int(stamp, 16) - 60_000, 'x')}.{mac}"),
                  await post("garbage", _token="not-a-token"), await post("tokenless")]
        expired_at = datetime.now(UTC) - timedelta(hours=2)
        expired = [await post("expired", _token=issue_form_token(TOKEN_FORM, expired_at, token_key_of_test_stack()))]
        await asyncio.sleep(TOKEN_FILL_S + 0.2)  # as long as a person takes
        people = [await post(f"person{i}", _token=t) for i, t in enumerate(shown)]
        script = await capture.get(f"/v1/forms/{TOKEN_FORM}/token.js")
        unknown = await capture.get("/v1/forms/no-such-form/token")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert '"_token"' in script.text and unknown.status_code == 404
    went = await where_each_went(db, hasty + forged + expired + people)
    assert [went[i] for i in hasty + forged + expired] == ["quarantine"] * 7
    assert [went[i] for i in people] == ["lead"] * 3
    async with db.connect() as conn:
        reasons = dict((await conn.execute(sa.text(
            "SELECT lead_id::text, reasons[1] FROM capture.quarantine WHERE lead_id::text = ANY(:ids)"),
            {"ids": [hasty[0], forged[0], forged[2], expired[0]]})).all())
    assert reasons[hasty[0]].startswith("sent 0.") and "forged" in reasons[forged[0]]
    assert "no form token" in reasons[forged[2]] and "expired" in reasons[expired[0]]


async def test_a_retry_with_the_idempotency_key_of_a_quarantined_post_gets_its_answer_and_no_second_lead(stack, db):
    """Sent too soon after the form was shown, then again (same body, same key) once a person could have: the
    key promises exactly the first answer, so the retry gets the quarantined submission's id, not a new lead
    (an admin's release would make that id the lead)."""
    name = f"retry.{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        shown = (await capture.get(f"/v1/forms/{TOKEN_FORM}/token")).json()["token"]

        async def post() -> httpx.Response:
            return await capture.post(f"/v1/forms/{TOKEN_FORM}", data={"email": f"{name}@example.com", "_token": shown},
                                      headers={"accept": "application/json", "idempotency-key": name})

        hasty = await post()
        await asyncio.sleep(TOKEN_FILL_S + 0.2)
        again = await post()
    assert hasty.status_code == again.status_code == 202
    assert again.json() == hasty.json() and again.headers.get("idempotent-replayed") == "true"
    went = await where_each_went(db, [hasty.json()["lead_id"]])
    assert list(went.values()) == ["quarantine"]
    async with db.connect() as conn:
        leads = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE email = :e"),
                                    {"e": f"{name}@example.com"})).scalar()
    assert leads == 0


async def test_a_bot_posting_the_address_of_a_person_with_an_open_lead_is_answered_as_that_persons_touch(stack, db):
    """Without a key, the person's touch and the bot's post are each answered with the id they are kept under,
    never the lead's: had the touch named the lead and the bot an id of its own, the bot would learn it was caught;
    had both named it, anyone would learn the person is in the pipeline. Released, the bot's becomes a touch of that
    lead under the id it was answered with."""
    name = f"open.{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        async def post(fields: dict[str, str], **headers: str) -> httpx.Response:
            reply = await capture.post("/v1/forms/demo-request", data=fields,
                                       headers={"accept": "application/json", **headers})
            assert reply.status_code == 202, reply.text
            return reply

        opened = await post({"email": f"{name}@example.com"})
        touch = await post({"email": f"{name}@example.com"})
        bot = {"email": f"{name.upper()}+offer@Example.com", "_gotcha": "autofill"}  # the same person
        caught = await post(bot, **{"idempotency-key": name})
        again = await post(bot, **{"idempotency-key": name})
        lead_id = opened.json()["lead_id"]
        assert lead_id not in (touch.json()["lead_id"], caught.json()["lead_id"])
        assert "existing" not in touch.json()  # told to a key alone
        # Field for field the touch's answer, but for the id and when each was received.
        assert ({**caught.json(), "lead_id": None, "captured_at": None}
                == {**touch.json(), "lead_id": None, "captured_at": None})
        received = datetime.fromisoformat(caught.json()["captured_at"])
        assert received >= datetime.fromisoformat(touch.json()["captured_at"])
        assert again.json() == caught.json() and again.headers.get("idempotent-replayed") == "true"
        async with db.connect() as conn:
            kept = (await conn.execute(sa.text(
                "SELECT lead_id::text, received_at FROM capture.quarantine WHERE fields->>'email' = :e"),
                {"e": bot["email"]})).one()
        assert kept.lead_id == caught.json()["lead_id"] and kept.received_at == received
        released = await capture.post(f"/v1/quarantine/{kept.lead_id}/release", headers=KEY_HEADERS)
        assert released.status_code == 200 and released.json()["repeated"] is False
    async with db.connect() as conn:
        touched = dict((await conn.execute(sa.text(
            "SELECT touch_id::text, lead_id::text FROM capture.touches WHERE touch_id = ANY(:t)"),
            {"t": [uuid.UUID(touch.json()["lead_id"]), uuid.UUID(kept.lead_id)]})).all())
    assert touched == {touch.json()["lead_id"]: lead_id, kept.lead_id: lead_id}
    assert await where_each_went(db, [kept.lead_id]) == {kept.lead_id: "quarantine"}


async def test_a_released_yes_counts_only_if_newer_than_the_word_its_person_gave_since(stack, db):
    """A yes caught as a bot's, then a no from the person (a touch of their open lead, or the submission that opens
    one): released, the yes made them consent again, as if it were their newest word. A yes caught after a no
    still grants consent once released."""
    run = uuid.uuid4().hex[:8]
    touching, opening, newer = (f"{who}.{run}@example.com" for who in ("touching", "opening", "newer"))
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        async def post(email: str, consent: str | None = None, *, bot: bool = False) -> None:
            fields = {"email": email, **({"marketing_consent": consent} if consent else {}),
                      **({"_gotcha": "autofill"} if bot else {})}
            reply = await capture.post("/v1/forms/demo-request", data=fields, headers={"accept": "application/json"})
            assert reply.status_code == 202, reply.text

        await post(touching)  # their lead is open, and says nothing of marketing
        for email in (touching, opening):
            await post(email, "on", bot=True)
            await post(email, "0")
        await post(newer, "0")
        await post(newer, "on", bot=True)
        released = {}
        for email in (touching, opening, newer):
            async with db.connect() as conn:
                released[email] = (await conn.execute(sa.text(
                    "SELECT lead_id FROM capture.quarantine WHERE fields->>'email' = :e"), {"e": email})).scalar_one()
            reply = await capture.post(f"/v1/quarantine/{released[email]}/release", headers=KEY_HEADERS)
            assert reply.status_code == 200 and reply.json()["repeated"] is False, reply.text
    async with db.connect() as conn:
        rows = await conn.execute(sa.text("SELECT touch_id, event FROM capture.touches WHERE touch_id = ANY(:t)"),
                                  {"t": list(released.values())})
        events = dict(rows.all())
    consent = {email: json.loads(events[touch_id])["contact"]["marketing_consent"]
               for email, touch_id in released.items()}
    assert consent == {touching: False, opening: False, newer: True}


async def test_a_json_consent_released_from_quarantine_says_what_it_said_when_it_was_sent(stack, db):
    """Quarantine keeps text: a JSON 1.0, a yes when it was sent, was kept as "1.0", which the release read as
    nothing said, and the released lead had no consent."""
    run = uuid.uuid4().hex[:8]
    sent = {f"one.{run}@example.com": 1.0, f"zero.{run}@example.com": 0.0, f"true.{run}@example.com": True}
    kept = {}
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        for email, consent in sent.items():
            reply = await capture.post("/v1/leads", json={"email": email, "marketing_consent": consent,
                                                          "_gotcha": "autofill"})
            assert reply.status_code == 202, reply.text
            kept[email] = reply.json()["lead_id"]
            released = await capture.post(f"/v1/quarantine/{kept[email]}/release", headers=KEY_HEADERS)
            assert released.status_code == 200 and released.json()["repeated"] is False, released.text
    async with db.connect() as conn:
        words = dict((await conn.execute(sa.text(
            "SELECT lead_id::text, fields->>'marketing_consent' FROM capture.quarantine "
            "WHERE lead_id::text = ANY(:ids)"), {"ids": list(kept.values())})).all())
        events = dict((await conn.execute(sa.text(
            "SELECT lead_id::text, event FROM capture.leads WHERE lead_id::text = ANY(:ids)"),
            {"ids": list(kept.values())})).all())
    assert {email: words[lead_id] for email, lead_id in kept.items()} == dict(zip(sent, ["true", "false", "true"]))
    consent = {email: json.loads(events[lead_id])["contact"]["marketing_consent"] for email, lead_id in kept.items()}
    assert consent == dict(zip(sent, [True, False, True]))


def token_key_of_test_stack() -> bytes:
    from capture.app import token_key
    from capture.settings import CaptureSettings

    return token_key(CaptureSettings(token_secret=TOKEN_SECRET), [])


async def test_a_captcha_is_verified_with_its_service_and_an_outage_follows_the_forms_choice(stack, db):
    answers = {"open": ["human", "bot", None, "broken", "slow"], "closed": ["human", "bot", None, "broken", "slow"]}
    sent = {}
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        for mode, form_id in CAPTCHA_FORMS.items():
            for answer in answers[mode]:
                fields = {"email": f"captcha-{mode}-{answer}@example.com"}
                if answer:
                    fields["cf-turnstile-response"] = answer
                reply = await capture.post(f"/v1/forms/{form_id}", data=fields, headers={"accept": "application/json"})
                assert reply.status_code == 202, reply.text
                sent[(mode, answer)] = reply.json()["lead_id"]
    went = await where_each_went(db, list(sent.values()))
    outcome = {key: went[lead_id] for key, lead_id in sent.items()}
    assert outcome == {
        ("open", "human"): "lead", ("open", "bot"): "quarantine", ("open", None): "quarantine",
        ("open", "broken"): "lead", ("open", "slow"): "lead",  # the verifier failed: the form fails open
        ("closed", "human"): "lead", ("closed", "bot"): "quarantine", ("closed", None): "quarantine",
        ("closed", "broken"): "quarantine", ("closed", "slow"): "quarantine",
    }
    verified = [call for call in VERIFIER.calls if call.get("response") == "human"]
    assert verified and all(c["secret"] == CAPTCHA_SECRET and c["remoteip"] == "127.0.0.1" for c in verified)


async def test_a_protected_form_named_with_blanks_around_it_gets_its_checks_all_the_same(stack, db):
    """The lead is filed under the trimmed form id: the lookup of the form's checks must trim it too."""
    closed = CAPTCHA_FORMS["closed"]
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        reply = await capture.post("/v1/leads", json={"email": "blanks@example.com", "form_id": f" {closed} "})
    assert reply.status_code == 202, reply.text
    went = await where_each_went(db, [reply.json()["lead_id"]])
    assert went == {reply.json()["lead_id"]: "quarantine"}  # no CAPTCHA answer
