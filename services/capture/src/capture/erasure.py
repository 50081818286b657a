"""Erasing a person (GDPR art. 17), as the admin API and ``leadpipe-capture erase`` ask it: capture clears its own
rows and sends one ``lead.erased`` per lead down ``leads.captured`` (its outbox, in the same unit of work), for each
stage to clear its copies and pass it on.

Nothing is kept that leads from an address to the erased leads (a digest of it is reversed by trying addresses):
erasing an address again finds only what its person submitted since (a new lead, of a new person), else nobody.
Erasing a lead by id again answers it and sends nothing (``erasures`` keeps the erased ids). The log and the event
name who asked (a key's name), never the address.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog

from leadpipe_common import topics
from leadpipe_common.envelope import derive_id, encode
from leadpipe_common.events import LeadErased
from leadpipe_common.uow import UnitOfWork

from capture.domain import IdentityRules, erasure_key
from capture.handlers import SOURCE
from capture.store import CaptureStore

log = structlog.get_logger(__name__)


class NothingToErase(LookupError):
    """The request names no lead capture holds or erased: ``field`` says which part of it (``email``,
    ``lead_id``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class Erased:
    #: Every lead the request names, erased now or before, in the order they were found.
    lead_ids: list[uuid.UUID]
    #: Those erased now (each sent one ``lead.erased``).
    fresh: list[uuid.UUID]


async def erase(uow: UnitOfWork[CaptureStore], rules: IdentityRules, *, email: str | None, lead_id: uuid.UUID | None,
                at: datetime, by: str) -> Erased:
    """Erase the leads of the person ``email`` names (as their person key) and the lead ``lead_id``, and commit.

    Raises ValueError for an ``email`` that is no address, ``NothingToErase`` for one that names nobody capture
    holds (a person erased before included), or a ``lead_id`` it never held."""
    key = erasure_key(email, rules) if email is not None else None
    by_id = [lead_id] if lead_id is not None else []
    found = await uow.store.person_leads(key) if key is not None else []
    # Idempotency-Keys before people, as every capture transaction locks them: their answers name the leads.
    await uow.store.forget_answers([*found, *by_id])
    while True:
        # Every people row it touches locked in one statement; a lead of theirs opened before the lock is found
        # on reading again (its holder locked on the next turn), none after it.
        await uow.store.lock_erasure([*found, *by_id], key=key, by_id=by_id)
        locked = await uow.store.person_leads(key) if key is not None else []
        if locked == found:
            break
        await uow.store.forget_answers([lead for lead in locked if lead not in found])
        found = locked
    named: list[uuid.UUID] = []
    if key is not None:
        if not found:
            raise NothingToErase("email", "capture holds no lead of this address (an erasure does not keep the "
                                          "address, so a person erased before is not found by it)")
        named += found
    if lead_id is not None:
        if not (await uow.store.erased([lead_id]) or await uow.store.has_lead(lead_id)):
            raise NothingToErase("lead_id", f"capture holds no lead {lead_id}, and erased none")
        named.append(lead_id)
    named = list(dict.fromkeys(named))
    before = set(await uow.store.erased(named))
    fresh = [lead for lead in named if lead not in before]
    if fresh:
        recorded = set(await uow.store.erase(fresh, key=key, by_id=by_id, at=at, by=by,
                                             same_person=lambda sent: _names(sent, key, rules)))
        # What another erasure recorded while this one waited on its locks was sent by it: this is a repeat.
        fresh = [lead for lead in fresh if lead in recorded]
    if fresh:
        # Ids derived from the lead: an erasure of it sent twice (two admins at once) is one event downstream.
        uow.publish([encode(topics.CAPTURED, LeadErased(lead_id=lead, at=at, by=by),
                            event_id=derive_id(lead, LeadErased.type), source=SOURCE, time=at) for lead in fresh])
    await uow.commit()
    log.info("person erased" if fresh else "erasure repeated", leads=[str(lead) for lead in named],
             erased_now=len(fresh), by=by)
    return Erased(named, fresh)


def _names(sent: str, key: str | None, rules: IdentityRules) -> bool:
    """Whether an address as a submission sent it names the person ``key`` names."""
    try:
        return erasure_key(sent, rules) == key
    except ValueError:
        return False
