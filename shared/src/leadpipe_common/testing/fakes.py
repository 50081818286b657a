"""In-memory stand-ins for unit tests (handlers with ``uow.MemoryUnitOfWork``, auth's ``Keys``, the asyncpg
connections of ``db.raw_pooled``, a Postgres gone silent): no broker, no Postgres."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
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

    def begin(self) -> "NothingSignedOut":
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


class NeverAnswers(NothingSignedOut):
    """An engine as ``auth.Keys`` and ``Runtime.request_connection`` use it (``begin()``), and its connection, on a
    Postgres gone silent (a network partition, a frozen host): no statement is ever answered."""

    async def execute(self, statement: object, *args: Any) -> SimpleNamespace:
        await asyncio.Event().wait()
        raise AssertionError("never answered")


class SilentSession:
    """An ``AsyncSession`` as ``uow.SqlUnitOfWork`` and the stores use it, on a Postgres that may go silent: once
    ``silent``, a statement (``execute``, ``scalar``, ``scalars``), and a ROLLBACK (which would first wait for the
    statement in flight), are never answered. What reached it is in ``calls``: each statement, ``ROLLBACK``,
    ``invalidate`` (the connection closed, nothing waited for) and ``close``."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.calls: list[Any] = []

    async def begin(self) -> None:
        pass

    async def execute(self, statement: object, *args: Any, **kwargs: Any) -> Any:
        await self._answer(statement)

    scalar = scalars = execute

    async def rollback(self) -> None:
        await self._answer("ROLLBACK")

    async def invalidate(self) -> None:
        self.calls.append("invalidate")

    async def close(self) -> None:
        self.calls.append("close")

    async def _answer(self, statement: object) -> None:
        self.calls.append(statement)
        if self.silent:
            await asyncio.Event().wait()


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
    ``batches`` (each a list of records) from partitions whose first offsets held are ``starts``, and of those that
    lost their first records, when the first held was recorded (``first_held``). ``fails_at_end``
    is raised once the batches are out, where the scan would next read the broker; ``fails_to_extend`` by
    ``extend`` (the broker gone when the log's end is looked for again)."""

    def __init__(self, batches: Sequence[list[Any]] = (), *, starts: dict[Any, int] | None = None,
                 first_held: dict[Any, datetime | None] | None = None,
                 fails_at_end: BaseException | None = None, fails_to_extend: BaseException | None = None) -> None:
        self._batches, self.starts, self.first_held = batches, starts or {}, first_held or {}
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


class SilentPostgres:
    """Stands in for the engine of ``db.raw_pooled`` and ``db.raw_transaction`` (with ``db.raw_connection`` patched
    to ``SilentPostgres.driver``) on a Postgres that may go silent, as behind a failover that drops packets: once
    ``silent``, a statement sent (``SilentConnection.execute``, ``fetch``, a transaction's BEGIN, COMMIT or
    ROLLBACK) is never answered, as asyncpg without a timeout then waits; until then each is answered
    ``answer_after_s`` after it was sent (a Postgres slow but working); a statement in ``answers`` is answered
    once as it says instead: after its own time, with its error if it has one (a lock timeout, say). Every
    connection handed out is kept (``connections``), with what it was sent and whether it was closed
    (``terminated``) or taken out of the pool (``invalidated``)."""

    def __init__(self) -> None:
        self.silent = False
        self.answer_after_s = 0.0
        self.answers: dict[str, tuple[float, Exception | None]] = {}
        self.connections: list[SilentConnection] = []

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[SilentConnection]:
        conn = SilentConnection(self)
        self.connections.append(conn)
        yield conn

    @staticmethod
    async def driver(conn: SilentConnection) -> SilentConnection:
        """``db.raw_connection``'s stand-in: the pooled connection and the driver's are one here."""
        return conn


class SilentConnection:
    """A pooled connection of ``SilentPostgres`` and its asyncpg connection in one."""

    def __init__(self, server: SilentPostgres) -> None:
        self._server = server
        self.sent: list[str] = []
        self.terminated = self.invalidated = self.in_transaction = False

    async def execute(self, statement: str, *args: Any) -> str:
        self.sent.append(statement)
        if self._server.silent:
            await asyncio.Event().wait()
        after_s, error = self._server.answers.pop(statement, (self._server.answer_after_s, None))
        await asyncio.sleep(after_s)
        if error is not None:
            raise error
        return "OK"

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        await self.execute(statement, *args)
        return []

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def is_closed(self) -> bool:
        return self.terminated

    def terminate(self) -> None:
        self.terminated = True

    async def invalidate(self) -> None:
        self.invalidated = True


class _Transaction:
    """asyncpg's ``Transaction``, as far as ``db.raw_transaction`` uses it."""

    def __init__(self, conn: SilentConnection) -> None:
        self._conn = conn

    async def start(self) -> None:
        await self._conn.execute("BEGIN")
        self._conn.in_transaction = True

    async def commit(self) -> None:
        await self._end("COMMIT")

    async def rollback(self) -> None:
        await self._end("ROLLBACK")

    async def _end(self, statement: str) -> None:
        await self._conn.execute(statement)
        self._conn.in_transaction = False

    async def __aenter__(self) -> None:
        await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        await (self.rollback() if kind is not None else self.commit())
