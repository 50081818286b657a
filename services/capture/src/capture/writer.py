"""The group-commit writer: every request waiting at one moment shares one transaction.

Guarantees: ``write`` returns only once its submission is committed (the
request may then answer 2xx: the lead or touch is durable), or raises, and
nothing is half-written; ``stop`` first finishes the requests already queued.

In that transaction ``admit`` decides, race-free across capture's processes:
- an ``Idempotency-Key`` seen in the last 24 hours answers what it answered
  then and writes nothing (the key's row is locked by the first request
  until it commits, so a concurrent repeat waits for that answer); the same
  key with another body is refused;
- a person (``people``, by normalised address) has at most one open lead: the
  person's row is upserted and locked, and a submission either opens their
  lead or becomes a touch of the open one. Rows are locked in key order, so
  concurrent batches cannot deadlock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Histogram
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from leadpipe_common.db import compiled_once
from leadpipe_common.events import Contact, LeadCaptured, LeadTouched, Touch

from capture.store import idempotency, leads, people, touches

log = structlog.get_logger(__name__)

WRITE_BATCH = Histogram("capture_write_batch_size", "Submissions committed per transaction",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
#: How long an Idempotency-Key's answer is kept (the IETF draft leaves it to the server; clients retry within it).
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Submitted:
    """An accepted submission, before capture knows whether its person already has an open lead."""

    #: As captured, with a fresh lead id (the touch's id, should it turn out to be a touch).
    lead: LeadCaptured
    person_key: str
    request_id: uuid.UUID
    traceparent: str
    #: ``Idempotency-Key`` scoped by caller and endpoint, and the request it names.
    idempotency_key: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Admitted:
    answer: dict[str, Any]
    #: The answer was given before, to an earlier request with the same Idempotency-Key.
    repeated: bool = False


class IdempotencyMismatch(ValueError):
    """The Idempotency-Key was used before for a different request."""


def answer_for(lead_id: uuid.UUID, sub: Submitted, existing: bool) -> dict[str, Any]:
    return {"lead_id": str(lead_id), "status": "accepted", "captured_at": sub.lead.captured_at.isoformat(),
            "form_id": sub.lead.attribution.form_id, "existing": existing}


def _people_upsert() -> Any:
    """A person's row: made with this lead as the open one, or kept (an open lead stays the open one)."""
    stmt = insert(people)
    return stmt.on_conflict_do_update(
        index_elements=[people.c.person_key],
        set_={"open_lead_id": sa.func.coalesce(people.c.open_lead_id, stmt.excluded.open_lead_id),
              "updated_at": stmt.excluded.updated_at},
    ).returning(people.c.person_key, people.c.person_id, people.c.open_lead_id, sort_by_parameter_order=True)


def _idempotency_claim() -> Any:
    """A key claimed afresh, or taken over once its window expired; only those are returned."""
    stmt = insert(idempotency)
    return stmt.on_conflict_do_update(
        index_elements=[idempotency.c.key],
        set_={"fingerprint": stmt.excluded.fingerprint, "answer": None, "created_at": stmt.excluded.created_at},
        where=idempotency.c.created_at < sa.bindparam("expired_before"),
    ).returning(idempotency.c.key)


_PEOPLE_UPSERT = _people_upsert()
_IDEMPOTENCY_CLAIM = _idempotency_claim()


async def admit(conn: AsyncConnection | AsyncSession, batch: Sequence[Submitted],
                now: datetime) -> list[Admitted | Exception]:
    """Store ``batch`` as new leads or touches (see the module's guarantees); one result per submission."""
    results: list[Admitted | Exception | None] = [None] * len(batch)
    fresh = await _claim_keys(conn, batch, now, results)
    if not fresh:
        return results  # type: ignore[return-value]
    groups: dict[str, list[int]] = {}
    for i in fresh:
        groups.setdefault(batch[i].person_key, []).append(i)
    candidates = {key: batch[ids[0]] for key, ids in groups.items()}
    # In key order (one statement, its rows in parameter order), so two writers lock people alike.
    rows = [{"person_key": key, "person_id": uuid.uuid4(), "open_lead_id": sub.lead.lead_id, "updated_at": now}
            for key, sub in sorted(candidates.items())]
    owners = {r.person_key: (r.person_id, r.open_lead_id)
              for r in await conn.execute(compiled_once(lambda: _PEOPLE_UPSERT, people), rows)}

    new_leads: dict[uuid.UUID, LeadCaptured] = {}
    for key, ids in groups.items():
        person_id, open_lead_id = owners[key]
        if open_lead_id == candidates[key].lead.lead_id:
            new_leads[open_lead_id] = candidates[key].lead.model_copy(update={"person_id": person_id})
    earlier = {lid for key, (_, lid) in owners.items() if lid not in new_leads}
    first = {**new_leads, **await _first_touches(conn, earlier)}
    known = {lead_id: lead.contact for lead_id, lead in new_leads.items()} | await _latest_contacts(conn, earlier)

    lead_rows, touch_rows = [], []
    for key, ids in groups.items():
        person_id, lead_id = owners[key]
        for i in ids:
            sub = batch[i]
            if sub.lead.lead_id == lead_id:
                lead_rows.append({"lead_id": lead_id, "request_id": sub.request_id, "email": sub.lead.contact.email,
                                  "form_id": sub.lead.attribution.form_id, "captured_at": sub.lead.captured_at,
                                  "traceparent": sub.traceparent,
                                  "event": new_leads[lead_id].model_dump_json().encode()})
                results[i] = Admitted(answer_for(lead_id, sub, existing=False))
                continue
            lead = first[lead_id]
            known[lead_id] = contact = latest_contact(known.get(lead_id, lead.contact), sub.lead.contact)
            touched = LeadTouched(lead_id=lead_id, captured_at=lead.captured_at, contact=contact,
                                  attribution=lead.attribution, person_id=person_id,
                                  touch=Touch(touch_id=sub.lead.lead_id, at=sub.lead.captured_at,
                                              attribution=sub.lead.attribution))
            touch_rows.append({"touch_id": sub.lead.lead_id, "lead_id": lead_id, "touched_at": sub.lead.captured_at,
                               "traceparent": sub.traceparent, "event": touched.model_dump_json().encode()})
            results[i] = Admitted(answer_for(lead_id, sub, existing=True))
    if lead_rows:
        await conn.execute(leads.insert(), lead_rows)
    if touch_rows:
        await conn.execute(touches.insert(), touch_rows)
    answered = [{"b_key": batch[i].idempotency_key, "b_answer": results[i].answer}  # type: ignore[union-attr]
                for i in fresh if batch[i].idempotency_key]
    if answered:
        await conn.execute(idempotency.update().where(idempotency.c.key == sa.bindparam("b_key"))
                           .values(answer=sa.bindparam("b_answer")), answered)
    _repeat_within_batch(batch, results)
    return results  # type: ignore[return-value]


async def _claim_keys(conn: AsyncConnection | AsyncSession, batch: Sequence[Submitted], now: datetime,
                      results: list[Admitted | Exception | None]) -> list[int]:
    """Claim each new Idempotency-Key (an expired one is claimed anew); answer the ones already answered.
    Returns the indexes of the submissions to store."""
    owners: dict[str, int] = {}
    for i, sub in enumerate(batch):
        if sub.idempotency_key and sub.idempotency_key not in owners:
            owners[sub.idempotency_key] = i
    if owners:
        rows = [{"key": key, "fingerprint": batch[i].fingerprint, "created_at": now,
                 "expired_before": now - IDEMPOTENCY_WINDOW} for key, i in sorted(owners.items())]
        claimed = {r.key for r in await conn.execute(compiled_once(lambda: _IDEMPOTENCY_CLAIM, idempotency), rows)}
        seen = [key for key in owners if key not in claimed]
        if seen:
            rows = await conn.execute(sa.select(idempotency.c.key, idempotency.c.fingerprint, idempotency.c.answer)
                                      .where(idempotency.c.key.in_(seen)))
            for row in rows:
                i = owners[row.key]
                results[i] = (IdempotencyMismatch("this Idempotency-Key was used for a different request")
                              if row.fingerprint != batch[i].fingerprint
                              else Admitted(row.answer, repeated=True) if row.answer is not None
                              else IdempotencyMismatch("the first request with this Idempotency-Key never finished"))
    return [i for i, sub in enumerate(batch)
            if results[i] is None and (not sub.idempotency_key or owners[sub.idempotency_key] == i)]


def _repeat_within_batch(batch: Sequence[Submitted], results: list[Admitted | Exception | None]) -> None:
    """Repeats of a key inside one batch get what its first request got (or are refused like any repeat)."""
    first: dict[str, int] = {}
    for i, sub in enumerate(batch):
        key = sub.idempotency_key
        if not key:
            continue
        if key not in first:
            first[key] = i
            continue
        owner = results[first[key]]
        if isinstance(owner, Exception):
            results[i] = owner
        elif sub.fingerprint != batch[first[key]].fingerprint:
            results[i] = IdempotencyMismatch("this Idempotency-Key was used for a different request")
        else:
            results[i] = Admitted(owner.answer, repeated=True)  # type: ignore[union-attr]


def latest_contact(known: Contact, submitted: Contact) -> Contact:
    """What is known of a person after a submission: what they sent now, and what they sent before where they
    left a field out (a short form must not erase the job title a long one gave)."""
    sent = submitted.model_dump(exclude_none=True, exclude_defaults=True)
    return known.model_copy(update=sent)


async def _latest_contacts(conn: AsyncConnection | AsyncSession, lead_ids: set[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    """The contact each lead's latest touch left, for leads touched before."""
    if not lead_ids:
        return {}
    latest = (sa.select(touches.c.lead_id, touches.c.event).where(touches.c.lead_id.in_(lead_ids))
              .order_by(touches.c.lead_id, touches.c.seq.desc()).distinct(touches.c.lead_id))
    return {r.lead_id: LeadTouched.model_validate_json(r.event).contact for r in await conn.execute(latest)}


async def _first_touches(conn: AsyncConnection | AsyncSession, lead_ids: set[uuid.UUID]) -> dict[uuid.UUID, LeadCaptured]:
    if not lead_ids:
        return {}
    rows = await conn.execute(sa.select(leads.c.lead_id, leads.c.event).where(leads.c.lead_id.in_(lead_ids)))
    return {r.lead_id: LeadCaptured.model_validate_json(r.event) for r in rows}


class LeadWriter:
    """Commits submissions in groups: one transaction for every request waiting at that moment.

    A failed commit fails its requests (they answer 503); it does not make capture unready.
    """

    name = "capture-writer"
    failing = False

    def __init__(self, engine: AsyncEngine, max_batch: int, on_commit: Callable[[], None],
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Submitted, asyncio.Future[Admitted]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="capture-writer")

    async def stop(self) -> None:
        # Requests already queued were promised an answer: finish them first.
        await self._queue.join()
        if self._task:
            self._task.cancel()

    async def write(self, submitted: Submitted) -> Admitted:
        """Return once ``submitted`` is committed (or was answered before); raise if it could not be."""
        done: asyncio.Future[Admitted] = asyncio.get_running_loop().create_future()
        await self._queue.put((submitted, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._engine.begin() as conn:
                    results = await admit(conn, [sub for sub, _ in batch], self._clock())
            except Exception as exc:
                log.warning("lead write failed", error=repr(exc), leads=len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                WRITE_BATCH.observe(len(batch))
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, Exception):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
                self._on_commit()
            finally:
                for _ in batch:
                    self._queue.task_done()
