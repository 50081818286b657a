"""Fault injection: break real processes, then account for every accepted lead by its id.

A dedicated stack (the tests kill parts of it): two enrichment and two
scoring processes, capture re-driving leads with no outcome after 5 s, and
no reporting (what the tests account for is on the topics and in capture's
and routing's tables).
"""

import asyncio
import json
import signal
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common.testing.plugin import WEBHOOK_SOURCE, make_test_stack, receiver_log, running
from tests.faults import Ledger, LifecycleAudit, assert_conserved, capture_url, groups_settled

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def faulty():
    stack = make_test_stack(Path(tempfile.mkdtemp(prefix="leadpipe-faults-")),
                            replicas={"capture": 1, "enrichment": 2, "scoring": 2, "routing": 1, "reporting": 0,
                                      "delivery": 1})
    # A tight re-drive schedule (every 5 s, 30 tries) so recovery fits a test's patience.
    stack.extra_env.update({"CAPTURE_REDRIVE_AFTER_S": "5", "CAPTURE_REDRIVE_CHECK_S": "1",
                            "CAPTURE_REDRIVE_BACKOFF": "1", "CAPTURE_REDRIVE_MAX": "30"})
    with running(stack):
        yield stack


@pytest.fixture(scope="module")
async def audit(faulty):
    tail = LifecycleAudit(faulty.bootstrap)
    await tail.start()
    yield tail
    await tail.stop()


@pytest.fixture(autouse=True)
async def settled(faulty):
    """Each test starts with every stage's partitions shared out: the test before may have restarted a process."""
    await groups_settled(faulty)


@pytest.fixture
async def db(faulty):
    engine = create_async_engine(faulty.database_url)
    yield engine
    await engine.dispose()


def restart_dead(stack) -> None:
    stack.supervise_once(say=lambda _msg: None, at_once=True)
    stack.wait_ready()


# enrichment stands for the consuming stages (scoring runs the same runner, inbox and commit order);
# routing adds the outbox and the hand-offs.
@pytest.mark.parametrize("service", ["enrichment", "routing"])
async def test_a_stage_killed_mid_stream_loses_and_doubles_nothing(faulty, db, audit, service):
    ledger = Ledger()
    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        flowing = asyncio.create_task(ledger.post(client, 300, pause_s=0.02))
        await asyncio.sleep(1.5)
        victim = next(p for p in faulty.processes if p.service == service)
        victim.kill()
        await flowing
    restart_dead(faulty)
    await assert_conserved(faulty, db, audit, ledger)


async def test_delivery_killed_mid_stream_still_sends_every_event_in_order_under_one_id(faulty):
    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        emails = [f"hook{i}.{uuid.uuid4().hex[:8]}@stripe.com" for i in range(8)]
        body = {"job_title": "Chief Marketing Officer", "country": "US", "offer": "demo", "utm_source": WEBHOOK_SOURCE}
        leads = [(await client.post("/v1/leads", json={"email": e, **body})).json()["lead_id"] for e in emails]
        await asyncio.sleep(1)
        for e in emails:  # a second event for each lead: its holder is told of the new touch
            await client.post("/v1/leads", json={"email": e, "offer": "pricing"})

    def requests() -> list[dict]:
        path = receiver_log(faulty.data_dir)
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["event"] and r["event"]["subject"] in leads]

    async with asyncio.timeout(60):
        while len(requests()) < 4:  # deliveries under way
            await asyncio.sleep(0.2)
    victim = next(p for p in faulty.processes if p.service == "delivery")
    victim.kill()
    await asyncio.sleep(1)
    restart_dead(faulty)

    def done() -> bool:
        got = requests()
        return all(any(r["answer"] == 204 and r["event"]["subject"] == lead and r["event"]["type"] == "lead.routed"
                       for r in got) for lead in leads)

    def reengagements_tried() -> bool:  # queued behind each lead's lead.routed: tried once it is delivered
        got = requests()
        return all(len({r["id"] for r in got if r["event"]["subject"] == lead}) >= 2 for lead in leads)

    async with asyncio.timeout(120):
        while not done():
            await asyncio.sleep(0.5)
    async with asyncio.timeout(30):
        while not reengagements_tried():
            await asyncio.sleep(0.2)
    got = requests()
    assert all(r["signed"] for r in got)
    for lead in leads:
        tries: dict[str, list[dict]] = {}
        for r in (r for r in got if r["event"]["subject"] == lead):
            tries.setdefault(r["id"], []).append(r)
        assert all(r["event"]["id"] == webhook_id for webhook_id, rs in tries.items() for r in rs)  # same id, every try
        sequence = sorted(tries.values(), key=lambda rs: rs[0]["at"])
        assert len(sequence) >= 2 and all(any(r["answer"] == 204 for r in rs) for rs in sequence[:1])
        for earlier, later in zip(sequence, sequence[1:], strict=False):
            delivered = [r["at"] for r in earlier if r["answer"] == 204]
            assert delivered and later[0]["at"] >= min(delivered), lead  # never ahead of the earlier event


async def test_capture_killed_right_after_answering_keeps_the_lead(faulty, db, audit):
    ledger = Ledger()
    capture = next(p for p in faulty.processes if p.service == "capture")
    async with httpx.AsyncClient(base_url=capture.url, timeout=30) as client:
        await ledger.post(client, 40, concurrency=40)
    capture.kill()  # before the relay had time to publish everything
    restart_dead(faulty)
    await assert_conserved(faulty, db, audit, ledger)


async def test_leads_outlive_a_broker_that_restarts_empty(faulty, db, audit):
    ledger = Ledger()
    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        # Killed while these are still coming, so some are mid-flight whatever the pipeline's speed: posted all
        # before it, the first 100 were sometimes processed to the end already, and the broker lost none of them.
        first = asyncio.create_task(ledger.post(client, 100, concurrency=5, pause_s=0.02))
        while len(ledger.accepted) < 70 and not first.done():
            await asyncio.sleep(0.005)
        faulty.broker.kill()  # the broker dies with everything it held
        await first
        await ledger.post(client, 100)  # capture keeps accepting into its outbox
        assert len(ledger.accepted) == 200
        await asyncio.to_thread(faulty.restart_broker)
        await ledger.post(client, 50)
    await assert_conserved(faulty, db, audit, ledger, timeout=180, broker_lost_data=True)
    async with db.connect() as conn:
        redriven = (await conn.execute(sa.text("SELECT count(*) FROM capture.leads WHERE redrives > 0 "
                                               "AND lead_id::text = ANY(:ids)"), {"ids": list(ledger.accepted)})).scalar_one()
    assert redriven > 0, "nothing was re-driven, so the broker lost nothing: the test missed its window"


async def test_postgres_restarting_under_load_costs_503s_not_leads(faulty, db, audit):
    ledger = Ledger()
    restarted = asyncio.Event()

    async def until_restarted(client: httpx.AsyncClient) -> None:
        # Leads keep coming for as long as the fault lasts, however fast capture is.
        while not restarted.is_set():
            await ledger.post(client, 20, concurrency=10, pause_s=0.05)

    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        flowing = asyncio.create_task(until_restarted(client))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(faulty.postgres.stop)
        stage = next(p for p in faulty.processes if p.service == "scoring")
        probe = await client.get(f"{stage.url}/readyz")
        readiness, checks = probe.status_code, probe.json()["checks"]
        await asyncio.sleep(2)
        await asyncio.to_thread(faulty.postgres.start)
        await ledger.post(client, 20)  # and after it
        restarted.set()
        await flowing
    assert ledger.refused > 0, "Postgres was down, yet capture refused nothing: the test missed its window"
    assert readiness == 503, "a stage must say it is not ready while its database is away"
    # The probe is public: the kind of error, never its text (hosts, ports, users go to the log).
    assert checks["database"].startswith("failing: ") and "127.0.0.1" not in str(checks), checks
    await assert_conserved(faulty, db, audit, ledger, timeout=180)


@pytest.mark.parametrize("service", ["enrichment", "capture"])
async def test_sigterm_finishes_the_work_in_hand_and_exits_within_ten_seconds(faulty, db, audit, service):
    ledger = Ledger()
    victim = next(p for p in faulty.processes if p.service == service)
    stopped = asyncio.Event()

    async def until_stopped(client: httpx.AsyncClient) -> None:
        # Leads keep coming until the process is gone, however fast capture is, so the signal lands on requests in
        # flight: a fixed 200 could all be answered before it on a fast machine, the shutdown then holding nothing.
        while not stopped.is_set():
            await ledger.post(client, 20, concurrency=10, pause_s=0.02)
            await asyncio.sleep(0.05)  # a capture that is gone refuses at once: no loop of refusals beside its exit

    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        flowing = asyncio.create_task(until_stopped(client))
        await asyncio.sleep(1.5)
        logged_before = victim.log_path.stat().st_size
        victim.signal(signal.SIGTERM)
        try:
            exit_code = await asyncio.to_thread(victim.proc.wait, 10)  # raises if it takes longer
        finally:
            stopped.set()
        await flowing
    # uvicorn re-raises the signal once its graceful shutdown is done, as
    # processes conventionally report how they ended; the log shows it was clean.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in victim.log_path.read_text()[logged_before:]
    restart_dead(faulty)
    await assert_conserved(faulty, db, audit, ledger)
