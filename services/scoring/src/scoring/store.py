"""scoring's tables: its inbox, the score it gave each lead last (with the decision and rules version), and
every touch of every lead (what intent is summed over when a touch re-scores the lead).

Scores are upserted (one row per lead, the latest); touches are keyed by lead and touch, so a redelivered
event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common import topics
from leadpipe_common.db import among, inbox_table, insert_rows, upsert
from leadpipe_common.erasure import erased_event
from leadpipe_common.outbox import outbox_table, unsent_of_leads

from scoring.domain import TouchFacts

SCHEMA = "scoring"
metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("score", sa.SmallInteger, nullable=False),
    sa.Column("grade", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("rules_version", sa.Text, nullable=False),
    #: ``domain.rules_digest`` of the rules it was given under: rules changed without a new version tell (NULL for
    #: scores given before it was kept).
    sa.Column("rules_digest", sa.Text),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    #: The lead as last scored (``lead.enriched``, JSON): what ``rescore`` scores again. None for leads scored
    #: before it was kept.
    sa.Column("lead", JSONB),
    #: The lead it was merged into (decision ``merged``; NULL for leads merged before it was kept). A save
    #: replaces both (rows leave it out); none comes for a merged lead, which is closed.
    sa.Column("merged_into", UUID(as_uuid=True)),
    sa.Index("scores_decision", "decision"),
)
#: What ``rescore`` publishes (a recycled lead's events), for the running service's relay to send.
outbox = outbox_table(metadata)
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("touch_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("facts", JSONB, nullable=False),
)

_STANDING = (sa.select(scores.c.lead_id, scores.c.decision, scores.c.lead).where(among(scores.c.lead_id, "ids"))
             .order_by(scores.c.lead_id).with_for_update())
#: The outbox's unsent messages of the given leads (keyed by the lead's id, as text): a re-score's ``lead.scored``
#: holds the whole lead, and the relay, apart from the consumer, could send it after the lead's erasure.
_UNSENT = unsent_of_leads(outbox, topics.SCORED)
_TOUCHES = sa.select(touches).where(among(touches.c.lead_id, "ids"))
#: Where a lead was merged into, its row locked (a merge of it being applied elsewhere is waited for).
_MERGED_INTO = (sa.select(scores.c.merged_into).where(scores.c.lead_id == sa.bindparam("lead"))
                .with_for_update())


class ScoringStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def standing(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[str, Any]]:
        """Each known lead's decision and the lead as last scored (JSON; None for leads scored before it was
        kept), its row locked until the transaction ends, in id order: a merge (on the duplicate's partition)
        and a touch of the survivor (on its own) handled by two processes at once take turns, so the second
        scores over what the first wrote."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        rows = await self._session.execute(_STANDING, {"ids": ids})
        return {r.lead_id: (r.decision, r.lead) for r in rows}

    async def touches(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[TouchFacts]]:
        ids = sorted(set(lead_ids))
        out: dict[uuid.UUID, list[TouchFacts]] = {lead_id: [] for lead_id in ids}
        if ids:
            rows = await self._session.execute(_TOUCHES, {"ids": ids})
            for r in rows:
                out[r.lead_id].append(TouchFacts(r.touch_id, r.at, r.facts))
        return out

    async def save_touches(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await insert_rows(self._session, touches, rows, conflict="ON CONFLICT DO NOTHING")

    async def open_leads(self, after: uuid.UUID | None, limit: int) -> list[Any]:
        """Leads in nurture or MQL (disqualified ones are closed), by id after ``after``, one page; locked, so
        a touch handled meanwhile waits for the re-score of its lead."""
        query = (sa.select(scores.c.lead_id, scores.c.decision, scores.c.score, scores.c.reasons, scores.c.lead,
                           scores.c.scored_at)
                 .where(scores.c.decision.in_(("mql", "nurture")))
                 .order_by(scores.c.lead_id).limit(limit).with_for_update())
        if after is not None:
            query = query.where(scores.c.lead_id > after)
        return list(await self._session.execute(query))

    async def merge(self, survivors: dict[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """Each duplicate's touches become its survivor's; the duplicate is closed as merged. Returns, for each
        duplicate, the lead that has its touches now: its survivor, or where the survivor was merged on to.

        D into S and S into T are keyed by different leads, so they come in either order: S into T first marks
        S, and D's touches follow the mark to T; D into S first leaves them at S, where S into T finds them."""
        for duplicate, survivor in sorted(survivors.items()):
            await self._session.execute(touches.update().where(touches.c.lead_id == duplicate)
                                        .values(lead_id=await self._end_of_chain(survivor, duplicate)))
            await self._session.execute(scores.update().where(scores.c.lead_id == duplicate)
                                        .values(decision="merged", merged_into=survivor))
        return {duplicate: await self._end_of_chain(survivor, duplicate) for duplicate, survivor in survivors.items()}

    async def _end_of_chain(self, lead_id: uuid.UUID, merged: uuid.UUID) -> uuid.UUID:
        seen = {merged}
        while lead_id not in seen:  # routing refuses a merge into a merged lead: no chain comes back
            seen.add(lead_id)
            onward = (await self._session.execute(_MERGED_INTO, {"lead": lead_id})).scalar()
            if onward is None:
                break
            lead_id = onward
        return lead_id

    async def newest_rules(self) -> tuple[str, str | None] | None:
        """The rules version and digest the newest score was given under (None: no lead scored yet). Read once a
        start and once a re-score: a scan of the scores, as no index of scored_at is worth its every write."""
        row = (await self._session.execute(
            # An erased lead's mark was given under no rules.
            sa.select(scores.c.rules_version, scores.c.rules_digest).where(scores.c.rules_version != "").order_by(scores.c.scored_at.desc()).limit(1)
        )).first()
        return None if row is None else (row.rules_version, row.rules_digest)

    async def erase(self, erased: Mapping[uuid.UUID, datetime]) -> None:
        """The leads as last scored without their person (``erasure.erased_event``), and closed as ``erased``: no
        touch of theirs comes any more (capture opens a new lead), and neither a merge nor a re-score may send the
        cleared lead on as if it were a person's. A lead scoring holds no row of (its ``lead.enriched`` dead-lettered
        or not read yet) gets one, closed as ``erased`` and holding no one, so that a redrive or a late event of it
        finds it erased rather than scores it anew. Their unsent outbox messages are deleted."""
        ids = sorted(erased)
        rows = await self._session.execute(_STANDING, {"ids": ids})
        held = set()
        for row in rows.all():
            held.add(row.lead_id)
            await self._session.execute(scores.update().where(scores.c.lead_id == row.lead_id).values(
                decision="erased", lead=None if row.lead is None else erased_event(row.lead)))
        marks = [{"lead_id": lead_id, "score": 0, "grade": "", "decision": "erased", "rules_version": "",
                  "reasons": [], "scored_at": erased[lead_id]} for lead_id in ids if lead_id not in held]
        if marks:
            await insert_rows(self._session, scores, marks, conflict="ON CONFLICT DO NOTHING")
        await self._session.execute(_UNSENT, {"keys": [str(lead_id) for lead_id in ids]})

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        await upsert(self._session, scores, rows, key="lead_id")
