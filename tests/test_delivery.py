"""Webhooks through the real stack to a real receiver process that fails in every way and verifies every
signature (``leadpipe_common.testing.receiver``): signed, retried with the same id, in order per lead; a 410
switches a subscription off."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leadpipe_common.testing.plugin import (
    KEY_HEADERS, WEBHOOK_API_SOURCE, WEBHOOK_DOWN_SOURCE, WEBHOOK_GONE_SOURCE, WEBHOOK_SOURCE, receiver_log,
)

pytestmark = pytest.mark.asyncio

SALES_READY = {"job_title": "Chief Marketing Officer", "country": "US", "offer": "demo"}


def url(stack, service: str) -> str:  # noqa: ANN001
    return next(p.url for p in stack.processes if p.service == service)


def received(stack) -> list[dict[str, Any]]:  # noqa: ANN001
    path = receiver_log(stack.data_dir)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def of_lead(requests: list[dict[str, Any]], lead_id: str) -> list[dict[str, Any]]:
    return [r for r in requests if r["event"] and r["event"]["subject"] == lead_id]


def consumer_retries(metrics: str) -> float:
    """How many times the service's consumer retried a batch (``leadpipe_consumer_retries_total``)."""
    return next(sample.value for family in text_string_to_metric_families(metrics) for sample in family.samples
                if sample.name == "leadpipe_consumer_retries_total")


async def until(check, timeout: float = 60):  # noqa: ANN001, ANN201
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.3)
        return value


async def test_deliveries_are_signed_retried_with_one_id_and_ordered_per_lead(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        leads = [(await capture.post("/v1/leads", json={"email": f"hook{i}.{uuid.uuid4().hex[:6]}@stripe.com",
                                                        **SALES_READY, "utm_source": WEBHOOK_SOURCE})).json()["lead_id"]
                 for i in range(2)]
    first = leads[0]

    def delivered(lead_id: str, n: int) -> bool:
        return sum(r["answer"] == 204 for r in of_lead(received(stack), lead_id)) >= n

    await until(lambda: all(delivered(lead, 1) for lead in leads))
    async with httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
        owner = (await routing.get(f"/v1/leads/{first}/handoff")).json()["owner_id"]
        for outcome in ("accepted", "contacted"):
            answer = await routing.post(f"/v1/leads/{first}/disposition", json={"outcome": outcome, "rep_id": owner})
            assert answer.status_code == 200, answer.text
    await until(lambda: delivered(first, 3))

    requests = of_lead(received(stack), first)
    assert all(r["signed"] and r["content_type"] == "application/cloudevents+json" for r in requests)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in requests:
        by_id.setdefault(r["id"], []).append(r)
    # Every delivery met every failure, under one webhook-id, before it got through.
    assert all([r["answer"] for r in tries] == [500, "slow", 429, 204] for tries in by_id.values()), by_id
    # In order per lead: each event is first tried only after the one before it was delivered.
    sequence = list(by_id.values())
    assert [tries[-1]["event"]["type"] for tries in sequence] == ["lead.routed", "lead.stage_changed",
                                                                  "lead.stage_changed"]
    assert [tries[-1]["event"]["data"].get("to_stage") for tries in sequence[1:]] == ["accepted", "contacted"]
    for earlier, later in zip(sequence, sequence[1:], strict=False):
        assert later[0]["at"] >= earlier[-1]["at"]
    assert sequence[0][-1]["event"]["data"]["assignment"]["owner_id"] == owner

    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery:
        shown = (await delivery.get("/v1/deliveries", params={"lead_id": first})).json()
        metrics = (await delivery.get("/metrics")).text
    assert [d["status"] for d in shown] == ["delivered"] * 3
    assert [a["status"] for a in shown[0]["attempts"]] == [500, None, 429, 204]
    assert "timeout" in (shown[0]["attempts"][1]["error"] or "").lower()
    assert 'delivery_attempts_total{result="delivered",subscription="test-crm"}' in metrics
    assert 'delivery_oldest_waiting_seconds{subscription="test-crm"}' in metrics


async def test_a_receiver_that_answers_410_switches_its_subscription_off(stack):
    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        async def post() -> str:
            return (await capture.post("/v1/leads", json={"email": f"gone.{uuid.uuid4().hex[:6]}@stripe.com",
                                                          **SALES_READY, "utm_source": WEBHOOK_GONE_SOURCE})).json()[
                "lead_id"]

        gone = await post()
        await until(lambda: of_lead(received(stack), gone))
        later = await post()
    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery:
        subs = {s["id"]: s for s in (await delivery.get("/v1/subscriptions")).json()}
        assert subs["test-gone"]["disabled"] is True and subs["test-crm"]["disabled"] is False
        assert "secrets" not in subs["test-gone"]
        async with asyncio.timeout(30):  # the later lead is routed and its delivery queued...
            while not (queued := (await delivery.get("/v1/deliveries", params={"lead_id": later})).json()):
                await asyncio.sleep(0.3)
        await asyncio.sleep(2)  # ...and, in this time, would have been sent
        unauthorised = await delivery.get("/v1/subscriptions", headers={"Authorization": "Bearer nope"})
    assert [r["answer"] for r in of_lead(received(stack), gone)] == [410]
    assert of_lead(received(stack), later) == []  # nothing more is sent to a receiver that said 410
    assert [(d["status"], d["attempts"]) for d in queued] == [("pending", [])]
    assert unauthorised.status_code == 401

    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery:
        enabled = await delivery.post("/v1/subscriptions/test-gone/enable")
        unknown = await delivery.post("/v1/subscriptions/nope/enable")
    assert enabled.json() == {"id": "test-gone", "was_disabled": True} and unknown.status_code == 404
    await until(lambda: of_lead(received(stack), later))  # switched back on: what waited is sent


async def test_a_delivery_given_up_after_its_window_is_sent_again_when_redriven(stack):
    import subprocess
    import sys

    async with httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        lead = (await capture.post("/v1/leads", json={"email": f"down.{uuid.uuid4().hex[:6]}@stripe.com",
                                                      **SALES_READY, "utm_source": WEBHOOK_DOWN_SOURCE})).json()[
            "lead_id"]
    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery:
        async def status() -> str | None:
            shown = (await delivery.get("/v1/deliveries", params={"lead_id": lead})).json()
            return shown[0]["status"] if shown else None

        async with asyncio.timeout(60):
            while await status() != "dead":
                await asyncio.sleep(0.2)
        failed = [r["answer"] for r in of_lead(received(stack), lead)]
        assert failed and set(failed) == {500}
        receiver_log(stack.data_dir).with_name("receiver.jsonl.fixed").touch()  # the receiver is mended
        misspelt_id = await delivery.post("/v1/deliveries/redrive", json={"subscription_id": "test-dwon"})
        assert misspelt_id.status_code == 422 and misspelt_id.json()["errors"][0]["field"] == "subscription_id"
        redriven = await delivery.post("/v1/deliveries/redrive", json={"subscription_id": "test-down"})
        assert redriven.json()["redriven"] >= 1
        async with asyncio.timeout(60):
            while await status() != "delivered":
                await asyncio.sleep(0.2)

    def redrive(subscription: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "delivery", "redrive", "--subscription", subscription],
                              env={**stack.env(), "DELIVERY_PORT": "0", "COLUMNS": "500"}, capture_output=True,
                              text=True, timeout=60)

    # Side by side: each is an interpreter's start (~2 s of imports) and neither changes what the other reads.
    command, misspelt = await asyncio.gather(asyncio.to_thread(redrive, "test-down"),
                                             asyncio.to_thread(redrive, "test-dwon"))
    assert command.returncode == 0 and "0 dead deliveries queued again for test-down" in command.stdout, command
    assert misspelt.returncode == 2 and "'test-dwon' is no subscription in force" in misspelt.stderr, misspelt
    assert "test-down" in misspelt.stderr.split("one of", 1)[1]


async def test_a_subscription_made_through_the_api_shows_its_secret_once_and_rotates_it(stack, db):
    import sqlalchemy as sa
    import yaml

    hooks = yaml.safe_load((stack.data_dir / "subscriptions.yaml").read_text())["subscriptions"][0]["url"]
    secrets_file = receiver_log(stack.data_dir).with_name("receiver.jsonl.secrets")
    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery, \
            httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture:
        async def lead_delivered(company: bool = True) -> str:
            email = f"api.{uuid.uuid4().hex[:6]}@stripe.com"
            lead = (await capture.post("/v1/leads", json={"email": email, **SALES_READY, "phone": "+1 415 555 0100",
                                                          "message": "call me after five", "company": "Stripe",
                                                          "utm_source": WEBHOOK_API_SOURCE})).json()
            await until(lambda: any(r["answer"] == 204 for r in of_lead(received(stack), lead["lead_id"])))
            sent = [r["event"] for r in of_lead(received(stack), lead["lead_id"])]
            assert {json.dumps(e["data"]["contact"], sort_keys=True) for e in sent} == {
                json.dumps({"email": email, **({"company": "Stripe"} if company else {})}, sort_keys=True)}
            assert all(("contact.company" in e["withheld"].split(",")) is not company for e in sent), sent
            # Nor what enrichment read from them (the number, as E.164), and the receiver is told what was left out.
            told = ("4155550100", "415 555", "after five")
            assert not any(t in json.dumps(e) for e in sent for t in told), sent
            assert all("enrichment.phone_e164" in e["withheld"].split(",") for e in sent), sent
            # Nor the reasons that read them (the seniority the job title gave); the offer's stays.
            rules = {r["rule"] for e in sent for r in e["data"]["score"]["reasons"]}
            assert "Asked for a demo" in rules and "Decision maker (C-level or VP)" not in rules, rules
            return lead["lead_id"]

        # Sent only the contact fields it names: the phone and message the lead was posted with stay out.
        body = {"id": "api-crm", "url": hooks.replace("/hooks", "/api"), "events": ["lead.routed"],
                "filter": {"source": WEBHOOK_API_SOURCE}, "contact": ["company", "email"]}
        made = await delivery.post("/v1/subscriptions", json=body)
        assert made.status_code == 201, made.text
        first = made.json()["secret"]
        assert first.startswith("whsec_") and made.json()["source"] == "api"
        listed = await delivery.get("/v1/subscriptions")
        assert first not in listed.text and {"id": "api-crm", "signing_secrets": 1, "source": "api",
                                             "contact": ["email", "company"]}.items() <= \
            next(s for s in listed.json() if s["id"] == "api-crm").items()
        async with db.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT secrets::text FROM delivery.subscriptions "
                                                 "WHERE id = 'api-crm'"))).scalar_one()
        assert first.removeprefix("whsec_") not in stored  # sealed, never in clear

        secrets_file.write_text(first + "\n")
        signed_with_first = await lead_delivered()
        rotated = await delivery.post("/v1/subscriptions/api-crm/secrets", json={"previous_valid_hours": 0})
        assert rotated.status_code == 200, rotated.text
        secrets_file.write_text(rotated.json()["secret"] + "\n")  # the receiver knows only the new one now
        signed_with_second = await lead_delivered()
        for lead in (signed_with_first, signed_with_second):
            assert {r["answer"] for r in of_lead(received(stack), lead)} == {204}  # never a bad signature

        # Changed in place, its secret kept: the next lead's body follows the new contact fields.
        changed = await delivery.patch("/v1/subscriptions/api-crm", json={"contact": ["email"]})
        assert changed.status_code == 200, changed.text
        assert {"contact": ["email"], "events": ["lead.routed"], "signing_secrets": 1}.items() <= changed.json().items()
        assert "secret" not in changed.json()
        after_change = await lead_delivered(company=False)
        assert {r["answer"] for r in of_lead(received(stack), after_change)} == {204}
        wrong = await delivery.patch("/v1/subscriptions/api-crm", json={"contact": ["email", "phon"]})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "contact", wrong.text
        wrong = await delivery.patch("/v1/subscriptions/api-crm", json={"contacts": ["email"]})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "contacts", wrong.text
        assert (await delivery.patch("/v1/subscriptions/test-crm", json={"contact": ["email"]})).status_code == 409
        assert (await delivery.patch("/v1/subscriptions/nobody", json={"contact": ["email"]})).status_code == 404

        assert (await delivery.post("/v1/subscriptions", json=body)).status_code == 409
        assert (await delivery.post("/v1/subscriptions", json={**body, "id": "test-crm"})).status_code == 409
        wrong = await delivery.post("/v1/subscriptions", json={**body, "id": "x", "events": ["lead.captured"]})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "events"
        wrong = await delivery.post("/v1/subscriptions", json={**body, "id": "x", "contact": ["email", "phon"]})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "contact", wrong.text
        assert (await delivery.delete("/v1/subscriptions/test-crm")).status_code == 409  # the file's
        assert (await delivery.delete("/v1/subscriptions/api-crm")).status_code == 200
        assert "api-crm" not in {s["id"] for s in (await delivery.get("/v1/subscriptions")).json()}
        assert (await delivery.post("/v1/subscriptions", json=body, headers={"Authorization": ""})).status_code \
            == 401



async def test_events_wait_while_a_stored_subscription_cannot_be_opened_and_are_sent_once_it_is_gone(stack, db):
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    # Sealed under a key this stack never had: as after LEADPIPE_SESSION_SECRET was changed.
    foreign = Fernet(Fernet.generate_key()).encrypt(b"whsec_c2VhbGVkIHVuZGVyIGFub3RoZXIga2V5IQ==").decode()
    async with db.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO delivery.subscriptions (id, url, events, filter, secrets, created_by, created_at, "
            "updated_at) VALUES ('sealed-away', 'https://hooks.example.com/x', ARRAY['lead.routed'], '{}', "
            "CAST(:secrets AS jsonb), 'test', :now, :now)"),
            {"secrets": json.dumps([{"sealed": foreign, "expires_at": None}]), "now": datetime.now(UTC)})
    try:
        async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS) as delivery, \
                httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture, \
                httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS) as routing:
            async with asyncio.timeout(30):
                while (answer := await delivery.get("/readyz")).status_code != 503:
                    await asyncio.sleep(0.3)
            assert answer.json()["checks"]["delivery-subscriptions-refresh"] != "ok"
            metrics = (await delivery.get("/metrics")).text
            assert "delivery_subscriptions_unopened 1.0" in metrics
            retried = consumer_retries(metrics)

            lead = (await capture.post("/v1/leads", json={"email": f"wait.{uuid.uuid4().hex[:6]}@stripe.com",
                                                          **SALES_READY, "utm_source": WEBHOOK_SOURCE})).json()
            async with asyncio.timeout(60):  # routed: its lead.routed is in the topic for delivery to read
                while (await routing.get(f"/v1/leads/{lead['lead_id']}/handoff")).status_code != 200:
                    await asyncio.sleep(0.3)
            # Read and refused, not merely unread: a batch holding its lead.routed (or one ahead of it) failed and
            # is retried, nothing of it committed; applied, it would have queued the delivery and never been retried.
            # So the test waits for that retry, not for a while it hopes is ample.
            async with asyncio.timeout(30):
                while consumer_retries((await delivery.get("/metrics")).text) <= retried:
                    await asyncio.sleep(0.2)
            assert of_lead(received(stack), lead["lead_id"]) == []
            assert (await delivery.get("/v1/deliveries", params={"lead_id": lead["lead_id"]})).json() == []

            listed = {sub["id"]: sub for sub in (await delivery.get("/v1/subscriptions")).json()}
            assert listed["sealed-away"]["opened"] is False and listed["sealed-away"]["signing_secrets"] == 0
            assert all(sub["opened"] for sub_id, sub in listed.items() if sub_id != "sealed-away")
            rotation = await delivery.post("/v1/subscriptions/sealed-away/secrets", json={})
            assert rotation.status_code == 409 and "sealed with another key" in rotation.json()["error"]
            change = await delivery.patch("/v1/subscriptions/sealed-away", json={"contact": ["email"]})
            assert change.status_code == 409 and "sealed with another key" in change.json()["error"]
            assert (await delivery.delete("/v1/subscriptions/sealed-away")).status_code == 200
            # The event read while it was held back goes to the file's subscription that wants it.
            await until(lambda: any(r["answer"] == 204 for r in of_lead(received(stack), lead["lead_id"])))
            async with asyncio.timeout(30):
                while (await delivery.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.3)
    finally:
        async with db.begin() as conn:  # whatever failed, the stack's delivery must not stay paused
            await conn.execute(sa.text("DELETE FROM delivery.subscriptions WHERE id = 'sealed-away'"))
