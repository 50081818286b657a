"""capture's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-capture migrate`` as an operator runs it, in a database of their own."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadpipe_common.db import make_sessionmaker, raw_transaction
from leadpipe_common.envelope import new_traceparent
from leadpipe_common.testing import factories
from leadpipe_common.testing.migrations import fresh_database, migrate

from capture.domain import address_stem, capture_lead, erasure_key, parse_identity
from capture.store import _QUARANTINED_BY_STEM, CaptureStore, quarantine_page
from capture.writer import Submitted, admit


async def plan(conn: AsyncConnection, query: sa.Select) -> str:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return "\n".join((await conn.execute(sa.text(f"EXPLAIN {compiled}"))).scalars())


async def quarantined_by_an_older_release(engine: AsyncEngine,
                                          rows: list[tuple[uuid.UUID, datetime, str, dict[str, str]]]) -> None:
    """Submissions (id, when received, form, fields) kept as a release before the one under test kept them."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO capture.quarantine (lead_id, received_at, reasons, form_id, fields) "
            "VALUES (:lead, :at, ARRAY['a bot''s'], :form, CAST(:fields AS json))"),
            [{"lead": lead, "at": at, "form": form, "fields": json.dumps(fields)} for lead, at, form, fields in rows])


async def test_a_quarantine_kept_before_0010_is_paged_from_indexes_in_the_lists_order_one_forms_past_a_flood(stack):
    """Under 0009 only received_at was indexed: a page of one form's submissions passed over every row of a bot's
    flood on another form, past the statement timeout once the flood was millions. From 0010 each page, one form's
    or every form's, from any position, is the next rows of an index, with no sort."""
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    flood = [(uuid.uuid4(), at + timedelta(milliseconds=i), "webinar") for i in range(2000)]
    mine = [(uuid.uuid4(), moment, "contact-us") for moment in (at, at, at + timedelta(hours=1))]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("capture", url, "0009")
        await quarantined_by_an_older_release(engine, [(lead, moment, form, {}) for lead, moment, form in flood + mine])
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


async def test_an_erasure_finds_its_persons_submissions_quarantined_before_0015_and_since_by_stem_from_an_index(stack):
    """Before 0015 an erasure read the rows whose lowered address began as the key did: a decomposed é begins with
    an e. 0015 gives the rows kept before their stem (one no erasure reads as anyone's when no address is kept);
    those since have theirs from capture, and an old process's, inserted without one while a rolling upgrade
    runs, are read by every erasure. The index finds them, not a scan of a bot's flood. No admin reads a stem."""
    sent = "e\u0301mile@stripe.com"  # as a browser may send it: decomposed
    rules = parse_identity({})
    key = erasure_key(sent, rules)
    old, new, by_old_process = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    flood = {uuid.uuid4(): {"email": f"Bot.{i}+x@Example.com"} for i in range(2000)}
    unnamed = {uuid.uuid4(): {}, uuid.uuid4(): {"email": "no address"}}
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    row = {"received_at": at, "reasons": ["a bot's"], "form_id": "webinar", "utm_source": None}
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("capture", url, "0014")
        await quarantined_by_an_older_release(engine, [(lead, at, "webinar", fields) for lead, fields in
                                                       {old: {"email": sent}, **flood, **unnamed}.items()])
        migrate("capture", url, "head")
        async with make_sessionmaker(engine)() as session, session.begin():
            store = CaptureStore(session)
            await store.quarantine({**row, "lead_id": new, "fields": {"email": sent}, "address_stem": address_stem(
                capture_lead({"email": sent}, lead_id=new, received_at=at, form=None, form_id=None).contact.email)})
            await store.quarantine({**row, "lead_id": by_old_process, "fields": {"email": sent}})
            await store.quarantine({**row, "lead_id": uuid.uuid4(), "fields": {"email": "emile@stripe.com"},
                                    "address_stem": "emile"})
        async with engine.begin() as conn:
            stems = dict((await conn.execute(sa.text("SELECT lead_id, address_stem FROM capture.quarantine"))).all())
            await conn.execute(sa.text("ANALYZE capture.quarantine"))
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            found = await plan(conn, _QUARANTINED_BY_STEM.params(stems=["", "é", "ém"]))
        async with make_sessionmaker(engine)() as session, session.begin():
            listed = await CaptureStore(session).quarantined(10)
            gone = await CaptureStore(session).forget_quarantined(
                [], key=key, same_person=lambda address: erasure_key(address, rules) == key)
            left = set((await session.execute(sa.text("SELECT lead_id FROM capture.quarantine"))).scalars())
    assert stems[old] == stems[new] == "émile" and {stems[lead] for lead in flood} == {"bot"}
    assert {stems[lead] for lead in unnamed} == {"@"} and stems[by_old_process] is None
    assert "quarantine_by_address_stem" in found, found
    assert listed and not any("address_stem" in row for row in listed)
    assert gone == 3 and not {old, new, by_old_process} & left and len(left) == len(flood) + len(unnamed) + 1


async def test_people_kept_before_0011_have_no_word_on_record_until_they_say_one(stack):
    """0011 keeps on each person's row what they last said of marketing, whichever lead they said it on. It leaves
    the rows it finds without one (docs/upgrading.md): their words are on their leads, which name them only inside
    each lead's event, and a merged lead holds two people's. What they say from then on is kept."""
    before = datetime(2026, 12, 1, 9, tzinfo=UTC)
    person_id, open_lead = uuid.uuid4(), uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("capture", url, "0010")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO capture.people (person_key, person_id, open_lead_id, updated_at) "
                "VALUES ('ann@sap.com', :p, :l, :at)"), {"p": person_id, "l": open_lead, "at": before})
        migrate("capture", url, "head")
        async with engine.connect() as conn:
            kept = (await conn.execute(sa.text("SELECT person_id, open_lead_id, consent, consent_said_at "
                                               "FROM capture.people WHERE person_key = 'ann@sap.com'"))).one()
        with pytest.raises(sa.exc.IntegrityError, match="people_consent_said_when"):
            async with engine.begin() as conn:  # a word without when it was sent could be weighed against nothing
                await conn.execute(sa.text("UPDATE capture.people SET consent = false"))
        async with engine.begin() as conn:  # her lead closed
            await conn.execute(sa.text("UPDATE capture.people SET open_lead_id = NULL"))
        no = factories.captured("ann@sap.com").model_copy(update={"captured_at": before + timedelta(days=1)})
        async with raw_transaction(engine) as raw:
            await admit(raw, [Submitted(lead=no, person_key="ann@sap.com", request_id=uuid.uuid4(),
                                        traceparent=new_traceparent(), consent=False)], datetime.now(UTC))
        async with engine.connect() as conn:
            word = (await conn.execute(sa.text("SELECT consent, consent_said_at FROM capture.people "
                                               "WHERE person_key = 'ann@sap.com'"))).one()
    assert tuple(kept) == (person_id, open_lead, None, None)
    assert tuple(word) == (False, no.captured_at)


async def test_a_migration_of_a_table_another_transaction_holds_gives_up_having_changed_nothing(stack):
    """0011 alters people, which takes the table whole: queued behind an admin's open transaction on it, it held
    every request of capture's behind itself (each timing out, 503) for as long as that transaction lasted."""
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("capture", url, "0010")
        async with engine.connect() as holder, holder.begin():
            await holder.execute(sa.text("SELECT count(*) FROM capture.people"))  # held until this block ends
            # A second, not the default 10: what is under test is giving up, not how long the wait is.
            env = {**os.environ, "DATABASE_URL": url, "DATABASE_MIGRATION_LOCK_TIMEOUT_S": "1"}
            refused = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "capture", "migrate"], env=env,
                                              capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1, refused.stderr
        assert "capture: cannot migrate now: a table of capture is held by another transaction: waited 1 s" \
               in refused.stderr and "Traceback" not in refused.stderr
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT version_num FROM capture.alembic_version"))).scalar() == "0010"
        migrate("capture", url, "head")  # the table free: as any migration
