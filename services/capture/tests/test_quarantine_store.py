"""The quarantine on the real Postgres: its list's pages newest first, by when received and then by id, each
starting where the one before ended, one form's or all; its purge."""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadpipe_common.db import make_sessionmaker

from capture.store import CaptureStore, quarantine

#: Long before any submission a test makes: the rows here are the oldest in the quarantine.
LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)


async def kept(db, form_id: str, at: datetime) -> dict:  # noqa: ANN001
    row = {"lead_id": uuid.uuid4(), "received_at": at, "reasons": ["a test's"], "form_id": form_id,
           "utm_source": None, "fields": {"email": "bot@example.com"}}
    async with db.begin() as conn:
        await conn.execute(quarantine.insert().values(**row))
    return row


def newest_first(rows: list[dict]) -> list[uuid.UUID]:
    return [r["lead_id"] for r in sorted(rows, key=lambda r: (r["received_at"], r["lead_id"]), reverse=True)]


async def listed(db, limit: int, **where) -> list[dict]:  # noqa: ANN001, ANN003
    async with make_sessionmaker(db)() as session:
        return await CaptureStore(session).quarantined(limit, **where)


async def test_one_forms_submissions_page_newest_first_through_a_shared_moment_with_no_gap_and_no_repeat(db):
    form = f"paging-{uuid.uuid4().hex[:8]}"
    moment = LONG_AGO + timedelta(microseconds=1)
    mine = [await kept(db, form, at) for at in (LONG_AGO, moment, moment, moment, LONG_AGO + timedelta(seconds=2))]
    await kept(db, f"other-{form}", moment)
    pages: list[list[uuid.UUID]] = []
    before = None
    while True:
        page = await listed(db, 2, before=before, form_id=form)
        pages.append([r["lead_id"] for r in page])
        if len(page) < 2:
            break
        before = (page[-1]["received_at"], page[-1]["lead_id"])
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [lead_id for page in pages for lead_id in page] == newest_first(mine)


async def test_every_forms_submissions_after_a_position_come_newest_first(db):
    form = f"paging-{uuid.uuid4().hex[:8]}"
    # A stretch of time of this run's own (the other test's rows are older): nothing else was received in it.
    start = LONG_AGO + timedelta(days=1, microseconds=uuid.uuid4().int % 10**12)
    rows = [await kept(db, f"{form}-{i % 2}", start + timedelta(seconds=i)) for i in range(4)]
    newest = max(rows, key=lambda r: r["received_at"])
    page = await listed(db, 3, before=(newest["received_at"], newest["lead_id"]))
    assert [r["lead_id"] for r in page] == newest_first(rows)[1:]


async def test_a_purge_deletes_what_was_received_before_its_moment_a_round_at_a_time_passing_over_a_held_one(db):
    """Oldest first, at most a round's limit; the oldest here is held, as by a release under way, and waits for
    a round after it is let go. The one received at the moment itself stays."""
    moment = LONG_AGO - timedelta(days=365)  # before every other test's: only this test's rows are older
    old = [await kept(db, "purged", moment - timedelta(days=d)) for d in (4, 3, 2, 1)]
    young = await kept(db, "purged", moment)
    ids = [r["lead_id"] for r in (*old, young)]

    async def purge() -> int:
        async with make_sessionmaker(db)() as session, session.begin():
            return await CaptureStore(session).purge_quarantine(moment, 2)

    async def left() -> list[uuid.UUID]:
        async with db.connect() as conn:
            found = set((await conn.execute(sa.select(quarantine.c.lead_id).where(quarantine.c.lead_id.in_(ids))))
                        .scalars())
        return [i for i in ids if i in found]

    async with db.connect() as holder, holder.begin():
        await holder.execute(sa.select(quarantine).where(quarantine.c.lead_id == ids[0]).with_for_update())
        assert await purge() == 2
        assert await left() == [ids[0], ids[3], ids[4]]
        assert (await purge(), await purge()) == (1, 0)
    assert (await purge(), await purge()) == (1, 0)
    assert await left() == [young["lead_id"]]
