"""The report queries: SQL aggregates over reporting's tables, shaped by ``reporting.domain``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult

from leadpipe_common.events import FUNNEL
from leadpipe_common.moments import written

from reporting.domain import (
    DIMENSIONS, EXITS, LIFECYCLE, NONE_LABEL, RANK, VELOCITY, AttributionTally, LeadCredit, attribution_rows,
    breakdown_row, funnel_stages, in_order_moved, rate, sla_row, spam_rows, timeline_answer, won_revenue,
)
from reporting.store import handoffs, leads, merges, spam, steps, touches


@dataclass(frozen=True)
class Filters:
    """A cohort: leads captured in [since, until), optionally first touched from one utm_source (under every
    attribution model: a later model credits the cohort's touches, of any source)."""

    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None

    def where(self, *, people: bool = True) -> list[Any]:
        """The cohort's leads; ``people``: one lead a person (a merged lead's person is counted by its
        survivor), else every lead, merged ones too (for what happened to each, such as its hand-offs)."""
        clauses = [leads.c.merged_into.is_(None)] if people else []
        if self.since is not None:
            clauses.append(leads.c.captured_at >= self.since)
        if self.until is not None:
            clauses.append(leads.c.captured_at < self.until)
        if self.source is not None:
            clauses.append(_is_source(leads.c.utm_source, self.source))
        return clauses

    def describe(self) -> dict[str, Any]:
        return {"since": written(self.since) if self.since else None,
                "until": written(self.until) if self.until else None, "source": self.source}


def _labelled(value: Any) -> Any:
    """A value grouped under its label: a missing one is "(none)", as Google Analytics writes a direct visit's
    medium, which forms pass on as it is; grouped apart, the two were two rows under one name."""
    return sa.func.coalesce(value, NONE_LABEL)


def _is_source(column: Any, source: str) -> Any:
    """``column`` holds ``source``; "(none)", the row of the leads that gave none, is those (``_labelled``)."""
    return sa.or_(column.is_(None), column == NONE_LABEL) if source == NONE_LABEL else column == source


def _reached() -> list[Any]:
    return [sa.func.count().filter(leads.c.furthest >= RANK[s]).label(s) for s in FUNNEL]


#: The leads the funnel counts as captured: those that reached a funnel stage. Any lifecycle event makes a lead's
#: row (a queueing, a breach, a step to nurture), so one whose capture reporting never saw (dead-lettered, a log
#: cut short) can have a row and no stage; counted captured in attribution, its close rate differed from the
#: funnel's. Every report of the funnel's cohort (its exits, a breakdown, the sources listed) reads these alone.
_CAPTURED = leads.c.furthest >= RANK["captured"]


#: When a step was recorded; a step from before that was kept (reporting 0005) has only its own time.
_RECORDED = sa.func.coalesce(steps.c.recorded_at, steps.c.at)
#: Where a lead out of the funnel is: sales' rejection sends it back to nurture at once, and it counts as
#: rejected there.
_EXIT = sa.case((sa.or_(leads.c.latest_to_stage == "rejected",
                        sa.and_(leads.c.latest_to_stage == "nurture", leads.c.latest_from_stage == "rejected")),
                 sa.literal_column("'rejected'", sa.Text)), else_=leads.c.latest_to_stage)


async def sources(conn: AsyncConnection, f: Filters, limit: int) -> tuple[list[str], bool]:
    """The ``limit`` sources with the most leads captured in the range (whatever source ``f`` picks), most
    first, and whether there are more. utm_source is free text from anonymous posts: a bot can make thousands.
    (One pass over the range's leads, as every report takes; a row past the limit tells there are more.)"""
    cohort = replace(f, source=None)
    source = _labelled(leads.c.utm_source)  # "(none)" picks the leads that gave none as well
    rows = await conn.execute(
        sa.select(source).where(*cohort.where(), _CAPTURED)
        .group_by(source).order_by(sa.func.count().desc(), source).limit(limit + 1))
    found = [r[0] for r in rows]
    return found[:limit], len(found) > limit


async def funnel(conn: AsyncConnection, f: Filters) -> dict[str, Any]:
    out = [sa.func.count().filter(_EXIT == s).label(s) for s in EXITS]
    # Its exits of the leads its stages count: one whose capture reporting never saw is in no stage, nor in an exit.
    row = (await conn.execute(sa.select(*_reached(), *out).where(*f.where(), _CAPTURED))).one()._mapping
    return {"filters": f.describe(), "stages": funnel_stages(row), "exits": {s: row[s] for s in EXITS}}


def _in_code_order(value: Any) -> Any:
    """``value`` sorted by code point, as Python sorts text (``reporting.domain`` orders the rows it is given so):
    the database's collation (en_US in the image) puts "b" before "C", and ties cut at the limit would be other
    rows than those first in the answer."""
    return value.collate("C")


#: The rows a report grouped by free text answers unless asked for more or fewer (``_top``).
ROWS = 1_000


async def _top(conn: AsyncConnection, query: sa.Select[Any], order: Sequence[Any],
               limit: int) -> tuple[list[RowMapping], int]:
    """A grouped query's first ``limit`` rows in ``order``, and how many rows past them were left out. The values
    grouped by are free text from anonymous posts (utm_*, the offer, a bot's form id): a flood can make a row each
    by the million, which would be an answer no reader wants and no process can hold. Postgres groups them all
    and counts the groups (a window over the groups, in the same pass); only the rows asked for are sent."""
    counted = query.add_columns(sa.func.count().over().label("groups")).order_by(*order).limit(limit)
    rows = [r._mapping for r in await conn.execute(counted)]
    return rows, rows[0]["groups"] - len(rows) if rows else 0


async def breakdown(conn: AsyncConnection, f: Filters, dimension: str, limit: int = ROWS) -> dict[str, Any]:
    col = _labelled(leads.c[DIMENSIONS[dimension]])
    # Only leads that reached capture are counted (``_CAPTURED``), so the rows' count is their captured.
    rows, omitted = await _top(conn, sa.select(col.label("value"), *_reached()).where(*f.where(), _CAPTURED)
                               .group_by(col), [sa.func.count().desc(), _in_code_order(col)], limit)
    return {"filters": f.describe(), "dimension": dimension, "rows": [breakdown_row(r["value"], r) for r in rows],
            "omitted": omitted}


async def attribution(conn: AsyncConnection, f: Filters, dimension: str, model: str = "first",
                      limit: int = ROWS) -> dict[str, Any]:
    if model != "first":
        return await _multi_touch(conn, f, dimension, model, limit)
    col = _labelled(leads.c[DIMENSIONS[dimension]])
    won = sa.func.count().filter(leads.c.furthest >= RANK["won"])
    counts, omitted = await _top(
        conn, sa.select(col.label("value"), sa.func.count().label("captured"), won.label("won"))
        .where(*f.where(), _CAPTURED).group_by(col), [won.desc(), sa.func.count().desc(), _in_code_order(col)], limit)
    revenue = await conn.execute(
        sa.select(col.label("value"), leads.c.won_currency.label("currency"),
                  sa.func.sum(leads.c.won_amount).label("revenue"))
        # Won: a correction applied before the win it corrects (sent by another path) holds an amount already.
        .where(*f.where(), leads.c.won_at.is_not(None), leads.c.won_amount.is_not(None))
        .group_by(col, leads.c.won_currency)
    )
    return {"filters": f.describe(), "dimension": dimension, "model": model,
            **attribution_rows(counts, [r._mapping for r in revenue]), "omitted": omitted}


async def _multi_touch(conn: AsyncConnection, f: Filters, dimension: str, model: str,
                       limit: int) -> dict[str, Any]:
    """Last-touch or linear credit, over every touch of the cohort's leads (a lead without touches on record,
    from before they were kept, is its own first touch; one touched since has its capture among them, 0012).

    A year's cohort has millions of touches, far beyond reporting's memory: they are read through a
    server-side cursor and tallied a lead at a time, so only one lead's touches and a row per value are held."""
    column = DIMENSIONS[dimension]
    value = _labelled(sa.func.coalesce(touches.c[column], sa.case((touches.c.lead_id.is_(None), leads.c[column]))))
    query = (sa.select(leads.c.lead_id, leads.c.won_at, leads.c.won_amount, leads.c.won_currency,
                       sa.func.coalesce(touches.c.at, leads.c.captured_at).label("at"), value.label("value"))
             .select_from(leads.outerjoin(touches, touches.c.lead_id == leads.c.lead_id))
             # A lead's rows together, and sums in one order: the same figures every run.
             .where(*f.where(), _CAPTURED).order_by(leads.c.lead_id, touches.c.touch_id))
    tally = AttributionTally(model)
    async with conn.stream(query) as result:
        async for lead in _by_lead(result):
            tally.add(lead)
    rows = tally.rows()
    return {"filters": f.describe(), "dimension": dimension, "model": model, "rows": rows[:limit],
            "won_revenue": won_revenue(rows), "omitted": max(len(rows) - limit, 0)}


async def _by_lead(result: AsyncResult[Any]) -> AsyncIterator[LeadCredit]:
    """Each lead with its touches, from rows ordered by lead; fetched a thousand rows to a round trip."""
    lead_id: Any = None
    points: list[tuple[Any, str]] = []
    won: tuple[Any, Any, Any] = (None, None, None)
    async for part in result.partitions(1000):
        for r in part:
            if r.lead_id != lead_id and points:
                yield LeadCredit(points, *won)
                points = []
            lead_id, won = r.lead_id, (r.won_at, r.won_amount, r.won_currency)
            points.append((r.at, r.value))
    if points:
        yield LeadCredit(points, *won)


def _reached_at(stage: str) -> Any:
    """When a lead first reached ``stage``, as velocity reads it: no earlier than any funnel stage before it.

    A sales tool dates its answer itself, so an acceptance can be dated before the routing it answers (a CRM's
    "at": 2020); an interval between them would be negative. It is read so here, not kept so when the event is
    applied: the stage before may be applied after it (out of order, a merge, a replay), and the first times
    the store keeps are each the same whatever order the events came in, so this is too."""
    own = leads.c[f"{stage}_at"]
    earlier = [leads.c[f"{s}_at"] for s in FUNNEL[:RANK[stage]]]
    # GREATEST skips NULLs (a stage never recorded); the CASE keeps a stage not reached unreached.
    return sa.case((own.is_(None), None), else_=sa.func.greatest(own, *earlier)) if earlier else own


async def velocity(conn: AsyncConnection, f: Filters) -> dict[str, Any]:
    columns = []
    for name, a, b in VELOCITY:
        seconds = sa.extract("epoch", _reached_at(b) - _reached_at(a))
        columns += [
            sa.func.percentile_cont(0.5).within_group(seconds).label(f"{name}_p50"),
            sa.func.percentile_cont(0.9).within_group(seconds).label(f"{name}_p90"),
            sa.func.count(seconds).label(f"{name}_n"),
        ]
    row = (await conn.execute(sa.select(*columns).where(*f.where()))).one()._mapping
    return {"filters": f.describe(), "rows": [
        {"interval": name, "from": a, "to": b, "leads": row[f"{name}_n"],
         "p50_seconds": _seconds(row[f"{name}_p50"]), "p90_seconds": _seconds(row[f"{name}_p90"])}
        for name, a, b in VELOCITY
    ]}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


#: A hand-off's answer: the first acceptance or rejection of its lead recorded since it began (routing's clock
#: on both; the answer's own time may be dated earlier by the sales tool), and before a manager handed the lead
#: on (the answers after are the new holder's). Each hand-off of a recycled lead has its own; one from before
#: 0005 (no start) takes the lead's first answer, as reports did then.
#: (One join of every hand-off with its lead's answers, the first kept per hand-off: looked up one hand-off at
#: a time, the dashboard's SLA table took 1.5 s over 48,000 leads instead of 0.1.) The stages are written out,
#: not bound, so the planner can use the partial index of answers (``steps_answers``) in a cached plan too.
_ANSWERS = sa.or_(steps.c.to_stage == sa.literal_column("'accepted'"),
                 steps.c.to_stage == sa.literal_column("'rejected'"))
_ANSWERED = (sa.select(handoffs, steps.c.at.label("answered_at"))
             .select_from(handoffs.outerjoin(steps, sa.and_(
                 steps.c.lead_id == handoffs.c.lead_id, _ANSWERS,
                 sa.or_(handoffs.c.started_at.is_(None), _RECORDED >= handoffs.c.started_at),
                 sa.or_(handoffs.c.handed_over_at.is_(None), _RECORDED < handoffs.c.handed_over_at))))
             .distinct(handoffs.c.lead_id, handoffs.c.owner_id, handoffs.c.due_at)
             .order_by(handoffs.c.lead_id, handoffs.c.owner_id, handoffs.c.due_at, _RECORDED, steps.c.at))


async def sla(conn: AsyncConnection, f: Filters) -> dict[str, Any]:
    h = _ANSWERED.subquery()
    # Unanswered, the comparisons are NULL: false here, or "open" (neither) would be NULL and never counted.
    unanswered = sa.and_(h.c.breached_at.is_(None), h.c.answered_at.is_(None))
    met = sa.and_(h.c.breached_at.is_(None), sa.func.coalesce(h.c.answered_at <= h.c.due_at, False))
    # Handed over, or its lead merged away, unanswered after its deadline, the hand-off was missed: no breach will
    # come (the lead moved on, or is closed) if routing's watch had yet to record it. A merge ends only a hand-off
    # still the holder's: one handed over before is counted handed over.
    merged_late = sa.and_(h.c.handed_over_at.is_(None), sa.func.coalesce(merges.c.at >= h.c.due_at, False))
    missed = sa.or_(h.c.breached_at.is_not(None), sa.func.coalesce(h.c.answered_at > h.c.due_at, False),
                    sa.and_(unanswered, sa.or_(sa.func.coalesce(h.c.handed_over_at >= h.c.due_at, False),
                                               merged_late)))
    handed_over = sa.and_(unanswered, sa.func.coalesce(h.c.handed_over_at < h.c.due_at, False))
    counts = [sa.func.count().filter(met).label("met"), sa.func.count().filter(missed).label("missed"),
              sa.func.count().filter(sa.not_(sa.or_(met, missed, handed_over))).label("open"),
              sa.func.count().filter(handed_over).label("handed_over")]
    joined = h.join(leads, h.c.lead_id == leads.c.lead_id).outerjoin(merges, merges.c.lead_id == h.c.lead_id)
    # A hand-off is a rep's, whoever the lead turned out to be: merging a lead into another keeps its met, missed
    # or handed-over deadline (or a miss would vanish with a merge); one still open when merged, its deadline yet
    # to come, will never be answered.
    judged = sa.or_(leads.c.merged_into.is_(None), met, missed, handed_over)
    # Per team and per rep in one pass over the hand-offs (grouping sets): each pass joins them with the answers.
    per_team = sa.func.grouping(h.c.owner_id).label("per_team")
    rows = (await conn.execute(
        sa.select(h.c.team, h.c.owner_id, per_team, *counts).select_from(joined)
        .where(*f.where(people=False), judged)
        .group_by(sa.func.grouping_sets(sa.tuple_(h.c.team), sa.tuple_(h.c.team, h.c.owner_id)))
        .order_by(h.c.team, h.c.owner_id))).all()
    teams = [sla_row({"team": r.team}, r.met, r.missed, r.open, r.handed_over) for r in rows if r.per_team]
    reps = [sla_row({"team": r.team, "owner_id": r.owner_id}, r.met, r.missed, r.open, r.handed_over)
            for r in rows if not r.per_team]
    total = {"met": sum(t["met"] for t in teams), "missed": sum(t["missed"] for t in teams)}
    return {"filters": f.describe(), "compliance": rate(total["met"], total["met"] + total["missed"]),
            "teams": teams, "reps": reps}


async def rejections(conn: AsyncConnection, f: Filters, limit: int = ROWS) -> dict[str, Any]:
    """Every rejection of the cohort's leads, by the lead's source and the reason code: each time sales rejected
    a recycled lead, and a lead merged into another since too (the rejection was a rep's answer on that lead,
    under its own first touch); how many rejections, of how many leads."""
    source, reason = _labelled(leads.c.utm_source), _labelled(steps.c.detail["reason_code"].astext)
    rejected = sa.and_(steps.c.lead_id == leads.c.lead_id, steps.c.to_stage == sa.literal_column("'rejected'"))
    rows, omitted = await _top(
        conn, sa.select(source.label("source"), reason.label("reason_code"), sa.func.count().label("rejections"),
                        sa.func.count(sa.distinct(leads.c.lead_id)).label("leads"))
        .select_from(leads.join(steps, rejected)).where(*f.where(people=False)).group_by(source, reason),
        [sa.func.count().desc(), _in_code_order(source), _in_code_order(reason)], limit)
    return {"filters": f.describe(),
            "rows": [{"source": r["source"], "reason_code": r["reason_code"], "rejections": r["rejections"],
                      "leads": r["leads"]} for r in rows],
            "omitted": omitted}


async def spam_report(conn: AsyncConnection, f: Filters, limit: int = ROWS) -> dict[str, Any]:
    """Submissions quarantined in [since, until) (by when they arrived), by form and source: the ``limit`` with
    the most spam, and the totals over every form and source."""
    where = []
    if f.since is not None:
        where.append(spam.c.received_at >= f.since)
    if f.until is not None:
        where.append(spam.c.received_at < f.until)
    if f.source is not None:
        where.append(_is_source(spam.c.utm_source, f.source))
    # Released, it is a lead of its own or, when its person had a lead open, a touch of that lead.
    released = sa.or_(sa.exists().where(leads.c.lead_id == spam.c.lead_id, leads.c.captured_at.is_not(None)),
                      sa.exists().where(touches.c.touch_id == spam.c.lead_id))
    form_id, source = _labelled(spam.c.form_id).label("form_id"), _labelled(spam.c.utm_source).label("utm_source")
    quarantined, freed = sa.func.count(), sa.func.count().filter(released)
    rows, omitted = await _top(
        conn, sa.select(form_id, source, quarantined.label("quarantined"), freed.label("released"),
                        # The totals over the groups left out too, in the same pass.
                        sa.func.sum(quarantined).over().label("all_quarantined"),
                        sa.func.sum(freed).over().label("all_released"))
        .where(*where).group_by(form_id, source),
        [(quarantined - freed).desc(), _in_code_order(form_id), _in_code_order(source)], limit)
    totals = ((int(rows[0]["all_quarantined"]), int(rows[0]["all_released"])) if rows else (0, 0))
    return {"filters": f.describe(), **spam_rows(rows, totals), "omitted": omitted}


async def timeline(conn: AsyncConnection, lead_id: uuid.UUID) -> dict[str, Any] | None:
    later = ["queued", "assigned", "handed_over", "touched", "reengaged", "sla_breached", "won_amount_corrected",
             "merged"]
    order = sa.func.array_position(sa.literal(list(LIFECYCLE) + later), steps.c.to_stage)
    rows = in_order_moved([r._mapping for r in (await conn.execute(
        sa.select(steps).where(steps.c.lead_id == lead_id).order_by(steps.c.at, order))).all()])
    if not rows:
        return None
    lead = (await conn.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()
    return timeline_answer(lead_id, {k: lead._mapping[v] for k, v in DIMENSIONS.items()} if lead else {}, rows)

