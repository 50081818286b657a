"""delivery's handler: each deliverable event in, one queued delivery per subscription that wants it, its body
holding only the contact fields that subscription is sent, and the leads each grade filter took remembered (a
rejection lets them go); an erasure (``lead.erased``) gives up and clears what is
kept of its lead, and is queued as any other.

One handler for every type, so that the runner makes one call of a batch (it calls a handler once for each run of
events going to it): the batch's transaction takes its locks in the store's LOCK ORDER once, the subscriptions'
then every lead's at once. A handler of its own for erasures, between two calls of this one, took leads' locks
before subscriptions', and leads out of their order.

Idempotent by construction (one row per subscription and event id), so the
service needs no inbox; nothing is produced. What the grade filters took is
written as the batch leaves it (a lead taken again keeps its later time, a
rejection noted again its later one), so a batch read again in its order leaves
it as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from leadpipe_common.consumer import Outcome
from leadpipe_common.envelope import Envelope, structured
from leadpipe_common.events import LeadErased
from leadpipe_common.uow import UnitOfWork

from delivery.domain import Following, may_follow, wants, withheld
from delivery.store import DeliveryStore
from delivery.subscriptions import SubscriptionBook


@dataclass(frozen=True)
class Delivery:
    """What delivery's handler and dispatcher need besides the store."""

    #: The file's and the admin API's, kept current (``delivery.subscriptions``).
    subscriptions: SubscriptionBook
    clock: Callable[[], datetime]
    http: httpx.AsyncClient


async def handle_deliverable(uow: UnitOfWork[DeliveryStore], batch: Sequence[Envelope],
                             ctx: Delivery) -> dict[uuid.UUID, Outcome]:
    # Read again while some cannot be opened: one deleted meanwhile must not hold up the batch till the refresh.
    if not ctx.subscriptions.loaded or ctx.subscriptions.unopened:
        await ctx.subscriptions.reload(uow.store, ctx.clock())
    # Queued for the others alone, these events would never reach the receivers left out: the batch fails,
    # and the runner retries it (nothing committed, /readyz failing) until they can be opened.
    ctx.subscriptions.require_opened()
    subs = list(ctx.subscriptions.values())
    # Which leads the grade filters took, in one statement for the batch, asked only where it may change an answer.
    asked = {(sub.id, lead) for env in batch for sub in subs for lead in may_follow(sub, env.data)}
    following = Following(*await uow.store.following(asked))  # no statement when nothing is asked
    rows = []
    # What is kept of an erased lead is given up and cleared (its deliveries' bodies hold the person's contact), and
    # so is what is queued for it from now on; its erasure, which holds no one, is queued as any deliverable event,
    # for the receivers that hold the lead to erase the person too. A lead erased twice keeps its first time.
    erased: dict[uuid.UUID, datetime] = {}
    for env in batch:
        if isinstance(env.data, LeadErased):
            erased.setdefault(env.data.lead_id, env.data.at)
        # One body for every subscription sent the same contact fields (most: all of them).
        bodies: dict[frozenset[str] | None, bytes] = {}
        sent_to = []
        for sub in subs:
            if not wants(sub, env.data, following.of(sub, env.data)):
                continue
            if sub.contact not in bodies:
                bodies[sub.contact] = structured(env, withheld(sub, env.data))
            # No time: the store queues it by Postgres's clock, which claims judge it due by, not this host's.
            rows.append({"subscription_id": sub.id, "lead_id": env.data.lead_id, "event_id": env.id,
                         "event_type": env.type, "body": bodies[sub.contact]})
            sent_to.append(sub)
        following.read(env.data, sent_to, env.time)
    taken = following.taken
    # An API subscription may have been deleted by another process since this one last refreshed its book.
    made = {row["subscription_id"] for row in rows} - ctx.subscriptions.from_file.keys()
    # LOCK ORDER (the store's): the subscriptions' rows here, before any lead's lock (``enqueue``).
    if made and (gone := made - await uow.store.still_subscribed(made)):
        rows = [row for row in rows if row["subscription_id"] not in gone]
        taken = {pair: mark for pair, mark in taken.items() if pair[0] not in gone}
    await uow.store.enqueue(rows, taken=taken, let_go=following.forgotten, erased=erased)
    return {env.id: [] for env in batch}


handle_lead_routed = handle_lead_sla_breached = handle_lead_stage_changed = handle_deliverable
handle_lead_reengaged = handle_lead_merged = handle_lead_queued = handle_lead_assigned = handle_deliverable
handle_lead_handed_over = handle_lead_erased = handle_deliverable
