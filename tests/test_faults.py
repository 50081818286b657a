"""Fault injection: break real processes, then account for every accepted lead by its id.

A dedicated stack (the tests kill parts of it): two enrichment and two
scoring processes, and capture re-driving leads with no outcome after 5 s.
"""

import asyncio
import signal
import tempfile
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from leadpipe_common.testing.plugin import make_test_stack, running
from tests.faults import Ledger, LifecycleAudit, assert_conserved, capture_url

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def faulty():
    stack = make_test_stack(Path(tempfile.mkdtemp(prefix="leadpipe-faults-")),
                            replicas={"capture": 1, "enrichment": 2, "scoring": 2, "routing": 1})
    # A tight re-drive schedule (every 5 s, 30 tries) so recovery fits a test's patience.
    stack.extra_env.update({"CAPTURE_REDRIVE_AFTER_S": "5", "CAPTURE_REDRIVE_CHECK_S": "1",
                            "CAPTURE_REDRIVE_BACKOFF": "1", "CAPTURE_REDRIVE_MAX": "30"})
    for service in ("CAPTURE", "ENRICHMENT", "SCORING", "ROUTING"):  # faster hand-over after a crash
        stack.extra_env.update({f"{service}_SESSION_TIMEOUT_MS": "6000", f"{service}_HEARTBEAT_INTERVAL_MS": "1500"})
    with running(stack):
        yield stack


@pytest.fixture(scope="module")
async def audit(faulty):
    tail = LifecycleAudit(faulty.bootstrap)
    await tail.start()
    yield tail
    await tail.stop()


@pytest.fixture
async def db(faulty):
    engine = create_async_engine(faulty.database_url)
    yield engine
    await engine.dispose()


def restart_dead(stack) -> None:
    stack.supervise_once(say=lambda _msg: None, at_once=True)
    stack.wait_ready()


@pytest.mark.parametrize("service", ["enrichment", "scoring", "routing"])
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
        await ledger.post(client, 100)  # these are mid-flight...
        faulty.broker.kill()  # ...when the broker dies with everything it held
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
    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        flowing = asyncio.create_task(ledger.post(client, 400, concurrency=10, pause_s=0.02))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(faulty.postgres.stop)
        stage = next(p for p in faulty.processes if p.service == "scoring")
        readiness = (await client.get(f"{stage.url}/readyz")).status_code
        await asyncio.sleep(2)
        await asyncio.to_thread(faulty.postgres.start)
        await flowing
    assert ledger.refused > 0, "Postgres was down, yet capture refused nothing: the test missed its window"
    assert readiness == 503, "a stage must say it is not ready while its database is away"
    await assert_conserved(faulty, db, audit, ledger, timeout=180)


@pytest.mark.parametrize("service", ["enrichment", "capture"])
async def test_sigterm_finishes_the_work_in_hand_and_exits_within_ten_seconds(faulty, db, audit, service):
    ledger = Ledger()
    victim = next(p for p in faulty.processes if p.service == service)
    async with httpx.AsyncClient(base_url=capture_url(faulty), timeout=30) as client:
        flowing = asyncio.create_task(ledger.post(client, 200, pause_s=0.02))
        await asyncio.sleep(1.5)
        logged_before = victim.log_path.stat().st_size
        victim.signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(victim.proc.wait, 10)  # raises if it takes longer
        await flowing
    # uvicorn re-raises the signal once its graceful shutdown is done, as
    # processes conventionally report how they ended; the log shows it was clean.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in victim.log_path.read_text()[logged_before:]
    restart_dead(faulty)
    await assert_conserved(faulty, db, audit, ledger)
