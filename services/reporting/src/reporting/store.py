"""reporting's tables: a read model of ``leads.lifecycle``, nothing else.

- ``leads``: one row per lead: its first-touch attribution, when it first
  reached each stage, the furthest funnel stage it reached, its latest step
  (where it is now), a won deal's value (its latest correction's, with the
  number of that correction), a reason it was rejected and lost for (every
  rejection's is in ``steps``).
- ``steps``: every lifecycle event, for timelines and rejection reasons.
- ``handoffs``: each hand-off of a routed lead (keyed by lead, holder and
  deadline): its team, when it began, when it was breached and when a
  manager handed the lead on (ending it); whether it was met is read when a
  report asks, against the first acceptance or rejection ``steps`` recorded
  after it began (and before it was handed over).
- ``touches``: each lead's capture and every later touch, with its
  attribution: what last-touch and linear attribution credit.
- ``merges``: leads sales said are one person. Applying one (again, after
  any batch that touches either lead, so the order events arrive in does not
  matter) marks the merged lead ``merged_into``, gives the survivor the
  earlier first touch, the earliest time of each stage and every touch of
  both.
- ``spam``: one row per quarantined submission (from ``leads.quarantined``):
  when, which form and source, nothing the sender wrote. One that was
  released is a lead in ``leads`` under the same id or, when its person had
  a lead open, a touch of that lead in ``touches`` under the same id.

Every write is idempotent and independent of order (first times are
``LEAST``, the furthest stage ``GREATEST``, the latest step the greatest in
``domain.Step``'s order, the first touch the earliest
capture's, whole, the won amount the latest correction's
(``domain.newer_won``), values ``COALESCE``; steps are keyed by event id), so a
redelivered or replayed event changes nothing and a rebuild from the log
equals the live tables. (An event applied before steps kept their recorded
time, 0005, is applied again without it: ``unrecorded_steps``.) That is why the service needs no inbox. ``TABLES`` is
what a replay rebuilds and swaps in. ``ReportingStore`` writes a projection,
on a unit of work's session or a replay's connection.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from leadpipe_common.db import among, insert_rows, schema_in_force

from reporting.domain import DIMENSIONS, LIFECYCLE, STAGE_COLUMNS, HandoffFacts, LeadFacts, Projection

SCHEMA = "reporting"
metadata = sa.MetaData(schema=SCHEMA)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("form_id", sa.Text),
    sa.Column("offer", sa.Text),
    sa.Column("utm_source", sa.Text),
    sa.Column("utm_medium", sa.Text),
    sa.Column("utm_campaign", sa.Text),
    sa.Column("utm_content", sa.Text),
    sa.Column("grade", sa.Text),
    sa.Column("furthest", sa.SmallInteger, nullable=False),
    *(sa.Column(f"{stage}_at", sa.DateTime(timezone=True)) for stage in STAGE_COLUMNS),
    sa.Column("won_amount", sa.Numeric(20, 2)),
    sa.Column("won_currency", sa.Text),
    # Which report won_amount is of: 0 the win's, n its n-th correction (0013; None before: the win's).
    sa.Column("won_correction", sa.Integer),
    sa.Column("rejected_reason", sa.Text),
    sa.Column("lost_reason", sa.Text),
    # Sales merged this lead into another: the survivor stands for the person; this row is in no report.
    sa.Column("merged_into", UUID(as_uuid=True)),
    # Where the lead is: its latest step into one of the stages above (``domain.Step``), kept at each write so
    # the funnel's exits read one row a lead, not every lead's steps.
    sa.Column("latest_recorded_at", sa.DateTime(timezone=True)),
    sa.Column("latest_at", sa.DateTime(timezone=True)),
    sa.Column("latest_from_stage", sa.Text),
    sa.Column("latest_to_stage", sa.Text),
    sa.Index("leads_captured_at", "captured_at"),
)
steps = sa.Table(
    "steps",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # When its service recorded it (the event's time on the stream); None for steps from before 0005.
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
    sa.Column("from_stage", sa.Text),
    sa.Column("to_stage", sa.Text, nullable=False),
    sa.Column("by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", JSONB, nullable=False),
    sa.Index("steps_lead", "lead_id", "at"),
    # The answers that end hand-offs, a few of all the steps: what the SLA report joins hand-offs with.
    sa.Index("steps_answers", "lead_id", postgresql_where=sa.text("to_stage IN ('accepted', 'rejected')")),
    # Steps applied before 0005, without their recorded time: what an event delivered again is looked up in.
    sa.Index("steps_unrecorded", "event_id", postgresql_where=sa.text("recorded_at IS NULL")),
)
handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    # A lead's hand-offs are each a holder's, with a deadline; the breach of one names both (0011: two holders
    # of a lead handed over off hours may have one deadline).
    sa.Column("owner_id", sa.Text, primary_key=True),
    sa.Column("due_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),  # None: only its breach was seen (or from before 0005)
    sa.Column("breached_at", sa.DateTime(timezone=True)),
    sa.Column("handed_over_at", sa.DateTime(timezone=True)),  # ended by a hand-over, a manager's or routing's (0010)
)
spam = sa.Table(
    "spam",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("form_id", sa.Text),
    sa.Column("utm_source", sa.Text),
    sa.Index("spam_received_at", "received_at"),
)
touches = sa.Table(
    "touches",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("touch_id", UUID(as_uuid=True), primary_key=True),  # the lead's id for its capture
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    *(sa.Column(c, sa.Text) for c in DIMENSIONS.values()),
    # A released submission is looked up by its id (the spam report), whichever lead it became a touch of.
    sa.Index("touches_touch_id", "touch_id"),
)
merges = sa.Table(
    "merges",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("survivor_id", UUID(as_uuid=True), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("merges_survivor", "survivor_id"),
)
TABLES = (leads, steps, handoffs, spam, touches, merges)


_IGNORE = "ON CONFLICT DO NOTHING"


async def save_steps(conn: AsyncConnection | AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(conn, steps, rows, conflict=_IGNORE)


_UNRECORDED = sa.select(steps.c.event_id).where(among(steps.c.event_id, "events"), steps.c.recorded_at.is_(None))
_ANY_UNRECORDED = sa.select(sa.exists().where(steps.c.recorded_at.is_(None)))


async def unrecorded_steps(conn: AsyncConnection | AsyncSession, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``event_ids`` were applied before 0005 (their steps have no recorded time): ``project`` applies
    them again as they were then, or a redelivery would carry a recorded time that moves the lead's latest
    step and starts a hand-off's clock the reports never had."""
    if not event_ids:
        return set()
    return set((await conn.execute(_UNRECORDED, {"events": list(event_ids)})).scalars())


LATEST = ("latest_recorded_at", "latest_at", "latest_from_stage", "latest_to_stage")


def _step_order(table: str) -> str:
    """``domain.Step``'s order of a row's latest step, as SQL: compared as a row, greater is later."""
    stages = ", ".join(f"'{s}'" for s in LIFECYCLE)
    return (f"({table}.latest_recorded_at, {table}.latest_at, array_position(ARRAY[{stages}], "
            f"{table}.latest_to_stage), COALESCE({table}.latest_from_stage, ''))")


#: The batch's latest step of a lead is later than the one stored (each of a SET's expressions reads the row
#: as it was, so every latest column is judged on the same old values).
_LATER = (f"excluded.latest_to_stage IS NOT NULL AND (leads.latest_to_stage IS NULL "
          f"OR {_step_order('excluded')} > {_step_order('leads')})")

#: The batch's won amount stands for the deal in place of the stored one (``domain.newer_won``).
_NEWER_WON = ("excluded.won_amount IS NOT NULL AND (leads.won_amount IS NULL "
              "OR COALESCE(excluded.won_correction, 0) > COALESCE(leads.won_correction, 0))")

#: The batch's facts of each lead merged into what is stored: the attribution is the earliest capture's, whole
#: (filled in field by field only while no capture is known: a field one touch left empty is not another's to
#: fill, or a survivor's first touch would mix its own with the lead merged into it, and differ by batching);
#: a value keeps its first, but for the won amount, the latest correction's; a stage its earliest time, the lead its
#: furthest stage (the batch holds one row per lead: one statement may not update a row twice).
_MERGE_LEADS = "ON CONFLICT (lead_id) DO UPDATE SET " + ", ".join([
    *(f"{c} = CASE WHEN leads.captured_at IS NULL AND excluded.captured_at IS NULL THEN COALESCE(leads.{c}, "
      f"excluded.{c}) WHEN excluded.captured_at < COALESCE(leads.captured_at, 'infinity') THEN excluded.{c} "
      f"ELSE leads.{c} END" for c in DIMENSIONS.values()),
    *(f"{c} = COALESCE(leads.{c}, excluded.{c})" for c in ("grade", "rejected_reason", "lost_reason")),
    *(f"{c} = CASE WHEN {_NEWER_WON} THEN excluded.{c} ELSE leads.{c} END"
      for c in ("won_amount", "won_currency", "won_correction")),
    *(f"{s}_at = LEAST(leads.{s}_at, excluded.{s}_at)" for s in STAGE_COLUMNS),
    "furthest = GREATEST(leads.furthest, excluded.furthest)",
    *(f"{c} = CASE WHEN {_LATER} THEN excluded.{c} ELSE leads.{c} END" for c in LATEST),
])


async def save_leads(conn: AsyncConnection | AsyncSession, facts: Sequence[LeadFacts]) -> None:
    await insert_rows(conn, leads, [f.row() for f in facts], conflict=_MERGE_LEADS)


#: A hand-off's earliest start, breach and hand-over are kept (one row per lead, holder and deadline in a batch),
#: and its first team by name, as ``Projection.handoff`` keeps them: the same rule whatever order and batches the
#: events come in (a v1 breach guessed its next holder's team). "C" orders as Python does (by code point), where
#: the database's collation may not ("EMEA" and "dach").
_MERGE_HANDOFFS = ("ON CONFLICT (lead_id, owner_id, due_at) DO UPDATE SET "
                   'team = LEAST(handoffs.team COLLATE "C", excluded.team COLLATE "C"), '
                   "started_at = LEAST(handoffs.started_at, excluded.started_at), "
                   "breached_at = LEAST(handoffs.breached_at, excluded.breached_at), "
                   "handed_over_at = LEAST(handoffs.handed_over_at, excluded.handed_over_at)")


async def save_handoffs(conn: AsyncConnection | AsyncSession, facts: Sequence[HandoffFacts]) -> None:
    await insert_rows(conn, handoffs, [f.row() for f in facts], conflict=_MERGE_HANDOFFS)


async def save_spam(conn: AsyncConnection | AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(conn, spam, rows, conflict=_IGNORE)


async def save_touches(conn: AsyncConnection | AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await insert_rows(conn, touches, rows, conflict=_IGNORE)


_MERGES_OF = sa.select(merges.c.lead_id, merges.c.survivor_id).where(
    sa.or_(among(merges.c.lead_id, "involved"), among(merges.c.survivor_id, "involved")))
_MERGES_ON = sa.select(merges.c.lead_id, merges.c.survivor_id).where(among(merges.c.lead_id, "leads"))
_LOCK_LEADS = (sa.select(leads.c.lead_id).where(among(leads.c.lead_id, "leads")).order_by(leads.c.lead_id)
               .with_for_update())


async def save_merges(conn: AsyncConnection | AsyncSession, p: Projection) -> None:
    """Record the batch's merges, then (re)apply every merge involving a lead of the batch, and every merge on
    from their survivors (D into S, S into T, T into U: what D brings reaches U): each step is idempotent
    (earliest times, furthest stage, first touch by time, touches kept once).

    Two processes may apply D into S and S into T at once, each blind to the other's uncommitted merge: the
    leads of the merges found are locked first, which waits for the other's commit, and the merges are looked
    up again after (each statement sees what was committed before it began), until no new lead turns up."""
    await insert_rows(conn, merges, sorted(p.merges, key=lambda m: m["lead_id"]), conflict=_IGNORE)
    involved = sorted({*p.leads, *(m["lead_id"] for m in p.merges), *(k[0] for k in p.touches)})
    if not involved:
        return
    found, locked = await _merges_of(conn, involved), set()
    while unlocked := {lead for merge in found for lead in merge} - locked:
        await conn.execute(_LOCK_LEADS, {"leads": sorted(unlocked)})
        locked |= unlocked
        found = await _merges_of(conn, involved)
    merge = _merge(await schema_in_force(conn, SCHEMA))
    for merged, survivor in chain_order(found):
        await conn.execute(merge, {"merged": merged, "survivor": survivor})


async def _merges_of(conn: AsyncConnection | AsyncSession,
                     involved: Sequence[uuid.UUID]) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """The merges of the leads ``involved`` (either way), and the merges on from their survivors."""
    found = {(row.lead_id, row.survivor_id) for row in await conn.execute(_MERGES_OF, {"involved": involved})}
    while onward := {survivor for _, survivor in found} - {merged for merged, _ in found}:
        more = {(row.lead_id, row.survivor_id) for row in await conn.execute(_MERGES_ON, {"leads": sorted(onward)})}
        if more <= found:
            break
        found |= more
    return found


def chain_order(found: set[tuple[uuid.UUID, uuid.UUID]]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The merges (merged, survivor), each merge into a lead before that lead's own merge on (D into S before S
    into T, or T would miss what D brings); otherwise in id order. Routing refuses a merge into a merged lead,
    so merges never come back round; if they did, the rest would go in id order."""
    left, order = set(found), []
    while left:
        ready = sorted(m for m in left if not any(other[1] == m[0] for other in left)) or sorted(left)
        order += ready
        left -= set(ready)
    return order


@functools.cache
def _merge(schema: str) -> sa.TextClause:
    """One merge applied in ``schema`` (the live one, or a replay's shadow: text is not schema-translated)."""
    return sa.text(f"""
WITH m AS (SELECT * FROM {schema}.leads WHERE lead_id = :merged),
marked AS (UPDATE {schema}.leads SET merged_into = :survivor WHERE lead_id = :merged),
copied AS (
    INSERT INTO {schema}.touches (lead_id, touch_id, at, {", ".join(DIMENSIONS.values())})
    SELECT :survivor, touch_id, at, {", ".join(DIMENSIONS.values())} FROM {schema}.touches WHERE lead_id = :merged
    ON CONFLICT DO NOTHING
)
UPDATE {schema}.leads s SET
    {", ".join(f"{c} = CASE WHEN m.captured_at < COALESCE(s.captured_at, 'infinity') THEN m.{c} ELSE s.{c} END"
               for c in DIMENSIONS.values())},
    {", ".join(f"{st}_at = LEAST(s.{st}_at, m.{st}_at)" for st in STAGE_COLUMNS)},
    furthest = GREATEST(s.furthest, m.furthest),
    won_amount = COALESCE(s.won_amount, m.won_amount), won_currency = COALESCE(s.won_currency, m.won_currency),
    won_correction = CASE WHEN s.won_amount IS NULL THEN m.won_correction ELSE s.won_correction END,
    rejected_reason = COALESCE(s.rejected_reason, m.rejected_reason),
    lost_reason = COALESCE(s.lost_reason, m.lost_reason)
FROM m WHERE s.lead_id = :survivor
""")


class ReportingStore:
    def __init__(self, conn: AsyncConnection | AsyncSession) -> None:
        self._conn = conn

    async def unrecorded(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return await unrecorded_steps(self._conn, event_ids)

    async def any_unrecorded(self) -> bool:
        """Whether any step applied before 0005 (no recorded time) is left (asked once a process)."""
        return bool((await self._conn.execute(_ANY_UNRECORDED)).scalar())

    async def save(self, p: Projection) -> None:
        # Rows in key order: two processes upserting overlapping leads lock them
        # in the same order and cannot deadlock.
        await save_leads(self._conn, [p.leads[k] for k in sorted(p.leads)])
        await save_handoffs(self._conn, [p.handoffs[k] for k in sorted(p.handoffs)])
        await save_steps(self._conn, sorted(p.steps, key=lambda s: s["event_id"]))
        await save_spam(self._conn, [p.spam[k] for k in sorted(p.spam)])
        await save_touches(self._conn, [p.touches[k] for k in sorted(p.touches)])
        await save_merges(self._conn, p)
