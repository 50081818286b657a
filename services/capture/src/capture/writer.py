"""The group-commit writer: every request waiting at one moment shares one write round (one statement for
the leads it opens, one transaction for the rest).

Guarantees: ``write`` returns only once its submission is committed (the
request may then answer 2xx: the lead or touch is durable), or raises, and
nothing is half-written; ``stop`` first finishes the requests already queued,
and one that arrives as it stops (or finds the writer cancelled mid-round)
gets an error, never a wait for ever.

Postgres may go silent (a failover dropping packets): a statement then waits
for an answer until TCP gives up, if it ever does, and Postgres's own
statement timeout cannot end it. So each statement of a round has a deadline
of its own (``statement_deadline_s``: capture's statement timeout and a
second), counted from when it is sent: the connection and its BEGIN, each
statement, the COMMIT, and the ROLLBACK after a statement Postgres refused
(counted from the refusal). A working Postgres answers every statement by then,
if only with the statement timeout's error, so a deadline passed means
silence; a round of many statements (a dozen, with the retry around people
held elsewhere), each slow but within its timeout, is never cut short, as
one deadline for the whole round would cut it. Past it, the statement in
flight is abandoned and its connection closed, never returned to the pool
mid-statement, and the requests of that part of the round fail with
``WriteTimedOut`` (a 503 to retry) while the next round goes on. Whether a
timed-out statement committed is unknown, so none of its requests is
answered as stored; none is lost either: a retry finds what did commit (its
Idempotency-Key's answer, or its person's open lead, which it touches). A
request waits for a round to take it until Postgres has answered the writer
nothing for twice the deadline and its linger (with more than ``max_batch``
queued, its round may be several away, each answered: a slow Postgres is no
reason to give up); one given up on then (a 503) is left out of its round,
so never stored.
Once its round holds it, it waits for that round's answer, which the
statements' deadlines bound: given up on while its round commits it, it
would be answered 503 and stored all the same.

In that transaction ``admit`` decides, race-free across capture's processes:
- an ``Idempotency-Key`` seen in the last 24 hours answers what it answered
  then and writes nothing (the key's row is locked by the first request
  until it commits, so a concurrent repeat waits for that answer); the same
  key with another body is refused; ``ExpiredKeys`` deletes keys an hour
  after their 24 hours (a key older than 24 hours is claimed anew anyway);
- a person (``people``, by normalised address) has at most one open lead: the
  person's row is upserted and locked, and a submission either opens their
  lead or becomes a touch of the open one. Rows are locked in key order, in
  one statement, before any per-lead lock: the order every capture
  transaction takes (``store``'s LOCK ORDER), so none can deadlock with a
  round.

A write round waits, once its first submission is in, for a few more to share
its statement (``pacing.Linger``: as long as its target of submissions takes at
the recent rate, at most its linger, and not at all when not one more is
expected within it); it goes as soon as they are in. At a steady 100 leads/s
each request otherwise paid a statement and a commit of its own.

``LeadWriter`` first stores, in ONE statement (its own transaction), the
submissions without an Idempotency-Key that open a lead for their person:
that statement upserts and locks the people and inserts the leads of those
whose person had no open lead, weighing what each said of marketing consent
against its person's last word, and keeping the newer. Everything else
(touches, later submissions of a person within the batch, Idempotency-Keys,
a yes older than its person's no) then goes through ``admit`` in a
transaction, as it always did, whose last statement stores its leads, its
touches and its people's words together. Each submission's answer comes from the
statement that stored it: a failure of the second part fails only its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from leadpipe_common.db import error_text, json_value, raw_pooled, raw_transaction
from leadpipe_common.events import LeadCaptured, LeadTouched, Touch
from leadpipe_common.moments import written
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.pacing import Linger

from capture.domain import ConsentWord, OnRecord, latest_contact, newer_word
from capture.store import SCHEMA

log = structlog.get_logger(__name__)

WRITE_BATCH = Histogram("capture_write_batch_size", "Submissions committed per write round",
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
    #: What it said of marketing consent (``domain.stated_consent``): None, nothing, and a touch keeps the
    #: person's consent; False, a no, and a touch withdraws it.
    consent: bool | None = None
    #: Sent with a ``capture:write`` key (an importer): its answer may say whether its person was known.
    keyed: bool = False


@dataclass(frozen=True)
class Admitted:
    answer: dict[str, Any]
    #: The answer was given before, to an earlier request with the same Idempotency-Key.
    repeated: bool = False
    #: What the submission is stored as, for operators' logs only (the answer may tell neither): the lead it opened
    #: or touched, and its touch's id when it is a touch. Unknown (None) for an answer kept for an Idempotency-Key
    #: by an earlier request, which keeps only what that request was told.
    lead_id: uuid.UUID | None = None
    touch_id: uuid.UUID | None = None

    @classmethod
    def of(cls, lead_id: uuid.UUID, sub: Submitted, *, existing: bool) -> Admitted:
        """``sub`` stored as a touch of ``lead_id`` (``existing``) or as that lead: its answer (``answer_for``)
        and what it is stored as."""
        return cls(answer_for(lead_id, sub, existing), lead_id=lead_id,
                   touch_id=sub.lead.lead_id if existing else None)

    def logged(self) -> dict[str, str]:
        """The ids the request's log lines name: the lead as ``lead_id``, never a touch's id (what a sender without
        a key is answered with), and a touch as ``touch_id``. Of an answer kept for an Idempotency-Key only the id
        it named is known: the lead's when it says ``existing`` (a key holder's, or anyone's before 0d1cb50); else
        a lead's or a touch's, as ``answered_id``."""
        if self.lead_id is not None:
            return {"lead_id": str(self.lead_id), **({"touch_id": str(self.touch_id)} if self.touch_id else {})}
        return {"lead_id" if "existing" in self.answer else "answered_id": self.answer["lead_id"]}


class IdempotencyMismatch(ValueError):
    """The Idempotency-Key was used before for a different request."""


def answer_for(lead_id: uuid.UUID, sub: Submitted, existing: bool) -> dict[str, Any]:
    """What ``sub``'s sender is told (and what its Idempotency-Key keeps), ``sub`` being stored as a touch of
    ``lead_id`` (``existing``) or as that lead.

    Only a key holder (an importer) is told which, and the lead's id. Anyone on the internet may post any address,
    and that a person has an open lead is their place in someone's sales pipeline: a sender without a key is told
    the id ``sub`` itself is stored under (its lead's, or its touch's). The open lead's id would tell as much as
    soon as two answers named it: a person's two posts, or two a bot got caught with on purpose."""
    answer = {"lead_id": str(lead_id if sub.keyed else sub.lead.lead_id), "status": "accepted",
              "captured_at": written(sub.lead.captured_at), "form_id": sub.lead.attribution.form_id}
    if sub.keyed:
        answer["existing"] = existing
    return answer


# The writer's statements run on the asyncpg connection itself, many rows in one statement (unnest):
# through SQLAlchemy each statement cost ~0.3 ms of Python and each transaction ~0.4 ms more, which at
# a steady 100 leads/s (most requests commit alone) was the writer's CPU. Measured on this machine, one
# transaction with one insert: SQLAlchemy 0.78 ms of client CPU, asyncpg 0.37 ms.
_PEOPLE_UPSERT = f"""
INSERT INTO {SCHEMA}.people (person_key, person_id, open_lead_id, updated_at)
SELECT k, p, l, u FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::timestamptz[]) WITH ORDINALITY AS v(k, p, l, u, n)
ORDER BY n
ON CONFLICT (person_key) DO UPDATE
SET open_lead_id = coalesce(people.open_lead_id, excluded.open_lead_id), updated_at = excluded.updated_at
RETURNING person_key, person_id, open_lead_id, consent, consent_said_at
"""
#: A round's leads and touches, and its people's words on marketing consent where the round changed them
#: (``_PEOPLE_UPSERT`` read them, their rows locked): one statement, the transaction's last.
_STORE = f"""
WITH l AS (
    INSERT INTO {SCHEMA}.leads (lead_id, request_id, email, form_id, captured_at, traceparent, event,
                                consent_withdrawn_at, person_id)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::bytea[],
                         $8::timestamptz[], $9::uuid[])
), t AS (
    INSERT INTO {SCHEMA}.touches (touch_id, lead_id, touched_at, traceparent, event, consent_withdrawn_at)
    SELECT * FROM unnest($10::uuid[], $11::uuid[], $12::timestamptz[], $13::text[], $14::bytea[], $15::timestamptz[])
)
UPDATE {SCHEMA}.people SET consent = w.consent, consent_said_at = w.said_at
FROM unnest($16::text[], $17::boolean[], $18::timestamptz[]) AS w(person_key, consent, said_at)
WHERE people.person_key = w.person_key
"""
#: A key claimed afresh, or taken over once its window expired; only those are returned.
_IDEMPOTENCY_CLAIM = f"""
INSERT INTO {SCHEMA}.idempotency (key, fingerprint, created_at)
SELECT k, f, $3::timestamptz FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS v(k, f, n) ORDER BY n
ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, answer = NULL, created_at = excluded.created_at
WHERE idempotency.created_at < $4::timestamptz
RETURNING key
"""
_IDEMPOTENCY_SEEN = f"SELECT key, fingerprint, answer FROM {SCHEMA}.idempotency WHERE key = ANY($1::text[])"
_IDEMPOTENCY_ANSWER = f"""
UPDATE {SCHEMA}.idempotency i SET answer = v.a FROM unnest($1::text[], $2::jsonb[]) AS v(k, a) WHERE i.key = v.k
"""
_FIRST_TOUCHES = f"SELECT lead_id, event, consent_withdrawn_at FROM {SCHEMA}.leads WHERE lead_id = ANY($1::uuid[])"
#: A transaction lock per lead touched (advisory: the relay's row locks on the same leads are not in its way),
#: taken in the order given.
_LOCK_TOUCHED = """
SELECT pg_advisory_xact_lock(hashtextextended('capture.touches/' || lead_id::text, 0))
FROM unnest($1::uuid[]) WITH ORDINALITY AS t(lead_id, n) ORDER BY n
"""
#: Each lead's newest touch, one index probe a lead (touches_by_lead, backwards): DISTINCT ON read every touch of
#: a lead, a cost growing with a person's touches that a busy one (a script with a key) would push past the
#: statement timeout, failing its whole round.
_LATEST_TOUCHES = f"""
SELECT t.lead_id, t.event, t.consent_withdrawn_at FROM unnest($1::uuid[]) AS l(lead_id)
CROSS JOIN LATERAL (SELECT lead_id, event, consent_withdrawn_at FROM {SCHEMA}.touches WHERE lead_id = l.lead_id
                    ORDER BY seq DESC LIMIT 1) t
"""


async def admit(conn: asyncpg.Connection, batch: Sequence[Submitted], now: datetime) -> list[Admitted | Exception]:
    """Store ``batch`` as new leads or touches (see the module's guarantees); one result per submission.

    ``conn`` is inside a transaction (``leadpipe_common.db.raw_connection`` gives a session's)."""
    if not conn.is_in_transaction():
        raise RuntimeError("admit needs a transaction: its rows are stored together or not at all")
    results: list[Admitted | Exception | None] = [None] * len(batch)
    fresh = await _claim_keys(conn, batch, now, results)
    if not fresh:  # all answered from their keys; a key's repeats in this batch get its answer too
        _repeat_within_batch(batch, results)
        return results  # type: ignore[return-value]
    groups: dict[str, list[int]] = {}
    for i in fresh:
        groups.setdefault(batch[i].person_key, []).append(i)
    candidates = {key: batch[ids[0]] for key, ids in groups.items()}
    # In key order (one statement, its rows in that order), so two writers lock people alike.
    ordered = sorted(candidates.items())
    people = await conn.fetch(_PEOPLE_UPSERT, [key for key, _ in ordered], [uuid.uuid4() for _ in ordered],
                              [sub.lead.lead_id for _, sub in ordered], [now] * len(ordered))
    owners = {r["person_key"]: (r["person_id"], r["open_lead_id"]) for r in people}
    # What each person last said of marketing, on whichever lead: a lead opened here is weighed against it.
    said = {r["person_key"]: _word(r) for r in people}
    words = dict(said)

    new_leads: dict[uuid.UUID, LeadCaptured] = {}
    for key, ids in groups.items():
        person_id, open_lead_id = owners[key]
        if open_lead_id == candidates[key].lead.lead_id:
            new_leads[open_lead_id] = candidates[key].lead.model_copy(update={"person_id": person_id})
    earlier = {lid for key, (_, lid) in owners.items() if lid not in new_leads}
    if earlier:
        # Two people may share a lead (one was merged into the other's): their touches, written by two
        # processes at once, would each miss the other's contact and could commit (and be published) out of
        # their order. One writer at a time per lead, in lead order; what it reads next sees the other's touch.
        await conn.execute(_LOCK_TOUCHED, sorted(earlier))
    opened = await _first_touches(conn, earlier)
    first = {**new_leads, **{lead_id: lead for lead_id, (lead, _) in opened.items()}}
    known = {lead_id: record for lead_id, (_, record) in opened.items()} | await _latest_records(conn, earlier)

    lead_rows: list[tuple[Any, ...]] = []
    touch_rows: list[tuple[Any, ...]] = []
    for i in fresh:  # in the order they came: a lead's touches (of one person or two) keep it
        sub = batch[i]
        person_id, lead_id = owners[sub.person_key]
        words[sub.person_key] = newer_word(words[sub.person_key], ConsentWord.of(sub.lead, sub.consent))
        if sub.lead.lead_id == lead_id:
            # Its person's first submission here (candidates): on record before their touches that follow it.
            known[lead_id] = record = OnRecord.first(sub.lead, sub.consent, said[sub.person_key])
            event = new_leads[lead_id].model_copy(update={"contact": record.contact})
            lead_rows.append((lead_id, sub.request_id, sub.lead.contact.email, sub.lead.attribution.form_id,
                              sub.lead.captured_at, sub.traceparent, event.model_dump_json().encode(),
                              record.consent_withdrawn_at, person_id))
            results[i] = Admitted.of(lead_id, sub, existing=False)
            continue
        lead = first[lead_id]
        # Their no on record holds on the lead they touch: said on a lead sales merged into this one (another
        # address of theirs), it is on no record of this lead's.
        known[lead_id] = record = latest_contact(known[lead_id].heeding(said[sub.person_key]), sub.lead, sub.consent)
        touched = LeadTouched(lead_id=lead_id, captured_at=lead.captured_at, contact=record.contact,
                              attribution=lead.attribution, person_id=person_id,
                              touch=Touch(touch_id=sub.lead.lead_id, at=sub.lead.captured_at,
                                          attribution=sub.lead.attribution))
        touch_rows.append((sub.lead.lead_id, lead_id, sub.lead.captured_at, sub.traceparent,
                           touched.model_dump_json().encode(), record.consent_withdrawn_at))
        results[i] = Admitted.of(lead_id, sub, existing=True)
    spoken = [(key, word.consent, word.said_at) for key, word in sorted(words.items())
              if word is not None and word != said[key]]
    await conn.execute(_STORE, *_columns(lead_rows, 9), *_columns(touch_rows, 6), *_columns(spoken, 3))
    answered = [(batch[i].idempotency_key, json.dumps(results[i].answer))  # type: ignore[union-attr]
                for i in fresh if batch[i].idempotency_key]
    if answered:
        await conn.execute(_IDEMPOTENCY_ANSWER, *_columns(answered))
    _repeat_within_batch(batch, results)
    return results  # type: ignore[return-value]


# One statement, so one round trip and no BEGIN or COMMIT of its own: at a steady 100 leads/s nearly every
# request commits alone, and its four round trips (BEGIN, people, leads, COMMIT) were most of the writer's
# CPU. The lead's event names its person, known only once the person's row is upserted: the event is sent
# as the bytes before and after its person_id, and the statement puts the id between them.
# The person's word on marketing consent is weighed in it too, as admit weighs it in Python (domain.newer_word,
# OnRecord.first), where their row is locked and read anyway: the newer by when it was sent is kept (one as old as
# the person's counts as older), and a new lead keeps the time of a no that holds on it. Only a yes sent no later
# than its person's no would change the lead's event: that person is left to admit (locked, not returned), as one
# with an open lead is. That takes a clock behind another capture process's (a release goes to admit anyway), so
# it costs no round trip in practice.
_OPEN_LEADS = f"""
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[],
                         $8::text[], $9::bytea[], $10::bytea[], $11::timestamptz[], $12::boolean[], $13::timestamptz[])
    WITH ORDINALITY AS v(person_key, person_id, lead_id, request_id, email, form_id, captured_at, traceparent,
                         head, tail, consent_withdrawn_at, consent, consent_said_at, n)
), p AS (
    INSERT INTO {SCHEMA}.people (person_key, person_id, open_lead_id, updated_at, consent, consent_said_at)
    SELECT person_key, person_id, lead_id, $14::timestamptz, consent, consent_said_at FROM v ORDER BY n
    ON CONFLICT (person_key) DO UPDATE
    SET open_lead_id = excluded.open_lead_id, updated_at = excluded.updated_at,
        consent = CASE WHEN excluded.consent_said_at > coalesce(people.consent_said_at, '-infinity')
                       THEN excluded.consent ELSE people.consent END,
        consent_said_at = CASE WHEN excluded.consent_said_at > coalesce(people.consent_said_at, '-infinity')
                               THEN excluded.consent_said_at ELSE people.consent_said_at END
    WHERE people.open_lead_id IS NULL  -- a person with an open lead is locked, left as is and not returned
      AND NOT (excluded.consent IS TRUE AND people.consent IS FALSE
               AND excluded.consent_said_at <= people.consent_said_at)
    RETURNING person_key, person_id, open_lead_id, consent, consent_said_at
), l AS (
    INSERT INTO {SCHEMA}.leads (lead_id, request_id, email, form_id, captured_at, traceparent, event,
                                consent_withdrawn_at, person_id)
    SELECT v.lead_id, v.request_id, v.email, v.form_id, v.captured_at, v.traceparent,
           v.head || convert_to(p.person_id::text, 'UTF8') || v.tail,
           CASE WHEN p.consent IS FALSE THEN p.consent_said_at ELSE v.consent_withdrawn_at END, p.person_id
    FROM v JOIN p ON p.person_key = v.person_key AND p.open_lead_id = v.lead_id
)
SELECT person_key, person_id, open_lead_id FROM p
"""
#: Stands in for the person's id while a lead's event is rendered, so the event can be cut around it.
_PERSON_MARK = uuid.uuid4()


def _split_event(lead: LeadCaptured) -> tuple[bytes, bytes] | None:
    """The lead's event as JSON cut where its person_id goes, or None if the cut is not unambiguous."""
    mark = f'"person_id":"{_PERSON_MARK}"'.encode()
    head, found, tail = lead.model_copy(update={"person_id": _PERSON_MARK}).model_dump_json().encode().partition(mark)
    if not found or mark in tail:
        return None
    return head + b'"person_id":"', b'"' + tail


async def open_leads(conn: asyncpg.Connection, batch: Sequence[Submitted], now: datetime) -> list[Admitted | None]:
    """Store, in one statement, each submission that opens its person's lead (see the module's docstring); its
    answer, or None for a submission ``admit`` must take (a touch, a repeat, an Idempotency-Key)."""
    results: list[Admitted | None] = [None] * len(batch)
    first: dict[str, tuple[int, tuple[bytes, bytes]]] = {}
    seen: set[str] = set()
    for i, sub in enumerate(batch):
        # Only a person's FIRST submission of the batch may open their lead here: were an earlier one left to
        # admit (an Idempotency-Key), it would become a touch older than the lead it touches.
        if sub.person_key in seen:
            continue
        seen.add(sub.person_key)
        if sub.idempotency_key is None and (cut := _split_event(sub.lead)):
            first[sub.person_key] = (i, cut)
    if not first:
        return results
    ordered = sorted(first.items())  # people locked in key order, as admit locks them
    rows = [(key, uuid.uuid4(), batch[i].lead.lead_id, batch[i].request_id, batch[i].lead.contact.email,
             batch[i].lead.attribution.form_id, batch[i].lead.captured_at, batch[i].traceparent, head, tail,
             OnRecord.first(batch[i].lead, batch[i].consent).consent_withdrawn_at,
             *_word_columns(ConsentWord.of(batch[i].lead, batch[i].consent)))
            for key, (i, (head, tail)) in ordered]
    opened = {r["person_key"] for r in await conn.fetch(_OPEN_LEADS, *_columns(rows), now)
              if r["open_lead_id"] == batch[first[r["person_key"]][0]].lead.lead_id}
    for key in opened:
        i = first[key][0]
        results[i] = Admitted.of(batch[i].lead.lead_id, batch[i], existing=False)
    return results


def _columns(rows: Sequence[tuple[Any, ...]], width: int | None = None) -> list[list[Any]]:
    """Rows as columns: one array parameter per column of an ``unnest`` statement (``width`` of them when there may
    be no row)."""
    if not rows and width is not None:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _word_columns(word: ConsentWord | None) -> tuple[bool | None, datetime | None]:
    """A word as the people row's (consent, consent_said_at)."""
    return (None, None) if word is None else (word.consent, word.said_at)


def _word(row: Any) -> ConsentWord | None:
    """The person's word on marketing consent a row of ``people`` holds (None: none since 0011)."""
    return None if row["consent"] is None else ConsentWord(row["consent"], row["consent_said_at"])


async def _claim_keys(conn: asyncpg.Connection, batch: Sequence[Submitted], now: datetime,
                      results: list[Admitted | Exception | None]) -> list[int]:
    """Claim each new Idempotency-Key (an expired one is claimed anew); answer the ones already answered.
    Returns the indexes of the submissions to store."""
    owners: dict[str, int] = {}
    for i, sub in enumerate(batch):
        if sub.idempotency_key and sub.idempotency_key not in owners:
            owners[sub.idempotency_key] = i
    if owners:
        keys = sorted(owners)
        claimed = {r["key"] for r in await conn.fetch(
            _IDEMPOTENCY_CLAIM, keys, [batch[owners[k]].fingerprint for k in keys], now, now - IDEMPOTENCY_WINDOW)}
        seen = [key for key in owners if key not in claimed]
        if seen:
            for row in await conn.fetch(_IDEMPOTENCY_SEEN, seen):
                i = owners[row["key"]]
                answer = json_value(row["answer"])
                results[i] = (IdempotencyMismatch("this Idempotency-Key was used for a different request")
                              if row["fingerprint"] != batch[i].fingerprint
                              else Admitted(answer, repeated=True) if answer is not None
                              else IdempotencyMismatch("the first request with this Idempotency-Key never finished"))
    return [i for i, sub in enumerate(batch)
            if results[i] is None and (not sub.idempotency_key or owners[sub.idempotency_key] == i)]


async def claim_key(conn: asyncpg.Connection, submitted: Submitted, now: datetime,
                    answer: dict[str, Any]) -> Admitted | Exception | None:
    """Claim ``submitted``'s Idempotency-Key for ``answer``, for a submission stored elsewhere (quarantined),
    in the caller's transaction. None: claimed; else what the key's earlier request got (or why not)."""
    if not conn.is_in_transaction():
        raise RuntimeError("claim_key needs a transaction: the key is stored with its submission or not at all")
    results: list[Admitted | Exception | None] = [None]
    if await _claim_keys(conn, [submitted], now, results):
        await conn.execute(_IDEMPOTENCY_ANSWER, [submitted.idempotency_key], [json.dumps(answer)])
        return None
    return results[0]


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
            results[i] = replace(owner, repeated=True)  # type: ignore[type-var]  # the ids of what the first stored


async def _latest_records(conn: asyncpg.Connection, lead_ids: set[uuid.UUID]) -> dict[uuid.UUID, OnRecord]:
    """What each lead's latest touch left on record, for leads touched before."""
    if not lead_ids:
        return {}
    return {r["lead_id"]: OnRecord(LeadTouched.model_validate_json(r["event"]).contact, r["consent_withdrawn_at"])
            for r in await conn.fetch(_LATEST_TOUCHES, list(lead_ids))}


async def _first_touches(conn: asyncpg.Connection,
                         lead_ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[LeadCaptured, OnRecord]]:
    """Each lead's first submission, and what it put on record."""
    if not lead_ids:
        return {}
    found = {}
    for r in await conn.fetch(_FIRST_TOUCHES, list(lead_ids)):
        lead = LeadCaptured.model_validate_json(r["event"])
        found[r["lead_id"]] = (lead, OnRecord(lead.contact, r["consent_withdrawn_at"]))
    return found


#: Locks the batch's people who are free (in key order, as every capture transaction does; SKIP LOCKED waits for
#: none) and returns the ones held by another transaction. A row inserted since the lock was tried counts as held.
_HELD_PEOPLE = f"""
WITH free AS MATERIALIZED (
    SELECT person_key FROM {SCHEMA}.people WHERE person_key = ANY($1::text[])
    ORDER BY person_key COLLATE "C" FOR UPDATE SKIP LOCKED
)
SELECT person_key FROM {SCHEMA}.people WHERE person_key = ANY($1::text[]) AND person_key NOT IN (SELECT * FROM free)
"""


class WriterStopped(RuntimeError):
    """The writer stopped while a submission waited for its round: it may or may not be stored."""


class WriteTimedOut(TimeoutError):
    """Postgres did not answer in time (see the module): the submission may or may not be stored."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Postgres did not answer the write within {seconds:g} s: it may or may not be stored")


_DELETE_EXPIRED = sa.text(f"""
DELETE FROM {SCHEMA}.idempotency WHERE key IN (
    SELECT key FROM {SCHEMA}.idempotency WHERE created_at < :before LIMIT :batch FOR UPDATE SKIP LOCKED)
""")


class ExpiredKeys(BackgroundLoop):
    """Deletes Idempotency-Keys past their window (with an hour's margin), a batch at a time: the table holds
    a day of keyed submissions, not every one ever made."""

    name = "capture-expired-keys"
    # Housekeeping: a key past its window is taken over when it comes again (_IDEMPOTENCY_CLAIM), deleted or not,
    # so while rounds fail only the table grows.
    essential = False
    BATCH = 1000
    EVERY_S = 300.0

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime]) -> None:
        super().__init__(batch_max=self.BATCH, idle_s=self.EVERY_S)
        self._engine, self._clock = engine, clock

    async def step(self) -> int:
        before = self._clock() - IDEMPOTENCY_WINDOW - timedelta(hours=1)
        async with self._engine.begin() as conn:
            return (await conn.execute(_DELETE_EXPIRED, {"before": before, "batch": self.BATCH})).rowcount


class _EachStatementTimed:
    """A round's asyncpg connection, as far as the writer's statements use it, that gives each statement the whole
    statement deadline as it is sent (``LeadWriter._connection``), and the ROLLBACK after one Postgres refused a
    whole deadline too. It has no other method: a statement sent otherwise would run on the deadline of the one
    before it."""

    def __init__(self, conn: asyncpg.Connection, restart: Callable[[], None], heard: Callable[[], None]) -> None:
        self._conn, self._restart, self._heard = conn, restart, heard

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await self._sent(self._conn.fetch, query, args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._sent(self._conn.execute, query, args)

    async def _sent(self, send: Callable[..., Any], query: str, args: tuple[Any, ...]) -> Any:
        self._restart()
        try:
            answer = await send(query, *args)
        except asyncpg.PostgresError:
            # Answered, if with an error: a lock timeout comes near the statement's deadline, and the rollback
            # that follows would have what was left of it, its round failing WriteTimedOut instead of going
            # around the person held.
            self._heard()
            self._restart()
            raise
        self._heard()
        return answer

    def is_in_transaction(self) -> bool:
        return self._conn.is_in_transaction()


@dataclass(eq=False)
class _Request:
    """A submission waiting in the writer for its answer (``done``)."""

    submitted: Submitted
    done: asyncio.Future[Admitted]
    #: Its round began with it in: from then on only the round answers it (see ``LeadWriter.write``).
    taken: bool = False


def _refuse(requests: Sequence[_Request]) -> None:
    """Answer requests the writer will not write with an error (a 503 to retry), never a wait for ever."""
    for request in requests:
        if not request.done.done():
            request.done.set_exception(WriterStopped("the writer stopped before this submission was answered"))


class LeadWriter:
    """Commits submissions in groups: one write round for every request waiting at that moment.

    A failed commit fails its requests (they answer 503); it does not make capture unready. Rounds go one after
    another, so a round may wait on a row held elsewhere only as long as the pool's ``lock_timeout`` allows
    (``CAPTURE_DB_LOCK_TIMEOUT_MS``, and each statement ``CAPTURE_DB_STATEMENT_TIMEOUT_MS``), and on a silent
    Postgres only until a statement's deadline: then it fails, and the rounds behind it go on. A round stopped by
    a person's row held past the lock timeout is written again without the people held elsewhere, whose requests
    alone fail; any other failure fails the whole round, except that leads a first statement stored stay answered
    when the transaction after it fails or times out.
    """

    name = "capture-writer"
    failing = False
    essential = True

    def __init__(self, engine: AsyncEngine, max_batch: int, on_commit: Callable[[], None],
                 clock: Callable[[], datetime], linger: Linger | None = None,
                 statement_deadline_s: float | None = None) -> None:
        """``linger``: how long a round waits for more submissions (see the module), none if not given;
        ``statement_deadline_s``: how long Postgres may take to answer each statement of a round (see the
        module), None: for ever."""
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._clock = clock
        self._linger = linger or Linger(0.0)
        self._statement_s = statement_deadline_s
        self._take_within = None if statement_deadline_s is None else 2 * statement_deadline_s + self._linger.max_s
        #: Loop time Postgres last answered this writer (a statement, a round's end): a request waiting for a
        #: round is given up on only after ``_take_within`` of silence, not of a slow round's honest work.
        self._heard_at = float("-inf")
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        #: Set by ``write`` once a lingering round has its target; None while no round lingers.
        self._filled: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="capture-writer")

    async def stop(self) -> None:
        # Requests already queued were promised an answer: finish them first.
        await self._queue.join()
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # One queued as the task was cancelled (while it waited for work) would wait for ever.
        queued = self._drain()
        for _ in queued:
            self._queue.task_done()
        _refuse(queued)

    async def write(self, submitted: Submitted) -> Admitted:
        """Return once ``submitted`` is committed (or was answered before); raise if it could not be, or if no
        round took it in time or its round got no answer in time (``WriteTimedOut``: see the module)."""
        if self._stopping or (self._task is not None and self._task.done()):
            raise WriterStopped("the writer has stopped")  # nothing would take it from the queue
        request = _Request(submitted, asyncio.get_running_loop().create_future())
        await self._queue.put(request)
        if self._filled is not None and self._round_full():
            self._filled.set()
        done = request.done
        try:
            if self._take_within is not None:
                # Not ``await done`` under a timeout: that would cancel ``done`` when time is up, and a round
                # already committing it would store a lead its client was answered 503 for, and retries. Nor one
                # wait from when it was queued: rounds ahead of it that Postgres keeps answering may take longer
                # (a backlog, slow disks), and only silence is a reason to give up.
                loop = asyncio.get_running_loop()
                queued_at = loop.time()
                while not (done.done() or request.taken):
                    silent_until = max(queued_at, self._heard_at) + self._take_within
                    if loop.time() >= silent_until:
                        done.cancel()  # its round, yet to begin, leaves it out
                        raise WriteTimedOut(self._take_within)
                    await asyncio.wait([done], timeout=silent_until - loop.time())
            # Taken: the round's answer, stored or not, comes within its statements' deadlines.
            return await done
        except asyncio.CancelledError:
            done.cancel()  # the request went away (its client hung up): a round yet to begin leaves it out
            raise

    async def _commit(self, batch: list[Submitted]) -> list[Admitted | Exception]:
        now = self._clock()
        try:
            async with self._connection() as conn:
                results: list[Admitted | Exception | None] = list(await open_leads(conn, batch, now))
        except asyncpg.LockNotAvailableError as exc:  # the statement stored nothing
            if len({sub.person_key for sub in batch}) < 2:
                raise
            return await self._around_held(batch, now, exc)
        rest = [i for i, result in enumerate(results) if result is None]
        if rest:
            subs = [batch[i] for i in rest]
            try:
                async with self._connection(transaction=True) as conn:
                    admitted = await admit(conn, subs, now)
            except asyncpg.LockNotAvailableError as exc:
                admitted = (await self._around_held(subs, now, exc) if len({s.person_key for s in subs}) > 1
                            else self._failed(subs, exc))
            except Exception as exc:  # the leads opened above are stored: only these requests fail
                admitted = self._failed(subs, exc)
            for i, result in zip(rest, admitted, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    async def _around_held(self, batch: list[Submitted], now: datetime,
                           held_error: asyncpg.LockNotAvailableError) -> list[Admitted | Exception]:
        """``batch`` again, once a row it needed stayed locked past the lock timeout: the people whose rows are
        locked elsewhere fail (``held_error``, a 503 to retry); everyone else is written, in one transaction.

        A person's row held for seconds (a stuck transaction of another process, an operator's) would otherwise
        fail every request that shared its round, however unrelated, and again in each round it joins."""
        try:
            async with self._connection(transaction=True) as conn:
                held = {r["person_key"] for r in await conn.fetch(_HELD_PEOPLE, sorted({s.person_key for s in batch}))}
                free = [sub for sub in batch if sub.person_key not in held]
                admitted = iter(await admit(conn, free, now) if free else [])
        except Exception as exc:
            return self._failed(batch, exc)
        if held:
            log.warning("lead write waited on people held elsewhere: their submissions failed, the rest written",
                        held=len(held), leads=len(batch))
        return [held_error if sub.person_key in held else next(admitted) for sub in batch]

    @contextlib.asynccontextmanager
    async def _connection(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in a transaction if asked) for part of a round, given up on when Postgres has not
        answered a statement within the statement deadline (the connection and its BEGIN, each statement sent
        on it, the COMMIT: see the module): the statement in flight is abandoned and the connection closed
        (``raw_pooled``), and ``WriteTimedOut`` raised."""
        deadline = asyncio.timeout(None)
        try:
            async with deadline:
                self._restart(deadline)  # the connection and its BEGIN
                async with (raw_transaction if transaction else raw_pooled)(self._engine) as conn:
                    yield _EachStatementTimed(conn, lambda: self._restart(deadline),  # type: ignore[misc]
                                              self._heard)
                    self._restart(deadline)  # the COMMIT
            self._heard()  # the COMMIT answered
        except TimeoutError as exc:
            if deadline.expired():
                raise WriteTimedOut(self._statement_s) from exc  # type: ignore[arg-type]
            raise

    def _restart(self, deadline: asyncio.Timeout) -> None:
        """Give the statement about to be sent the whole statement deadline, whatever those before it took."""
        if self._statement_s is not None:
            deadline.reschedule(asyncio.get_running_loop().time() + self._statement_s)

    def _heard(self) -> None:
        """Postgres answered a statement of this writer's (``_heard_at``): sending one proves nothing, and each
        round sent to a silent Postgres would put off giving up on the requests queued behind it."""
        self._heard_at = asyncio.get_running_loop().time()

    @staticmethod
    def _failed(batch: Sequence[Submitted], exc: Exception) -> list[Admitted | Exception]:
        log.warning("lead write failed", error=error_text(exc), leads=len(batch))
        return [exc] * len(batch)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            try:
                await self._linger_for_more()
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                self._linger.note(len(batch), time.monotonic())
                await self._round(batch)
            except asyncio.CancelledError:
                # Cancelled mid-round (a request that came after stop's wait, or the task cancelled from
                # outside): its requests, and those queued behind them, get an answer (a 503 to retry), not a
                # wait for ever.
                batch += self._drain()
                _refuse(batch)
                raise
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _drain(self) -> list[_Request]:
        taken = []
        while not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    async def _round(self, batch: list[_Request]) -> None:
        """Commit ``batch`` and answer each of its requests (an error of the round fails them all)."""
        # A request already answered (it stopped waiting: a 503) is left out: its client retries, and the retry
        # would find this one stored as a lead of its own and be taken for a second submission, a touch of it.
        batch = [request for request in batch if not request.done.done()]
        if not batch:
            return
        for request in batch:
            request.taken = True
        try:
            results = await self._commit([request.submitted for request in batch])
        except Exception as exc:
            log.warning("lead write failed", error=error_text(exc), leads=len(batch))
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        WRITE_BATCH.observe(len(batch))
        for request, result in zip(batch, results, strict=True):
            if request.done.done():
                continue
            if isinstance(result, Exception):
                request.done.set_exception(result)
            else:
                request.done.set_result(result)
        self._on_commit()

    async def _linger_for_more(self) -> None:
        """With one submission in hand: wait until the round has its target, or the linger is over."""
        linger = self._linger.seconds(time.monotonic())  # rounds are noted only when submissions come
        if not linger or self._round_full():
            return
        self._filled = asyncio.Event()
        try:
            async with asyncio.timeout(linger):
                await self._filled.wait()
        except TimeoutError:
            pass
        finally:
            self._filled = None

    def _round_full(self) -> bool:
        """The round in hand (one taken, the rest queued) has its target, if it has one."""
        return bool(self._linger.target) and self._queue.qsize() + 1 >= self._linger.target
