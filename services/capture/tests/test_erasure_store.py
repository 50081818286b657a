"""Erasing a person on the real Postgres, through capture's HTTP API: what its tables keep of them afterwards; and
the erasure's locks, in capture's order, beside a transaction that holds a key and waits for the person."""

import asyncio
import unicodedata
import uuid
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa

from leadpipe_common import topics
from leadpipe_common.db import make_sessionmaker
from leadpipe_common.testing.kafka import read_all, read_topic
from leadpipe_common.testing.plugin import KEY_HEADERS
from leadpipe_common.testing.waits import kept_waiting
from leadpipe_common.uow import SqlUnitOfWork

from capture import erasure
from capture.app import load_identity
from capture.domain import erasure_key
from capture.settings import DATA
from capture.store import SCHEMA, CaptureStore, idempotency, outbox, people

#: Every row of a table as text, its stored events (bytea) read as the JSON they are.
_HOLDING = """SELECT count(*) FROM {schema}.{table} t
              WHERE t::text ILIKE :pattern {events}"""


async def rows_naming(db, pattern: str) -> dict[str, int]:  # noqa: ANN001
    """How many rows of each of capture's tables hold ``pattern`` anywhere."""
    counts = {}
    async with db.connect() as conn:
        for table, events in (("leads", True), ("touches", True), ("quarantine", False), ("people", False),
                              ("outbox", False), ("idempotency", False)):
            query = _HOLDING.format(schema=SCHEMA, table=table,
                                    events="OR convert_from(t.event, 'UTF8') ILIKE :pattern" if events else "")
            counts[table] = (await conn.execute(sa.text(query), {"pattern": pattern})).scalar_one()
    return counts


async def test_an_erased_persons_rows_keep_no_trace_of_them_and_their_next_submission_is_a_new_lead(
        capture_url, db, bootstrap):
    local = f"erase.{uuid.uuid4().hex[:8]}"
    email = f"{local}@stripe.com"
    async with httpx.AsyncClient(base_url=capture_url, timeout=30) as capture:
        # Its Idempotency-Key the address itself, as a client may make it.
        first = await capture.post("/v1/leads", headers={**KEY_HEADERS, "Idempotency-Key": email}, json={
            "email": email, "first_name": "Ada", "form_id": "erasure-test", "utm_source": "ads",
            "landing_page": f"https://example.com/demo?email={email}&utm_campaign=spring"})
        touch = await capture.post("/v1/leads", headers=KEY_HEADERS,
                                   json={"email": email.replace("@", "+again@"), "phone": "+1 555 0100"})
        bot = await capture.post("/v1/forms/contact-us", headers={"accept": "application/json"},
                                 json={"email": email.upper(), "_gotcha": "x"})
        assert (first.status_code, touch.status_code, bot.status_code) == (202, 202, 202)
        before = await rows_naming(db, f"%{local}%")
        assert before["leads"] == before["touches"] == before["quarantine"] == before["people"] == 1
        assert before["idempotency"] == 1
        erased = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": email.upper()})
        again = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": email})
        by_id = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"lead_id": first.json()["lead_id"]})
        later = await capture.post("/v1/leads", headers=KEY_HEADERS, json={"email": email})
    lead_id = first.json()["lead_id"]
    assert erased.status_code == 202 and erased.json()["lead_ids"] == [lead_id] == by_id.json()["lead_ids"]
    assert erased.json()["touched_leads"] == erased.json()["merged_leads"] == erased.json()["others_touches"] == []
    # Nothing leads from the address to the erased lead: asked again, it names nobody.
    assert again.status_code == 404 and lead_id not in again.text
    assert later.json()["existing"] is False and later.json()["lead_id"] != lead_id  # a new person's new lead

    async with db.connect() as conn:
        kept = (await conn.execute(sa.text(
            f"SELECT email, form_id, closed_at IS NOT NULL AS closed, published_at IS NOT NULL AS published, "
            f"convert_from(event, 'UTF8')::json -> 'attribution' AS attribution FROM {SCHEMA}.leads "
            "WHERE lead_id = :lead"), {"lead": lead_id})).one()
    assert (kept.email, kept.form_id, kept.closed, kept.published) == ("", "erasure-test", True, True)
    assert kept.attribution["landing_page"] == "https://example.com/demo"
    assert (kept.attribution["utm_source"], kept.attribution["utm_campaign"]) == ("ads", "spring")
    # Sent once, though erased three times: waited for on the topic (the relay deletes what it sent from the
    # outbox), then the whole topic read.
    erasure = lambda r: r.key == lead_id.encode() and r.type == "lead.erased"  # noqa: E731
    await read_topic(bootstrap, topics.CAPTURED, until=lambda found: len(found) >= 1, where=erasure)
    assert len(await read_all(bootstrap, topics.CAPTURED, where=erasure)) == 1
    # Only the new lead, captured after the erasure, names the person now.
    assert await rows_naming(db, f"%{local}%") == {"leads": 1, "touches": 0, "quarantine": 0, "people": 1,
                                                   "outbox": 0, "idempotency": 0}


async def test_a_dry_run_of_an_erasure_names_what_the_real_run_then_erases_and_changes_nothing(capture_url, db):
    local = f"dry.{uuid.uuid4().hex[:8]}"
    email = f"{local}@stripe.com"
    rules = load_identity(DATA / "identity.yaml")
    async with httpx.AsyncClient(base_url=capture_url, headers=KEY_HEADERS, timeout=30) as capture:
        lead = (await capture.post("/v1/leads", headers={"Idempotency-Key": email}, json={"email": email})).json()
    before = await rows_naming(db, f"%{local}%")

    def unit() -> SqlUnitOfWork:
        return SqlUnitOfWork(make_sessionmaker(db), CaptureStore, outbox=outbox)

    async with unit() as uow:
        looked = await erasure.erase(uow, rules, email=email, lead_id=None, at=datetime.now(UTC), by="dpo",
                                     dry_run=True)
    assert await rows_naming(db, f"%{local}%") == before  # its key, its lead, its person: all kept
    async with unit() as uow:
        done = await erasure.erase(uow, rules, email=email, lead_id=None, at=datetime.now(UTC), by="dpo")
    assert [str(x) for x in looked.lead_ids] == [str(x) for x in done.lead_ids] == [lead["lead_id"]]
    assert looked.fresh == done.fresh and (await rows_naming(db, f"%{local}%"))["idempotency"] == 0


async def test_an_erasure_by_lead_id_forgets_a_submission_released_from_quarantine_as_a_touch_of_the_lead(
        capture_url, db):
    """Released while its person held the lead open, a quarantined submission became a touch of the lead under
    its own id: erased by the lead's id (no address to read), the lead went, and the submission stayed in
    quarantine, contact and all."""
    local = f"released.{uuid.uuid4().hex[:8]}"
    email = f"{local}@stripe.com"
    async with httpx.AsyncClient(base_url=capture_url, timeout=30) as capture:
        lead = (await capture.post("/v1/leads", headers=KEY_HEADERS, json={"email": email})).json()["lead_id"]
        bot = await capture.post("/v1/forms/contact-us", headers={"accept": "application/json"},
                                 json={"email": email, "phone": "+1 555 0199", "_gotcha": "x"})
        kept = bot.json()["lead_id"]
        released = await capture.post(f"/v1/quarantine/{kept}/release", headers=KEY_HEADERS)
        assert released.status_code == 200, released.text
        async with db.connect() as conn:
            touched = (await conn.execute(sa.text(f"SELECT lead_id FROM {SCHEMA}.touches WHERE touch_id = :kept"),
                                          {"kept": kept})).scalar_one()
        assert str(touched) == lead  # a touch of the open lead, under the submission's id
        erased = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"lead_id": lead})
        assert erased.status_code == 202, erased.text
    assert await rows_naming(db, f"%{local}%") == {"leads": 0, "touches": 0, "quarantine": 0, "people": 0,
                                                   "outbox": 0, "idempotency": 0}


async def test_an_erasure_forgets_quarantined_submissions_however_their_address_began(capture_url, db):
    """A quarantined submission keeps its address as sent. The erasure found them by the first letter of their
    lowered address, which the person key's does not always begin with: Postgres lowers no É under the C locale,
    a decomposed é begins with an e, ß is folded to ss and a fullwidth Ａ stays itself. Each was kept, contact and
    all, past the erasure that named its person."""
    tag = uuid.uuid4().hex[:8]
    sent_and_asked = [(f"Élodie.{tag}@stripe.com", f"élodie.{tag}@stripe.com"),
                      (unicodedata.normalize("NFD", f"émile.{tag}@stripe.com"), f"émile.{tag}@stripe.com"),
                      (f"ßtefan.{tag}@stripe.com", f"sstefan.{tag}@stripe.com"),
                      (f"Ａda.{tag}@stripe.com", f"ａda.{tag}@stripe.com")]
    async with httpx.AsyncClient(base_url=capture_url, timeout=30) as capture:
        for sent, _ in sent_and_asked:
            bot = await capture.post("/v1/forms/contact-us", headers={"accept": "application/json"},
                                     json={"email": sent, "_gotcha": "x"})
            assert bot.status_code == 202, bot.text
        assert (await rows_naming(db, f"%{tag}%"))["quarantine"] == len(sent_and_asked)
        for _, asked in sent_and_asked:
            erased = await capture.post("/v1/people/erase", headers=KEY_HEADERS, json={"email": asked})
            assert erased.status_code == 202, (asked, erased.text)
    assert (await rows_naming(db, f"%{tag}%"))["quarantine"] == 0


async def merge(db, merged: str, survivor: str) -> None:  # noqa: ANN001
    """``merged`` merged by sales into ``survivor``, as capture's lifecycle follower applies a ``lead.merged``."""
    async with db.begin() as conn:
        await CaptureStore(conn).redirect_people({uuid.UUID(merged): uuid.UUID(survivor)})


async def test_a_persons_touches_on_another_persons_lead_are_cleared_and_leads_merged_into_theirs_listed(
        capture_url, db):
    """Ada's lead merged into Bob's: her next submission touched Bob's lead with her contact, which her erasure
    did not find. Bob's lead, and Cy's merged into it, are theirs: listed, never erased for another."""
    tag = uuid.uuid4().hex[:8]
    ada, bob, cy = (f"{name}.{tag}@stripe.com" for name in ("ada", "bob", "cy"))
    async with httpx.AsyncClient(base_url=capture_url, headers=KEY_HEADERS, timeout=30) as capture:
        opened = [(await capture.post("/v1/leads", json={"email": email, "form_id": "erasure-test"})).json()["lead_id"]
                  for email in (ada, bob, cy)]
        hers, his, cys = opened
        await merge(db, hers, his)
        await merge(db, cys, his)
        touch = await capture.post("/v1/leads", json={"email": ada, "first_name": f"Adalind{tag}"})
        assert (touch.json()["lead_id"], touch.json()["existing"]) == (his, True)  # an importer is told the lead
        erased = await capture.post("/v1/people/erase", json={"email": ada})
        assert erased.status_code == 202, erased.text
        assert erased.json() == {"lead_ids": [hers], "touched_leads": [his], "merged_leads": [], "others_touches": []}
        assert await rows_naming(db, f"%ada.{tag}%") == {"leads": 0, "touches": 0, "quarantine": 0, "people": 0,
                                                         "outbox": 0, "idempotency": 0}
        assert await rows_naming(db, f"%adalind{tag}%") == {"leads": 0, "touches": 0, "quarantine": 0, "people": 0,
                                                       "outbox": 0, "idempotency": 0}
        async with db.connect() as conn:
            kept = (await conn.execute(sa.text(
                f"SELECT l.email, (SELECT count(*) FROM {SCHEMA}.touches t WHERE t.lead_id = l.lead_id "
                f"AND t.published_at IS NOT NULL) AS touches, EXISTS (SELECT 1 FROM {SCHEMA}.erasures e "
                f"WHERE e.lead_id = l.lead_id) AS erased FROM {SCHEMA}.leads l WHERE l.lead_id = :lead"),
                {"lead": his})).one()
        # Bob's lead as it was, his address on it; her touch on it a fact without a contact, sent or not now.
        assert (kept.email, kept.touches, kept.erased) == (bob, 1, False)

        # Bob's erasure lists Cy's lead merged into his (hers is erased: not listed); Cy's is hers to erase.
        his_erasure = await capture.post("/v1/people/erase", json={"email": bob})
        assert his_erasure.json() == {"lead_ids": [his], "touched_leads": [], "merged_leads": [cys],
                                      "others_touches": []}
    async with db.connect() as conn:
        assert (await conn.execute(sa.text(f"SELECT email FROM {SCHEMA}.leads WHERE lead_id = :lead"),
                                   {"lead": cys})).scalar_one() == cy
        # Cy keeps her record, with no lead open: her next submission opens one.
        assert (await conn.execute(sa.select(people.c.open_lead_id).where(people.c.person_key == cy))).one() \
            == (None,)


async def test_another_persons_touches_on_an_erased_lead_go_with_it_and_are_listed(capture_url, db):
    """Bob's lead merged into Ada's: his next submission touched hers, with his person, and her erasure cleared it
    with her lead, telling nobody. Her own touch is hers, not listed; Bob's next submission opens a new lead."""
    tag = uuid.uuid4().hex[:8]
    ada, bob = (f"{name}.{tag}@stripe.com" for name in ("ada", "bob"))
    async with httpx.AsyncClient(base_url=capture_url, headers=KEY_HEADERS, timeout=30) as capture:
        hers, his = [(await capture.post("/v1/leads", json={"email": email})).json()["lead_id"] for email in (ada, bob)]
        await merge(db, his, hers)
        assert (await capture.post("/v1/leads", json={"email": bob, "phone": "+1 555 0123"})).json()["lead_id"] == hers
        assert (await capture.post("/v1/leads", json={"email": ada})).json()["lead_id"] == hers
        async with db.connect() as conn:
            bobs, _ = (await conn.execute(sa.text(f"SELECT touch_id FROM {SCHEMA}.touches WHERE lead_id = :lead "
                                                  "ORDER BY seq"), {"lead": hers})).scalars()  # his, then hers
        erased = await capture.post("/v1/people/erase", json={"email": ada})
        assert erased.status_code == 202, erased.text
        assert erased.json() == {"lead_ids": [hers], "touched_leads": [], "merged_leads": [his],
                                 "others_touches": [str(bobs)]}
        after = await capture.post("/v1/leads", json={"email": bob})
    assert after.json()["existing"] is False and after.json()["lead_id"] not in (hers, his)


async def test_an_erasure_finding_a_new_lead_once_locked_forgets_its_key_before_it_locks_the_people_again(
        capture_url, db):
    """The lead opened between the erasure's reading and its lock was found with the people rows held, and its
    Idempotency-Key deleted then: a transaction holding that key and waiting for the person (as every capture
    transaction takes them) deadlocked with it, and Postgres aborted one of them (a 503 to the admin)."""
    email = f"lockorder.{uuid.uuid4().hex[:8]}@stripe.com"
    idempotency_key = f"lock-order-{email}"
    rules = load_identity(DATA / "identity.yaml")
    async with httpx.AsyncClient(base_url=capture_url, headers=KEY_HEADERS, timeout=30) as capture:
        first = uuid.UUID((await capture.post("/v1/leads", json={"email": email})).json()["lead_id"])
        async with db.begin() as conn:
            await CaptureStore(conn).close_leads([first])  # her next submission opens a new lead
        holder = await db.connect()
        contender: list[asyncio.Task] = []

        class Interleaved(CaptureStore):
            async def lock_erasure(self, lead_ids, *, key, by_id):  # noqa: ANN001, ANN202
                if contender:
                    return await super().lock_erasure(lead_ids, key=key, by_id=by_id)
                # Between the erasure's reading and its lock: a new lead of hers, answered under a key, and a
                # transaction holding that key (keys before people), about to want her row.
                second = await capture.post("/v1/leads", headers={**KEY_HEADERS, "Idempotency-Key": idempotency_key},
                                            json={"email": email})
                assert second.json()["existing"] is False, second.text
                await holder.begin()
                await holder.execute(sa.select(idempotency).where(idempotency.c.key == idempotency_key)
                                     .with_for_update())
                held = await super().lock_erasure(lead_ids, key=key, by_id=by_id)

                async def wants_her() -> None:
                    await holder.execute(sa.select(people).where(people.c.person_key == key).with_for_update())
                    await holder.commit()

                contender.append(await kept_waiting(wants_her(), "her row was not locked by the erasure"))
                return held

        uow = SqlUnitOfWork(make_sessionmaker(db), Interleaved, outbox=outbox)
        try:
            async with uow:
                done = await erasure.erase(uow, rules, email=email, lead_id=None, at=datetime.now(UTC), by="test")
            await contender[0]  # neither was aborted as a deadlock's victim
        finally:
            await holder.close()
    assert done.lead_ids[0] == first and len(done.lead_ids) == 2
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(idempotency).where(idempotency.c.key == idempotency_key))).first() is None
        assert (await conn.execute(sa.select(people).where(
            people.c.person_key == erasure_key(email, rules)))).first() is None


async def test_a_merge_into_a_lead_being_erased_waits_for_the_erasure_and_leaves_its_people_with_no_lead_open(
        capture_url, db):
    """The erasure cleared whoever held Bob's lead open and only then locked the lead: sales' merge of Ada's lead
    into it, applied in that moment, moved Ada onto the erased lead, and every later submission of hers was a touch
    of it, dropped by every stage."""
    tag = uuid.uuid4().hex[:8]
    ada, bob = (f"{name}.{tag}@stripe.com" for name in ("ada", "bob"))
    rules = load_identity(DATA / "identity.yaml")
    async with httpx.AsyncClient(base_url=capture_url, headers=KEY_HEADERS, timeout=30) as capture:
        hers, his = [(await capture.post("/v1/leads", json={"email": email})).json()["lead_id"] for email in (ada, bob)]
    merging: list[asyncio.Task] = []

    class MergeMidway:
        """The erasure's session: once it has cleared whoever holds Bob's lead open, the merge is applied."""

        def __init__(self, session) -> None:  # noqa: ANN001
            self._session = session

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self._session, name)

        async def execute(self, statement, params=None):  # noqa: ANN001, ANN201
            done = await self._session.execute(statement, params)
            if not merging and getattr(statement, "is_update", False) and statement.table.name == "people":
                merging.append(await kept_waiting(merge(db, hers, his),
                                                  "the merge did not wait for the erasure's lock of the lead"))
            return done

    class Interleaved(CaptureStore):
        def __init__(self, session) -> None:  # noqa: ANN001
            super().__init__(MergeMidway(session))

    uow = SqlUnitOfWork(make_sessionmaker(db), Interleaved, outbox=outbox)
    async with uow:
        done = await erasure.erase(uow, rules, email=bob, lead_id=None, at=datetime.now(UTC), by="test")
    await merging[0]
    assert done.fresh == [uuid.UUID(his)]
    async with db.connect() as conn:
        # The merge found Bob's lead closed by the erasure: Ada holds no lead, her next submission opens one.
        assert (await conn.execute(sa.select(people.c.open_lead_id).where(
            people.c.person_key == erasure_key(ada, rules)))).one() == (None,)
