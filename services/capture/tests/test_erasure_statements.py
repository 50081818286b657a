"""capture's erasure statements read, not run: what they find (test_erasure_store.py runs them on the real
Postgres)."""

import uuid
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql

from capture.store import CaptureStore, erasures


class Answer:
    """What a statement answers: nothing found."""

    def scalars(self) -> list:
        return []  # nothing found, or (an INSERT ... RETURNING) nothing recorded

    def all(self) -> list:
        return []

    def __iter__(self):
        return iter(())


class Recording:
    """A session that runs nothing and keeps each statement it is given."""

    def __init__(self) -> None:
        self.statements: list = []
        self.parameters: list = []

    async def execute(self, statement, params=None) -> Answer:  # noqa: ANN001
        self.statements.append(statement)
        self.parameters.append(params)
        return Answer()

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
                                      same_person=lambda sent: False, at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    [insert] = [s for s in session.statements if s.is_dml and s.is_insert and s.table.name == "erasures"]
    compiled = insert.compile(dialect=postgresql.dialect())
    assert compiled.params == {"lead_id_m0": lead, "erased_at_m0": datetime(2026, 1, 1, tzinfo=UTC),
                               "erased_by_m0": "dpo"}
    assert set(erasures.c.keys()) == {"lead_id", "erased_at", "erased_by"}


async def test_an_erasure_recording_a_lead_another_erasure_recorded_meanwhile_is_a_repeat_not_a_unique_violation():
    """Two erasures of a lead at once both found it not erased: the second failed on the primary key (23505, not
    retried), a 500 or a traceback."""
    session = Recording()
    recorded = await CaptureStore(session).erase([uuid.uuid4()], key=None, by_id=[], same_person=lambda sent: False,
                                                 at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    [insert] = [str(s.compile(dialect=postgresql.dialect())) for s in session.statements
                if s.is_dml and s.is_insert and s.table.name == "erasures"]
    assert "ON CONFLICT (lead_id) DO NOTHING RETURNING capture.erasures.lead_id" in insert
    assert recorded == []  # what the statement returned: none recorded now


def compiled(statement) -> str:  # noqa: ANN001
    return " ".join(str(statement.compile(dialect=postgresql.dialect())).split())


async def test_an_erasure_locks_every_people_row_it_touches_in_one_statement_in_lock_order():
    """It locked the named person first and the holders of their leads after: a writer's round holding one of
    those and waiting for the named person deadlocked with it."""
    session = Recording()
    await CaptureStore(session).lock_erasure([uuid.uuid4()], key="janedoe@gmail.com", by_id=[])
    [lock] = [compiled(s) for s in session.statements]
    assert lock.startswith("SELECT capture.people.person_key FROM capture.people WHERE ")
    assert "capture.people.person_key = %(person_key_1)s" in lock
    assert "capture.people.open_lead_id = ANY (%(ids)s::UUID[])" in lock  # whoever holds a lead open: cleared, locked
    assert lock.endswith('ORDER BY capture.people.person_key COLLATE "C" FOR UPDATE')


async def test_an_erasure_clears_the_open_lead_of_anyone_merged_into_an_erased_lead_keeping_their_row():
    """It deleted the people row of whoever held an erased lead open (a person merged into it), and what they had
    said of marketing (a "no") with it."""
    session = Recording()
    await CaptureStore(session).erase([uuid.uuid4()], key="janedoe@gmail.com", by_id=[], same_person=lambda sent: False,
                                      at=datetime(2026, 1, 1, tzinfo=UTC), by="dpo")
    people = [compiled(s) for s in session.statements if s.is_dml and s.table.name == "people"]
    [delete] = [sql for sql in people if sql.startswith("DELETE")]
    assert "open_lead_id = ANY (%(ids)s::UUID[])" not in delete
    assert "capture.people.person_key = %(person_key_1)s" in delete
    assert ("UPDATE capture.people SET open_lead_id=%(open_lead_id)s::UUID "
            "WHERE capture.people.open_lead_id = ANY (%(ids)s::UUID[])") in people


async def test_an_erasure_deletes_the_idempotency_keys_whose_answer_names_an_erased_lead_or_its_touch():
    """capture.idempotency kept, for a day, the caller's Idempotency-Key (which may be the address), a
    fingerprint of the fields and the erased lead's id."""
    session = Recording()
    lead = uuid.uuid4()
    await CaptureStore(session).forget_answers([lead])
    [(statement, params)] = zip(session.statements, session.parameters, strict=True)
    sql = compiled(statement)
    assert sql.startswith("DELETE FROM capture.idempotency WHERE (capture.idempotency.answer ->> %(answer_1)s) = ANY")
    assert "IN (SELECT CAST(capture.touches.touch_id AS TEXT)" in sql  # a keyless sender is answered its touch's id
    assert params == {"ids": [lead], "texts": [str(lead)]}
