"""routing's tables: its inbox, one assignment per lead, and the rotation state per team.

The rotation row of a team is locked (``FOR UPDATE``) for the whole batch
transaction, so two routing processes never hand out the same turn: the
second waits for the first to commit and then reads the advanced state.
Teams are locked in name order so two batches can never deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadpipe_common.db import inbox_table

SCHEMA = "routing"
metadata = sa.MetaData(schema=SCHEMA)
inbox = inbox_table(metadata)
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


async def already_assigned(session: AsyncSession, lead_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    ids = list(lead_ids)
    if not ids:
        return set()
    rows = await session.execute(sa.select(assignments.c.lead_id).where(assignments.c.lead_id.in_(ids)))
    return {r.lead_id for r in rows}


async def lock_rotations(session: AsyncSession, teams: Iterable[str]) -> dict[str, dict[str, int]]:
    names = sorted(set(teams))
    if not names:
        return {}
    await session.execute(
        insert(rotation).on_conflict_do_nothing(), [{"team": t, "state": {}} for t in names]
    )
    rows = await session.execute(
        sa.select(rotation.c.team, rotation.c.state)
        .where(rotation.c.team.in_(names))
        .order_by(rotation.c.team)
        .with_for_update()
    )
    return {r.team: dict(r.state) for r in rows}


async def save_rotations(session: AsyncSession, states: dict[str, dict[str, int]], turns: dict[str, int]) -> None:
    for team, state in states.items():
        await session.execute(
            rotation.update()
            .where(rotation.c.team == team)
            .values(state=state, turns=rotation.c.turns + turns.get(team, 0))
        )


async def save_assignments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(assignments), list(rows))
