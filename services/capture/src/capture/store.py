"""capture's table: the leads, which are also its outbox, and what reads and writes them in place.

The ``leads`` table is its own transactional outbox: a lead is durable once
its row is committed, and only then does the HTTP request get its 202. A row
with ``published_at`` unset is a lead whose events (``lead.captured`` and its
first lifecycle step) are not yet acknowledged by the broker. The shared
outbox relay claims such rows (``claim_publishable``: ``FOR UPDATE SKIP
LOCKED``, so several relays share the work), publishes, and commits
``published_at`` only after every ack: a crash in between re-publishes the
same event ids (absorbed downstream), never loses. An event it can never send
(too large, or a stored event a newer model refuses) is set aside on
``leads.deadletter`` instead (``leadpipe_common.outbox``), its row marked
published all the same and keeping the event, so the rows behind it go on. A person's later
submissions (``touches``, their own outbox likewise) go out in order and only
after their lead's own events, even when another relay holds the lead or an
older touch mid-publish, so a lead's events stay in order on its key
whichever relay publishes them (a redriven lead's events come again, later).
While the broker is away rows simply wait and capture keeps accepting.
Re-driving a lead is clearing its ``published_at``: the ``Redriver`` does so
for every lead that has no terminal outcome (learnt from ``leads.lifecycle``)
some time after it was published, which recovers leads a broker lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpipe_common.db import among, json_value
from leadpipe_common.envelope import Message
from leadpipe_common.erasure import erased_value
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
    # Learnt from leads.lifecycle too: when it was won, lost or disqualified (NULL: open, or closed before 0006).
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    # And the lead it was merged into (NULL: not merged, or merged before 0008).
    sa.Column("merged_into", UUID(as_uuid=True)),
    # When its first submission said no to marketing (NULL: it did not, or came before 0009): a word the contact's
    # false cannot tell from silence, and which a submission released from quarantine later must be newer than.
    sa.Column("consent_withdrawn_at", sa.DateTime(timezone=True)),
    # Its person (``people.person_id``), so an erasure finds their leads (NULL: stored before 0012).
    sa.Column("person_id", UUID(as_uuid=True)),
    sa.Index("leads_captured_at", "captured_at"),
    sa.Index("leads_by_person", "person_id", postgresql_where=sa.text("person_id IS NOT NULL")),
    # What was merged into a lead, which an erasure of it lists (merges are few: a small index).
    sa.Index("leads_merged_into", "merged_into", postgresql_where=sa.text("merged_into IS NOT NULL")),
    # The relay's work queue: small, because published rows leave it.
    sa.Index("leads_unpublished", "seq", postgresql_where=sa.text("published_at IS NULL")),
    # The re-driver's work list: published leads still waiting for an outcome.
    sa.Index("leads_awaiting_outcome", "published_at", postgresql_where=sa.text("terminal_stage IS NULL")),
)


async def close_leads(conn: AsyncConnection | AsyncSession, lead_ids: Sequence[uuid.UUID]) -> None:
    """These leads are closed (won, lost, disqualified): their people's next submission opens a new lead.

    Their people's rows are locked first, in LOCK ORDER (see ``people``). Then the leads are marked, their rows
    locked: a merge into one of them (``redirect_people``) applied at the same time by another process waits
    for this, or this waits for it and then finds its people too."""
    if lead_ids:
        await lock_people(conn, lead_ids)
        await conn.execute(_MARK_CLOSED, {"leads": list(lead_ids)})
        await conn.execute(_CLOSE_LEADS, {"leads": list(lead_ids)})


async def lock_people(conn: AsyncConnection | AsyncSession, lead_ids: Sequence[uuid.UUID]) -> None:
    """Lock the people whose open lead is one of ``lead_ids``, in ONE statement, in LOCK ORDER (see ``people``)."""
    if lead_ids:
        await conn.execute(_LOCK_PEOPLE, {"leads": sorted(set(lead_ids))})


quarantine = sa.Table(
    "quarantine",
    metadata,
    # The submission's own id, the one its sender was answered with (no key: never the open lead's, which a
    # version before 0d1cb50 answered for a person who had one); its lead's id, or its touch's, if released.
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reasons", ARRAY(sa.Text), nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("utm_source", sa.Text),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True)),
    # What an erasure by address finds the submission by (``domain.address_stem``); NULL when an old process kept
    # it during the upgrade to 0015, which every such erasure reads. Not an admin's to read: the list leaves it out
    # (``quarantine_page``).
    sa.Column("address_stem", sa.Text),
    # The list's order (``quarantine_page``), every form's and one form's.
    sa.Index("quarantine_received", "received_at", "lead_id"),
    sa.Index("quarantine_by_form", "form_id", "received_at", "lead_id"),
    sa.Index("quarantine_by_address_stem", "address_stem"),
)
#: A person (by normalised e-mail address) and their open lead, if any: the row every submission of theirs
#: locks, which is what makes "one person, one open lead" hold across capture's processes.
#:
#: LOCK ORDER. A capture transaction that locks people rows locks every one it needs in ONE statement, in
#: person_key order compared byte-wise (Python's order of str; in SQL ``COLLATE "C"``, since the database's
#: collation may put "a.b" and "ab" the other way round), before any lock of its on a lead: the writer's rounds
#: (``writer._OPEN_LEADS``, or ``writer._PEOPLE_UPSERT`` and then the advisory lock of each lead touched, in lead
#: id order, ``writer._STORE`` then writing only people rows the upsert holds; Idempotency-Keys before them, which
#: the follower never locks) and the lifecycle follower
#: (``_LOCK_PEOPLE`` for the people of every lead its batch closes or merges, then those leads' rows), and an
#: erasure (its quarantined submissions, which a release locks first, then Idempotency-Keys, then people: one that
#: finds more to forget once it holds the people lets them go first, ``erasure._forget_and_lock``; then the erased
#: leads' rows, before it clears who holds them open, as a close does). The writer never waits on a lead's row (it
#: inserts new leads and only reads old ones). So no two transactions each hold a person the other waits for:
#: Postgres would abort one of them (a 503 for the round or the erasure, a retried batch). The one exception is a
#: person that another process moves into a lead a batch closes or merges, or an erasure erases, in the moment
#: between its people lock and its lock of that lead: it locks that row late.
people = sa.Table(
    "people",
    metadata,
    sa.Column("person_key", sa.Text, primary_key=True),
    sa.Column("person_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("open_lead_id", UUID(as_uuid=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # What they last said of marketing consent, on whichever of their leads, and when they sent it (``domain.
    # ConsentWord``): a lead of theirs opened after one closed is weighed against it. NULL: nothing said since 0011.
    sa.Column("consent", sa.Boolean),
    sa.Column("consent_said_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("(consent IS NULL) = (consent_said_at IS NULL)", name="people_consent_said_when"),
    sa.Index("people_open_lead", "open_lead_id"),
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
    # When the person last said no to marketing, as of this touch (``domain.OnRecord``; NULL: not since their last
    # yes, or before 0009).
    sa.Column("consent_withdrawn_at", sa.DateTime(timezone=True)),
    sa.Index("touches_unpublished", "seq", postgresql_where=sa.text("published_at IS NULL")),
    sa.Index("touches_unpublished_by_lead", "lead_id", "seq", postgresql_where=sa.text("published_at IS NULL")),
    sa.Index("touches_by_lead", "lead_id", "seq"),
)
#: What was answered to a request with an ``Idempotency-Key`` (scoped by caller and endpoint), for 24 hours.
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("answer", JSONB),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("idempotency_created_at", "created_at"),  # the expired are deleted (writer.ExpiredKeys)
)
#: Leads erased at their person's request (GDPR art. 17): by whom and when, so erasing a lead again sends nothing.
#: Nothing that leads from an address to them (0013 dropped a digest of the person key: a dictionary reversed it).
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("erased_by", sa.Text, nullable=False),
)
#: Events born of requests that are not leads (``lead.quarantined``); the leads table is the leads' outbox.
outbox = outbox_table(metadata)


_CLOSE_LEADS = people.update().where(among(people.c.open_lead_id, "leads")).values(open_lead_id=None)
#: The rows ``_CLOSE_LEADS`` and ``redirect_people`` update, locked in LOCK ORDER (alone, those UPDATEs lock them
#: in the order of their lead ids, as the index on open_lead_id finds them); as strong a lock as an UPDATE of
#: open_lead_id takes, and the writer's upsert.
_LOCK_PEOPLE = (sa.select(people.c.person_key).where(among(people.c.open_lead_id, "leads"))
                .order_by(people.c.person_key.collate("C")).with_for_update(key_share=True))
_MARK_CLOSED = (leads.update().where(among(leads.c.lead_id, "leads"), leads.c.closed_at.is_(None))
                .values(closed_at=sa.func.now()))
_MARK_MERGED = (leads.update().where(leads.c.lead_id == sa.bindparam("merged"))
                .values(merged_into=sa.bindparam("survivor")))
#: Whether a lead is closed or merged, its row share-locked: a close or a merge of it being applied elsewhere is
#: waited for.
_FATE = (sa.select(leads.c.closed_at, leads.c.merged_into).where(leads.c.lead_id == sa.bindparam("lead"))
         .with_for_update(read=True))


#: Up to ``$1`` unpublished leads marked published, oldest first, skipping rows another relay holds: what their
#: events are built from, and their lead ids (their touches may go out in the same round).
_LEADS = f"""
    l AS (
        UPDATE {SCHEMA}.leads SET published_at = now()
        WHERE request_id IN (
            SELECT request_id FROM {SCHEMA}.leads WHERE published_at IS NULL
            ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        RETURNING seq, request_id AS id, captured_at AS at, traceparent, event, lead_id
    )"""


#: Touches go out in order, after their lead's own events. A candidate (unpublished, oldest first, not held by
#: another relay) waits while its lead waits to be published, unless this very claim publishes the lead (its
#: events go first in the round); and it waits while an older touch of its lead is unpublished and not among
#: this claim's candidates. With several relays (a capture process each) that older touch or the lead may be
#: held mid-publish by another relay, its mark not yet committed: the touch goes in a later round. A touch whose
#: lead row is missing is not held back, nor one whose lead's events the relay set aside (a lead that no longer
#: builds: ``outbox.Unbuildable``): its row is marked published, and a redrive sends them after the touches. Candidates that wait stay locked until the round ends.
_TOUCHES = f"""
    tc AS (
        SELECT touch_id, lead_id, seq FROM {SCHEMA}.touches
        WHERE published_at IS NULL AND NOT EXISTS (
            SELECT 1 FROM {SCHEMA}.leads w
            WHERE w.lead_id = touches.lead_id AND w.published_at IS NULL AND w.lead_id NOT IN (SELECT l.lead_id FROM l))
        ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
    ),
    t AS (
        UPDATE {SCHEMA}.touches SET published_at = now()
        WHERE touch_id IN (
            SELECT c.touch_id FROM tc c WHERE NOT EXISTS (
                SELECT 1 FROM {SCHEMA}.touches e
                WHERE e.lead_id = c.lead_id AND e.seq < c.seq AND e.published_at IS NULL
                  AND e.touch_id NOT IN (SELECT tc.touch_id FROM tc)))
        RETURNING seq, touch_id AS id, touched_at AS at, traceparent, event, lead_id
    )"""

_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

#: The outbox table's messages (``lead.quarantined``; ``lead.merged`` on its way down the pipeline), oldest
#: first, claimed as deleted; like a touch, one about a lead (its key) waits while a touch of that lead is
#: unpublished and not in this round: scoring must have a merged lead's touches before the merge. The key is
#: read as a uuid only when it is one (no message can fail the claim), so the probe is an index lookup.
_OUTBOX = f"""
    o AS (
        DELETE FROM {SCHEMA}.outbox WHERE seq IN (
            SELECT m.seq FROM {SCHEMA}.outbox m
            WHERE NOT EXISTS (
                SELECT 1 FROM {SCHEMA}.touches e
                WHERE e.published_at IS NULL
                  AND e.lead_id = CASE WHEN m.message->>'key' ~ '{_UUID_TEXT}' THEN (m.message->>'key')::uuid END
                  AND e.touch_id NOT IN (SELECT t.id FROM t))
            ORDER BY m.seq LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        RETURNING seq, message
    )"""

#: The relay's whole claim in one statement (one round trip a round): unpublished leads, unpublished touches
#: and the outbox table's rows, each kind oldest first, each up to ``$1``, published in that order.
_CLAIM = f"""
    WITH {_LEADS.strip()},
    {_TOUCHES.strip()},
    {_OUTBOX.strip()}
    SELECT 0 AS kind, seq, id, at, traceparent, event, NULL::json AS message, lead_id FROM l
    UNION ALL SELECT 1, seq, id, at, traceparent, event, NULL, lead_id FROM t
    UNION ALL SELECT 2, seq, NULL, NULL, NULL, NULL, message, NULL FROM o"""


@dataclass(frozen=True)
class Unpublished:
    seq: int
    request_id: uuid.UUID
    captured_at: datetime
    traceparent: str
    event: bytes
    #: Its row's, for a dead letter's key when ``event`` no longer validates (``handlers.captured_lead_messages``).
    lead_id: uuid.UUID


@dataclass(frozen=True)
class UnpublishedTouch:
    seq: int
    touch_id: uuid.UUID
    touched_at: datetime
    traceparent: str
    event: bytes
    lead_id: uuid.UUID


@dataclass(frozen=True)
class Claimed:
    """What one relay round publishes, each kind oldest first, marked (or deleted) in the caller's transaction."""

    leads: list[Unpublished]
    touches: list[UnpublishedTouch]
    outbox: list[Message]


async def claim_publishable(conn: asyncpg.Connection, limit: int) -> Claimed:
    """Leads and touches whose events are not yet acknowledged, and the outbox table's messages."""
    rows = sorted(await conn.fetch(_CLAIM, limit), key=lambda r: (r["kind"], r["seq"]))
    return Claimed(
        leads=[Unpublished(r["seq"], r["id"], r["at"], r["traceparent"], r["event"], r["lead_id"])
               for r in rows if r["kind"] == 0],
        touches=[UnpublishedTouch(r["seq"], r["id"], r["at"], r["traceparent"], r["event"], r["lead_id"])
                 for r in rows if r["kind"] == 1],
        outbox=[Message.from_json(json_value(r["message"])) for r in rows if r["kind"] == 2],
    )


def quarantine_page(limit: int, *, before: tuple[datetime, uuid.UUID] | None = None,
                    form_id: str | None = None) -> sa.Select[Any]:
    """Up to ``limit`` quarantined submissions, newest first (by when received, then by id: an order with no ties,
    so a page can end anywhere), only those after ``before`` (received_at, lead_id: where a page ended) and to
    ``form_id``, if given. An index in that order serves each page, position included: ``quarantine_received``,
    or ``quarantine_by_form`` for one form's, which would otherwise pass over every other form's rows."""
    listed = [column for column in quarantine.c if column is not quarantine.c.address_stem]
    query = sa.select(*listed).order_by(quarantine.c.received_at.desc(), quarantine.c.lead_id.desc())
    if before is not None:
        query = query.where(sa.tuple_(quarantine.c.received_at, quarantine.c.lead_id) < sa.tuple_(*before))
    if form_id is not None:
        query = query.where(quarantine.c.form_id == form_id)
    return query.limit(limit)


class CaptureStore:
    """capture's writes outside the group-commit writer, on one unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record_outcomes(self, outcomes: Sequence[dict[str, Any]]) -> None:
        await record_outcomes(self._session, outcomes)

    async def close_leads(self, lead_ids: Sequence[uuid.UUID]) -> None:
        await close_leads(self._session, lead_ids)

    async def lock_people(self, lead_ids: Sequence[uuid.UUID]) -> None:
        await lock_people(self._session, lead_ids)

    async def redirect_people(self, survivors: dict[uuid.UUID, uuid.UUID]) -> None:
        """People whose open lead was merged now have the survivor open, unless it is closed: a survivor already
        won, lost or disqualified leaves them with none, so their next submission opens a new lead. (Sales may
        merge into a closed lead; its close may come first in the same batch, or from another process at the
        same moment: the survivor's row is share-locked, so that close is waited for, or waits for this.)

        A survivor that was itself merged on (D into S, then S into T) hands them on to where the chain ends:
        the two merges are keyed by different leads, so they may come in either order, in one batch or two, or
        in two processes at once. Each merged lead is marked first (its row locked), so whichever comes second
        sees the first: S into T applied first marks S, and D into S follows the mark to T; D into S applied
        first leaves D's people at S, where S into T finds them. A closed lead on the way ends the chain, as it
        ends it for S's own people (a won S merged on into T: routing refuses that now, but logs from before
        may hold it): D's people then hold none, in either order.

        The people of every merged lead are locked before anything else, in one statement, in LOCK ORDER (one
        merge after another, each its people, would lock them in merged lead order)."""
        await lock_people(self._session, list(survivors))
        for merged, survivor in sorted(survivors.items()):
            await self._session.execute(_MARK_MERGED, {"merged": merged, "survivor": survivor})
            holder, closed, seen = survivor, None, {merged}
            while holder not in seen:  # routing refuses a merge into a merged lead: no chain comes back
                seen.add(holder)
                fate = (await self._session.execute(_FATE, {"lead": holder})).first()
                if fate is None or fate.closed_at is not None or fate.merged_into is None:
                    closed = None if fate is None else fate.closed_at
                    break
                holder = fate.merged_into
            await self._session.execute(people.update().where(people.c.open_lead_id == merged)
                                        .values(open_lead_id=None if closed is not None else holder))

    @property
    def session(self) -> AsyncSession:
        """For ``writer.admit``, which a release shares with the writer."""
        return self._session

    async def quarantine(self, row: dict[str, Any]) -> None:
        await self._session.execute(quarantine.insert().values(**row))

    async def quarantined(self, limit: int, *, before: tuple[datetime, uuid.UUID] | None = None,
                          form_id: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` quarantined submissions, newest first, after ``before`` and to ``form_id`` if given
        (``quarantine_page``)."""
        query = quarantine_page(limit, before=before, form_id=form_id)
        return [dict(r._mapping) for r in await self._session.execute(query)]

    async def lock_quarantined(self, lead_id: uuid.UUID) -> Any:
        query = sa.select(quarantine).where(quarantine.c.lead_id == lead_id).with_for_update()
        return (await self._session.execute(query)).first()

    async def mark_released(self, lead_id: uuid.UUID, at: datetime) -> None:
        await self._session.execute(quarantine.update().where(quarantine.c.lead_id == lead_id).values(released_at=at))

    async def purge_quarantine(self, received_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` quarantined submissions received before ``received_before``, the oldest first,
        passing over those a release holds; how many."""
        done = await self._session.execute(_PURGE_QUARANTINE, {"before": received_before, "limit": limit})
        return len(done.all())


    # -- erasure (GDPR art. 17): ``capture.erasure`` decides; these find and clear ------------------------------

    async def person_found(self, key: str) -> Found | None:
        """What capture holds of the person ``key`` names (``Found``); None when it keeps no record of them (nobody,
        or a person erased before). Read again once ``lock_erasure`` holds their row: no lead or touch of theirs is
        stored after that."""
        person = (await self._session.execute(
            sa.select(people.c.person_id, people.c.open_lead_id).where(people.c.person_key == key))).first()
        if person is None:
            return None
        opened = list((await self._session.execute(
            sa.select(leads.c.lead_id).where(leads.c.person_id == person.person_id).order_by(leads.c.seq))).scalars())
        theirs, seeds = list(opened), list(opened)
        if person.open_lead_id is not None and person.open_lead_id not in opened:
            seeds.append(person.open_lead_id)
            # A lead kept before 0012 names no person: held open, it is theirs as far as capture can tell. One that
            # names another is that person's, sales merged theirs into it: not erased, only their touches on it.
            owner = (await self._session.execute(sa.select(leads.c.person_id).where(
                leads.c.lead_id == person.open_lead_id))).first()
            if owner is None or owner.person_id is None:
                theirs.append(person.open_lead_id)
        needle = str(person.person_id)
        rows = await self._session.execute(_TOUCHES_ON_MERGES, {"seeds": seeds, "theirs": theirs, "needle": needle})
        touched = [(row.touch_id, row.lead_id) for row in rows if _touch_person(row.event) == needle]
        return Found(leads=theirs, touches=touched)

    async def erased(self, lead_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Those of ``lead_ids`` erased before."""
        found = sa.select(erasures.c.lead_id).where(among(erasures.c.lead_id, "ids")).order_by(erasures.c.erased_at)
        return list((await self._session.execute(found, {"ids": list(lead_ids)})).scalars())

    async def forget_quarantined(self, lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID] = (), *,
                                 key: str | None, same_person: Callable[[str], bool]) -> int:
        """Delete the quarantined submissions of ``lead_ids``, of their touches and of ``touch_ids`` (one released
        became the lead or the touch of its id) and, given ``key``, those whose address ``same_person`` reads as
        the person's; how many. A release locks its submission before the Idempotency-Keys and the people rows: so
        does an erasure, calling this first."""
        gone = len((await self._session.execute(_FORGET_RELEASED, _released(lead_ids, touch_ids))).all())
        if key is None:
            return gone
        # A kept address is as it was sent: read as an erasure reads one (``same_person``), among those whose stem
        # begins the key's local part (under any rules, every address naming the person has such a stem). A filter
        # by the lowered first letter, as before 0015, missed addresses sent decomposed (e + a combining accent),
        # or beginning with ß (ss) or with a letter Postgres's locale does not lower.
        local = key.rpartition("@")[0]
        kept = await self._session.execute(_QUARANTINED_BY_STEM, {"stems": [local[:end] for end in
                                                                            range(len(local) + 1)]})
        theirs = [row.lead_id for row in kept if row.email and same_person(row.email)]
        return gone + len((await self._session.execute(
            quarantine.delete().where(among(quarantine.c.lead_id, "ids")).returning(quarantine.c.lead_id),
            {"ids": theirs})).all())

    async def forget_answers(self, lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID] = ()) -> None:
        """Delete the Idempotency-Keys whose answer names one of ``lead_ids``, a touch of theirs (a sender without
        a key is answered its touch's id) or one of ``touch_ids``: the key may be the address itself, and the row
        keeps, for a day, a fingerprint of the fields with the lead's id. Idempotency-Keys come before people in
        LOCK ORDER."""
        if lead_ids or touch_ids:
            await self._session.execute(_FORGET_ANSWERS, _answers(lead_ids, touch_ids))

    async def answers_left(self, lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID] = ()) -> bool:
        """Whether an Idempotency-Key ``forget_answers`` deletes is there: read, not locked (the people rows held,
        a key is not waited for)."""
        if not (lead_ids or touch_ids):
            return False
        return bool((await self._session.execute(_ANSWERS_LEFT, _answers(lead_ids, touch_ids))).scalar())

    async def released_left(self, lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID] = ()) -> bool:
        """Whether a quarantined submission ``forget_quarantined`` deletes by id is there: one released as a touch of
        a lead since (its release held it, so that deletion did not see it as a touch yet). Read, not locked, as
        ``answers_left``."""
        if not (lead_ids or touch_ids):
            return False
        return bool((await self._session.execute(_RELEASED_LEFT, _released(lead_ids, touch_ids))).scalar())

    async def lock_erasure(self, lead_ids: Sequence[uuid.UUID], *, key: str | None,
                           by_id: Sequence[uuid.UUID]) -> Savepoint:
        """Lock every people row ``erase`` of these touches, in ONE statement, in LOCK ORDER (see ``people``): the
        rows it deletes and those whose open lead it clears. Locking the named person first and the others after,
        a writer's round holding one of the others and waiting for the named one deadlocked with it.

        Taken in a savepoint, returned: rolled back to, the locks are let go (and nothing else), so that an
        erasure that finds more to forget takes Idempotency-Keys before people again."""
        savepoint = await self._session.begin_nested()
        await self._session.execute(_people_erased(key, touched=True).order_by(people.c.person_key.collate("C"))
                                    .with_for_update(), {"ids": sorted(set(lead_ids)), "by_id": list(by_id)})
        return savepoint

    async def has_lead(self, lead_id: uuid.UUID) -> bool:
        return (await self._session.execute(sa.select(leads.c.lead_id).where(leads.c.lead_id == lead_id))).first() \
            is not None

    async def merged_into(self, lead_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """The leads sales merged into one of ``lead_ids``, or into one merged into them, and so on, neither among
        them nor erased, oldest first: another person's, or the same human's under another address, which only a
        DPO can tell."""
        if not lead_ids:
            return []
        return list((await self._session.execute(_MERGED_INTO, {"ids": sorted(set(lead_ids))})).scalars())

    async def erase(self, lead_ids: Sequence[uuid.UUID], *, key: str | None, by_id: Sequence[uuid.UUID],
                    touch_ids: Sequence[uuid.UUID] = (), at: datetime, by: str) -> Cleared:
        """Clear what capture holds of ``lead_ids``' person and record the erasure, in the caller's transaction
        (``Cleared``: the leads recorded now, and the touches on them another person sent).

        The rows of the people named go (the person ``key`` names, the person who opened each lead of ``by_id``,
        the one named by it: keyed by the address, and their next submission must open a new lead, not touch an
        erased one); anyone else who holds one of the leads open (merged into it) keeps their row, and what they
        said of marketing, with no lead open. Each lead's and touch's stored event is cleared
        (``erasure.erased_value``) and the lead's address emptied, its row kept (ids, times, form, attribution
        without a page's query) and marked published, terminal and closed: an unsent lead is not sent cleared, nor
        re-driven. ``touch_ids`` (the person's touches on another person's lead) are cleared and marked so too,
        their lead left as it is. The caller has locked the people rows (``lock_erasure``)."""
        ids = sorted(set(lead_ids))
        # The leads' rows are locked before anyone holding one open is cleared, as a close locks them (``close_leads``):
        # the lifecycle follower moving a merged lead's people onto one of them (``redirect_people``) share-locks it
        # first, so that merge either waits for this erasure and finds the lead closed (its people left with none),
        # or committed before this lock and the UPDATE of people below, a statement of its own, finds them. Cleared
        # before the lock, a person moved in between held an erased lead open: each later submission of theirs a
        # touch of it, dropped by every stage.
        erased_leads = (await self._session.execute(_ERASED_LEADS, {"ids": ids})).all()
        theirs = _people_erased(key, touched=False).whereclause
        deleted = set((await self._session.execute(people.delete().where(theirs).returning(people.c.person_id),
                                                   {"ids": ids, "by_id": list(by_id)})).scalars())
        await self._session.execute(people.update().where(among(people.c.open_lead_id, "ids"))
                                    .values(open_lead_id=None), {"ids": ids})
        erased_touches = (await self._session.execute(
            _ERASED_TOUCHES, {"ids": ids, "touch_ids": sorted(set(touch_ids))})).all()
        # Read before they are cleared: a touch on an erased lead whose person is neither the lead's nor one erased
        # (someone sales merged into it) goes with the lead all the same; the answer says so. A touch whose event
        # names no person (sent before person_id, or cleared by an erasure before) is not told, nor one on a lead kept
        # before 0012, whose person is not known.
        opened_by = {lead: str(person) for lead, _, person in erased_leads if person is not None}
        erased_people = {str(person) for person in deleted}
        others = [touch for touch, event, lead in erased_touches
                  if lead in opened_by and _touch_person(event) not in {None, opened_by[lead], *erased_people}]
        for table, key_column, rows in ((leads, leads.c.lead_id, erased_leads),
                                        (touches, touches.c.touch_id, erased_touches)):
            for row_id, event, *_ in rows:
                cleared = {"event": erased_value(event), "published_at": sa.func.coalesce(table.c.published_at, at)}
                if table is leads:
                    cleared |= {"email": "", "closed_at": sa.func.coalesce(leads.c.closed_at, at), **_erased_outcome(at)}
                await self._session.execute(table.update().where(key_column == row_id).values(**cleared))
        if not ids:
            return Cleared(recorded=[], others_touches=others)
        # Two erasures of a lead at once both found it not erased yet: the second waits on the first's row locks,
        # clears again what the first cleared, and is a repeat, not a unique violation (a 500, a traceback).
        recorded = await self._session.execute(
            pg_insert(erasures).values([{"lead_id": lead_id, "erased_at": at, "erased_by": by} for lead_id in ids])
            .on_conflict_do_nothing(index_elements=[erasures.c.lead_id]).returning(erasures.c.lead_id))
        return Cleared(recorded=list(recorded.scalars()), others_touches=others)


@dataclass(frozen=True)
class Found:
    """What an erasure by address finds of a person."""

    #: The leads they opened, and the one they hold open if it names no person (kept before 0012), oldest first.
    leads: list[uuid.UUID]
    #: Their touches (touch id, lead id) on another person's lead: one sales merged a lead of theirs into, which
    #: their later submissions touched while they held it open, or one it went on into (``leads.merged_into``).
    touches: list[tuple[uuid.UUID, uuid.UUID]]


@dataclass(frozen=True)
class Cleared:
    """What ``CaptureStore.erase`` cleared."""

    #: Of the leads, those recorded now (the others an erasure running at the same time recorded first).
    recorded: list[uuid.UUID]
    #: The touches on the leads another person sent (sales merged a lead of theirs into one): cleared with it.
    others_touches: list[uuid.UUID]


class Savepoint(Protocol):
    async def rollback(self) -> None: ...


def _touch_person(event: bytes) -> str | None:
    """The ``person_id`` a touch's stored event names (None: none, no event an erasure left readable, or a touch an
    erasure cleared: its address empty, which no submission's is, so nothing of that person is left to tell)."""
    try:
        data = json.loads(event)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    contact = data.get("contact")
    if isinstance(contact, dict) and contact.get("email") == "":
        return None
    return data.get("person_id")


def _released(lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID]) -> dict[str, list[uuid.UUID]]:
    """The parameters of ``_RELEASED``: quarantined submissions released as these leads, their touches or these
    touches."""
    return {"ids": sorted(set(lead_ids)), "touch_ids": sorted(set(touch_ids))}


def _answers(lead_ids: Sequence[uuid.UUID], touch_ids: Sequence[uuid.UUID]) -> dict[str, list[Any]]:
    return {"ids": sorted(set(lead_ids)), "texts": sorted({str(i) for i in [*lead_ids, *touch_ids]})}


_ANSWERED = idempotency.c.answer["lead_id"].astext
#: A scan of the keys (a day's worth; nothing indexes their answers), as rare as erasures are.
_NAMED = sa.or_(
    _ANSWERED == sa.any_(sa.bindparam("texts", type_=ARRAY(sa.Text))),
    _ANSWERED.in_(sa.select(sa.cast(touches.c.touch_id, sa.Text)).where(among(touches.c.lead_id, "ids"))))
_FORGET_ANSWERS = idempotency.delete().where(_NAMED)
#: The quarantined submissions released as one of the leads ``:ids`` or as a touch: a submission released while
#: its person held a lead open became a touch of that lead under the submission's id, so an erasure by lead id
#: (which knows no address) finds it only by the lead's touches; ``:touch_ids``, the person's touches on another
#: person's lead.
_RELEASED = sa.or_(
    among(quarantine.c.lead_id, "ids"), among(quarantine.c.lead_id, "touch_ids"),
    quarantine.c.lead_id.in_(sa.select(touches.c.touch_id).where(among(touches.c.lead_id, "ids"))))
_FORGET_RELEASED = quarantine.delete().where(_RELEASED).returning(quarantine.c.lead_id)
#: The quarantined submissions whose address may name the person: their stem (``domain.address_stem``) one of
#: ``:stems``, the prefixes of the person key's local part, or none (kept by a process older than 0015). An index
#: finds them.
_QUARANTINED_BY_STEM = sa.select(quarantine.c.lead_id, quarantine.c.fields["email"].as_string().label("email")).where(
    sa.or_(among(quarantine.c.address_stem, "stems"), quarantine.c.address_stem.is_(None)))
_RELEASED_LEFT = sa.select(sa.exists().where(_RELEASED))
_ANSWERS_LEFT = sa.select(sa.exists().where(_NAMED))

#: Every lead a person's submissions may have touched besides their own: a touch lands on the lead they hold open,
#: which is one they opened or, after sales merged it, the lead it went into (``redirect_people``), and on along
#: ``merged_into``. Of those leads' touches, the ones whose stored event holds the person's id (a byte search: no
#: event is decoded in SQL, where one that is no JSON would fail the statement; the caller reads each found).
#: Merges applied before 0008 left no ``merged_into``: a lead they went into is followed only while held open.
_CHAIN = sa.select(sa.func.unnest(sa.bindparam("seeds", type_=ARRAY(UUID(as_uuid=True)))).label("lead_id")) \
    .cte("chain", recursive=True)
_CHAIN = _CHAIN.union(sa.select(leads.c.merged_into).join(_CHAIN, leads.c.lead_id == _CHAIN.c.lead_id)
                      .where(leads.c.merged_into.is_not(None)))
_TOUCHES_ON_MERGES = (
    sa.select(touches.c.touch_id, touches.c.lead_id, touches.c.event)
    .where(touches.c.lead_id.in_(sa.select(_CHAIN.c.lead_id)),
           touches.c.lead_id != sa.all_(sa.bindparam("theirs", type_=ARRAY(UUID(as_uuid=True)))),
           sa.func.position(sa.func.convert_to(sa.bindparam("needle", type_=sa.Text), "UTF8")
                            .op("IN")(touches.c.event)) > 0)
    .order_by(touches.c.seq))
#: Leads merged into ``:ids``, and into those, and so on (``leads_merged_into``), but ``:ids`` and the erased.
_MERGED = sa.select(leads.c.lead_id, leads.c.seq).where(among(leads.c.merged_into, "ids")).cte("merged", recursive=True)
_MERGED = _MERGED.union(sa.select(leads.c.lead_id, leads.c.seq).join(_MERGED, leads.c.merged_into == _MERGED.c.lead_id))
_MERGED_INTO = (sa.select(_MERGED.c.lead_id)
                .where(_MERGED.c.lead_id != sa.all_(sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))),
                       _MERGED.c.lead_id.not_in(sa.select(erasures.c.lead_id)))
                .order_by(_MERGED.c.seq))


#: The rows ``CaptureStore.erase`` clears, locked in key order: the erased leads, and their touches with the
#: person's touches on another person's lead (``:touch_ids``).
_ERASED_LEADS = (sa.select(leads.c.lead_id, leads.c.event, leads.c.person_id).where(among(leads.c.lead_id, "ids"))
                 .order_by(leads.c.lead_id).with_for_update())
_ERASED_TOUCHES = (sa.select(touches.c.touch_id, touches.c.event, touches.c.lead_id)
                   .where(sa.or_(among(touches.c.lead_id, "ids"), among(touches.c.touch_id, "touch_ids")))
                   .order_by(touches.c.touch_id).with_for_update())


def _people_erased(key: str | None, *, touched: bool) -> sa.Select[Any]:
    """The people rows an erasure of the leads ``:ids`` deletes, those it names: the person ``key`` names, and
    the person who opened each lead ``:by_id`` names (``leads.person_id``), or, for a lead kept before 0012 (no
    ``person_id``: its person is not told from someone merged into it), whoever holds it open. With ``touched``,
    also everyone else holding one of ``:ids`` open (whose open lead it clears)."""
    opened_by = sa.select(leads.c.person_id).where(among(leads.c.lead_id, "by_id"), leads.c.person_id.is_not(None))
    unowned = sa.select(leads.c.lead_id).where(among(leads.c.lead_id, "by_id"), leads.c.person_id.is_(None))
    named = [people.c.person_key == key] if key is not None else []
    holds = [among(people.c.open_lead_id, "ids")] if touched else [people.c.open_lead_id.in_(unowned)]
    return sa.select(people.c.person_key).where(sa.or_(*named, people.c.person_id.in_(opened_by), *holds))


def _erased_outcome(at: datetime) -> dict[str, Any]:
    """An erased lead's outcome, as the re-driver reads it: done, unless it had a real one (a dead letter is none)."""
    undecided = sa.or_(leads.c.terminal_stage.is_(None), leads.c.terminal_stage == "deadlettered")
    return {"terminal_stage": sa.case((undecided, "erased"), else_=leads.c.terminal_stage),
            "terminal_at": sa.case((undecided, at), else_=leads.c.terminal_at)}


#: Read in the order of ``quarantine_received``, which finds them without a scan.
_PURGE_QUARANTINE = sa.text(f"""
    DELETE FROM {SCHEMA}.quarantine WHERE lead_id IN (
        SELECT lead_id FROM {SCHEMA}.quarantine WHERE received_at < :before
        ORDER BY received_at, lead_id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING lead_id""")


_RECORD_OUTCOMES = sa.text(f"""
    UPDATE {SCHEMA}.leads l SET terminal_stage = o.stage, terminal_at = o.at
    FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:stages AS text[]), CAST(:ats AS timestamptz[]))
         AS o(lead_id, stage, at)
    WHERE l.lead_id = o.lead_id
      AND (l.terminal_stage IS NULL OR (l.terminal_stage = 'deadlettered' AND o.stage <> 'deadlettered'))""")


async def record_outcomes(conn: AsyncConnection | AsyncSession, outcomes: Sequence[dict[str, Any]]) -> None:
    """Note each lead's terminal stage. A real outcome replaces ``deadlettered`` (the record was
    redriven after a fix); nothing replaces a real outcome. One statement for the batch: of a lead's outcomes
    in it, the first real one (or else the first) is the one that applying them in turn would leave."""
    first: dict[uuid.UUID, dict[str, Any]] = {}
    for o in outcomes:
        kept = first.get(o["b_lead_id"])
        if kept is None or (kept["b_stage"] == "deadlettered" and o["b_stage"] != "deadlettered"):
            first[o["b_lead_id"]] = o
    if first:
        rows = [first[k] for k in sorted(first)]  # rows locked in id order, as every batch write locks them
        await conn.execute(_RECORD_OUTCOMES, {"lead_ids": [o["b_lead_id"] for o in rows],
                                              "stages": [o["b_stage"] for o in rows], "ats": [o["b_at"] for o in rows]})
