"""The dispatcher's rounds with a fake queue and pool and receivers in memory: no network, no Postgres."""

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy.exc
import structlog
import typer
from prometheus_client import REGISTRY

from leadpipe_common.cli import load_settings

from delivery.dispatcher import RECORD_MARGIN_S, Dispatcher
from delivery.domain import parse_subscriptions, redirected
from delivery.settings import DeliverySettings
from delivery.store import Attempted, Claimed

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUBS = parse_subscriptions({"subscriptions": [
    {"id": f"crm{i}", "url": f"https://crm{i}.example.com/h", "secrets": [SECRET], "events": ["lead.routed"]}
    for i in range(8)
]}, allow_private=False)


class Queue:
    """The deliveries' table as the dispatcher uses it."""

    def __init__(self, due: list[Claimed]) -> None:
        self.due = due
        self.recorded: list[int] = []
        #: Every attempt handed to ``record``, its outcome with it, recorded or not.
        self.attempted: list[Attempted] = []
        #: The lease of each claim.
        self.leases: list[timedelta] = []
        #: Raised by the coming ``record`` calls, in turn.
        self.failures: list[Exception] = []
        #: A delivery whose result Postgres refuses, whatever else is recorded with it.
        self.unrecordable: int | None = None
        #: The age of each subscription's oldest waiting delivery.
        self.ages: dict[str, float] = {}
        #: The url of each subscription made through the API, as its table has it once a change commits.
        self.urls: dict[str, str] = {}
        #: The subscriptions a receiver's 410 switched off, with the url that answered it.
        self.switched_off: dict[str, str] = {}
        #: ``record`` and ``disable`` calls, in order: the order their rows are locked in.
        self.writes: list[str] = []

    async def disabled_urls(self) -> dict[str, str | None]:
        return dict(self.switched_off)

    async def claim(self, free: dict[str, int], limit: int, *, lease: timedelta) -> list[Claimed]:
        self.leases.append(lease)
        taken: list[Claimed] = []
        for d in self.due:
            if len(taken) < limit and free.get(d.subscription_id, 0) > 0:
                free[d.subscription_id] -= 1
                taken.append(d)
        self.due = [d for d in self.due if d not in taken]
        return taken

    async def oldest_waiting(self) -> dict[str, float]:
        return self.ages

    async def record(self, attempted: list[Attempted]) -> set[int]:
        self.writes.append("record")
        self.attempted += attempted
        await asyncio.sleep(0.001)  # a round trip
        if self.failures:
            raise self.failures.pop(0)
        if any(a.claimed.seq == self.unrecordable for a in attempted):
            raise sqlalchemy.exc.DataError("INSERT", {}, ValueError("invalid byte sequence for encoding UTF8"))
        self.recorded += [a.claimed.seq for a in attempted]
        return {a.claimed.seq for a in attempted}

    async def disable(self, subscription_id: str, reason: str, *, url: str) -> bool:
        """As the store's: not when its table has the subscription sending elsewhere by now; the url kept."""
        self.writes.append(f"disable {subscription_id}")
        if self.urls.get(subscription_id, url) != url:
            return False
        self.switched_off[subscription_id] = url
        return True


class Pool:
    """Units of work on the queue, each holding a pooled connection while open."""

    def __init__(self, store: Queue) -> None:
        self.store = store
        self.held = 0
        self.most_held = 0

    def __call__(self) -> "Pool":
        return self

    async def __aenter__(self) -> "Pool":
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        await asyncio.sleep(0)  # a checkout may wait
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.held -= 1

    async def commit(self) -> None:
        pass


def due(n: int, claimed_at: datetime = NOW) -> list[Claimed]:
    """``n`` deliveries, spread over the subscriptions, each to a lead of its own, claimed when Postgres's clock
    read ``claimed_at``."""
    subs = sorted(SUBS)
    return [Claimed(seq=i, subscription_id=subs[i % len(subs)], lead_id=uuid.uuid4(), event_id=uuid.uuid4(),
                    event_type="lead.routed", body=b"{}", attempts=0, created_at=claimed_at,
                    leased_until=claimed_at + timedelta(seconds=20), claimed_at=claimed_at) for i in range(n)]


def dispatcher(queue: Queue, pool: Pool, answer: asyncio.Event | None = None,
               refusal: Exception | None = None, subscriptions: dict | None = None, status: int = 204,
               headers: dict[str, str] | None = None) -> Dispatcher:
    """A dispatcher whose receivers answer ``status`` with ``headers`` (once ``answer`` is set), or whose client
    raises ``refusal``."""
    async def nothing():  # noqa: ANN202
        yield b""

    async def receiver(request: httpx.Request) -> httpx.Response:
        if refusal is not None:
            raise refusal
        if answer is not None:
            await answer.wait()
        return httpx.Response(status, headers=headers, content=nothing())  # streamed, as a receiver's answer is read

    return Dispatcher(unit_of_work=pool, client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
                      subscriptions=SUBS if subscriptions is None else subscriptions, from_file=SUBS,
                      retry_window=timedelta(hours=72), retry_base_s=5, refused_attempts=3,
                      connect_timeout_s=5, timeout_s=15, max_in_flight=64, per_subscription=8, idle_s=0.5)


async def until(condition) -> None:  # noqa: ANN001
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def test_attempts_that_end_together_are_recorded_over_one_pooled_connection():
    """64 attempts under way, a pool of ~20 shared with the consumer: one connection each, the recordings would
    queue for the pool past their leases, and another round would send those deliveries again."""
    queue = Queue(due(64))
    pool = Pool(queue)
    answer = asyncio.Event()
    sender = dispatcher(queue, pool, answer)
    assert await sender.step() == 64
    answer.set()  # every receiver answers at once
    await sender.stop()  # waits for the attempts, then records what the next round would have
    assert pool.most_held == 1
    assert sorted(queue.recorded) == list(range(64))


async def test_a_dispatcher_asks_for_a_lease_as_long_as_the_attempt_and_its_recording_whatever_its_clock():
    """Two dispatchers on hosts whose clocks were a minute apart: the one ahead judged the other's lease run out
    and sent the delivery it still held. Claims are due and leased by Postgres's clock (``store``'s tests); the
    dispatcher, whatever its own clock says, gives only the lease's length: the attempt's total timeout and the
    recording's margin."""
    queue = Queue([])
    await dispatcher(queue, Pool(queue)).step()
    assert queue.leases == [timedelta(seconds=15 + RECORD_MARGIN_S)]


async def test_a_dispatcher_whose_clock_runs_behind_never_retries_before_a_receivers_retry_after():
    """A receiver answered 429 with ``Retry-After: 120``; the dispatcher's host, ten minutes behind Postgres, dated
    the retry by its own clock, and the claims (by Postgres's) sent it again at once. The attempt is dated, and
    its retry reckoned, by Postgres's clock as the claim read it."""
    postgres = datetime.now(UTC) + timedelta(minutes=10)
    queue = Queue(due(1, claimed_at=postgres))
    sender = dispatcher(queue, Pool(queue), status=429, headers={"retry-after": "120"})
    assert await sender.step() == 1
    await sender.stop()
    [tried] = queue.attempted
    assert tried.outcome == "retry" and tried.status == 429
    assert postgres + timedelta(seconds=120) <= tried.next_at < postgres + timedelta(seconds=121)
    assert postgres <= tried.at < postgres + timedelta(seconds=1)  # its first_attempt_at, as recorded


async def test_a_dispatcher_whose_clock_runs_ahead_retries_after_its_backoff_by_postgres_clock():
    """Dated by a host ten minutes ahead of Postgres, a first retry meant for 5 s later waited ten minutes more."""
    postgres = datetime.now(UTC) - timedelta(minutes=10)
    queue = Queue(due(1, claimed_at=postgres))
    sender = dispatcher(queue, Pool(queue), refusal=httpx.ConnectError("refused"))
    assert await sender.step() == 1
    await sender.stop()
    [tried] = queue.attempted
    assert tried.outcome == "retry" and postgres <= tried.at < postgres + timedelta(seconds=1)
    assert postgres + timedelta(seconds=2.5) <= tried.next_at < postgres + timedelta(seconds=6)  # 5 s, with jitter


async def test_dispatchers_whose_clocks_disagree_end_a_deliverys_retry_window_when_postgres_clock_says():
    """A delivery's window counts from its first attempt, which one process dated; another, whose host's clock
    was three hours ahead, gave it up two hours early, and one three hours behind retried it past its end."""
    for skew in (timedelta(hours=3), -timedelta(hours=3)):
        postgres = datetime.now(UTC) - skew  # this host's clock ``skew`` ahead of it
        opened, spent = due(2, claimed_at=postgres)
        queue = Queue([replace(opened, attempts=1, first_attempt_at=postgres - timedelta(hours=70)),
                       replace(spent, attempts=1, first_attempt_at=postgres - timedelta(hours=73))])
        sender = dispatcher(queue, Pool(queue), refusal=httpx.ConnectError("refused"))
        assert await sender.step() == 2
        await sender.stop()
        assert {a.claimed.seq: a.outcome for a in queue.attempted} == {opened.seq: "retry", spent.seq: "dead"}


async def test_a_deleted_subscriptions_oldest_waiting_age_is_no_longer_reported():
    """Its series kept its last value for ever: an alert on waiting deliveries fired for a subscription gone."""
    queue = Queue([])
    queue.ages = {"crm0": 30.0}
    subscriptions = dict(SUBS)
    sender = dispatcher(queue, Pool(queue), subscriptions=subscriptions)
    await sender.step()
    assert REGISTRY.get_sample_value("delivery_oldest_waiting_seconds", {"subscription": "crm0"}) == 30.0
    del subscriptions["crm0"]  # deleted through the API
    sender._gauged_at = float("-inf")  # the gauge is due again
    await sender.step()
    assert REGISTRY.get_sample_value("delivery_oldest_waiting_seconds", {"subscription": "crm0"}) is None
    assert REGISTRY.get_sample_value("delivery_oldest_waiting_seconds", {"subscription": "crm1"}) == 0.0


async def test_attempts_the_database_could_not_take_are_recorded_by_a_later_round():
    """Every pooled connection busy for a while: what the attempts got is kept until a round can record it."""
    queue = Queue(due(1))
    queue.failures = [sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached")] * 2
    sender = dispatcher(queue, Pool(queue))
    sender.start()
    await until(lambda: queue.recorded)
    await sender.stop()
    assert queue.recorded == [0] and not queue.failures


async def test_an_attempt_postgres_refuses_to_record_holds_up_no_other():
    """Unlike an unavailable database, a row that fails would fail every later round: only it is given up (its
    lease lapses and it is sent again), not the round's other attempts."""
    queue = Queue(due(3))
    queue.unrecordable = 1
    sender = dispatcher(queue, Pool(queue))
    labels = {"subscription": queue.due[1].subscription_id, "why": "error"}
    before = REGISTRY.get_sample_value("delivery_attempts_unrecorded_total", labels) or 0
    assert await sender.step() == 3
    await sender.stop()  # the three recorded together
    assert sorted(queue.recorded) == [0, 2]
    # An operator sees a delivery that will be sent again.
    assert REGISTRY.get_sample_value("delivery_attempts_unrecorded_total", labels) == before + 1


async def test_an_attempt_the_http_client_refuses_to_make_is_recorded_as_failed_not_lost():
    """A URL httpx will not send to (a port out of range, a host it cannot parse) raised past the attempt: its
    result was never recorded, so the delivery was claimed again at every lease, for ever, holding its lead's
    later deliveries back."""
    queue = Queue(due(2))
    sender = dispatcher(queue, Pool(queue), refusal=ExceptionGroup("connect", [OverflowError("port")]))
    assert await sender.step() == 2
    await sender.stop()
    assert sorted(queue.recorded) == [0, 1]
    assert {(a.outcome, a.status) for a in queue.attempted} == {("retry", None)}
    assert all("OverflowError" in (a.error or "") or "connect" in (a.error or "") for a in queue.attempted)


async def test_an_attempt_to_a_name_resolving_to_a_private_address_counts_as_a_refusal():
    from delivery.network import NotPublic

    try:
        try:
            raise NotPublic("refused: crm.example.com resolves to 10.0.0.5, a private address")
        except NotPublic as inner:
            raise httpx.ConnectError("refused: crm.example.com resolves to 10.0.0.5") from inner
    except httpx.ConnectError as exc:
        mapped = exc  # as httpx raises what its transport's backend raised
    queue = Queue(due(1))
    sender = dispatcher(queue, Pool(queue), refusal=mapped)
    assert await sender.step() == 1
    await sender.stop()
    assert [(a.outcome, a.refused_in_a_row) for a in queue.attempted] == [("retry", 1)]


async def test_an_attempt_that_timed_out_says_so_in_its_error():
    """A timeout's own text is empty: "TimeoutError: " was the whole last error an operator read of a slow
    receiver."""
    queue = Queue(due(1))
    sender = dispatcher(queue, Pool(queue), refusal=TimeoutError())
    assert await sender.step() == 1
    await sender.stop()
    assert [a.error for a in queue.attempted] == ["TimeoutError: no whole answer within DELIVERY_TIMEOUT_S (15 s)"]


async def test_a_delivery_gets_its_whole_retry_window_from_its_first_attempt_not_from_when_it_was_queued():
    """A lead's deliveries go out one at a time: one queued behind an earlier one failing for most of a window was
    given up at its first failure. One whose first attempt was a window ago is given up all the same."""
    long_ago = NOW - timedelta(hours=73)  # the window is 72 hours
    waited, retried = due(2)
    queue = Queue([replace(waited, created_at=long_ago),
                   replace(retried, created_at=long_ago, attempts=9, first_attempt_at=long_ago)])
    sender = dispatcher(queue, Pool(queue), refusal=httpx.ConnectError("refused"))
    assert await sender.step() == 2
    await sender.stop()
    assert {a.claimed.seq: a.outcome for a in queue.attempted} == {waited.seq: "retry", retried.seq: "dead"}


async def test_a_delivery_its_receiver_refuses_is_dead_at_its_third_refusal_in_a_row_saying_it_was_refused():
    """A CRM that cannot map ``owner_id: queue:emea`` answers 422: the delivery was retried for 72 hours, and the
    lead's later events (the rep who now holds it) waited behind it. Dead, it lets them go; its last error says
    why, where one dead after its window has none, and it is counted by the status its receiver answered."""
    first, third = due(2)
    queue = Queue([first, replace(third, attempts=2, first_attempt_at=NOW, refused_in_a_row=2)])
    labels = {"subscription": third.subscription_id, "status": "422"}
    before = REGISTRY.get_sample_value("delivery_refused_total", labels) or 0
    with structlog.testing.capture_logs() as logs:
        sender = dispatcher(queue, Pool(queue), status=422)
        assert await sender.step() == 2
        await sender.stop()
    tried = {a.claimed.seq: a for a in queue.attempted}
    assert (tried[first.seq].outcome, tried[first.seq].error, tried[first.seq].refused_in_a_row) == ("retry", None, 1)
    assert (tried[third.seq].outcome, tried[third.seq].status) == ("dead", 422)
    assert tried[third.seq].error == "refused: the receiver answered 422, refusing 3 attempts in a row"
    assert REGISTRY.get_sample_value("delivery_refused_total", labels) == before + 1
    assert [e["status"] for e in logs if e["event"] == "delivery refused by its receiver: given up"] == [422]


async def test_a_delivery_that_failed_through_an_outage_is_retried_at_its_receivers_first_refusal():
    """Judged by its attempts since it was queued (30 through the outage), it was given up at the first 404 of its
    receiver's bad deploy; judged by the refusals in a row its claim read, it is retried, and its first is
    recorded for the next attempt to count on."""
    [after_outage] = due(1)
    queue = Queue([replace(after_outage, attempts=30, first_attempt_at=NOW)])
    sender = dispatcher(queue, Pool(queue), status=404)
    assert await sender.step() == 1
    await sender.stop()
    [tried] = queue.attempted
    assert (tried.outcome, tried.error, tried.refused_in_a_row) == ("retry", None, 1)


async def test_an_answer_other_than_a_refusal_records_the_count_of_refusals_in_a_row_started_again():
    """A receiver that refused twice, then answers 503 while it restarts: carried on, its count would give the
    delivery up at its first refusal after the restart."""
    [refused_twice] = due(1)
    queue = Queue([replace(refused_twice, attempts=32, first_attempt_at=NOW, refused_in_a_row=2)])
    sender = dispatcher(queue, Pool(queue), status=503)
    assert await sender.step() == 1
    await sender.stop()
    [tried] = queue.attempted
    assert (tried.outcome, tried.refused_in_a_row) == ("retry", 0)


async def test_a_receiver_that_redirects_refuses_the_delivery_and_its_last_error_says_where_to():
    """An http:// url its receiver moved to https:// answers 301 for ever: retried as an outage, it held the lead's
    later events for 72 hours with nothing saying why. A redirect is a refusal, and its last error names the
    url to set."""
    retried, third = due(2)
    queue = Queue([retried, replace(third, attempts=2, first_attempt_at=NOW, refused_in_a_row=2)])
    # A hook's url holds its secret: the error, which every reports:read key is shown, names the origin only; the
    # whole Location is in the answer kept, which admin keys alone are shown.
    moved = "https://user:pw@crm.example.com:8443/hooks/T0/B0/SECRET?token=abc"
    sender = dispatcher(queue, Pool(queue), status=301, headers={"location": moved})
    assert await sender.step() == 2
    await sender.stop()
    tried = {a.claimed.seq: a for a in queue.attempted}
    assert (tried[retried.seq].outcome, tried[retried.seq].refused_in_a_row) == ("retry", 1)
    assert tried[retried.seq].error == ("redirected to https://crm.example.com:8443; deliveries follow no redirect: "
                                        "set the subscription's url to where it points (its Location is in the last "
                                        "response, shown to admin keys)")
    assert tried[retried.seq].response.startswith(f"Location: {moved}\n")
    assert tried[third.seq].outcome == "dead"
    assert tried[third.seq].error.startswith("refused: the receiver answered 301, refusing 3 attempts in a row; "
                                             "redirected to https://crm.example.com:8443;")
    assert all("SECRET" not in a.error and "pw" not in a.error for a in tried.values())


@pytest.mark.parametrize("location", ["/hooks/leadpipe/", "https://[::1", "http://crm.example.com:99999/x", ""])
def test_a_redirect_to_a_location_no_origin_can_be_read_from_says_it_points_elsewhere(location):
    assert redirected(302, location or None).startswith("redirected elsewhere;" if location else "redirected;")


@pytest.mark.parametrize("value", ["0", "101", "three"])
def test_a_refused_attempts_setting_outside_1_to_100_stops_the_service_naming_it(monkeypatch, capsys, value):
    monkeypatch.setenv("DELIVERY_REFUSED_ATTEMPTS", value)
    with pytest.raises(typer.Exit):
        load_settings(DeliverySettings)
    assert "invalid setting DELIVERY_REFUSED_ATTEMPTS" in capsys.readouterr().err


async def test_a_stopping_dispatcher_finishes_what_is_under_way_and_claims_nothing_more():
    """A backlog must not keep a stop claiming round after round (each attempt up to its total timeout)."""
    queue = Queue(due(200))
    answer = asyncio.Event()
    sender = dispatcher(queue, Pool(queue), answer)
    sender.start()
    await until(lambda: queue.leases)
    answer.set()
    await until(lambda: len(sender._finished) == 64)
    await sender.stop()
    assert len(queue.leases) == 1
    assert sorted(queue.recorded) == list(range(64)) and len(queue.due) == 136


def at(url: str) -> dict:
    """The book of a process that sends crm0 to ``url``."""
    return dict(parse_subscriptions({"subscriptions": [
        {"id": "crm0", "url": url, "secrets": [SECRET], "events": ["lead.routed"]}]}, allow_private=False))


def gone_at(old_url: str, book: dict, queue: Queue, answer: asyncio.Event, *,
            from_file: dict) -> Dispatcher:
    """A dispatcher whose receiver at ``old_url`` answers 410 (once ``answer`` is set), any other 204."""
    async def receiver(request: httpx.Request) -> httpx.Response:
        await answer.wait()
        return httpx.Response(410 if str(request.url) == old_url else 204)

    return Dispatcher(unit_of_work=Pool(queue), client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
                      subscriptions=book, from_file=from_file, retry_window=timedelta(hours=72),
                      retry_base_s=5, refused_attempts=3,
                      connect_timeout_s=5, timeout_s=15, max_in_flight=64, per_subscription=8, idle_s=0.5)


async def test_a_410_from_the_url_a_subscription_left_while_it_was_sent_does_not_switch_it_off():
    """Changed through the API while an attempt to its old url was under way: the receiver it left answers 410,
    which must not switch off the subscription now sending to another; the delivery goes there after its lease."""
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    book, answer = at(old), asyncio.Event()
    queue = Queue(due(1))
    queue.urls["crm0"] = old
    d = gone_at(old, book, queue, answer, from_file={})
    await d.step()  # claims it and sends to the old url
    await asyncio.sleep(0.01)
    queue.urls["crm0"] = new  # PATCHed meanwhile: committed, then this process's book reloaded
    book.update(at(new))
    answer.set()
    await until(lambda: d._finished)
    await d.step()  # records it
    assert queue.recorded == [0] and queue.switched_off == {}
    queue.urls["crm0"] = old  # ...while a 410 from where it still sends switches it off
    book.update(at(old))
    queue.due = due(1)
    await d.step()
    await until(lambda: d._finished)
    await d.step()
    assert queue.switched_off == {"crm0": old}


async def test_a_410_from_a_url_changed_by_another_process_is_logged_as_leaving_the_subscription_on():
    """PATCHed through another process, whose change this one's book has yet to reload: the book still sends to
    the url that answered 410, but the store, which has the change, leaves the subscription on. The log said
    it was switched off, of a subscription that went on sending."""
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    answer = asyncio.Event()
    queue = Queue(due(1))
    queue.urls["crm0"] = new
    d = gone_at(old, at(old), queue, answer, from_file={})
    await d.step()
    answer.set()
    await until(lambda: d._finished)
    with structlog.testing.capture_logs() as lines:
        await d.step()
    said = [(line["log_level"], line["event"]) for line in lines if line.get("subscription") == "crm0"]
    assert queue.switched_off == {}
    assert said == [("info", "a url the subscription has left since answered 410 Gone: it stays on")]


async def test_a_410_switches_its_subscription_off_before_the_attempt_is_recorded():
    """The switch-off share-locks the subscription's row, which a deletion locks before the subscription's
    deliveries: after ``record`` (which locks the delivery's row) it could wait for a deletion waiting for it."""
    old = "https://old.example.com/h"
    answer = asyncio.Event()
    answer.set()
    queue = Queue(due(1))
    d = gone_at(old, at(old), queue, answer, from_file={})
    await d.step()
    await until(lambda: d._finished)
    await d.step()
    assert queue.switched_off == {"crm0": old} and queue.writes == ["disable crm0", "record"]


async def test_a_410_from_the_url_a_files_subscription_left_holds_off_only_the_processes_still_on_the_old_file():
    """A rolling deploy moves crm0 to a new url in the file: a process still on the old file gets 410 from the
    url the receiver left. It switched the subscription off for every process, the new file's too, whose url
    is live, until an operator enabled it again."""
    old, new = "https://old.example.com/h", "https://new.example.com/h"
    answer = asyncio.Event()
    answer.set()
    queue = Queue(due(1))
    on_old_file = gone_at(old, at(old), queue, answer, from_file=at(old))
    on_new_file = gone_at(old, at(new), queue, answer, from_file=at(new))
    assert await on_old_file.step() == 1
    await until(lambda: on_old_file._finished)
    await on_old_file.step()  # records the 410
    assert queue.switched_off == {"crm0": old}
    queue.due = due(1)
    assert await on_new_file.step() == 1  # sent to the new url
    await until(lambda: on_new_file._finished)
    await on_new_file.step()
    queue.due = due(1)
    assert await on_old_file.step() == 0  # the old url stays off
    assert queue.recorded == [0, 0] and queue.switched_off == {"crm0": old}


async def test_410s_from_two_receivers_switch_their_subscriptions_off_in_subscription_order():
    """Every dispatcher takes the switch-off rows in one order: two rounds with 410s from the same two receivers,
    each in the order its attempts ended, could each hold one row and wait for the other's (a deadlock)."""
    book = dict(parse_subscriptions({"subscriptions": [
        {"id": sub, "url": f"https://{sub}.example.com/h", "secrets": [SECRET], "events": ["lead.routed"]}
        for sub in ("crm0", "crm1")]}, allow_private=False))
    queue = Queue([replace(c, subscription_id=sub) for c, sub in zip(due(2), ("crm1", "crm0"), strict=True)])

    async def gone(request: httpx.Request) -> httpx.Response:
        return httpx.Response(410)

    d = Dispatcher(unit_of_work=Pool(queue), client=httpx.AsyncClient(transport=httpx.MockTransport(gone)),
                   subscriptions=book, from_file=book, retry_window=timedelta(hours=72), retry_base_s=5,
                   refused_attempts=3,
                   connect_timeout_s=5, timeout_s=15, max_in_flight=64, per_subscription=8, idle_s=0.5)
    await d.step()
    await until(lambda: d._finished)
    await d.step()
    assert queue.writes == ["disable crm0", "disable crm1", "record"]
