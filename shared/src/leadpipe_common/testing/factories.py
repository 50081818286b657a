"""Builders of valid events for tests that feed a service's input topic directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from leadpipe_common.envelope import Envelope, Message, decode, encode
from leadpipe_common.events import (
    Attribution, Contact, Enrichment, Event, LeadCaptured, LeadEnriched, LeadScored, Score, Sourced,
)


def now() -> datetime:
    return datetime.now(UTC)


def captured(email: str = "jo@example.com", **contact: object) -> LeadCaptured:
    return LeadCaptured(
        lead_id=uuid.uuid4(), captured_at=now(), contact=Contact(email=email, **contact),
        attribution=Attribution(form_id="test", utm_source="tests"),
    )


def enriched(email: str = "jo@example.com", *, employees: int | None = None, seniority: str | None = None,
             offer: str | None = None, country: str | None = None) -> LeadEnriched:
    base = captured(email)
    domain = email.rsplit("@", 1)[1]
    return LeadEnriched(
        **dict(base) | {"attribution": Attribution(form_id="test", offer=offer, utm_source="tests")},
        enriched_at=now(),
        enrichment=Enrichment(
            email_domain=domain, company_domain=Sourced[str](value=domain, source="email"),
            is_free_mail=Sourced[bool](value=False, source="t"), is_disposable=Sourced[bool](value=False, source="t"),
            employee_count=Sourced[int](value=employees, source="companies") if employees else None,
            seniority=Sourced[str](value=seniority, source="job_title") if seniority else None,
            country=Sourced[str](value=country, source="form") if country else None,
        ),
    )


def scored(decision: str = "mql", **kw: object) -> LeadScored:
    base = enriched(**kw)  # type: ignore[arg-type]
    return LeadScored(
        **dict(base), scored_at=now(),
        score=Score(value=75 if decision == "mql" else 30, grade="B", fit=40, intent=35,
                    decision=decision, reasons=[], rules_version="test"),  # type: ignore[arg-type]
    )


def message(topic: str, event: Event, event_id: uuid.UUID | None = None, time: datetime | None = None) -> Message:
    return encode(topic, event, event_id=event_id or uuid.uuid4(), source="tests", time=time or now())


def envelope(topic: str, event: Event, event_id: uuid.UUID | None = None, time: datetime | None = None) -> Envelope:
    """``event`` as a handler receives it: encoded for ``topic`` and decoded again, as the runner would; ``time``:
    when its producer recorded it (its ``ce_time``; None: now)."""
    m = message(topic, event, event_id, time)
    return decode(m.headers, m.key, m.value)


def consumed(message: Message, offset: int, *, topic: str | None = None, partition: int = 0) -> SimpleNamespace:
    """``message`` as the consumer runner reads it, at ``offset`` of ``partition`` (a redelivery reads the same
    offset), from its own topic or ``topic``: what a ``BatchApplier`` takes."""
    return SimpleNamespace(topic=topic or message.topic, partition=partition, offset=offset, key=message.key,
                           value=message.value, headers=list(message.headers))


async def one_batch(uow, *runs):  # noqa: ANN001, ANN002, ANN201
    """Each run (a handler, its envelopes, its context) applied in one unit of work, in order, then recorded and
    committed as the consumer runner does (after every handler ran): the outcomes by event id."""
    outcomes = {}
    async with uow:
        for handler, envelopes, ctx in runs:
            outcomes.update(await handler(uow, envelopes, ctx))
        await uow.record([(env.id, env.type, outcomes[env.id]) for _, envelopes, _ in runs for env in envelopes])
        await uow.commit()
    return outcomes
