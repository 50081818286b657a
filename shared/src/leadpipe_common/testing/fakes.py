"""In-memory stand-ins for handler unit tests (with ``uow.MemoryUnitOfWork``): no broker, no Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SavedRows:
    """A store whose ``save`` keeps rows by key, a later row replacing an earlier one, as an upsert does."""

    def __init__(self, key: str = "lead_id") -> None:
        self._key = key
        self.rows: dict[Any, dict[str, Any]] = {}

    async def save(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.rows[row[self._key]] = dict(row)
