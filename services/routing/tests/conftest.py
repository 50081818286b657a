"""routing's store in memory, for handler tests: the ``uow`` fixture is a ``MemoryUnitOfWork`` over it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from leadpipe_common.uow import MemoryUnitOfWork
from routing.domain import Handoff
from routing.store import Held


class MemoryRoutingStore:
    def __init__(self) -> None:
        self.assignments: dict[uuid.UUID, dict[str, Any]] = {}
        self.rotations: dict[str, dict[str, int]] = {}
        self.turns: dict[str, int] = {}
        self.handoffs: dict[uuid.UUID, Held] = {}

    async def already_assigned(self, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return {i for i in lead_ids if i in self.assignments}

    async def lock_rotations(self, teams: Iterable[str]) -> dict[str, dict[str, int]]:
        return {t: dict(self.rotations.get(t, {})) for t in sorted(set(teams))}

    async def save_rotations(self, states: dict[str, dict[str, int]], turns: dict[str, int]) -> None:
        for team, state in states.items():
            self.rotations[team] = dict(state)
            self.turns[team] = self.turns.get(team, 0) + turns.get(team, 0)

    async def save_assignments(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            assert row["lead_id"] not in self.assignments, "a lead assigned twice"
            self.assignments[row["lead_id"]] = dict(row)

    async def reassign(self, row: dict[str, Any]) -> None:
        assert row["lead_id"] in self.assignments
        self.assignments[row["lead_id"]] = dict(row)

    async def add_handoffs(self, held: Sequence[Held]) -> None:
        self.handoffs.update({h.handoff.lead_id: h for h in held})

    async def handoff(self, lead_id: uuid.UUID, *, lock: bool = True) -> Held | None:
        return self.handoffs.get(lead_id)

    async def claim_due(self, limit: int, now: datetime) -> list[Held]:
        due = [h for h in self.handoffs.values()
               if h.handoff.status == "routed" and h.handoff.due_at is not None and h.handoff.due_at <= now]
        return sorted(due, key=lambda h: h.handoff.due_at)[:limit]  # type: ignore[arg-type, return-value]

    async def update_handoff(self, h: Handoff, lead: Any = None) -> None:
        held = self.handoffs[h.lead_id]
        self.handoffs[h.lead_id] = replace(held, handoff=h, lead=lead if lead is not None else held.lead)


@pytest.fixture
def uow() -> MemoryUnitOfWork[MemoryRoutingStore]:
    return MemoryUnitOfWork(MemoryRoutingStore())
