"""capture's erasure statements read, not run: what they find (test_erasure_store.py runs them on the real
Postgres)."""

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql

from capture.store import _MERGED_INTO, _TOUCHES_ON_MERGES, CaptureStore, _touch_person, erasures


class Answer:
    """What a statement answers: ``rows`` (none unless a test gives them: nothing found)."""

    def __init__(self, rows: list | None = None) -> None:
        self.rows = rows or []

    def scalars(self) -> list:
        return [row[0] for row in self.rows]  # none: nothing found, or (an INSERT ... RETURNING) nothing recorded

    def all(self) -> list:
        return self.rows

    def __iter__(self):
        return iter(self.rows)

    def first(self) -> None:
        return None

    def scalar(self) -> bool:
        return False


class Recording:
    """A session that runs nothing and keeps each statement it is given; ``answers``: the rows a statement whose SQL
    begins so answers."""

    def __init__(self, answers: dict[str, list] | None = None) -> None:
        self.statements: list = []
        self.parameters: list = []
        self.answers = answers or {}

    async def begin_nested(self) -> str:
        self.statements.append("SAVEPOINT")
        self.parameters.append(None)
        return "a savepoint"

    async def execute(self, statement, params=None) -> Answer:  # noqa: ANN001
        self.statements.append(statement)
        self.parameters.append(params)
        sql = compiled(statement)
        return Answer(next((rows for start, rows in self.answers.items() if sql.startswith(start)), None))

    def sql(self) -> list[str]:
        return [str(s.compile(dialect=postgresql.dialect())) for s in self.statements]


async def test_erasures_asked_for_by_lead_id_alone_are_not_every_erasure_made_by_id():
    """With no digest, ``person_digest = NULL`` compiled to IS NULL: after any erasure by id, every unknown lead id
    was found erased, answered 202 and sent a lead.erased for a lead that never existed."""
    session = Recording()
    await CaptureStore(session).erased([uuid.uuid4()])
    [sql] = session.sql()
    assert "person_digest" not in sql and "lead_id = ANY" in sql


async def test_an_erasure_keeps_of_each_lead_its_id_who_asked_and_when_and_nothing_of_the_address():
    """It kept an unsalted SHA-256 of the person key: reversed by trying addresses, and by it the API answered
    every erased lead of an address, linking the person to them again."""
    session = Recording()
    lead = uuid.uuid4()
    await CaptureStore(session).erase([lead], key="janedoe@gmail.com", by_id=[],
                                      at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    [insert] = [s for s in session.statements if s.is_dml and s.is_insert and s.table.name == "erasures"]
    compiled = insert.compile(dialect=postgresql.dialect())
    assert compiled.params == {"lead_id_m0": lead, "erased_at_m0": datetime(2026, 1, 1, tzinfo=UTC),
                               "erased_by_m0": "dpo"}
    assert set(erasures.c.keys()) == {"lead_id", "erased_at", "erased_by"}


async def test_an_erasure_recording_a_lead_another_erasure_recorded_meanwhile_is_a_repeat_not_a_unique_violation():
    """Two erasures of a lead at once both found it not erased: the second failed on the primary key (23505, not
    retried), a 500 or a traceback."""
    session = Recording()
    recorded = await CaptureStore(session).erase([uuid.uuid4()], key=None, by_id=[],
                                                 at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    [insert] = [str(s.compile(dialect=postgresql.dialect())) for s in session.statements
                if s.is_dml and s.is_insert and s.table.name == "erasures"]
    assert "ON CONFLICT (lead_id) DO NOTHING RETURNING capture.erasures.lead_id" in insert
    assert recorded.recorded == []  # what the statement returned: none recorded now


def compiled(statement) -> str:  # noqa: ANN001
    return " ".join(str(statement.compile(dialect=postgresql.dialect())).split())


async def test_an_erasure_locks_every_people_row_it_touches_in_one_statement_in_lock_order_in_a_savepoint():
    """It locked the named person first and the holders of their leads after: a writer's round holding one of
    those and waiting for the named person deadlocked with it. The savepoint lets the locks go (and nothing else)
    when the erasure must forget more Idempotency-Keys first."""
    session = Recording()
    held = await CaptureStore(session).lock_erasure([uuid.uuid4()], key="janedoe@gmail.com", by_id=[])
    assert held == "a savepoint"
    savepoint, statement = session.statements
    assert savepoint == "SAVEPOINT"
    lock = compiled(statement)
    assert lock.startswith("SELECT capture.people.person_key FROM capture.people WHERE ")
    assert "capture.people.person_key = %(person_key_1)s" in lock
    assert "capture.people.open_lead_id = ANY (%(ids)s::UUID[])" in lock  # whoever holds a lead open: cleared, locked
    assert lock.endswith('ORDER BY capture.people.person_key COLLATE "C" FOR UPDATE')


async def test_an_erasure_clears_the_open_lead_of_anyone_merged_into_an_erased_lead_keeping_their_row():
    """It deleted the people row of whoever held an erased lead open (a person merged into it), and what they had
    said of marketing (a "no") with it."""
    session = Recording()
    await CaptureStore(session).erase([uuid.uuid4()], key="janedoe@gmail.com", by_id=[],
                                      at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    people = [compiled(s) for s in session.statements if s.is_dml and s.table.name == "people"]
    [delete] = [sql for sql in people if sql.startswith("DELETE")]
    assert "open_lead_id = ANY (%(ids)s::UUID[])" not in delete
    assert "capture.people.person_key = %(person_key_1)s" in delete
    assert ("UPDATE capture.people SET open_lead_id=%(open_lead_id)s::UUID "
            "WHERE capture.people.open_lead_id = ANY (%(ids)s::UUID[])") in people


async def test_an_erasure_locks_the_erased_leads_before_it_clears_whoever_holds_one_open():
    """It cleared the people holding an erased lead open, then locked the lead: a merge into it that the lifecycle
    follower committed in between (its survivor share-locked, its people moved onto it) left a person holding the
    erased lead open, each later submission of theirs a touch of it that every stage dropped."""
    session = Recording()
    lead = uuid.uuid4()
    await CaptureStore(session).erase([lead], key="janedoe@gmail.com", by_id=[],
                                      at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    sql = [compiled(s) for s in session.statements]
    [lock] = [i for i, q in enumerate(sql) if q.startswith("SELECT capture.leads.lead_id")]
    assert sql[lock].endswith("WHERE capture.leads.lead_id = ANY (%(ids)s::UUID[]) "
                              "ORDER BY capture.leads.lead_id FOR UPDATE")
    [cleared] = [i for i, q in enumerate(sql) if q.startswith("UPDATE capture.people SET open_lead_id")]
    [deleted] = [i for i, q in enumerate(sql) if q.startswith("DELETE FROM capture.people")]
    assert lock < deleted < cleared  # people locked before (lock_erasure), the leads next, as a close takes them
    assert session.parameters[lock] == {"ids": [lead]}


async def test_an_erasure_tells_the_touches_another_person_sent_on_an_erased_lead_which_go_with_it():
    """Bob's lead merged into Ada's, his next submission touched hers: her erasure cleared his touch with her lead,
    and nobody was told."""
    ada, bob, lead, theirs = (uuid.uuid4() for _ in range(4))
    hers, his, unknown, mine = (uuid.uuid4() for _ in range(4))
    sent = lambda person: json.dumps({"person_id": str(person)}).encode()  # noqa: E731
    session = Recording({
        "SELECT capture.leads.lead_id": [(lead, b"{}", ada)],
        "DELETE FROM capture.people": [(ada,)],
        "SELECT capture.touches.touch_id": [
            (hers, sent(ada), lead), (his, sent(bob), lead), (unknown, b"{}", lead),  # a touch before person_id
            (mine, sent(ada), theirs)]})  # her touch on another person's lead: hers, not another's
    cleared = await CaptureStore(session).erase([lead], key="ada@stripe.com", by_id=[], touch_ids=[mine],
                                                at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    assert cleared.others_touches == [his]
    [delete] = [compiled(s) for s in session.statements if s.is_dml and s.is_delete]
    assert delete.endswith("RETURNING capture.people.person_id")  # whose touches are the erased people's


async def test_a_lead_erased_by_id_tells_no_touch_of_the_person_who_opened_it_as_another_persons():
    """Erased by its id, the lead's opener is its person, their row deleted or not (gone with an erasure before)."""
    opener, lead, touch = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    session = Recording({"SELECT capture.leads.lead_id": [(lead, b"{}", opener)],
                         "SELECT capture.touches.touch_id": [
                             (touch, json.dumps({"person_id": str(opener)}).encode(), lead)]})
    cleared = await CaptureStore(session).erase([lead], key=None, by_id=[lead],
                                                at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    assert cleared.others_touches == []


async def test_a_lead_kept_before_its_person_was_recorded_tells_none_of_its_touches_as_another_persons():
    """A lead from before 0012 names no person: its touches cannot be told apart, its own person's among them (they
    were listed as another's, the lead's person read as "None")."""
    lead, touch = uuid.uuid4(), uuid.uuid4()
    session = Recording({"SELECT capture.leads.lead_id": [(lead, b"{}", None)],
                         "SELECT capture.touches.touch_id": [
                             (touch, json.dumps({"person_id": str(uuid.uuid4())}).encode(), lead)]})
    cleared = await CaptureStore(session).erase([lead], key=None, by_id=[lead],
                                                at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    assert cleared.others_touches == []


async def test_an_erasure_deletes_the_idempotency_keys_whose_answer_names_an_erased_lead_or_its_touch():
    """capture.idempotency kept, for a day, the caller's Idempotency-Key (which may be the address), a
    fingerprint of the fields and the erased lead's id."""
    session = Recording()
    lead, touch = uuid.uuid4(), uuid.uuid4()
    await CaptureStore(session).forget_answers([lead], [touch])
    [(statement, params)] = zip(session.statements, session.parameters, strict=True)
    sql = compiled(statement)
    assert sql.startswith("DELETE FROM capture.idempotency WHERE (capture.idempotency.answer ->> %(answer_1)s) = ANY")
    assert "IN (SELECT CAST(capture.touches.touch_id AS TEXT)" in sql  # a keyless sender is answered its touch's id
    # The person's touch on another person's lead, whose other touches' keys are not theirs.
    assert params == {"ids": [lead], "texts": sorted([str(lead), str(touch)])}


async def test_an_erasure_forgets_the_quarantined_submissions_released_as_touches_of_its_leads_or_as_the_persons():
    """A submission released while its person held a lead open became a touch of it under the submission's own id:
    an erasure by lead id (no address to read) deleted only the rows keyed by the lead, and the touch's submission
    stayed in quarantine, contact and all."""
    session = Recording()
    lead, touch = uuid.uuid4(), uuid.uuid4()
    await CaptureStore(session).forget_quarantined([lead], [touch], key=None, same_person=lambda sent: False)
    [(statement, params)] = zip(session.statements, session.parameters, strict=True)
    sql = compiled(statement)
    assert sql.startswith("DELETE FROM capture.quarantine WHERE capture.quarantine.lead_id = ANY (%(ids)s::UUID[])")
    assert ("capture.quarantine.lead_id IN (SELECT capture.touches.touch_id FROM capture.touches "
            "WHERE capture.touches.lead_id = ANY (%(ids)s::UUID[]))") in sql
    assert "capture.quarantine.lead_id = ANY (%(touch_ids)s::UUID[])" in sql  # the person's on another's lead
    assert params == {"ids": [lead], "touch_ids": [touch]}


async def test_the_released_submissions_an_erasure_checks_for_once_it_holds_the_people_are_read_not_locked():
    session = Recording()
    lead, touch = uuid.uuid4(), uuid.uuid4()
    assert await CaptureStore(session).released_left([lead], [touch]) is False
    [(statement, params)] = zip(session.statements, session.parameters, strict=True)
    sql = compiled(statement)
    assert sql.startswith("SELECT EXISTS (SELECT * FROM capture.quarantine WHERE") and "FOR UPDATE" not in sql
    assert "IN (SELECT capture.touches.touch_id FROM capture.touches" in sql  # as forget_quarantined finds them
    assert params == {"ids": [lead], "touch_ids": [touch]}


async def test_the_keys_an_erasure_checks_for_once_it_holds_the_people_are_read_not_locked():
    """Locked (a DELETE, a FOR UPDATE) with the people held, a key another transaction holds before its people
    was waited for the wrong way round."""
    session = Recording()
    lead, touch = uuid.uuid4(), uuid.uuid4()
    assert await CaptureStore(session).answers_left([lead], [touch]) is False
    [(statement, params)] = zip(session.statements, session.parameters, strict=True)
    sql = compiled(statement)
    assert sql.startswith("SELECT EXISTS (SELECT * FROM capture.idempotency WHERE") and "FOR UPDATE" not in sql
    assert params == {"ids": [lead], "texts": sorted([str(lead), str(touch)])}


async def test_an_erasure_clears_the_persons_touches_on_another_persons_lead_not_that_lead():
    session = Recording()
    touch = uuid.uuid4()
    await CaptureStore(session).erase([], key="janedoe@gmail.com", by_id=[], touch_ids=[touch],
                                      at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    selects = [(compiled(s), p) for s, p in zip(session.statements, session.parameters, strict=True)
               if s.is_select]
    [(touches, params)] = [(sql, p) for sql, p in selects if "FROM capture.touches" in sql]
    assert ("WHERE capture.touches.lead_id = ANY (%(ids)s::UUID[]) "
            "OR capture.touches.touch_id = ANY (%(touch_ids)s::UUID[])") in touches
    assert params == {"ids": [], "touch_ids": [touch]}
    [(leads, _)] = [(sql, p) for sql, p in selects if "FROM capture.leads" in sql]
    assert "capture.leads.lead_id = ANY (%(ids)s::UUID[])" in leads  # its lead: not among the leads cleared


def test_a_touch_is_the_persons_by_the_person_id_its_event_names_and_a_cleared_event_names_nobody():
    person = str(uuid.uuid4())
    assert _touch_person(json.dumps({"person_id": person, "contact": {"email": "a@b.c"}}).encode()) == person
    assert _touch_person(json.dumps({"contact": {"email": ""}}).encode()) is None  # a version before person_id
    assert _touch_person(b"") is None and _touch_person(b"[1]") is None  # what an erasure left of no JSON object
    # A touch an erasure cleared names its person still, but holds nothing of them: no DPO needs telling of it.
    assert _touch_person(json.dumps({"person_id": person, "contact": {"email": ""}}).encode()) is None


def test_the_touches_an_erasure_looks_at_are_on_the_leads_the_persons_went_into_after_merges_not_their_own():
    sql = compiled(_TOUCHES_ON_MERGES)
    assert sql.startswith("WITH RECURSIVE chain(lead_id) AS (SELECT unnest(%(seeds)s::UUID[]) AS lead_id UNION "
                          "SELECT capture.leads.merged_into")
    assert "JOIN chain ON capture.leads.lead_id = chain.lead_id" in sql
    assert "capture.touches.lead_id != ALL (%(theirs)s::UUID[])" in sql  # their own: erased whole
    assert "position(convert_to(%(needle)s, %(convert_to_1)s) IN capture.touches.event)" in sql


def test_the_leads_an_erasure_lists_as_merged_into_it_are_followed_down_every_merge_but_its_own_and_the_erased():
    sql = compiled(_MERGED_INTO)
    assert "JOIN merged ON capture.leads.merged_into = merged.lead_id" in sql
    assert "merged.lead_id != ALL (%(ids)s::UUID[])" in sql
    assert "NOT IN (SELECT capture.erasures.lead_id FROM capture.erasures)" in sql
