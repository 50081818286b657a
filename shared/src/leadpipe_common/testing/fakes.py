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
