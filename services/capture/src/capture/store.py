"""capture's table: the leads, which are also its outbox, and what reads and writes them in place.

The ``leads`` table is its own transactional outbox: a lead is durable once
its row is committed, and only then does the HTTP request get its 202. A row
with ``published_at`` unset is a lead whose events (``lead.captured`` and its
first lifecycle step) are not yet acknowledged by the broker. The shared
outbox relay claims such rows (``claim_unpublished``: ``FOR UPDATE SKIP
LOCKED``, so several relays share the work), publishes, and commits
``published_at`` only after every ack: a crash in between re-publishes the
same event ids (absorbed downstream), never loses.
While the broker is away rows simply wait and capture keeps accepting.
Re-driving a lead is clearing its ``published_at``: the ``Redriver`` does so
for every lead that has no terminal outcome (learnt from ``leads.lifecycle``)
some time after it was published, which recovers leads a broker lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpipe_common.outbox import outbox_table

SCHEMA = "capture"
metadata = sa.MetaData(schema=SCHEMA)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    # The cause of the lead's events (the accepted request); their ids derive from it.
    sa.Column("request_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("traceparent", sa.Text, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    # Learnt from leads.lifecycle: where the pipeline's part ended for this lead.
    sa.Column("terminal_stage", sa.Text),
    sa.Column("terminal_at", sa.DateTime(timezone=True)),
    sa.Column("redrives", sa.Integer, nullable=False, server_default="0"),
)


def _claim(table: str, key: str, at: str) -> sa.TextClause:
    """Mark up to ``:limit`` unpublished rows of ``table`` published, oldest first, skipping rows another relay
    holds; returns what their events are built from."""
    return sa.text(
        f"""
        UPDATE {SCHEMA}.{table} SET published_at = now()
        WHERE {key} IN (
            SELECT {key} FROM {SCHEMA}.{table} WHERE published_at IS NULL
            ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED
        )
        RETURNING seq, {key}, {at}, traceparent, event
        """
    )


_CLAIM = _claim("leads", "request_id", "captured_at")


@dataclass(frozen=True)
class Unpublished:
    seq: int
    request_id: uuid.UUID
    captured_at: datetime
    traceparent: str
    event: bytes


async def claim_unpublished(conn: AsyncConnection, limit: int) -> list[Unpublished]:
    """Leads whose events are not yet acknowledged, oldest first, marked published in ``conn``'s transaction."""
    rows = (await conn.execute(_CLAIM, {"limit": limit})).all()
    return [Unpublished(*r) for r in sorted(rows, key=lambda r: r.seq)]


_CLAIM_TOUCHES = _claim("touches", "touch_id", "touched_at")


@dataclass(frozen=True)
class UnpublishedTouch:
    seq: int
    touch_id: uuid.UUID
    touched_at: datetime
    traceparent: str
    event: bytes


async def claim_touches(conn: AsyncConnection, limit: int) -> list[UnpublishedTouch]:
    """Touches whose ``lead.touched`` is not yet acknowledged, oldest first (as ``claim_unpublished``)."""
    rows = (await conn.execute(_CLAIM_TOUCHES, {"limit": limit})).all()
    return [UnpublishedTouch(*r) for r in sorted(rows, key=lambda r: r.seq)]


async def close_leads(conn: AsyncConnection | AsyncSession, lead_ids: Sequence[uuid.UUID]) -> None:
    """These leads are closed (won, lost, disqualified): their people's next submission opens a new lead."""
    if lead_ids:
        await conn.execute(people.update().where(people.c.open_lead_id.in_(lead_ids)).values(open_lead_id=None))


quarantine = sa.Table(
    "quarantine",
    metadata,
    # The id the sender was answered with; the lead's id if it is released.
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reasons", ARRAY(sa.Text), nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("utm_source", sa.Text),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True)),
)
#: A person (by normalised e-mail address) and their open lead, if any: the row every submission of theirs
#: locks, which is what makes "one person, one open lead" hold across capture's processes.
people = sa.Table(
    "people",
    metadata,
    sa.Column("person_key", sa.Text, primary_key=True),
    sa.Column("person_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("open_lead_id", UUID(as_uuid=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
#: Later submissions of a person with an open lead; like ``leads``, their own outbox (``lead.touched``).
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("touch_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("traceparent", sa.Text, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)
#: What was answered to a request with an ``Idempotency-Key`` (scoped by caller and endpoint), for 24 hours.
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("answer", JSONB),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
#: Events born of requests that are not leads (``lead.quarantined``); the leads table is the leads' outbox.
outbox = outbox_table(metadata)


class CaptureStore:
    """capture's writes outside the group-commit writer, on one unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record_outcomes(self, outcomes: Sequence[dict[str, Any]]) -> None:
        await record_outcomes(self._session, outcomes)

    async def close_leads(self, lead_ids: Sequence[uuid.UUID]) -> None:
        await close_leads(self._session, lead_ids)

    async def redirect_people(self, survivors: dict[uuid.UUID, uuid.UUID]) -> None:
        """People whose open lead was merged now have the survivor open."""
        for merged, survivor in sorted(survivors.items()):
            await self._session.execute(people.update().where(people.c.open_lead_id == merged)
                                        .values(open_lead_id=survivor))

    @property
    def session(self) -> AsyncSession:
        """For ``writer.admit``, which a release shares with the writer."""
        return self._session

    async def quarantine(self, row: dict[str, Any]) -> None:
        await self._session.execute(quarantine.insert().values(**row))

    async def quarantined(self, limit: int) -> list[Any]:
        query = sa.select(quarantine).order_by(quarantine.c.received_at.desc()).limit(limit)
        return list(await self._session.execute(query))

    async def lock_quarantined(self, lead_id: uuid.UUID) -> Any:
        query = sa.select(quarantine).where(quarantine.c.lead_id == lead_id).with_for_update()
        return (await self._session.execute(query)).first()

    async def mark_released(self, lead_id: uuid.UUID, at: datetime) -> None:
        await self._session.execute(quarantine.update().where(quarantine.c.lead_id == lead_id).values(released_at=at))


async def record_outcomes(conn: AsyncConnection | AsyncSession, outcomes: Sequence[dict[str, Any]]) -> None:
    """Note each lead's terminal stage. A real outcome replaces ``deadlettered`` (the record was
    redriven after a fix); nothing replaces a real outcome."""
    if not outcomes:
        return
    await conn.execute(
        leads.update()
        .where(leads.c.lead_id == sa.bindparam("b_lead_id"))
        .where(sa.or_(
            leads.c.terminal_stage.is_(None),
            sa.and_(leads.c.terminal_stage == "deadlettered", sa.bindparam("b_stage") != "deadlettered"),
        ))
        .values(terminal_stage=sa.bindparam("b_stage"), terminal_at=sa.bindparam("b_at")),
        list(outcomes),
    )
