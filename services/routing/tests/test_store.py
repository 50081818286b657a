"""routing's store on the real Postgres of the test stack (each test's writes rolled back)."""

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from routing.store import RoutingStore, handoffs

pytestmark = pytest.mark.asyncio


async def test_held_leads_are_counted_exactly_or_only_as_far_as_a_capacity_check_needs(db):
    busy, idle, other = (f"rep-{uuid.uuid4().hex[:8]}" for _ in range(3))
    rows = [{"lead_id": uuid.uuid4(), "status": status, "owner_id": owner, "team": "t", "lead": {}}
            for owner, status in [(busy, "routed")] * 5 + [(busy, "accepted"), (other, "routed")]]
    async with AsyncSession(db) as session, session.begin():
        await session.execute(sa.insert(handoffs), rows)
        store, now = RoutingStore(session), datetime.now(UTC)
        exact = await store.presence([busy, idle], now)
        capped = await store.presence([busy, idle], now, up_to=3)
        above = await store.presence([busy, idle], now, up_to=20)
        uncounted = await store.presence([busy, idle], now, up_to=0)
        await session.rollback()
    assert exact.held == {busy: 5}  # accepted leads and other reps' are not held by these reps
    assert capped.held == {busy: 3}
    assert above.held == {busy: 5}
    assert uncounted.held == {}
