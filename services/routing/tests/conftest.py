"""routing's store in memory, for handler tests: the ``uow`` fixture is a ``MemoryUnitOfWork`` over it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from leadpipe_common.uow import MemoryUnitOfWork
from routing.domain import Away, Handoff, Presence, Queued, Tally
from routing.store import Held


class MemoryRoutingStore:
    def __init__(self) -> None:
        self.assignments: dict[uuid.UUID, dict[str, Any]] = {}
        self.rotations: dict[str, dict[str, int]] = {}
        self.turns: dict[str, int] = {}
        self.handoffs: dict[uuid.UUID, Held] = {}
        self.away: dict[str, list[Away]] = {}
        #: Every row lock asked for, in order: a hand-off's lead id, a rotation's team.
        self.locks: list[uuid.UUID | str] = []
        #: Every statement writing over stored hand-offs, in order: the leads it wrote.
        self.updates: list[list[uuid.UUID]] = []
        #: Of those, every one writing the stored leads back too (``update_handoffs``), in order: the leads it wrote.
        #: Recorded apart: a lead written back unchanged looks the same here, but not to a process on another version.
        self.leads_written: list[list[uuid.UUID]] = []
        #: Every statement writing over stored assignments (recycled leads'), in order: the leads it wrote.
        self.reassigned: list[list[uuid.UUID]] = []
        #: The leads erased, held or not, and when.
        self.erased_leads: dict[uuid.UUID, datetime] = {}

    async def erase(self, erased: dict[uuid.UUID, datetime]) -> None:
        for lead_id, at in erased.items():
            self.erased_leads.setdefault(lead_id, at)

    async def erased(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return set(lead_ids) & self.erased_leads.keys()

    async def already_assigned(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return {i for i in lead_ids if i in self.assignments}

    async def lock_rotations(self, teams: Iterable[str]) -> dict[str, dict[str, int]]:
        self.locks += sorted(set(teams))
        return {t: dict(self.rotations.get(t, {})) for t in sorted(set(teams))}

    async def save_rotations(self, states: dict[str, dict[str, int]], turns: dict[str, int]) -> None:
        for team, state in states.items():
            self.rotations[team] = dict(state)
            self.turns[team] = self.turns.get(team, 0) + turns.get(team, 0)

    async def save_assignments(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            assert row["lead_id"] not in self.assignments, "a lead assigned twice"
            self.assignments[row["lead_id"]] = dict(row)

    async def reassign(self, rows: Sequence[dict[str, Any]]) -> None:
        last = {row["lead_id"]: row for row in rows}
        for lead_id, row in last.items():
            assert lead_id in self.assignments
            self.assignments[lead_id] = dict(row)
        if last:
            self.reassigned.append(sorted(last))

    async def add_handoffs(self, held: Sequence[Held]) -> None:
        self.handoffs.update({h.handoff.lead_id: h for h in held})

    async def handoff(self, lead_id: uuid.UUID, *, lock: bool = True) -> Held | None:
        if lock and lead_id in self.handoffs:
            self.locks.append(lead_id)
        return self.handoffs.get(lead_id)

    async def lock_handoffs(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Held]:
        found = {i: self.handoffs[i] for i in sorted(set(lead_ids)) if i in self.handoffs}
        self.locks += list(found)
        return found

    async def merged_into(self, lead_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        found = {i: self.handoffs[i].handoff.merged_into for i in set(lead_ids) if i in self.handoffs}
        return {i: into for i, into in found.items() if into is not None}

    async def lock_held(self, owner_id: str, limit: int, *, after: uuid.UUID | None = None) -> list[Held]:
        held = sorted((h for h in self.handoffs.values() if h.handoff.owner_id == owner_id and not h.handoff.closed
                       and (after is None or h.handoff.lead_id > after)), key=lambda h: h.handoff.lead_id)[:limit]
        self.locks += [h.handoff.lead_id for h in held]
        return held

    async def ever_held(self, rep_id: str) -> bool:
        return any(h.handoff.owner_id == rep_id or rep_id in h.handoff.holders for h in self.handoffs.values())

    async def claim_due(self, limit: int, now: datetime) -> list[Held]:
        due = [h for h in self.handoffs.values()
               if h.handoff.status == "routed" and h.handoff.due_at is not None and h.handoff.due_at <= now]
        return sorted(due, key=lambda h: h.handoff.due_at)[:limit]  # type: ignore[arg-type, return-value]

    async def presence(self, rep_ids: Iterable[str], now: datetime, *, up_to: int | None = None) -> Presence:
        ids = set(rep_ids)
        held: dict[str, int] = {}
        for h in self.handoffs.values():
            if h.handoff.status == "routed" and h.handoff.owner_id in ids:
                held[h.handoff.owner_id] = held.get(h.handoff.owner_id, 0) + 1
        if up_to is not None:
            held = {rep: min(n, up_to) for rep, n in held.items() if up_to > 0}
        return Presence({r: [a for a in ps if a.ends_at > now] for r, ps in self.away.items() if r in ids}, held)

    def _in_queues(self, team: str | None = None) -> list[Held]:
        return [h for h in self.handoffs.values() if h.handoff.status == "routed"
                and h.handoff.owner_id == f"queue:{h.handoff.team}" and team in (None, h.handoff.team)]

    async def queue_tallies(self, team: str | None = None) -> list[Tally]:
        found: dict[tuple[str, str | None], list[Handoff]] = {}
        for h in (held.handoff for held in self._in_queues(team)):
            found.setdefault((h.team, h.grade), []).append(h)
        return [Tally(team, grade, sum(h.waiting_since is not None for h in hs), sum(h.waiting_since is None for h in hs),  # type: ignore[arg-type]
                      min((h.waiting_since for h in hs if h.waiting_since is not None), default=None))
                for (team, grade), hs in found.items()]

    async def queued(self, team: str, limit: int, *, after: tuple[datetime, uuid.UUID] | None = None) -> list[Queued]:
        found = [Queued(lead_id=h.handoff.lead_id, grade=h.handoff.grade,
                        kind="escalated" if h.handoff.waiting_since is None else "waiting",
                        since=h.handoff.waiting_since or h.lead.routed_at, reassignments=h.handoff.reassignments,
                        seq=h.handoff.seq) for h in self._in_queues(team)]
        return sorted((q for q in found if after is None or q.position > after), key=lambda q: q.position)[:limit]

    async def claim_waiting(self, teams: Iterable[str], limit: int,
                            after: tuple[datetime, uuid.UUID] | None = None) -> list[Held]:
        wanted = set(teams)
        waiting = sorted((h for h in self.handoffs.values() if h.handoff.status == "routed"
                          and h.handoff.waiting_since is not None and h.handoff.team in wanted),
                         key=lambda h: (h.handoff.waiting_since, h.handoff.lead_id))
        return [h for h in waiting if after is None or (h.handoff.waiting_since, h.handoff.lead_id) > after][:limit]

    async def open_outside(self, teams: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        known, found = set(teams), {}
        for h in (held.handoff for held in self.handoffs.values()):
            if not h.closed and h.team not in known:
                n, queued, escalated = found.get(h.team, (0, 0, 0))
                in_queue = h.owner_id == f"queue:{h.team}"
                found[h.team] = (n + 1, queued + in_queue, escalated + (in_queue and h.waiting_since is None))
        return found

    async def claim_queued(self, teams: Iterable[str], limit: int, *, escalated_in: Iterable[str] = ()) -> list[Held]:
        queues, escalated = {f"queue:{team}" for team in teams}, {f"queue:{team}" for team in escalated_in}
        return sorted((h for h in self.handoffs.values() if h.handoff.status == "routed" and (
                           h.handoff.owner_id in queues
                           or (h.handoff.owner_id in escalated and h.handoff.waiting_since is None))),
                      key=lambda h: h.handoff.lead_id)[:limit]

    async def set_away(self, rep_id: str, periods: Sequence[Away], by: str, now: datetime) -> None:
        self.away[rep_id] = [a for a in self.away.get(rep_id, []) if a.ends_at <= now] + list(periods)

    async def update_handoff(self, h: Handoff) -> None:
        await self.update_handoffs_only([h])

    async def update_handoffs_only(self, changed: Sequence[Handoff]) -> None:
        last = {h.lead_id: h for h in changed}
        for lead_id, h in last.items():
            self.handoffs[lead_id] = replace(self.handoffs[lead_id], handoff=h)
        if last:
            self.updates.append(sorted(last))

    async def update_handoffs(self, held: Sequence[Held]) -> None:
        last = {h.handoff.lead_id: h for h in held}
        for lead_id, h in last.items():
            self.handoffs[lead_id] = replace(self.handoffs[lead_id], handoff=h.handoff, lead=h.lead)
        if last:
            self.updates.append(sorted(last))
            self.leads_written.append(sorted(last))


@pytest.fixture
def uow() -> MemoryUnitOfWork[MemoryRoutingStore]:
    return MemoryUnitOfWork(MemoryRoutingStore())
