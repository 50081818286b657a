"""Helpers for fault-injection tests: post leads, break things, account for every lead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common import topics, topology
from leadpipe_common.local.stack import Stack
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import KafkaSettings
from leadpipe_common.testing.kafka import partitions_of, read_all, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS

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


#: The stages that end the pipeline's part for a lead in these tests (no poison is injected).
OUTCOMES = frozenset({"routed", "nurture", "disqualified"})


class LifecycleAudit:
    """Reads ``leads.lifecycle`` for as long as a test module runs, as an analyst would.

    It keeps every terminal step it sees, by lead and event id, so a lead's
    outcome is judged from the stream itself and not from what any service
    recorded of it. A broker that restarts empty loses what it held: the
    tail has seen that already; what the new broker holds is read whole by
    the scans ``settle`` makes (a tail's old positions could skip its start).
    """

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=100)
        self._task: asyncio.Task[None] | None = None
        #: lead id -> {event id: stage}
        self.outcomes: dict[str, dict[str, str]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await partitions_of(self._bootstrap, topics.LIFECYCLE)
        if not partitions:
            raise RuntimeError(f"{topics.LIFECYCLE} has no partitions on {self._bootstrap}")
        self._consumer.assign([TopicPartition(topics.LIFECYCLE, p) for p in sorted(partitions)])
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError:
                await asyncio.sleep(0.2)  # the broker is away; its replacement is read from its beginning
                continue
            for records in batch.values():
                self._note(records)

    def _note(self, records: list) -> None:
        for r in records:
            headers = dict(r.headers)
            stage = headers.get("ce_tostage", b"").decode()
            if stage in OUTCOMES or stage == "deadlettered":
                self.outcomes.setdefault(r.key.decode(), {})[headers["ce_id"].decode()] = stage

    async def _scan(self) -> None:
        async with TopicScan(KafkaSettings(kafka_bootstrap_servers=self._bootstrap), topics.LIFECYCLE) as scan:
            async for records in scan.batches():
                self._note(records)

    async def settle(self, lead_ids: set[str], timeout: float) -> dict[str, dict[str, str]]:
        """The terminal steps of ``lead_ids``, once each has one (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            await self._scan()
            if all(self.outcomes.get(lead) for lead in lead_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        await asyncio.sleep(1)  # a second, late outcome of a lead gets the chance to show
        await self._scan()
        return {lead: dict(self.outcomes.get(lead, {})) for lead in lead_ids}


def conservation_problems(outcomes: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with the terminal steps seen per lead (lead -> {event id: stage}); empty when each
    lead has exactly one, and it is an outcome."""
    problems = []
    missing = [lead for lead, steps in outcomes.items() if not steps]
    if missing:
        problems.append(f"{len(missing)} of {len(outcomes)} accepted leads never reached an outcome")
    doubled = {lead: sorted(steps.values()) for lead, steps in outcomes.items() if len(steps) > 1}
    if doubled:
        problems.append(f"{len(doubled)} leads reached two terminal outcomes, e.g. {next(iter(doubled.items()))}")
    other = {stage for steps in outcomes.values() for stage in steps.values()} - OUTCOMES
    if other:
        problems.append(f"leads ended in {sorted(other)}")
    return problems


async def _where_the_silent_stand(stack: Stack, db: AsyncEngine, silent: list[str]) -> str:
    """What capture's table and the topics say of leads with no outcome: a failure in CI then says which part of
    the pipeline held them, with no stack left to look at."""
    if not silent:
        return ""
    async with db.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT lead_id::text, published_at IS NOT NULL AS published, redrives, terminal_stage "
            "FROM capture.leads WHERE lead_id::text = ANY(:ids)"), {"ids": silent})).all()
    keys = {lead.encode() for lead in silent}
    stages = {}
    for topic in (topics.CAPTURED, topics.ENRICHED, topics.SCORED):
        found = await read_all(stack.bootstrap, topic, where=lambda r: r.key in keys)
        stages[topic] = len({r.key for r in found})
    states = {}
    for row in rows:
        state = f"published={row.published} redrives={row.redrives} terminal={row.terminal_stage}"
        states[state] = states.get(state, 0) + 1
    return (f"of the {len(silent)} silent (e.g. {silent[0]}): {len(rows)} in capture.leads {states}; "
            f"on the topics (leads with any record): {stages}; what the stages' consumers hold:\n"
            f"{await _consumers(stack)}\nwhat the processes warned of:\n{_warned(stack)}")


#: The stages whose groups a test waits to settle: a lead's outcome waits on each.
STAGES = ("enrichment", "scoring", "routing")


async def groups_settled(stack: Stack, timeout: float = 60) -> None:
    """Once every stage's group has shared out its partitions: each process of it holds one or more (where there are
    as many), and together every partition of the stage's inputs.

    A process a test restarted is ready before its group's rebalance: that rebalance would otherwise land in the
    middle of whatever the next test breaks. A group that does not settle fails the test: a partition nobody reads
    stalls every lead keyed to it."""
    expected = dict.fromkeys(STAGES, 0)
    for service in STAGES:
        for topic in topology.inputs_of(service):
            expected[service] += len(await partitions_of(stack.bootstrap, topic))
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=KEY_HEADERS, timeout=5) as client:
        while True:
            held: dict[str, list[int]] = {service: [] for service in STAGES}
            for p in stack.processes:
                if p.service in held:
                    held[p.service].append(await _assigned(client, p.url))
            unsettled = {service: counts for service, counts in held.items()
                         if sum(counts) != expected[service]
                         or (expected[service] >= len(counts) and min(counts, default=0) < 1)}
            if not unsettled:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"stage groups not settled after {timeout:.0f} s (partitions held by each "
                                     f"process, of {expected}): {unsettled}")
            await asyncio.sleep(0.25)


async def _assigned(client: httpx.AsyncClient, url: str) -> int:
    """The partitions a process holds (none while it does not answer)."""
    held = await _consumer_metrics(client, url, "leadpipe_consumer_assigned_partitions ")
    return int(float(held[0].split()[1])) if held else 0


async def _consumer_metrics(client: httpx.AsyncClient, url: str, *names: str) -> list[str] | None:
    """The lines of a process's metrics that start with one of ``names``; None while it does not answer."""
    try:
        text = (await client.get(f"{url}/metrics")).text
    except httpx.HTTPError:
        return None
    return [line for line in text.splitlines() if line.startswith(names)]


async def _consumers(stack: Stack) -> str:
    """Each consuming process's partitions and what it has not yet processed of them, from its metrics: a
    partition that keeps its lag while re-drives come is one nobody reads."""
    said = []
    async with httpx.AsyncClient(headers=KEY_HEADERS, timeout=5) as client:
        for p in stack.processes:
            if p.service not in STAGES:
                continue
            held = await _consumer_metrics(client, p.url, "leadpipe_consumer_assigned_partitions ",
                                           "leadpipe_consumer_lag_records{")
            said.append(f"  {p.name}: {'no answer' if held is None else '; '.join(held) or 'no consumer metrics'}")
    return "\n".join(said)


def _warned(stack: Stack) -> str:
    """Each process's warnings and errors, counted by what they say: CI keeps no stack to look at afterwards."""
    said = []
    for p in stack.processes:
        if p.log_path is None or not p.log_path.exists():
            continue
        events: Counter[str] = Counter()
        for line in p.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
                    events[f"{entry['level']}: {entry.get('event')}"[:160]] += 1
        said += [f"  {p.name}: {n}x {event}" for event, n in events.most_common(6)]
    return "\n".join(said)


async def assert_conserved(stack: Stack, db: AsyncEngine, audit: LifecycleAudit, ledger: Ledger,
                           timeout: float = 120, broker_lost_data: bool = False) -> None:
    """Every accepted lead reached exactly one terminal outcome on the lifecycle; none was routed twice.

    ``broker_lost_data``: the test killed a broker that keeps nothing. A terminal step it had acknowledged
    just before may have reached capture (which then has no reason to re-drive the lead) and not yet this
    audit's tail: for such a lead, and only then, capture's record of its outcome stands in for the lost step.
    """
    assert ledger.accepted, "no lead was accepted; the test proved nothing"
    deadline = time.monotonic() + timeout
    while True:
        outcomes = await audit.settle(ledger.accepted, timeout=5 if broker_lost_data else timeout)
        if broker_lost_data:
            silent = [lead for lead, steps in outcomes.items() if not steps]
            async with db.connect() as conn:
                recorded = dict((await conn.execute(sa.text(
                    "SELECT lead_id::text, terminal_stage FROM capture.leads "
                    "WHERE terminal_stage IS NOT NULL AND lead_id::text = ANY(:ids)"), {"ids": silent})).all())
            outcomes.update({lead: {f"recorded by capture: {stage}": stage} for lead, stage in recorded.items()})
        if all(outcomes.values()) or time.monotonic() > deadline:
            break
    problems = conservation_problems(outcomes)
    if problems:
        silent = [lead for lead, steps in outcomes.items() if not steps]
        problems.append(await _where_the_silent_stand(stack, db, silent))
    assert not problems, "; ".join(problems)

    async with db.connect() as conn:
        turns = (await conn.execute(sa.text("SELECT coalesce(sum(turns), 0) FROM routing.rotation"))).scalar_one()
        rotated = (await conn.execute(sa.text(
            "SELECT count(*) FROM routing.assignments WHERE method = 'territory'"))).scalar_one()
    assert turns == rotated, f"the rotation turned {turns} times for {rotated} rotated assignments"

    keys = {k.encode() for k in ledger.accepted}
    routed_expected = {lead for lead, steps in outcomes.items() if "routed" in steps.values()}
    routed = await read_topic(stack.bootstrap, "leads.routed", where=lambda r: r.key in keys,
                              until=lambda f: len({r.key for r in f}) >= len(routed_expected), timeout=10)
    # A broker that lost data holds only what came after; what it holds must not be doubled.
    ids_per_lead: dict[bytes, set[str | None]] = {}
    for r in routed:
        ids_per_lead.setdefault(r.key, set()).add(r.id)
    twice = [k for k, ids in ids_per_lead.items() if len(ids) > 1]
    assert not twice, f"{len(twice)} leads were routed under two event ids"
