"""Erasing a person (GDPR art. 17), as the admin API and ``leadpipe-capture erase`` ask it: capture clears its own
rows and sends one ``lead.erased`` per lead down ``leads.captured`` (its outbox, in the same unit of work), for each
stage to clear its copies and pass it on.

Nothing is kept that leads from an address to the erased leads (a digest of it is reversed by trying addresses):
erasing an address again finds only what its person submitted since (a new lead, of a new person), else nobody.
Erasing a lead by id again answers it and sends nothing (``erasures`` keeps the erased ids). The log and the event
name who asked (a key's name), never the address.

Another person's data is never erased for them: a lead of the person that sales merged into another's is erased, the
lead it went into is not (their touches on it are cleared, the lead listed as touched), and leads merged into an
erased lead are listed, for a DPO to erase by id if they are the same human's. An erased lead goes whole, another
person's touches on it too (sales merged a lead of theirs into it): those touches are listed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from leadpipe_common import topics
from leadpipe_common.envelope import derive_id, encode
from leadpipe_common.events import LeadErased
from leadpipe_common.uow import UnitOfWork

from capture.domain import IdentityRules, erasure_key
from capture.handlers import SOURCE
from capture.store import CaptureStore, Found

log = structlog.get_logger(__name__)


class NothingToErase(LookupError):
    """The request names nothing capture holds or erased: ``field`` says which part of it (``email``,
    ``lead_id``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class StillSubmitting(RuntimeError):
    """The person's submissions kept coming between the erasure's reading and its locks, ``ATTEMPTS`` times: nothing
    was erased; asking again is safe."""


#: How many times an erasure reads and locks the person afresh before it gives up (``StillSubmitting``): each
#: submission stored in the moment between the two costs one; a person (or a script posting their address) rarely
#: sends two in it.
ATTEMPTS = 3

#: What ``NothingToErase`` says of an address: what was searched, so that a DPO reads no more into it.
NOBODY = ("capture keeps no record of a person under this address, so no open or closed lead of theirs and no touch "
          "of theirs on another person's lead, and no quarantined submission holds it. An erasure keeps nothing of "
          "the address, so a person erased before is not found by it; a lead kept before migration 0012 is found "
          "only while it is its person's open lead: erase such a lead by its id")


@dataclass(frozen=True)
class Erased:
    #: Every lead the request names, erased now or before, in the order they were found.
    lead_ids: list[uuid.UUID]
    #: Those erased now (each sent one ``lead.erased``).
    fresh: list[uuid.UUID]
    #: Another person's leads the person's touches were on (sales merged a lead of theirs into it): the touches
    #: cleared, the leads not erased.
    touched_leads: list[uuid.UUID] = field(default_factory=list)
    #: Leads sales merged into an erased lead (another person's, or the same human's under another address): not
    #: erased; a DPO who finds them the person's erases them by id.
    merged_leads: list[uuid.UUID] = field(default_factory=list)
    #: Touches on the leads erased now that another person sent (sales merged a lead of theirs into one, and they
    #: submitted again): erased with the lead, which is the person's; that person's next submission opens a new lead.
    others_touches: list[uuid.UUID] = field(default_factory=list)


async def erase(uow: UnitOfWork[CaptureStore], rules: IdentityRules, *, email: str | None, lead_id: uuid.UUID | None,
                at: datetime, by: str, dry_run: bool = False) -> Erased:
    """Erase the leads of the person ``email`` names (as their person key), their touches on other people's leads,
    and the lead ``lead_id``, and commit; ``dry_run``: the same statements, nothing sent, nothing committed (the
    caller's unit of work rolls back), for what a real run would do.

    Raises ValueError for an ``email`` that is no address, ``NothingToErase`` for one that names nothing capture
    holds (a person erased before included), or a ``lead_id`` it never held, ``StillSubmitting`` when the person's
    submissions kept coming in while it locked them."""
    key = erasure_key(email, rules) if email is not None else None
    by_id = [lead_id] if lead_id is not None else []
    found, quarantined = await _forget_and_lock(uow.store, key, by_id, functools.partial(_names, key=key, rules=rules))
    named: list[uuid.UUID] = []
    if key is not None:
        if found is None and not quarantined:
            raise NothingToErase("email", NOBODY)
        named += found.leads if found else []
    if lead_id is not None:
        if not (await uow.store.erased([lead_id]) or await uow.store.has_lead(lead_id)):
            raise NothingToErase("lead_id", f"capture holds no lead {lead_id}, and erased none")
        named.append(lead_id)
    named = list(dict.fromkeys(named))
    # A touch on a lead erased whole (the lead named by id too) is cleared with it.
    touched = [(touch, lead) for touch, lead in (found.touches if found else []) if lead not in named]
    before = set(await uow.store.erased(named))
    fresh = [lead for lead in named if lead not in before]
    others: list[uuid.UUID] = []
    if fresh or touched or found is not None:  # a person found: their record goes, leads or not
        cleared = await uow.store.erase(fresh, key=key, by_id=by_id, touch_ids=[t for t, _ in touched], at=at, by=by)
        # What another erasure recorded while this one waited on its locks was sent by it: this is a repeat.
        fresh = [lead for lead in fresh if lead in cleared.recorded]
        others = cleared.others_touches
    merged = await uow.store.merged_into(named)
    touched_leads = list(dict.fromkeys(lead for _, lead in touched))
    if dry_run:
        return Erased(named, fresh, touched_leads, merged, others)
    if fresh:
        # Ids derived from the lead: an erasure of it sent twice (two admins at once) is one event downstream.
        uow.publish([encode(topics.CAPTURED, LeadErased(lead_id=lead, at=at, by=by),
                            event_id=derive_id(lead, LeadErased.type), source=SOURCE, time=at) for lead in fresh])
    await uow.commit()
    log.info("person erased" if fresh or touched or quarantined else "erasure repeated",
             leads=[str(lead) for lead in named], erased_now=len(fresh),
             touched_leads=[str(lead) for lead in touched_leads], merged_leads=[str(lead) for lead in merged],
             others_touches=[str(touch) for touch in others], by=by)
    return Erased(named, fresh, touched_leads, merged, others)


async def _forget_and_lock(store: CaptureStore, key: str | None, by_id: list[uuid.UUID],
                           same_person: Callable[[str], bool]) -> tuple[Found | None, int]:
    """What the person ``key`` names has stored (None: no record of them), its quarantined submissions and
    Idempotency-Keys deleted, and every people row the erasure touches locked, in capture's LOCK ORDER (``store.
    people``): a release holds its quarantined submission, then keys and people; every other transaction,
    Idempotency-Keys (their answers name the leads) before people. And how many quarantined submissions went."""
    quarantined = 0  # deleted before the savepoint: kept from one attempt to the next
    for _ in range(ATTEMPTS):
        found = await store.person_found(key) if key is not None else None
        leads = [*(found.leads if found else []), *by_id]
        touch_ids = [touch for touch, _ in (found.touches if found else [])]
        quarantined += await store.forget_quarantined(leads, touch_ids, key=key, same_person=same_person)
        await store.forget_answers(leads, touch_ids)
        locks = await store.lock_erasure(leads, key=key, by_id=by_id)
        # Every people row it touches is locked now, in one statement: what was stored before the lock is found on
        # reading again, nothing after it. Found more (a lead, a touch, a key answering one, a submission released
        # as a touch meanwhile), the locks are let go and the next attempt deletes them before it locks people again.
        if (await store.person_found(key) if key is not None else None) == found \
                and not await store.answers_left(leads, touch_ids) \
                and not await store.released_left(leads, touch_ids):
            return found, quarantined
        await locks.rollback()
    raise StillSubmitting(f"the person's submissions kept coming while the erasure locked them ({ATTEMPTS} times); "
                          "nothing was erased: ask again")


def _names(sent: str, key: str | None, rules: IdentityRules) -> bool:
    """Whether an address as a submission sent it names the person ``key`` names."""
    try:
        return erasure_key(sent, rules) == key
    except ValueError:
        return False
