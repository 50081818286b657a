"""capture's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-capture migrate`` as an operator runs it, in a database of their own."""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from leadpipe_common.db import make_sessionmaker
from leadpipe_common.testing.migrations import fresh_database, migrate

from capture.store import CaptureStore, quarantine_page


async def plan(conn: AsyncConnection, query: sa.Select) -> str:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return "\n".join((await conn.execute(sa.text(f"EXPLAIN {compiled}"))).scalars())


async def test_a_quarantine_kept_before_0010_is_paged_from_indexes_in_the_lists_order_one_forms_past_a_flood(stack):
    """Under 0009 only received_at was indexed: a page of one form's submissions passed over every row of a bot's
    flood on another form, past the statement timeout once the flood was millions. From 0010 each page, one form's
    or every form's, from any position, is the next rows of an index, with no sort."""
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    flood = [(uuid.uuid4(), at + timedelta(milliseconds=i), "webinar") for i in range(2000)]
    mine = [(uuid.uuid4(), moment, "contact-us") for moment in (at, at, at + timedelta(hours=1))]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("capture", url, "0009")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO capture.quarantine (lead_id, received_at, reasons, form_id, fields) "
                "VALUES (:lead, :at, ARRAY['a bot''s'], :form, '{}')"),
                [{"lead": lead, "at": moment, "form": form} for lead, moment, form in flood + mine])
        migrate("capture", url, "head")
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE capture.quarantine"))
            # Only a plan that reads an index in the list's order is left, if the indexes allow one.
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            await conn.execute(sa.text("SET LOCAL enable_sort = off"))
            position = (at + timedelta(hours=1), mine[2][0])
            one_form = await plan(conn, quarantine_page(101, before=position, form_id="contact-us"))
            every_form = await plan(conn, quarantine_page(101, before=position))
        async with make_sessionmaker(engine)() as session:
            page = await CaptureStore(session).quarantined(10, form_id="contact-us")
    assert "quarantine_by_form" in one_form and "Sort" not in one_form, one_form
    assert "quarantine_received" in every_form and "Sort" not in every_form, every_form
    assert [r["lead_id"] for r in page] == [lead for lead, _, _ in sorted(mine, key=lambda r: (r[1], r[0]),
                                                                            reverse=True)]
