"""scoring's store statements, compiled for Postgres; and its erasure on the real Postgres of the test stack."""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common import outbox as outboxes
from leadpipe_common.envelope import Message
from scoring.store import _UNSENT, ScoringStore, outbox, scores


def test_an_erasure_deletes_the_outbox_messages_keyed_by_the_erased_leads_in_one_statement():
    sql = str(_UNSENT.compile(dialect=postgresql.dialect()))
    assert sql.startswith("DELETE FROM scoring.outbox WHERE")
    assert "scoring.outbox.message ->>" in sql and "= ANY (%(keys)s::TEXT[])" in sql


async def test_an_erasure_marks_a_lead_scoring_never_held_and_deletes_its_unsent_messages_alone(db):
    erased, other = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with AsyncSession(db) as session, session.begin():
        await outboxes.add(session, outbox, [Message("leads.scored", str(lead).encode(), b"{}", ())
                                             for lead in (erased, other)])
        await ScoringStore(session).erase({erased: now})
        kept = [m["key"] for m in (await session.execute(sa.select(outbox.c.message))).scalars()]
        mark = (await session.execute(sa.select(scores).where(scores.c.lead_id == erased))).one()
        standing = await ScoringStore(session).standing([erased])
        await session.rollback()
    assert str(erased) not in kept and str(other) in kept
    assert (mark.decision, mark.lead, mark.rules_version) == ("erased", None, "")
    assert standing == {erased: ("erased", None)}
