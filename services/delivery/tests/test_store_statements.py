"""delivery's queue statements read, not run: which clock they judge and write by (test_store.py runs them on the
real Postgres)."""

import functools
import re
import uuid
from dataclasses import fields
from types import SimpleNamespace
from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects import postgresql

from leadpipe_common import topics
from leadpipe_common.consumer import BatchApplier
from leadpipe_common.events import Attribution, LeadErased, LeadStageChanged
from leadpipe_common.testing import factories
from leadpipe_common.uow import MemoryUnitOfWork
from delivery.domain import Mark, parse_subscriptions
from delivery.handlers import Delivery, handle_deliverable
from delivery.store import (
    _DROP_DELETED, _HOLD_FOLLOWED, _LOCK_LEADS, _UNFOLLOW, Attempted, Claimed, DeliveryStore, Forgotten, followed,
)
from delivery.service import SERVICE, wanted_record
from delivery.subscriptions import SecretBox, SubscriptionBook, sealed_secrets


class Answer:
    """What a statement answers: enable's switch-off found, one delivery redriven, none due for a claim, no
    subscription made through the API (a switch-off's, a forget's)."""

    def all(self) -> list[tuple]:
        return [("crm",)]

    def scalar_one(self) -> int:
        return 0

    def scalar_one_or_none(self) -> None:
        return None

    def first(self) -> None:
        return None

    def __iter__(self):
        return iter(())


class Recording:
    """A connection that runs nothing and keeps each statement it is given."""

    def __init__(self) -> None:
        self.statements: list = []
        self.parameters: list = []

    async def execute(self, statement, params=None) -> Answer:
        self.statements.append(statement)
        self.parameters.append(params)
        if isinstance(params, dict) and "leased_until" in params:  # a round's attempts: each recorded
            return [SimpleNamespace(seq=seq) for seq in params["seq"]]  # type: ignore[return-value]
        return Answer()

    def updates_of_deliveries(self) -> list[tuple[str, dict]]:
        """Each UPDATE of delivery.deliveries, as Postgres is sent it, and its parameters."""
        compiled = [s.compile(dialect=postgresql.dialect()) for s in self.statements
                    if s.is_dml and s.is_update and s.table.name == "deliveries"]
        return [(str(c), c.params) for c in compiled]


    def inserts_into_deliveries(self) -> list[tuple[str, list[dict]]]:
        """Each INSERT into delivery.deliveries, as Postgres is sent it for its rows (several at once), and them."""
        compiled = [(str(s.compile(dialect=postgresql.dialect(), column_keys=list(rows[0]))), rows)
                    for s, rows in zip(self.statements, self.parameters, strict=True) if isinstance(rows, list)]
        return [(sql, rows) for sql, rows in compiled if sql.startswith("INSERT INTO delivery.deliveries ")]


def host_times(params: dict) -> list[datetime]:
    return [v for v in params.values() if isinstance(v, datetime)]


async def test_a_redrive_makes_dead_deliveries_due_by_postgres_clock_not_the_hosts():
    """Run on a host whose clock was ahead of Postgres's, a redrive set next_at (and created_at) by the host's:
    claims judge a delivery due by Postgres's clock, so the redriven deliveries waited out the difference."""
    conn = Recording()
    await DeliveryStore(conn).redrive("crm", in_file={"crm"})
    [(sql, params)] = conn.updates_of_deliveries()
    assert "next_at=statement_timestamp()" in sql and "created_at=statement_timestamp()" in sql
    assert host_times(params) == []


async def test_switching_a_receiver_back_on_makes_what_waited_due_by_postgres_clock_not_the_hosts():
    """Switched back on from a host whose clock was ahead of Postgres's, what waited got the host's time as next_at
    and was sent only once Postgres's clock caught up."""
    conn = Recording()
    assert await DeliveryStore(conn).enable("crm") is True
    [(sql, params)] = conn.updates_of_deliveries()
    assert "THEN statement_timestamp() ELSE delivery.deliveries.next_at" in sql
    assert "created_at=statement_timestamp()" in sql
    assert host_times(params) == []


async def test_a_redrive_and_a_switch_back_on_count_refusals_in_a_row_anew_as_they_do_attempts():
    """A delivery its receiver had refused seven times in a row, sent again once the receiver is fixed, kept that
    count: its first refusal after the redrive gave it up. Switching back on counts anew for what is due alone,
    as it does attempts: what is not due may be under way, and its attempt sets both from its claim's copy."""
    conn = Recording()
    await DeliveryStore(conn).redrive("crm", in_file={"crm"})
    assert await DeliveryStore(conn).enable("crm") is True
    [(redrive, redriven), (enable, enabled)] = conn.updates_of_deliveries()
    assert "refused_in_a_row=%(refused_in_a_row)s" in redrive and redriven["refused_in_a_row"] == 0
    for column in ("attempts", "refused_in_a_row"):
        anew = re.search(rf"{column}=CASE WHEN \(delivery.deliveries.next_at <= statement_timestamp\(\)\) "
                         rf"THEN %\((\w+)\)s ELSE delivery.deliveries.{column} END", enable)
        assert anew is not None and enabled[anew[1]] == 0, column


async def test_a_rounds_attempts_record_their_refusals_in_a_row_in_the_statement_that_records_them():
    """Each attempt's count is what the next claim reads, recorded with the attempt, under the same check of its
    lease: no statement more per round (one per attempt would be 64 more round trips for a full round)."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    claimed = [Claimed(seq=seq, subscription_id="crm", lead_id=uuid.uuid4(), event_id=uuid.uuid4(),
                       event_type="lead.routed", body=b"{}", attempts=3, created_at=now,
                       leased_until=now + timedelta(seconds=20), claimed_at=now) for seq in (1, 2)]
    conn = Recording()
    await DeliveryStore(conn).record([
        Attempted(claimed[0], at=now, status=404, error=None, response="", duration_ms=7, outcome="retry",
                  next_at=now, refused_in_a_row=3),
        Attempted(claimed[1], at=now, status=503, error=None, response="", duration_ms=7, outcome="retry",
                  next_at=now, refused_in_a_row=0)])
    [record] = conn.statements
    [params] = conn.parameters
    assert "refused_in_a_row = r.refused_in_a_row" in record.text and params["refused_in_a_row"] == [3, 0]


async def test_attempts_a_round_did_not_record_are_recorded_again_in_a_statement_of_their_own():
    """An erasure that committed while the round's statement waited for its rows' locks: the statement's snapshot
    saw the delivery pending, its re-check dead, and the attempt was counted as a lease overrun. A statement of its
    own sees it given up (and one that did outlive its lease is refused again: nothing more)."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    claimed = [Claimed(seq=seq, subscription_id="crm", lead_id=uuid.uuid4(), event_id=uuid.uuid4(),
                       event_type="lead.routed", body=b"{}", attempts=0, created_at=now,
                       leased_until=now + timedelta(seconds=20), claimed_at=now) for seq in (1, 2)]

    class MissesTheSecond(Recording):
        async def execute(self, statement, params=None):  # noqa: ANN001, ANN202
            answered = await super().execute(statement, params)
            return [row for row in answered if row.seq != 2] if len(self.statements) == 1 else answered

    conn = MissesTheSecond()
    recorded = await DeliveryStore(conn).record([
        Attempted(c, at=now, status=204, error=None, response="", duration_ms=7, outcome="delivered", next_at=None,
                  refused_in_a_row=0) for c in claimed])
    assert recorded == {1, 2} and [p["seq"] for p in conn.parameters] == [[1, 2], [2]]


async def test_a_claim_is_due_and_leased_by_postgres_clock_alone():
    """Its statement took a time standing in for Postgres's clock (a hook for tests): a caller that gave it its
    host's would judge due and lease by a clock the other dispatchers do not read."""
    conn = Recording()
    assert await DeliveryStore(conn).claim({"crm": 2}, 5, lease=timedelta(seconds=20)) == []
    [claim] = [s.compile(dialect=postgresql.dialect()) for s in conn.statements]
    assert "now" not in claim.params and "statement_timestamp()" in str(claim)


async def test_a_claim_tells_the_dispatcher_postgres_clock_as_it_read_it():
    """The dispatcher dated its attempts, their retries and their windows by its host's clock, which claims do not
    read: a host behind Postgres's retried before a receiver's Retry-After. The claim returns the reading of
    Postgres's clock it leased by, as each delivery's ``claimed_at``, for the dispatcher to reckon from."""
    conn = Recording()
    await DeliveryStore(conn).claim({"crm": 2}, 5, lease=timedelta(seconds=20))
    [claim] = [str(s.compile(dialect=postgresql.dialect())) for s in conn.statements]
    returned = [column.strip() for column in claim.split("RETURNING", 1)[1].split(",")]
    assert len(returned) == len(fields(Claimed))  # read in order, as ``Claimed``'s fields
    into = dict(zip((f.name for f in fields(Claimed)), returned, strict=True))
    assert into["claimed_at"] == "(SELECT now FROM clock)" and into["leased_until"] == "next_at"
    assert "WITH clock AS (SELECT statement_timestamp() AS now)" in claim


async def test_a_new_delivery_is_queued_due_by_postgres_clock_not_the_delivery_hosts():
    """The handler queued each new delivery with its host's time as next_at (and created_at): claims judge a
    delivery due by Postgres's clock, so a delivery process whose clock ran ahead of it held every new delivery
    back by the difference. The handler's rows through the store itself, as Postgres would be sent them."""
    ahead = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)
    subs = parse_subscriptions({"subscriptions": [{"id": "crm", "url": "https://crm.example.com/h", "events": [
        "lead.stage_changed"], "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]}, allow_private=False)
    accepted = LeadStageChanged(lead_id=factories.captured().lead_id, from_stage="routed", to_stage="accepted",
                                at=ahead, by="ana", reason="r", attribution=Attribution(), owner_id="ana", team="na")
    conn = Recording()
    uow = MemoryUnitOfWork(DeliveryStore(conn))
    async with uow:
        await handle_deliverable(uow, [factories.envelope(topics.LIFECYCLE, accepted)],
                                 Delivery(SubscriptionBook(subs, None, allow_private=False), clock=lambda: ahead,
                                          http=None))
    [(sql, [row])] = conn.inserts_into_deliveries()
    assert "(subscription_id, lead_id, event_id, event_type, body, created_at, next_at)" in sql
    assert "%(body)s, statement_timestamp(), statement_timestamp())" in sql
    assert row["subscription_id"] == "crm" and host_times(row) == []


async def test_a_subscription_stored_without_a_time_is_dated_by_postgres_clock():
    """Dated by the API host's clock, a subscription was compared with its deliveries' created_at, Postgres's, to
    tell its own from an earlier holder's of its id: the two clocks apart, a redrive took the wrong ones."""
    conn = Recording()
    assert await DeliveryStore(conn).add_subscription({
        "id": "crm", "url": "https://crm.example.com/h", "events": ["lead.routed"], "filter": {}, "retry_hours": None,
        "contact": None, "secrets": [], "created_by": "ops"}) is True
    [made] = [s.compile(dialect=postgresql.dialect()) for s in conn.statements
              if s.is_dml and s.is_insert and s.table.name == "subscriptions"]
    assert "created_by, created_at, updated_at) VALUES (" in str(made)
    assert "%(created_by)s, statement_timestamp(), statement_timestamp())" in str(made)
    assert host_times(made.params) == []


async def test_a_410s_switch_off_is_dated_by_postgres_clock_not_the_dispatchers_host():
    """The dispatcher dated a switch-off by its host's clock, beside attempts and deliveries dated by Postgres's:
    the table of switch-offs could say a receiver went before the attempt whose 410 said so."""
    conn = Recording()
    assert await DeliveryStore(conn).disable("crm", "410 Gone from https://crm.example.com/h",
                                             url="https://crm.example.com/h") is True
    [off] = [s.compile(dialect=postgresql.dialect()) for s in conn.statements
             if s.is_dml and s.is_insert and s.table.name == "disabled"]
    assert "VALUES (%(subscription_id)s, statement_timestamp(), %(reason)s, %(url)s)" in str(off)
    assert host_times(off.params) == []


async def test_a_subscriptions_change_and_its_secrets_rotation_are_dated_by_postgres_clock():
    """Its created_at is Postgres's (``add_subscription``): its updated_at, dated by the API host's clock, could
    come before it, and the row read as changed before it was made."""
    conn = Recording()
    store = DeliveryStore(conn)
    await store.change_subscription("crm", {"url": "https://moved.example.com/h"})
    await store.set_secrets("crm", [{"sealed": "a-new-secret", "expires_at": None}])
    changed, rotated = [s.compile(dialect=postgresql.dialect()) for s in conn.statements]
    assert "SET url=%(url)s, updated_at=statement_timestamp()" in str(changed)
    assert "SET secrets=%(secrets)s::JSONB, updated_at=statement_timestamp()" in str(rotated)
    assert host_times(changed.params) == host_times(rotated.params) == []


async def test_what_a_deletion_or_a_forget_gives_up_is_dead_from_postgres_clock_not_the_hosts():
    """Given up at the API's (or the command's) host's time, a delivery's done_at was on another clock than every
    other delivery's, which the purge judges them all by."""
    conn = Recording()
    store = DeliveryStore(conn)
    await store.remove_subscription("crm")
    assert await store.forget("old-crm") == Forgotten(dropped=1, was_disabled=True)
    [forgotten] = conn.updates_of_deliveries()
    # The deletion's: one statement for those waiting and those dead already (each a deleted_at), no host time.
    dropped = conn.statements.index(_DROP_DELETED)
    assert "THEN statement_timestamp() ELSE d.done_at" in _DROP_DELETED.text
    assert "deleted_at = statement_timestamp()" in _DROP_DELETED.text
    assert conn.parameters[dropped] == {"sub": "crm"}
    assert "done_at=statement_timestamp()" in forgotten[0]
    assert host_times(forgotten[1]) == []


async def test_a_purge_counts_the_retention_back_from_postgres_clock_not_the_hosts():
    """Its cutoff was the purging host's clock less the retention, deliveries' done_at Postgres's: a host behind
    Postgres purged bodies before their retention ended, and a dead delivery could no longer be redriven."""
    conn = Recording()
    await DeliveryStore(conn).purge(timedelta(days=30), limit=100)
    [(purge, params)] = zip(conn.statements, conn.parameters, strict=True)
    assert "done_at < statement_timestamp() - CAST(:keep AS interval)" in purge.text
    assert params == {"keep": timedelta(days=30), "limit": 100}


async def test_an_erasure_gives_up_and_clears_a_batchs_leads_in_four_statements_under_their_locks():
    """One statement per lead would make a batch of a thousand erasures (an erasure by address of a busy person,
    a replay) a thousand round trips; given up at another host's time, a delivery's done_at would not be on the
    clock the purge judges it by."""
    leads = sorted(uuid.uuid4() for _ in range(3))
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    conn = Recording()
    await DeliveryStore(conn).enqueue([], erased={lead: at for lead in reversed(leads)})
    lock, hold, note, give_up = conn.statements
    assert "pg_advisory_xact_lock" in lock.text and conn.parameters[0] == {"leads": leads}  # sorted: no deadlock
    assert hold is _HOLD_FOLLOWED and conn.parameters[1] == {"leads": leads}  # their rows in followed go
    assert "INSERT INTO delivery.erased_leads" in note.text and conn.parameters[2] == {"leads": leads, "at": [at] * 3}
    # Of the rows in followed, those of the leads it locked alone.
    assert "UPDATE delivery.deliveries" in give_up.text and conn.parameters[3] == {"leads": leads, "held": leads}
    assert "THEN statement_timestamp()" in give_up.text


async def test_what_is_queued_is_checked_for_an_erasure_by_a_statement_after_the_leads_lock_is_held():
    """Checked before the lock, a delivery queued while an erasure of its lead committed would keep its body: the
    erasure's own statement, run before it was queued, never saw it."""
    rows = [{"subscription_id": "crm", "lead_id": lead, "event_id": uuid.uuid4(), "event_type": "lead.routed",
             "body": b"{}"} for lead in sorted(uuid.uuid4() for _ in range(2))]
    conn = Recording()
    await DeliveryStore(conn).enqueue(rows)
    lock, _insert, give_up = conn.statements
    assert "pg_advisory_xact_lock" in lock.text and "UPDATE delivery.deliveries" in give_up.text
    assert conn.parameters[2] == {"leads": [row["lead_id"] for row in rows], "held": []}


async def test_a_batchs_rejections_let_go_and_its_taken_leads_are_added_under_the_locks_of_both_before_the_erasure_check():
    """A rejection noted by one process while another takes the lead at the hand-off it ends: under the lead's lock,
    whichever writes second sees what the first wrote, and the lead is followed by nobody; a rejection no
    subscription is sent queues nothing, and its lead is locked all the same. A lead rejected then recycled within
    one batch is taken again after it was let go; a lead taken after its erasure was read (leads.routed is read
    apart from the lifecycle) is let go by the erasure's check, which runs last, under the lock an erasure takes."""
    lead, rejected = sorted(uuid.uuid4() for _ in range(2))
    routed_at, rejected_at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC), datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    rows = [{"subscription_id": "crm-b", "lead_id": lead, "event_id": uuid.uuid4(), "event_type": "lead.routed",
             "body": b"{}"}]
    conn = Recording()
    await DeliveryStore(conn).enqueue(rows, taken={("crm-b", lead): Mark(routed_at, 2)},
                                      let_go={rejected: Mark(rejected_at, 1)})
    lock, hold, let_go, _insert, follow, give_up = conn.statements
    assert "pg_advisory_xact_lock" in lock.text and conn.parameters[0] == {"leads": [lead, rejected]}
    assert hold is _HOLD_FOLLOWED and conn.parameters[1] == {"leads": [lead, rejected]}
    assert "INSERT INTO delivery.rejected_leads" in let_go.text and "DELETE FROM delivery.followed" in let_go.text
    assert conn.parameters[2] == {"leads": [rejected], "at": [rejected_at], "seq": [1]}
    assert "INSERT INTO delivery.followed" in follow.text and "FROM delivery.rejected_leads" in follow.text
    assert conn.parameters[4] == {"subs": ["crm-b"], "leads": [lead], "at": [routed_at], "seq": [2]}
    assert "DELETE FROM delivery.followed" in give_up.text and "UPDATE delivery.deliveries" in give_up.text
    conn = Recording()
    await DeliveryStore(conn).enqueue([], let_go={rejected: Mark(rejected_at)})
    lock, _hold, let_go = conn.statements
    assert "pg_advisory_xact_lock" in lock.text and conn.parameters[0] == {"leads": [rejected]}
    conn = Recording()
    await DeliveryStore(conn).enqueue([])
    assert conn.statements == []


async def test_what_a_batch_looks_up_of_the_leads_grade_filters_took_is_one_statement_and_none_for_nothing():
    """The drain path is measured per lead: a lookup per event would be a round trip per lead. The same statement
    says when the leads asked about were last rejected."""
    pairs = {("crm-b", uuid.uuid4()) for _ in range(3)} | {("crm-c", uuid.uuid4())}
    conn = Recording()
    assert await DeliveryStore(conn).following(set()) == ({}, {})
    assert await DeliveryStore(conn).following(pairs) == ({}, {})
    [lookup] = conn.statements
    [params] = conn.parameters
    assert "FROM delivery.followed" in lookup.text and "FROM delivery.rejected_leads" in lookup.text
    assert sorted(zip(params["subs"], params["leads"])) == sorted(pairs)


async def test_a_deleted_forgotten_or_new_subscription_lets_go_the_leads_taken_under_its_id_in_one_statement():
    """A file's subscription has no row of its own for a foreign key to cascade from: its leads go when it is
    forgotten, and an API subscription taking its id (or a deleted one's) starts with none. One statement however
    many leads it took (the test on Postgres deletes 100,000), locking its rows in the order of their leads: the
    order a batch locks the rows of its leads in (``_HOLD_FOLLOWED``)."""
    conn = Recording()
    store = DeliveryStore(conn)
    await store.remove_subscription("crm")
    await store.forget("old-crm")
    await store.add_subscription({"id": "new-crm", "url": "https://crm.example.com/h", "events": ["lead.routed"],
                                  "filter": {"grade": "B"}, "retry_hours": None, "contact": None, "secrets": [],
                                  "created_by": "ops"})
    of_followed = [(s, p) for s, p in zip(conn.statements, conn.parameters, strict=True)
                   if s is _UNFOLLOW or "followed" in str(s)]
    assert of_followed == [(_UNFOLLOW, {"sub": sub}) for sub in ("crm", "old-crm", "new-crm")]
    assert "ORDER BY lead_id FOR UPDATE" in _UNFOLLOW.text
    assert "ORDER BY lead_id, subscription_id FOR UPDATE" in _HOLD_FOLLOWED.text
    assert _LOCK_LEADS not in conn.statements


def locks_taken(conn: Recording) -> list[tuple[str, list[uuid.UUID] | None]]:
    """In the order they ran, each statement that locks the row of an API subscription (shares it, or deletes it),
    and each that locks leads, with them."""
    taken: list[tuple[str, list[uuid.UUID] | None]] = []
    for statement, params in zip(conn.statements, conn.parameters, strict=True):
        sql = str(statement.compile(dialect=postgresql.dialect()))
        if statement is _LOCK_LEADS:
            taken.append(("leads", params["leads"]))
        elif "delivery.subscriptions" in sql and ("FOR KEY SHARE" in sql or sql.startswith("DELETE")):
            taken.append(("subscription", None))
    return taken


async def test_a_batch_with_an_erasure_among_other_events_locks_its_api_subscriptions_then_all_its_leads_at_once():
    """With a handler of their own, erasures cut a batch into runs, one handler call each, in one transaction: the
    erasure's took its leads' locks before the share locks of the API subscriptions it queued for, and a deletion
    takes its subscription's row before the locks of the leads it took (``_unfollow``), so each could wait for the
    other (Postgres aborted one, the batch was retried); and the runs either side of an erasure took their leads
    out of order (a higher lead before a lower one). Through the runner's grouping of the batch, as it runs."""
    box = SecretBox.from_secrets(None, "a session secret")
    wanted = ["lead.stage_changed", "lead.erased"]
    subs = parse_subscriptions({"subscriptions": [{"id": "crm", "url": "https://crm.example.com/h", "events": wanted,
                                                   "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]},
                               allow_private=False)
    book = SubscriptionBook(subs, box, allow_private=False)
    book.load([{"id": "made", "url": "https://made.example.com/h", "events": wanted, "filter": {},
                "retry_hours": None, "contact": None,
                "secrets": sealed_secrets(box, [("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", None)])}],
              datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    ctx = Delivery(book, clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC), http=None)
    first, erased, rejected, last = sorted(uuid.uuid4() for _ in range(4))
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def step(lead: uuid.UUID, to_stage: str) -> LeadStageChanged:
        return LeadStageChanged(lead_id=lead, from_stage="accepted", to_stage=to_stage, at=at, by="ana", reason="r",
                                attribution=Attribution(), owner_id="ana", team="emea",
                                reason_code="no-budget" if to_stage == "rejected" else None)

    batch = [step(last, "won"), LeadErased(lead_id=erased, at=at, by="dpo"), step(rejected, "rejected"),
             step(first, "won")]
    conn = Recording()
    applier = BatchApplier(service="delivery", handlers=SERVICE.handlers(ctx),
                           unit_of_work=lambda: MemoryUnitOfWork(DeliveryStore(conn)),
                           select=functools.partial(wanted_record, ctx=ctx))
    await applier.apply([factories.consumed(factories.message(topics.LIFECYCLE, e), i) for i, e in enumerate(batch)])
    assert locks_taken(conn) == [("subscription", None), ("leads", [first, erased, rejected, last])]


async def test_a_deletion_takes_its_subscriptions_row_then_its_followed_rows_then_its_deliveries_and_no_lead():
    """LOCK ORDER: a batch share-locks the API subscriptions it queues for before it locks its leads, then the rows of
    followed and deliveries. A deletion that locked the leads its subscription took before deleting the row could
    hold a lead such a batch waits for while the batch held the row it waits for; it locks no lead now."""
    conn = Recording()
    await DeliveryStore(conn).remove_subscription("crm")
    assert locks_taken(conn) == [("subscription", None)]
    tables = [re.search(r"(?:DELETE FROM|UPDATE|INTO) delivery\.(\w+)", str(s.compile(dialect=postgresql.dialect())))[1]
              for s in conn.statements]
    assert tables == ["subscriptions", "disabled", "followed", "deliveries"]
    assert conn.statements[-1] is _DROP_DELETED


async def test_every_update_of_deliveries_that_may_wait_locks_its_rows_in_the_order_of_their_seq_first():
    """An UPDATE locks rows in whatever order its plan reads them: by lead for an erasure's give-up, by
    subscription for a deletion, in a round's order for its attempts. Two of them over the same rows in other
    orders each held one the other waited for (Postgres aborted one: a 503, a batch retried, an attempt unrecorded
    and sent again). Each locks its rows in the order of their seq, in the statement that updates them."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    claimed = Claimed(seq=1, subscription_id="crm", lead_id=uuid.uuid4(), event_id=uuid.uuid4(),
                      event_type="lead.routed", body=b"{}", attempts=0, created_at=now, leased_until=now,
                      claimed_at=now)
    conn = Recording()
    store = DeliveryStore(conn)
    await store.redrive("crm", in_file={"crm"})
    await store.enable("crm")
    await store.forget("old-crm")
    await store.remove_subscription("gone")
    await store.record([Attempted(claimed, at=now, status=204, error=None, response="", duration_ms=3,
                                  outcome="delivered", next_at=None, refused_in_a_row=0)])
    await store.enqueue([], erased={uuid.uuid4(): now})
    updates = [str(s.compile(dialect=postgresql.dialect())) for s in conn.statements]
    updates = [sql for sql in updates if re.search(r"UPDATE delivery\.deliveries", sql)]
    assert len(updates) == 6
    for sql in updates:
        assert re.search(r"ORDER BY (?:\w+\.)*seq FOR UPDATE", sql), sql
