"""routing's tables: its inbox, one assignment per lead, the rotation state per team,
each routed lead's hand-off (status, SLA deadline, dispositions, waiting in a
team's queue), reps' out-of-office periods and its outbox.

The rotation row of a team is locked (``FOR UPDATE``) for the whole batch
transaction, so two routing processes never hand out the same turn: the
second waits for the first to commit and then reads the advanced state.
Teams are locked in name order so two batches can never deadlock.

A hand-off row is locked while a disposition or a breach changes it, so two
calls about one lead apply one after the other. A unit of work locks every
hand-off it will wait for at once, in one statement, in lead id order
(``lock_handoffs``): two units locking the same rows in different orders (a batch
in log order, a merge in id order) could each hold a row the other waits
for, a deadlock Postgres ends by failing one (a batch retried, a merge's
503). Due hand-offs are claimed with ``SKIP LOCKED``: with several routing
processes each deadline fires in exactly one of them, once; so are leads
waiting in a queue (such a claim never waits, so its order does not
matter). Lock order is always hand-offs, then rotation.

Capacity: held leads are counted after the rotation rows of every team that
may take the batch's leads are locked, so two routing processes cannot both
give a rep their last free slot (an account owner's team is locked too).

``RoutingStore`` is every read and write routing makes, on one unit of
work's session.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common import topics
from leadpipe_common.db import among, compiled_once, erased_leads_table, inbox_table, insert_rows
from leadpipe_common.events import DispositionReport, LeadRouted
from leadpipe_common.outbox import outbox_table, unsent_of_leads

from routing.domain import CLOSED, Away, Handoff, Presence, Queued, Tally

SCHEMA = "routing"
metadata = sa.MetaData(schema=SCHEMA)
# Digests: sales tools write leads.feedback, and may give one ce_id to two reports.
inbox = inbox_table(metadata, digests=True)
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("owner_id", sa.Text, nullable=False),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("routed_at", sa.DateTime(timezone=True), nullable=False),
)
rotation = sa.Table(
    "rotation",
    metadata,
    sa.Column("team", sa.Text, primary_key=True),
    sa.Column("state", JSONB, nullable=False),
    sa.Column("turns", sa.BigInteger, nullable=False, server_default="0"),
)
handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("owner_id", sa.Text, nullable=False),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("grade", sa.Text),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("reassignments", sa.Integer, nullable=False, server_default="0"),
    sa.Column("holders", JSONB, nullable=False, server_default="[]"),
    sa.Column("history", JSONB, nullable=False, server_default="[]"),
    # The routed lead as sales got it: a reassignment re-sends it with a new owner.
    sa.Column("lead", sa.JSON, nullable=False),
    # The trace of the routing step: breaches and dispositions continue it.
    sa.Column("traceparent", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Sales merged this lead into another (the survivor): closed, counted once.
    sa.Column("merged_into", UUID(as_uuid=True)),
    # Nobody could take it when it was routed: it waits in its team's queue (the queue watch hands it out).
    sa.Column("waiting_since", sa.DateTime(timezone=True)),
    # Recycled after sales rejected it this many times: the current hand-off's events have ids of their own.
    sa.Column("cycle", sa.Integer, nullable=False, server_default="0"),
    # The number of its hand-off to the holder now, among the lead's: its lead.routed records carry it.
    sa.Column("seq", sa.Integer, nullable=False, server_default="1"),
    # When the lead was first routed (recycles since keep it): no report on it is dated earlier. NULL: not known.
    sa.Column("first_routed_at", sa.DateTime(timezone=True)),
    # The SLA watch's work: routed leads with a clock, by when it runs out.
    sa.Index("handoffs_due", "due_at", postgresql_where=sa.text("status = 'routed' AND due_at IS NOT NULL")),
    # The queue watch's: each team's waiting leads, oldest first.
    sa.Index("handoffs_waiting", "team", "waiting_since",
             postgresql_where=sa.text("waiting_since IS NOT NULL AND status = 'routed'")),
    # Capacity counts only the unaccepted leads of each holder.
    sa.Index("handoffs_held", "owner_id", postgresql_where=sa.text("status = 'routed'")),
    # What waits in each team's queue (``queue_tallies``, every round of the queue watch, and a manager's list of a
    # team's queue): those leads alone, however many hand-offs routing keeps. Its condition is ``_IN_A_QUEUE``.
    sa.Index("handoffs_queued", "team", "waiting_since", "grade",
             postgresql_where=sa.text("status = 'routed' AND owner_id = 'queue:' || team")),
)
away = sa.Table(
    "away",
    metadata,
    sa.Column("rep_id", sa.Text, primary_key=True),
    sa.Column("starts_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("set_by", sa.Text, nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
outbox = outbox_table(metadata)
erased_leads = erased_leads_table(metadata)

_INSERT_ROTATION = insert(rotation).on_conflict_do_nothing()


@dataclass
class Turns:
    """The teams' rotation states as locked for one unit of work, and the turns taken from them since."""

    states: dict[str, dict[str, int]]
    taken: dict[str, int] = field(default_factory=dict)

    def take(self, team: str, state: dict[str, int] | None) -> None:
        """``team``'s rotation turned to ``state`` (None: it did not turn)."""
        if state is not None:
            self.states[team] = state
            self.taken[team] = self.taken.get(team, 0) + 1

    @property
    def changed(self) -> dict[str, dict[str, int]]:
        return {team: self.states[team] for team in self.taken}


@dataclass(frozen=True)
class Held:
    """A stored hand-off, the routed lead as sales got it, and the trace its events continue."""

    handoff: Handoff
    lead: LeadRouted
    traceparent: str | None


def _handoff_values(h: Handoff) -> dict[str, Any]:
    return {"status": h.status, "owner_id": h.owner_id, "team": h.team, "grade": h.grade, "due_at": h.due_at,
            "reassignments": h.reassignments, "holders": list(h.holders),
            "history": [d.model_dump(mode="json") for d in h.history], "merged_into": h.merged_into,
            "waiting_since": h.waiting_since, "cycle": h.cycle, "seq": h.seq, "first_routed_at": h.first_routed_at}


def _held(row: Any) -> Held:
    h = Handoff(lead_id=row.lead_id, status=row.status, owner_id=row.owner_id, team=row.team, grade=row.grade,
                due_at=row.due_at, reassignments=row.reassignments, holders=tuple(row.holders),
                history=tuple(DispositionReport.model_validate(d) for d in row.history), merged_into=row.merged_into,
                waiting_since=row.waiting_since, cycle=row.cycle, seq=row.seq, first_routed_at=row.first_routed_at)
    return Held(h, LeadRouted.model_validate(row.lead), row.traceparent)


_AWAY_ROWS = insert(away)
_SET_AWAY = _AWAY_ROWS.on_conflict_do_update(
    index_elements=[away.c.rep_id, away.c.starts_at],
    set_={"ends_at": _AWAY_ROWS.excluded.ends_at, "reason": _AWAY_ROWS.excluded.reason,
          "set_by": _AWAY_ROWS.excluded.set_by, "set_at": sa.func.now()})
#: A batch's erasures noted, in one statement; a lead erased already keeps its first time.
_NOTE_ERASED = sa.text(f"""
INSERT INTO {SCHEMA}.erased_leads (lead_id, erased_at)
SELECT * FROM unnest(CAST(:leads AS uuid[]), CAST(:at AS timestamptz[]))
ON CONFLICT (lead_id) DO NOTHING
""")
_ERASED = sa.select(erased_leads.c.lead_id).where(among(erased_leads.c.lead_id, "ids"))
#: The unsent reassignments' (SLA, queue, hand-over) lead.routed of erased leads: they hold the whole lead.
_UNSENT = unsent_of_leads(outbox, topics.ROUTED)
_ASSIGNED = sa.select(assignments.c.lead_id).where(among(assignments.c.lead_id, "ids"))
_ROTATIONS = (sa.select(rotation.c.team, rotation.c.state).where(among(rotation.c.team, "teams"))
              .order_by(rotation.c.team).with_for_update())
_HANDOFFS = (sa.select(handoffs).where(among(handoffs.c.lead_id, "ids"))
             .order_by(handoffs.c.lead_id).with_for_update())  # locked as sorted: FOR UPDATE locks after ORDER BY
_MERGED_INTO = sa.select(handoffs.c.lead_id, handoffs.c.merged_into).where(
    among(handoffs.c.lead_id, "ids"), handoffs.c.merged_into.is_not(None))
_AWAY = (sa.select(away.c.rep_id, away.c.starts_at, away.c.ends_at, away.c.reason)
         .where(among(away.c.rep_id, "reps"), away.c.ends_at > sa.bindparam("now", type_=away.c.ends_at.type))
         .order_by(away.c.rep_id, away.c.starts_at))  # each rep's periods in time order, however they were stored
_TURNED = sa.func.unnest(
    sa.bindparam("teams", type_=ARRAY(sa.Text)), sa.bindparam("states", type_=ARRAY(sa.Text)),
    sa.bindparam("turns", type_=ARRAY(sa.BigInteger)),
).table_valued(sa.column("team", sa.Text), sa.column("state", sa.Text), sa.column("turns", sa.BigInteger)
               ).render_derived(name="u")
_SAVE_ROTATIONS = (rotation.update().where(rotation.c.team == _TURNED.c.team)
                   .values(state=sa.cast(_TURNED.c.state, JSONB), turns=rotation.c.turns + _TURNED.c.turns))


def _travels_as(column: sa.Column[Any]) -> Any:
    return sa.Text() if isinstance(column.type, sa.JSON) else column.type


def _bulk_update(table: sa.Table, key: str, columns: Sequence[str]) -> sa.Update:
    """One UPDATE writing ``columns`` over the rows of ``table`` whose ``key`` the arrays of ``_bulk_parameters``
    name, however many rows: ``UPDATE .. FROM unnest(arrays)``, one array a column (JSON travels as text).
    Parameters are named "new_<column>": one named as a column of the table would be taken as a value to SET."""
    given = sa.func.unnest(*(sa.bindparam(f"new_{c}", type_=ARRAY(_travels_as(table.c[c]))) for c in (key, *columns))
                           ).table_valued(*(sa.column(c, _travels_as(table.c[c])) for c in (key, *columns))
                                          ).render_derived(name="u")
    return (table.update().where(table.c[key] == given.c[key])
            .values({c: sa.cast(given.c[c], table.c[c].type) if isinstance(table.c[c].type, sa.JSON) else given.c[c]
                     for c in columns}))


def _bulk_parameters(table: sa.Table, key: str, columns: Sequence[str],
                     rows: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """``rows`` as the arrays of ``_bulk_update(table, key, columns)``: the last row given of each key (one statement
    updates a row at most once), sorted by key, the order every path locks rows in."""
    last = {row[key]: row for row in rows}
    keys = sorted(last)
    return {f"new_{c}": [to_json(last[k][c], by_alias=False).decode() if isinstance(table.c[c].type, sa.JSON)
                         else last[k][c] for k in keys]
            for c in (key, *columns)}


#: A hand-off's own columns, as ``_handoff_values`` gives them; with the lead, what ``update_handoffs`` writes.
_HANDOFF = ("status", "owner_id", "team", "grade", "due_at", "reassignments", "holders", "history", "merged_into",
            "waiting_since", "cycle", "seq", "first_routed_at")
_STORED = (*_HANDOFF, "lead")
_UPDATE_HANDOFFS = _bulk_update(handoffs, "lead_id", _STORED).values(updated_at=sa.func.now())
_UPDATE_HANDOFFS_ONLY = _bulk_update(handoffs, "lead_id", _HANDOFF).values(updated_at=sa.func.now())
#: What a recycled lead's new assignment writes over the one sales rejected: every column.
_ASSIGNMENT = tuple(c.name for c in assignments.c if c.name != "lead_id")
_REASSIGN = _bulk_update(assignments, "lead_id", _ASSIGNMENT)
_HELD = (sa.select(handoffs.c.owner_id, sa.func.count())
         .where(handoffs.c.status == "routed", among(handoffs.c.owner_id, "reps")).group_by(handoffs.c.owner_id))
#: The same, each rep's count stopping at ``:cap``: an index scan of at most that many entries a rep, where the
#: full count read every unaccepted lead the reps hold, a cost that grew with the table (at 4,500 held, 1.3 ms
#: a routing batch: 52 us a lead of Postgres at 100 leads/s, and more the longer leads stay unaccepted).
_REPS = sa.func.unnest(sa.bindparam("reps", type_=ARRAY(sa.Text))).table_valued("rep_id").render_derived(name="r")
_HELD_BY_REP = (sa.select(sa.literal_column("1"))
                .where(handoffs.c.status == "routed", handoffs.c.owner_id == _REPS.c.rep_id)
                .limit(sa.bindparam("cap", type_=sa.Integer)).lateral("held"))
_HELD_UP_TO = (sa.select(_REPS.c.rep_id, sa.func.count()).select_from(_REPS.join(_HELD_BY_REP, sa.true()))
               .group_by(_REPS.c.rep_id))
#: A lead in its team's queue (``routing.domain.queues``). Written with constants, as the condition of the index
#: ``handoffs_queued`` is, so that Postgres sees that this implies it in any plan (parameters in their place
#: prove nothing in a plan made for any value).
_IN_A_QUEUE = sa.and_(handoffs.c.status == sa.literal_column("'routed'"),
                      handoffs.c.owner_id == sa.literal_column("'queue:'", sa.Text) + handoffs.c.team)
_TALLIES = (sa.select(handoffs.c.team, handoffs.c.grade,
                      sa.func.count().filter(handoffs.c.waiting_since.is_not(None)).label("waiting"),
                      sa.func.count().filter(handoffs.c.waiting_since.is_(None)).label("escalated"),
                      sa.func.min(handoffs.c.waiting_since).label("oldest_waiting"))
            .where(_IN_A_QUEUE).group_by(handoffs.c.team, handoffs.c.grade))
#: Since when a lead is in its queue: since its wait began, else since routing last sent it (to this queue, escalated),
#: as its stored lead.routed says.
_QUEUED_SINCE = sa.func.coalesce(handoffs.c.waiting_since,
                                 sa.cast(handoffs.c.lead["routed_at"].as_string(), sa.DateTime(timezone=True)))
_QUEUED = (sa.select(handoffs.c.lead_id, handoffs.c.grade, handoffs.c.waiting_since, handoffs.c.reassignments,
                     handoffs.c.seq, _QUEUED_SINCE.label("since"))
           .where(_IN_A_QUEUE, handoffs.c.team == sa.bindparam("team", type_=sa.Text))
           .order_by(_QUEUED_SINCE, handoffs.c.lead_id)
           .limit(sa.bindparam("limit", type_=sa.Integer)))


class RoutingStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def erase(self, erased: Mapping[uuid.UUID, datetime]) -> None:
        """The leads noted as erased, held or not (no later score of theirs is routed again), and their unsent
        outbox messages deleted."""
        ids = sorted(erased)
        await self._session.execute(_NOTE_ERASED, {"leads": ids, "at": [erased[i] for i in ids]})
        await self._session.execute(_UNSENT, {"keys": [str(i) for i in ids]})

    async def erased(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of the leads were erased, in one statement."""
        ids = sorted(set(lead_ids))
        if not ids:
            return set()
        return set((await self._session.execute(_ERASED, {"ids": ids})).scalars())

    async def already_assigned(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        ids = list(lead_ids)
        if not ids:
            return set()
        rows = await self._session.execute(_ASSIGNED, {"ids": ids})
        return {r.lead_id for r in rows}

    async def lock_rotations(self, teams: Iterable[str]) -> dict[str, dict[str, int]]:
        """The rotation states of ``teams``, locked until the unit of work ends; a team without one gets an
        empty one. Every row is created first (DO NOTHING takes no lock), then all are locked in one statement
        in name order, so two processes never hold one each and wait for the other's. (Locking the known rows
        first and creating the rest after would save a round trip a batch, but a team created meanwhile by a
        third process would then be locked out of order.)"""
        names = sorted(set(teams))
        if not names:
            return {}
        await self._session.execute(compiled_once(lambda: _INSERT_ROTATION, rotation),
                                    [{"team": t, "state": {}} for t in names])
        rows = await self._session.execute(_ROTATIONS, {"teams": names})
        return {r.team: dict(r.state) for r in rows}

    async def save_rotations(self, states: dict[str, dict[str, int]], turns: dict[str, int]) -> None:
        """Store the teams' new ``states`` and add their ``turns``: one statement, however many teams turned."""
        if not states:
            return
        teams = sorted(states)
        await self._session.execute(_SAVE_ROTATIONS, {
            "teams": teams, "states": [json.dumps(states[t]) for t in teams],
            "turns": [turns.get(t, 0) for t in teams]})

    async def save_assignments(self, rows: Sequence[dict[str, Any]]) -> None:
        # A lead is never assigned twice (``already_assigned``, one partition per lead): no ON CONFLICT.
        await insert_rows(self._session, assignments, rows)

    async def reassign(self, rows: Sequence[dict[str, Any]]) -> None:
        """Recycled leads' new assignments (every column) replace those sales rejected, in one statement whatever
        their number; a lead given twice is written once, as last given."""
        if rows:
            await self._session.execute(_REASSIGN, _bulk_parameters(assignments, "lead_id", _ASSIGNMENT, rows))

    async def add_handoffs(self, held: Sequence[Held]) -> None:
        await insert_rows(self._session, handoffs, [
            {"lead_id": h.handoff.lead_id, **_handoff_values(h.handoff), "lead": h.lead,
             "traceparent": h.traceparent} for h in held])

    async def handoff(self, lead_id: uuid.UUID, *, lock: bool = True) -> Held | None:
        query = sa.select(handoffs).where(handoffs.c.lead_id == lead_id)
        row = (await self._session.execute(query.with_for_update() if lock else query)).first()
        return _held(row) if row else None

    async def lock_handoffs(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Held]:
        """The hand-offs of those of ``lead_ids`` routing holds, locked until the unit of work ends, in lead id
        order whatever the order asked in (see the module)."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        return {r.lead_id: _held(r) for r in await self._session.execute(_HANDOFFS, {"ids": ids})}

    async def merged_into(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """Of ``lead_ids``, those sales merged away, each with the lead it was merged into; unlocked: a merged lead's
        row never changes again."""
        ids = sorted(set(lead_ids))
        if not ids:
            return {}
        return dict((await self._session.execute(_MERGED_INTO, {"ids": ids})).tuples().all())

    async def lock_held(self, owner_id: str, limit: int, *, after: uuid.UUID | None = None) -> list[Held]:
        """Up to ``limit`` open hand-offs (not won, lost, rejected or merged) ``owner_id`` holds, the first by lead
        id (those after ``after``), locked in that order in one statement (see the module). No index serves a
        holder's accepted leads: it reads every open hand-off, for a manager's hand-over, not for every round."""
        rows = await self._session.execute(
            sa.select(handoffs)
            .where(handoffs.c.owner_id == owner_id, handoffs.c.status.not_in(sorted(CLOSED)),
                   handoffs.c.lead_id > after if after is not None else sa.true())
            .order_by(handoffs.c.lead_id)
            .limit(limit)
            .with_for_update()
        )
        return [_held(r) for r in rows]

    async def ever_held(self, rep_id: str) -> bool:
        """Whether a hand-off names ``rep_id`` as its holder, now (open or closed) or before."""
        rows = await self._session.execute(
            sa.select(sa.literal(1))
            .where(sa.or_(handoffs.c.owner_id == rep_id, handoffs.c.holders.contains([rep_id])))
            .limit(1))
        return rows.first() is not None

    async def claim_due(self, limit: int, now: datetime) -> list[Held]:
        """Hand-offs whose acceptance deadline passed by ``now``, locked; those another process holds are skipped."""
        rows = await self._session.execute(
            sa.select(handoffs)
            .where(handoffs.c.status == "routed", handoffs.c.due_at.is_not(None), handoffs.c.due_at <= now)
            .order_by(handoffs.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_held(r) for r in rows]

    async def presence(self, rep_ids: Iterable[str], now: datetime, *, up_to: int | None = None) -> Presence:
        """Out-of-office periods not yet over, and unaccepted leads held, of ``rep_ids``: every held lead, or, with
        ``up_to``, each rep's only as far as that (``capacity_bound``: all a capacity check needs; 0 counts none)."""
        ids = sorted(set(rep_ids))
        if not ids:
            return Presence()
        periods: dict[str, list[Away]] = {}
        for r in await self._session.execute(_AWAY, {"reps": ids, "now": now}):
            periods.setdefault(r.rep_id, []).append(Away(r.starts_at, r.ends_at, r.reason))
        if up_to is None:
            held = await self._session.execute(_HELD, {"reps": ids})
        elif up_to > 0:
            held = await self._session.execute(_HELD_UP_TO, {"reps": ids, "cap": up_to})
        else:
            return Presence(periods, {})
        return Presence(periods, {owner: n for owner, n in held.tuples()})

    async def queue_tallies(self, team: str | None = None) -> list[Tally]:
        """The leads in each team's queue (in ``team``'s alone, if given), by grade: how many wait, how many were
        escalated there, and when the longest wait began. Read off the index of those leads alone
        (``handoffs_queued``): the queue watch asks every round."""
        rows = await self._session.execute(_TALLIES if team is None else _TALLIES.where(handoffs.c.team == team))
        return [Tally(r.team, r.grade, r.waiting, r.escalated, r.oldest_waiting) for r in rows]

    async def queued(self, team: str, limit: int, *, after: tuple[datetime, uuid.UUID] | None = None) -> list[Queued]:
        """Up to ``limit`` leads in ``team``'s queue, oldest first (``Queued.position``), those after ``after`` (the
        position of the last of the page before); unlocked. Each page sorts the team's whole queue, as no index
        holds when an escalated lead came (its stored lead does): for a manager's look, not for every round."""
        query = _QUEUED
        if after is not None:
            query = query.where(sa.tuple_(_QUEUED_SINCE, handoffs.c.lead_id) > sa.tuple_(
                sa.literal(after[0], handoffs.c.waiting_since.type), sa.literal(after[1], handoffs.c.lead_id.type)))
        rows = await self._session.execute(query, {"team": team, "limit": limit})
        return [Queued(lead_id=r.lead_id, grade=r.grade, kind="escalated" if r.waiting_since is None else "waiting",
                       since=r.since, reassignments=r.reassignments, seq=r.seq) for r in rows]

    async def open_outside(self, teams: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """Teams other than ``teams`` that hand-offs not yet closed name: each with its number of such leads, of
        those in its queue, and of those escalated there (in its queue with no waiting mark). Reads every open
        hand-off (no index serves a team left out): for a check when the routing files change, not for every
        round."""
        queued = handoffs.c.owner_id == sa.literal("queue:") + handoffs.c.team
        rows = await self._session.execute(
            sa.select(handoffs.c.team, sa.func.count(), sa.func.count().filter(queued),
                      sa.func.count().filter(queued & handoffs.c.waiting_since.is_(None)))
            .where(handoffs.c.status.not_in(sorted(CLOSED)), sa.not_(among(handoffs.c.team, "teams")))
            .group_by(handoffs.c.team), {"teams": sorted(set(teams))})
        return {team: (n, in_queue, escalated) for team, n, in_queue, escalated in rows.tuples()}

    async def claim_queued(self, teams: Iterable[str], limit: int, *, escalated_in: Iterable[str] = ()) -> list[Held]:
        """Unaccepted leads in ``teams``' queues, waiting or escalated, and those escalated (no waiting mark) in
        ``escalated_in``'s, by lead id, locked; those another process holds are skipped. (By owner: the index of
        held leads serves it.)"""
        rows = await self._session.execute(
            sa.select(handoffs)
            .where(handoffs.c.status == "routed", sa.or_(
                among(handoffs.c.owner_id, "queues"),
                sa.and_(among(handoffs.c.owner_id, "escalated"), handoffs.c.waiting_since.is_(None))))
            .order_by(handoffs.c.lead_id).limit(limit).with_for_update(skip_locked=True),
            {"queues": [f"queue:{team}" for team in sorted(set(teams))],
             "escalated": [f"queue:{team}" for team in sorted(set(escalated_in))]})
        return [_held(r) for r in rows]

    async def claim_waiting(self, teams: Iterable[str], limit: int,
                            after: tuple[datetime, uuid.UUID] | None = None) -> list[Held]:
        """Leads waiting in ``teams``' queues, longest first (then by lead id: a batch queues many at one moment),
        locked; those another process holds are skipped. ``after``: only those after this (waiting since, lead
        id), the last of a page claimed before."""
        query = (sa.select(handoffs)
                 .where(handoffs.c.waiting_since.is_not(None), handoffs.c.status == "routed",
                        handoffs.c.team.in_(sorted(set(teams))))
                 .order_by(handoffs.c.waiting_since, handoffs.c.lead_id)
                 .limit(limit)
                 .with_for_update(skip_locked=True))
        if after is not None:
            query = query.where(sa.tuple_(handoffs.c.waiting_since, handoffs.c.lead_id) > sa.tuple_(
                sa.literal(after[0], handoffs.c.waiting_since.type), sa.literal(after[1], handoffs.c.lead_id.type)))
        return [_held(r) for r in await self._session.execute(query)]

    async def away_of(self, rep_id: str, now: datetime) -> list[Away]:
        rows = await self._session.execute(
            sa.select(away.c.starts_at, away.c.ends_at, away.c.reason)
            .where(away.c.rep_id == rep_id, away.c.ends_at > now).order_by(away.c.starts_at))
        return [Away(r.starts_at, r.ends_at, r.reason) for r in rows]

    async def set_away(self, rep_id: str, periods: Sequence[Away], by: str, now: datetime) -> None:
        """Replace the rep's periods not yet over with ``periods`` (past ones stay, as a record, unless a new
        period starts when one of them did: it takes that one's place). Two updates at once: the last wins."""
        await self._session.execute(away.delete().where(away.c.rep_id == rep_id, away.c.ends_at > now))
        if periods:
            await self._session.execute(_SET_AWAY, [
                {"rep_id": rep_id, "starts_at": p.starts_at, "ends_at": p.ends_at, "reason": p.reason, "set_by": by}
                for p in periods])

    async def update_handoffs(self, held: Sequence[Held]) -> None:
        """Store each of ``held``'s hand-off and lead (not its trace) over its row, in one statement whatever their
        number (a batch's touches told to their holders took one UPDATE each, in the batch's transaction, the rows
        locked). A lead given twice is written once, as last given: one statement updates a row at most once."""
        if held:
            await self._session.execute(_UPDATE_HANDOFFS, _bulk_parameters(handoffs, "lead_id", _STORED, (
                {"lead_id": h.handoff.lead_id, **_handoff_values(h.handoff), "lead": h.lead} for h in held)))

    async def update_handoffs_only(self, changed: Sequence[Handoff]) -> None:
        """Store each of ``changed`` over its row, its lead and trace left as stored, in one statement whatever their
        number (a batch of reports took one UPDATE each). A lead given twice is written once, as last given."""
        if changed:
            await self._session.execute(_UPDATE_HANDOFFS_ONLY, _bulk_parameters(handoffs, "lead_id", _HANDOFF, (
                {"lead_id": h.lead_id, **_handoff_values(h)} for h in changed)))

    async def update_handoff(self, h: Handoff) -> None:
        """``update_handoffs_only`` of one: a statement of its own wrote the same columns, a second shape to keep
        in step with the hand-off's columns."""
        await self.update_handoffs_only([h])
