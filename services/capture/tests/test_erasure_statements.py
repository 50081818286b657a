"""capture's erasure statements read, not run: what they find (test_erasure_store.py runs them on the real
Postgres)."""

import uuid

from sqlalchemy.dialects import postgresql

from capture.store import CaptureStore


class Answer:
    def scalars(self) -> list:
        return []


class Recording:
    """A session that runs nothing and keeps each statement it is given."""

    def __init__(self) -> None:
        self.statements: list = []

    async def execute(self, statement, params=None) -> Answer:  # noqa: ANN001
        self.statements.append(statement)
        return Answer()

    def sql(self) -> list[str]:
        return [str(s.compile(dialect=postgresql.dialect())) for s in self.statements]


async def test_erasures_asked_for_by_lead_id_alone_are_not_every_erasure_made_by_id():
    """With no digest, ``person_digest = NULL`` compiled to IS NULL: after any erasure by id, every unknown lead id
    was found erased, answered 202 and sent a lead.erased for a lead that never existed."""
    session = Recording()
    await CaptureStore(session).erased(lead_ids=[uuid.uuid4()])
    [sql] = session.sql()
    assert "person_digest" not in sql and "lead_id = ANY" in sql
