"""Helpers for fault-injection tests: post leads, break things, account for every lead."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common.stack import Stack
from leadpipe_common.testing.kafka import read_topic

# Profiles that end in each terminal stage with the shipped rules.
PROFILES = [
    {"job_title": "Chief Marketing Officer", "offer": "demo", "country": "US", "domain": "acme-robotics.io"},
    {"job_title": "Head of Marketing", "offer": "pricing", "country": "DE", "domain": "lumenhealth.io"},
    {"offer": "newsletter", "country": "FR", "domain": "smallshop.example"},
    {"offer": "newsletter", "domain": "mailinator.com"},
]


@dataclass
class Ledger:
    """Every lead capture answered 2xx for, by id."""

    accepted: set[str] = field(default_factory=set)
    refused: int = 0

    async def post(self, client: httpx.AsyncClient, n: int, *, concurrency: int = 20, pause_s: float = 0.0) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            p = PROFILES[i % len(PROFILES)]
            body = {k: v for k, v in p.items() if k != "domain"} | {
                "email": f"f{uuid.uuid4().hex[:12]}@{p['domain']}", "utm_source": "faults"}
            async with sem:
                try:
                    r = await client.post("/v1/leads", json=body)
                except httpx.HTTPError:
                    self.refused += 1  # no answer: the lead was not promised
                    return
                if pause_s:
                    await asyncio.sleep(pause_s)
            if r.status_code == 202:
                self.accepted.add(r.json()["lead_id"])
            else:
                assert r.status_code == 503 and "retry-after" in r.headers, r.text
                self.refused += 1

        await asyncio.gather(*(one(i) for i in range(n)))


def capture_url(stack: Stack) -> str:
    return next(p.url for p in stack.processes if p.service == "capture")


async def wait_for_outcomes(db: AsyncEngine, lead_ids: set[str], timeout: float = 120) -> dict[str, str]:
    """Each lead's terminal stage as capture learnt it from leads.lifecycle; waits until all have one."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            async with db.connect() as conn:
                rows = await conn.execute(
                    sa.text("SELECT lead_id::text, terminal_stage FROM capture.leads "
                            "WHERE terminal_stage IS NOT NULL AND lead_id::text = ANY(:ids)"),
                    {"ids": list(lead_ids)},
                )
                outcomes = dict(rows.all())
        except (OSError, sa.exc.DBAPIError):
            pass  # Postgres is coming back
        if len(outcomes) == len(lead_ids):
            break
        await asyncio.sleep(0.5)
    return outcomes


async def assert_conserved(stack: Stack, db: AsyncEngine, ledger: Ledger, timeout: float = 120) -> None:
    """Every accepted lead reached exactly one terminal outcome; none was routed twice."""
    assert ledger.accepted, "no lead was accepted; the test proved nothing"
    outcomes = await wait_for_outcomes(db, ledger.accepted, timeout)
    missing = ledger.accepted - outcomes.keys()
    assert not missing, f"{len(missing)} of {len(ledger.accepted)} accepted leads never reached an outcome"
    assert set(outcomes.values()) <= {"routed", "nurture", "disqualified"}, set(outcomes.values())

    async with db.connect() as conn:
        twice = (await conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT lead_id FROM routing.assignments GROUP BY lead_id HAVING count(*) > 1) d"
        ))).scalar_one()
        turns = (await conn.execute(sa.text("SELECT coalesce(sum(turns), 0) FROM routing.rotation"))).scalar_one()
        rotated = (await conn.execute(sa.text(
            "SELECT count(*) FROM routing.assignments WHERE method = 'territory'"))).scalar_one()
    assert twice == 0
    assert turns == rotated, f"the rotation turned {turns} times for {rotated} rotated assignments"

    keys = {k.encode() for k in ledger.accepted}
    routed_expected = {k for k, v in outcomes.items() if v == "routed"}
    routed = await read_topic(stack.bootstrap, "leads.routed", where=lambda r: r.key in keys,
                              until=lambda f: len({r.key for r in f}) >= len(routed_expected), timeout=10)
    # A broker that lost data holds only what came after; what it holds must not be doubled.
    ids_per_lead: dict[bytes, set[str | None]] = {}
    for r in routed:
        ids_per_lead.setdefault(r.key, set()).add(r.id)
    doubled = [k for k, ids in ids_per_lead.items() if len(ids) > 1]
    assert not doubled, f"{len(doubled)} leads were routed under two event ids"
