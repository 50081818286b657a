"""In-memory stand-ins for unit tests (handlers with ``uow.MemoryUnitOfWork``, and auth's ``Keys``): no
broker, no Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any


class SavedRows:
    """A store whose ``save`` keeps rows by key, a later row replacing an earlier one, as an upsert does."""

    def __init__(self, key: str = "lead_id") -> None:
        self._key = key
        self.rows: dict[Any, dict[str, Any]] = {}

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.rows[row[self._key]] = dict(row)


class NothingSignedOut:
    """What ``auth.Keys`` reads of a database in which no session was signed out."""

    def connect(self) -> "NothingSignedOut":
        return self

    async def __aenter__(self) -> "NothingSignedOut":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def execute(self, statement: object) -> SimpleNamespace:
        return SimpleNamespace(scalar=lambda: False)


class NoKeysStored(NothingSignedOut):
    """What ``auth.Keys`` reads of a database with no API key in it, counting the statements it is sent."""

    def __init__(self) -> None:
        self.lookups = 0

    async def execute(self, statement: object) -> SimpleNamespace:
        self.lookups += 1
        return SimpleNamespace(first=lambda: None, scalar=lambda: False)


def unit_of_work_over(store: Any) -> Any:
    """A unit-of-work factory over ``store`` for code that opens its own (``async with unit_of_work() as uow``):
    ``uow.store`` is ``store``; commits are counted on the factory (``.commits``), there is nothing to roll back."""

    class UnitOfWork:
        commits = 0

        async def __aenter__(self) -> UnitOfWork:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def commit(self) -> None:
            UnitOfWork.commits += 1

    UnitOfWork.store = store  # type: ignore[attr-defined]
    return UnitOfWork
