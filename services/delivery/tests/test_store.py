"""delivery's queue on the real Postgres: what a dispatcher's round claims."""

import uuid
from datetime import UTC, datetime, timedelta

from delivery.store import DeliveryStore


def due(subscription: str, n: int, since: datetime) -> list[dict]:
    """``n`` due deliveries of ``subscription``, each to a lead of its own, the oldest first."""
    return [{"subscription_id": subscription, "lead_id": uuid.uuid4(), "event_id": uuid.uuid4(),
             "event_type": "lead.routed", "body": b"{}", "created_at": since, "next_at": since + timedelta(seconds=i)}
            for i in range(n)]


async def test_a_slow_receivers_backlog_takes_only_its_own_slots_of_a_round(db):
    """The README's promise: one slow or failing receiver holds at most its share of the attempts under way."""
    run = uuid.uuid4().hex[:8]
    slow, other = f"slow-{run}", f"other-{run}"
    now = datetime.now(UTC)
    async with db.connect() as conn:  # rolled back at the end: nothing is left in the stack's queue
        store = DeliveryStore(conn)
        await store.enqueue(due(slow, 10, now - timedelta(hours=1)) + due(other, 2, now - timedelta(minutes=1)))
        claimed = await store.claim(now, now + timedelta(seconds=20), {slow: 3, other: 3}, limit=5)
        again = await store.claim(now, now + timedelta(seconds=20), {slow: 0, other: 3}, limit=5)
        await conn.rollback()
    assert sorted(c.subscription_id for c in claimed) == [other] * 2 + [slow] * 3
    assert again == []  # the slow one's slots are taken; what was claimed is leased
