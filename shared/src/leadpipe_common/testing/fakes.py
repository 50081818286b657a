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


class TopicScanOf:
    """Stands in for ``scan.TopicScan`` (patched over it; called with its arguments, it returns itself): hands out
    ``batches`` (each a list of records) from partitions whose first offsets held are ``starts``. ``fails_at_end``
    is raised once the batches are out, where the scan would next read the broker; ``fails_to_extend`` by
    ``extend`` (the broker gone when the log's end is looked for again)."""

    def __init__(self, batches: Sequence[list[Any]] = (), *, starts: dict[Any, int] | None = None,
                 fails_at_end: BaseException | None = None, fails_to_extend: BaseException | None = None) -> None:
        self._batches, self.starts = batches, starts or {}
        self._fails_at_end, self._fails_to_extend = fails_at_end, fails_to_extend
        self.total = sum(len(b) for b in batches)

    def __call__(self, *args: Any, **kwargs: Any) -> TopicScanOf:
        return self

    async def __aenter__(self) -> TopicScanOf:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def batches(self) -> Any:
        for batch in self._batches:
            yield batch
        if self._fails_at_end is not None:
            raise self._fails_at_end

    async def extend(self) -> int:
        if self._fails_to_extend is not None:
            raise self._fails_to_extend
        return 0
