"""The background loop's rounds (relays, watches) with no IO: what a wake and a linger do, and what a failing
one does to the service's readiness."""

import asyncio
import contextlib

import httpx
import pytest
import structlog
from fastapi import FastAPI
from prometheus_client import REGISTRY

from leadpipe_common.ops import ops_router
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.service import loop_checks


class Writes(BackgroundLoop):
    """Takes every write made so far in one round, as an outbox relay does."""

    def __init__(self, linger_s: float) -> None:
        super().__init__(batch_max=100, idle_s=30, linger_s=linger_s)
        self.pending = 0
        self.rounds: list[int] = []

    async def step(self) -> int:
        taken, self.pending = self.pending, 0
        if taken:
            self.rounds.append(taken)
        return taken

    async def write(self) -> None:
        self.pending += 1
        self.wake()


async def until(condition) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def test_a_woken_loop_without_a_linger_takes_each_write_in_its_own_round():
    loop = Writes(linger_s=0)
    loop.start()
    for n in range(1, 4):
        await loop.write()
        await until(lambda n=n: len(loop.rounds) == n)
    await loop.stop()
    assert loop.rounds == [1, 1, 1]


async def test_a_woken_loop_lingers_so_one_round_takes_every_write_of_that_moment():
    loop = Writes(linger_s=0.5)
    loop.start()
    await asyncio.sleep(0.01)  # its first round, with nothing to do yet
    for _ in range(5):
        await loop.write()
        await asyncio.sleep(0.01)
    await until(lambda: loop.rounds)
    await loop.stop()
    assert loop.rounds == [5]


async def test_stopping_does_not_wait_for_a_linger():
    loop = Writes(linger_s=30)
    loop.start()
    await asyncio.sleep(0.01)
    async with asyncio.timeout(5):
        await loop.stop()


class CancelledInside(BackgroundLoop):
    """A round whose client library raises CancelledError of its own once (as a wedged driver may)."""

    def __init__(self) -> None:
        super().__init__(batch_max=100, idle_s=0.01)
        self.rounds = 0

    async def step(self) -> int:
        self.rounds += 1
        if self.rounds == 1:
            raise asyncio.CancelledError("the driver's own timeout")
        return 0


async def test_a_round_cancelled_from_inside_is_retried_not_the_end_of_the_loop():
    loop = CancelledInside()
    loop.start()
    await until(lambda: loop.rounds >= 3)
    await loop.stop()
    assert loop._task is not None and loop._task.done() and not loop._task.cancelled()


class Blocked(BackgroundLoop):
    """A round that waits on something the test controls."""

    def __init__(self) -> None:
        super().__init__(batch_max=100, idle_s=0.01)
        self.inside = asyncio.Event()

    async def step(self) -> int:
        self.inside.set()
        await asyncio.Event().wait()
        return 0


async def test_a_loop_cancelled_from_outside_during_a_round_still_ends():
    loop = Blocked()
    loop.start()
    await asyncio.wait_for(loop.inside.wait(), timeout=5)
    assert loop._task is not None
    loop._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(loop._task, timeout=5)
    assert loop._task.cancelled()


class Failing(BackgroundLoop):
    """A round that always fails, as a relay's does while the broker is away."""

    def __init__(self) -> None:
        super().__init__(batch_max=100, idle_s=30)
        self.rounds = 0

    async def step(self) -> int:
        self.rounds += 1
        raise ConnectionError("the broker is away")


async def test_wakes_do_not_cut_a_failing_loops_backoff_short_but_a_stop_does():
    """Every capture write round wakes its relay: during a broker outage that was a retry (and a warning) per
    request, not a backoff."""
    loop = Failing()
    loop.start()
    await until(lambda: loop.rounds == 1)
    for _ in range(20):  # a few milliseconds, well within the first backoff (0.05 - 0.1 s)
        loop.wake()
        for _ in range(5):
            await asyncio.sleep(0)
    assert loop.rounds == 1
    async with asyncio.timeout(1):
        await loop.stop()


class FailingHousekeeping(Failing):
    """A round that always fails, as a purge's does on a statement timeout, in a loop the service works without."""

    name = "housekeeping"
    essential = False


async def database_ok() -> None:
    pass


async def readiness_with(loop: BackgroundLoop) -> httpx.Response:
    """What /readyz answers with the database reachable and ``loop`` running, once its first round has failed."""
    app = FastAPI()
    app.include_router(ops_router(lambda: {"database": database_ok, **loop_checks([loop])}))
    loop.start()
    try:
        await until(lambda: loop.failing)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            return await client.get("/readyz")
    finally:
        await loop.stop()


async def test_a_failing_essential_loop_makes_the_service_unready():
    loop = Failing()
    loop.name = "relay"
    answer = await readiness_with(loop)
    assert answer.status_code == 503 and answer.json()["checks"]["relay"] == "failing: RuntimeError"


async def test_a_failing_housekeeping_loop_leaves_the_service_ready_and_is_counted_by_name():
    """Taking the pod out of service for a purge that fails would stop the work the service still does."""
    before = REGISTRY.get_sample_value("leadpipe_background_failures_total", {"loop": "housekeeping"}) or 0.0
    answer = await readiness_with(FailingHousekeeping())
    assert answer.status_code == 200 and "housekeeping" not in answer.json()["checks"]
    after = REGISTRY.get_sample_value("leadpipe_background_failures_total", {"loop": "housekeeping"}) or 0.0
    assert after - before >= 1


class Stopping:
    """A loop whose stop waits for ``waits_for`` (another loop's stop under way) and says when it ended."""

    essential, failing = False, False

    def __init__(self, name: str, said: list[str], waits_for: asyncio.Event | None = None,
                 fails: bool = False) -> None:
        self.name, self.said, self.waits_for, self.fails = name, said, waits_for, fails
        self.under_way = asyncio.Event()

    def start(self) -> None: ...

    async def stop(self) -> None:
        self.under_way.set()
        if self.waits_for is not None:
            await self.waits_for.wait()
        self.said.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} failed to stop")


async def test_the_loops_stop_together_and_the_relay_after_them():
    """One after another, each loop's bound (8 s on a silent database) added up past a pod's grace period."""
    from leadpipe_common.service import stop_background

    said: list[str] = []
    purge = Stopping("purge", said)
    watch = Stopping("watch", said, waits_for=purge.under_way)  # stuck for ever if purge's stop came after
    purge.waits_for = watch.under_way
    relay = Stopping("relay", said)
    await asyncio.wait_for(stop_background([watch, purge], relay), timeout=5)
    assert sorted(said[:2]) == ["purge", "watch"] and said[2:] == ["relay"]


async def test_a_loop_failing_to_stop_is_raised_once_the_others_and_the_relay_have_stopped():
    from leadpipe_common.service import stop_background

    said: list[str] = []
    with structlog.testing.capture_logs() as lines, pytest.raises(RuntimeError, match="purge failed to stop"):
        await stop_background([Stopping("purge", said, fails=True), Stopping("watch", said, fails=True)],
                              Stopping("relay", said))
    assert said == ["purge", "watch", "relay"]
    assert [(line["loop"], line["error"]) for line in lines if line["event"] == "a background loop failed to stop"] == [
        ("watch", "RuntimeError: watch failed to stop")]
