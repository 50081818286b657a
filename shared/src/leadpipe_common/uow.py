"""The unit of work: every write of a service goes through one, whether a record, a request or a timer caused it.

Guarantees:
- One unit of work is one database transaction holding the service's store
  (its own tables), its inbox and its outbox. ``commit()`` commits it, at
  once: an exception later in the block does not undo what it committed. A
  block that ends without calling it, normally or by an exception, rolls
  the whole back. A state change and the events it causes are therefore
  stored together or not at all.
- A block cancelled (a request's deadline, ``db.answered_within``; a
  shutdown) is not rolled back: its connection is closed (invalidated) and
  Postgres rolls back what it began. A statement may be in flight, on the
  session or on its asyncpg connection (capture's writes), and a ROLLBACK
  would first wait for it to end, on a silent Postgres for ever; nor does
  the connection go back to the pool mid-statement.
- ``publish`` writes messages to the outbox in that transaction (HTTP calls
  and timers; the relay produces them after the commit). The consumer runner
  instead keeps a record's outputs in the inbox (``record``) and produces
  them itself after the commit, so a redelivered record re-emits them.
  ``record`` takes the value digests of records read from a topic written
  outside leadpipe too, and ``seen`` answers with them (``db.Kept``): the runner
  tells a redelivery from another record under a used id by them.
- ``erase(lead_ids)`` clears the person (``erasure.erased_message``) from the
  outputs the inbox keeps for those leads (found by their key: ``db.inbox_table``),
  and from those the unit records for them after it: the runner records a batch's
  outputs once every handler ran, so a lead's capture and erasure in one batch
  leave no copy of its contact behind. A redelivered input re-emits them cleared.
- :class:`MemoryUnitOfWork` keeps the same promises in memory (nothing is
  visible before ``commit``): every handler is unit tested with it, with no
  broker and no Postgres. It knows nothing of the service's tables, though:
  it keeps outputs recorded in a service without an inbox and messages
  published in one without an outbox, where :class:`SqlUnitOfWork` raises
  ``RuntimeError``; a handler test does not catch a handler that produces
  where its service cannot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadpipe_common import outbox as outbox_rows
from leadpipe_common.db import Inbox, Kept, outputs_lead
from leadpipe_common.envelope import Message
from leadpipe_common.erasure import erased_message

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
#: (event id, event type, the messages it produced)
Applied = tuple[uuid.UUID, str, list[Message]]


class UnitOfWork(Protocol[S_co]):
    @property
    def store(self) -> S_co: ...
    async def seen(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Kept]: ...
    async def record(self, applied: Sequence[Applied], digests: Mapping[uuid.UUID, bytes] | None = None) -> None: ...
    def publish(self, messages: Iterable[Message]) -> None: ...
    async def erase(self, lead_ids: Sequence[uuid.UUID]) -> None: ...
    async def commit(self) -> None: ...
    async def __aenter__(self) -> UnitOfWork[S_co]: ...
    async def __aexit__(self, *exc: object) -> None: ...


class SqlUnitOfWork(Generic[S]):
    """A unit of work on the service's database; ``store`` builds the service's store on its session."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], store: Callable[[AsyncSession], S],
                 inbox: sa.Table | None = None, outbox: sa.Table | None = None, *,
                 on_publish: Callable[[], None] | None = None) -> None:
        """``on_publish`` is called after a commit that wrote to the outbox (it wakes the relay)."""
        self._sessionmaker = sessionmaker
        self._on_publish = on_publish
        self._make_store = store
        self._inbox = Inbox(inbox) if inbox is not None else None
        self._outbox = outbox
        self._session: AsyncSession | None = None
        self._store: S | None = None
        self._pending: list[Message] = []
        self._erased: set[uuid.UUID] = set()

    @property
    def store(self) -> S:
        assert self._store is not None, "use the unit of work inside `async with`"
        return self._store

    @property
    def session(self) -> AsyncSession:
        assert self._session is not None, "use the unit of work inside `async with`"
        return self._session

    async def __aenter__(self) -> SqlUnitOfWork[S]:
        self._session = self._sessionmaker()
        await self._session.begin()
        self._store = self._make_store(self._session)
        self._pending, self._erased = [], set()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._session is not None
        try:
            if exc_type is not None and not issubclass(exc_type, Exception):  # cancelled: see the module
                await self._session.invalidate()
            else:
                await self._session.rollback()  # a no-op after commit(); otherwise nothing of it stays
        finally:
            await self._session.close()
            self._session, self._store = None, None

    async def seen(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Kept]:
        return await self._inbox.seen(self.session, event_ids) if self._inbox else {}

    async def record(self, applied: Sequence[Applied], digests: Mapping[uuid.UUID, bytes] | None = None) -> None:
        if self._inbox:
            await self._inbox.record(self.session, _cleared(applied, self._erased), digests)
        elif any(outputs for _, _, outputs in applied):
            # Without an inbox a redelivered event would be applied again and its outputs re-made
            # with nothing to vouch they are the same: a service that produces needs one.
            raise RuntimeError("a handler produced events in a service without an inbox")

    async def erase(self, lead_ids: Sequence[uuid.UUID]) -> None:
        if self._inbox:
            await self._inbox.erase(self.session, lead_ids)
            self._erased.update(lead_ids)

    def publish(self, messages: Iterable[Message]) -> None:
        if self._outbox is None:
            raise RuntimeError("this service has no outbox: declare one to publish from requests or timers")
        self._pending.extend(messages)

    async def commit(self) -> None:
        published = bool(self._pending)
        if published:
            assert self._outbox is not None
            await outbox_rows.add(self.session, self._outbox, self._pending)
            self._pending = []
        await self.session.commit()
        if published and self._on_publish is not None:
            self._on_publish()


class MemoryUnitOfWork(Generic[S]):
    """The same unit of work in memory, for handler tests: ``inbox`` and ``published`` change only on commit.

    It has an inbox and an outbox whatever the service has (see the module).
    The store is the test's fake; as with a rolled-back transaction, a test
    that needs the store itself rolled back gives a fresh fake per unit.
    """

    def __init__(self, store: S) -> None:
        self._store = store
        self.inbox: dict[uuid.UUID, list[Message]] = {}
        #: The value digests kept beside ``inbox`` (records read from a topic written outside leadpipe).
        self.digests: dict[uuid.UUID, bytes] = {}
        self.published: list[Message] = []
        self.commits = 0
        self._recorded: list[Applied] = []
        self._digests: dict[uuid.UUID, bytes] = {}
        self._pending: list[Message] = []
        self._erased: set[uuid.UUID] = set()

    @property
    def store(self) -> S:
        return self._store

    async def __aenter__(self) -> MemoryUnitOfWork[S]:
        self._recorded, self._digests, self._pending, self._erased = [], {}, [], set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._recorded, self._digests, self._pending, self._erased = [], {}, [], set()

    async def seen(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Kept]:
        return {eid: Kept(self.inbox[eid], self.digests.get(eid)) for eid in event_ids if eid in self.inbox}

    async def record(self, applied: Sequence[Applied], digests: Mapping[uuid.UUID, bytes] | None = None) -> None:
        self._recorded.extend(applied)
        if digests:
            self._digests.update({eid: digests[eid] for eid, _, _ in applied if eid in digests})

    def publish(self, messages: Iterable[Message]) -> None:
        self._pending.extend(messages)

    async def erase(self, lead_ids: Sequence[uuid.UUID]) -> None:
        self._erased.update(lead_ids)

    async def commit(self) -> None:
        # As the inbox's key does in Postgres: an event recorded twice fails the commit, which keeps nothing.
        known, twice = set(self.inbox), []
        for event_id, _, _ in self._recorded:
            if event_id in known:
                twice.append(event_id)
            known.add(event_id)
        if twice:
            self._recorded, self._digests, self._pending = [], {}, []
            raise RuntimeError(f"already in the inbox: {twice}")
        for event_id, outputs in self.inbox.items():
            if outputs_lead(outputs) in self._erased:
                self.inbox[event_id] = [erased_message(m) for m in outputs]
        for event_id, _type, outputs in _cleared(self._recorded, self._erased):
            self.inbox[event_id] = outputs
        self.digests.update(self._digests)
        self.published.extend(self._pending)
        self._recorded, self._digests, self._pending, self._erased = [], {}, [], set()
        self.commits += 1


def _cleared(applied: Sequence[Applied], erased: set[uuid.UUID]) -> Sequence[Applied]:
    """``applied`` with the person cleared from the outputs of leads erased in the same unit of work: the runner
    records a batch's outputs after every handler ran, so an erasure handled before them could not reach them."""
    if not erased:
        return applied
    return [(eid, etype, [erased_message(m) for m in outputs] if outputs_lead(outputs) in erased else outputs)
            for eid, etype, outputs in applied]
