"""delivery's HTTP API with the key store and the queue stood in for: what it answers."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
from fastapi import FastAPI

from leadpipe_common import auth
from leadpipe_common.http import install_problem_handlers
from leadpipe_common.testing.fakes import unit_of_work_over

from delivery.api import router
from delivery.store import Redrive
from delivery.subscriptions import SubscriptionBook

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ANALYST = auth.Principal(key_id="def456", name="analyst", scopes=frozenset({auth.READ_REPORTS}))
ADMIN = auth.Principal(key_id="abc123", name="ops", scopes=frozenset({auth.ADMIN}))


class Keys:
    def __init__(self, principal: auth.Principal = ANALYST) -> None:
        self.principal = principal

    async def authenticate(self, key: str) -> auth.Principal:
        return self.principal


class Queue:
    """A lead's deliveries, as the store reads them."""

    def __init__(self, deliveries: list[dict], not_in_force: dict[str, int] | None = None) -> None:
        self.deliveries = deliveries
        #: Of the dead deliveries a redrive is asked for, those left out because their subscription is not in force.
        self.not_in_force = not_in_force or {}

    async def of_lead(self, lead_id: uuid.UUID) -> list[dict]:
        return self.deliveries

    async def redrive(self, now, subscription_id=None, lead_id=None, *, in_file) -> Redrive:
        return Redrive(queued=1, purged=2, not_in_force=self.not_in_force)


def serving(queue: Queue, principal: auth.Principal = ANALYST) -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    book = SubscriptionBook({}, None, allow_private=False)
    app.state.keys = Keys(principal)
    app.state.runtime = SimpleNamespace(unit_of_work=unit_of_work_over(queue),
                                        context=SimpleNamespace(subscriptions=book, clock=lambda: NOW))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://delivery",
                             headers={"Authorization": "Bearer lp_abc123_secret"})


async def test_a_dead_delivery_is_shown_with_the_receivers_last_response():
    """The README promises it kept; the answer left it out, so nobody could read why a delivery died."""
    dead = {"subscription_id": "crm", "event_id": uuid.uuid4(), "event_type": "lead.routed", "status": "dead",
            "created_at": NOW, "next_at": None, "last_status": 422, "last_error": None,
            "last_response": '{"error": "unknown team"}',
            "attempts": [{"attempt": 1, "at": NOW, "status": 422, "error": None, "duration_ms": 7}]}
    async with serving(Queue([dead])) as client:
        shown = await client.get("/v1/deliveries", params={"lead_id": str(uuid.uuid4())})
    assert shown.status_code == 200, shown.text
    [delivery] = shown.json()
    assert (delivery["status"], delivery["last_status"], delivery["last_response"]) == (
        "dead", 422, '{"error": "unknown team"}')


async def test_a_redrive_answers_how_many_it_left_dead_because_their_body_was_purged():
    """A purged delivery has nothing left to send: the answer says so beside what was queued again."""
    async with serving(Queue([]), ADMIN) as client:
        answer = await client.post("/v1/deliveries/redrive", json={"lead_id": str(uuid.uuid4())})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"redriven": 1, "purged": 2, "not_in_force": 0}


async def test_a_redrive_answers_how_many_it_left_dead_because_their_subscription_is_not_in_force():
    """Left out without a word, they read as never dead: a deleted subscription's, or one's missing from the file."""
    async with serving(Queue([], not_in_force={"old-crm": 3, "gone": 1}), ADMIN) as client:
        answer = await client.post("/v1/deliveries/redrive", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["not_in_force"] == 4 and answer.json()["redriven"] == 1
