"""Erasing a person through the real stack: after capture's erasure has reached delivery, no table of any service
holds their address or phone, what waited to be delivered of their lead is given up, and the CRM that asks for
erasures is told."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from leadpipe_common.testing.plugin import KEY_HEADERS, receiver_log

pytestmark = pytest.mark.asyncio

SALES_READY = {"job_title": "Chief Marketing Officer", "country": "US", "offer": "demo"}

#: The tables and columns of every schema but Postgres's own.
_COLUMNS = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
  AND c.table_schema NOT LIKE 'pg\\_%'
ORDER BY 1, 2, c.ordinal_position
"""


def url(stack, service: str) -> str:  # noqa: ANN001
    return next(p.url for p in stack.processes if p.service == service)


def received(stack, lead_id: str) -> list[dict[str, Any]]:  # noqa: ANN001
    """What the stack's receiver was sent of ``lead_id`` (``testing.receiver``'s log)."""
    path = receiver_log(stack.data_dir)
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] and r["event"]["subject"] == lead_id]


async def until(check, timeout: float = 60):  # noqa: ANN001, ANN201
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.3)
        return value


async def columns_holding(db, needles: list[str]) -> list[str]:  # noqa: ANN001
    """Each column of every table of every schema (``schema.table.column``) in which some row holds one of
    ``needles`` (lower case), its value cast to text (a bytea's searched as the bytes it holds: its text is hex)."""
    async with db.connect() as conn:
        tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in await conn.execute(sa.text(_COLUMNS)):
            tables.setdefault((schema, table), []).append((column, data_type))
        found = []
        params = {f"n{i}": needle for i, needle in enumerate(needles)}
        for (schema, table), columns in tables.items():
            tests = []
            for column, data_type in columns:
                quoted = '"' + column.replace('"', '""') + '"'
                tests.append(" OR ".join(
                    f"position(convert_to(:{p}, 'UTF8') in {quoted}) > 0" if data_type == "bytea"
                    else f"strpos(lower({quoted}::text), :{p}) > 0" for p in params))
            hits = (await conn.execute(sa.text(
                f"SELECT {', '.join(f'coalesce(bool_or({t}), false)' for t in tests)} FROM \"{schema}\".\"{table}\""),
                params)).one()
            found += [f"{schema}.{table}.{column}" for (column, _), hit in zip(columns, hits, strict=True) if hit]
    return found


async def test_an_erased_person_is_in_no_table_of_the_stack_and_the_crm_that_asks_for_erasures_is_told(stack, db):
    tag = uuid.uuid4().hex[:8]
    local = f"erasmus.{tag}"
    email = f"{local}@stripe.com"
    number = str(random.randint(2_000_000, 9_999_999))  # no other test's: an area code none uses
    phone, e164 = f"+1 628 {number[:3]} {number[3:]}", f"628{number}"
    source = f"erasure-{tag}"
    hooks = yaml.safe_load((stack.data_dir / "subscriptions.yaml").read_text())["subscriptions"][0]["url"]
    crm, off = f"erasure-crm-{tag}", f"erasure-off-{tag}"
    async with httpx.AsyncClient(base_url=url(stack, "delivery"), headers=KEY_HEADERS, timeout=30) as delivery, \
            httpx.AsyncClient(base_url=url(stack, "capture"), timeout=30) as capture, \
            httpx.AsyncClient(base_url=url(stack, "routing"), headers=KEY_HEADERS, timeout=30) as routing:
        made = await delivery.post("/v1/subscriptions", json={
            "id": crm, "url": hooks.replace("/hooks", "/api"),
            "events": ["lead.routed", "lead.stage_changed", "lead.erased"], "filter": {"source": source}})
        assert made.status_code == 201, made.text
        # The receiver answers /api 204 to a delivery that verifies with a secret it lists (other tests' too).
        with receiver_log(stack.data_dir).with_name("receiver.jsonl.secrets").open("a", encoding="utf-8") as listed:
            listed.write(made.json()["secret"] + "\n")
        # Its receiver answers 410 to the first delivery: switched off, what it is sent of the lead waits.
        switched_off = await delivery.post("/v1/subscriptions", json={
            "id": off, "url": hooks.replace("/hooks", "/gone"), "events": ["lead.routed", "lead.stage_changed"],
            "filter": {"source": source}})
        assert switched_off.status_code == 201, switched_off.text
        try:
            posted = await capture.post("/v1/leads", json={
                "email": email, "first_name": "Erasmus", "last_name": f"Tag{tag}", "phone": phone, **SALES_READY,
                "utm_source": source, "landing_page": f"https://example.com/demo?email={email}"})
            assert posted.status_code == 202, posted.text
            lead = posted.json()["lead_id"]

            async def shown() -> list[dict[str, Any]]:
                return (await delivery.get("/v1/deliveries", params={"lead_id": lead})).json()

            async def routed_to_both() -> bool:
                off_now = next(s for s in (await delivery.get("/v1/subscriptions")).json() if s["id"] == off)
                return off_now["disabled"] and any(r["answer"] == 204 for r in received(stack, lead))

            await until(routed_to_both)
            owner = (await routing.get(f"/v1/leads/{lead}/handoff")).json()["owner_id"]
            accepted = await routing.post(f"/v1/leads/{lead}/disposition",
                                          json={"outcome": "accepted", "rep_id": owner})
            assert accepted.status_code == 200, accepted.text

            async def accepted_everywhere() -> bool:  # sent to the one, waiting for the other
                statuses = sorted(d["status"] for d in await shown())
                return statuses == ["delivered", "delivered", "pending", "pending"]

            await until(accepted_everywhere)
            # What the search finds before the erasure (the delivery's bodies, every stage's copies, ...).
            assert "delivery.deliveries.body" in await columns_holding(db, [local, e164])

            erased = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": email})
            assert erased.status_code == 202, erased.text
            assert erased.json() == {"lead_ids": [lead], "touched_leads": [], "merged_leads": [], "others_touches": []}

            async def told() -> list[dict[str, Any]]:
                return [r for r in received(stack, lead) if r["event"]["type"] == "lead.erased" and r["answer"] == 204]

            [erasure] = await until(told)
            deliveries = await shown()
        finally:
            for sub in (crm, off):
                await delivery.delete(f"/v1/subscriptions/{sub}")

    assert erasure["signed"] and erasure["path"] == "/api"
    assert set(erasure["event"]["data"]) == {"lead_id", "at", "by"} and erasure["event"]["data"]["lead_id"] == lead
    assert sorted((d["subscription_id"], d["event_type"], d["status"], d["last_error"]) for d in deliveries) == [
        (crm, "lead.erased", "delivered", None),
        (crm, "lead.routed", "delivered", None),
        (crm, "lead.stage_changed", "delivered", None),
        (off, "lead.routed", "dead", "erased"),
        (off, "lead.stage_changed", "dead", "erased"),
    ]
    # The address (its local part: in a landing page's query too), the phone as typed and as enrichment wrote it,
    # the last name: in no table of any schema.
    assert await columns_holding(db, [local, e164, phone.removeprefix("+1 "), f"tag{tag}"]) == []
