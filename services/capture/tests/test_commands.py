"""``leadpipe-capture erase`` from the command line (the database stood in for: a unit of work over a store that
records what it is asked)."""

import uuid

import pytest
from typer.testing import CliRunner

from leadpipe_common.uow import MemoryUnitOfWork

from capture import erasure
from capture.__main__ import cli
from capture.store import Cleared, Found

LEAD = uuid.uuid4()


class Savepoint:
    def __init__(self, store) -> None:  # noqa: ANN001
        self._store = store

    async def rollback(self) -> None:
        self._store.calls.append(("rollback",))


class Store:
    """A person, jane, with one lead; what was erased, and each call of the erasure's, in turn."""

    def __init__(self) -> None:
        self.people = {"janedoe@gmail.com": [LEAD]}
        #: Each person's touches on another person's lead (touch id, lead id), by person key.
        self.touches: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = {}
        #: Leads merged into each lead.
        self.merges: dict[uuid.UUID, list[uuid.UUID]] = {}
        #: Quarantined submissions, by the person key of their address.
        self.quarantined: dict[str, int] = {}
        self.erasures: set[uuid.UUID] = set()
        #: What another erasure records once this one has found the leads not erased yet (a test erases at once).
        self.meanwhile: set[uuid.UUID] = set()
        #: Leads a person opens before the erasure's lock is taken (a test opens one), by person key: one list for
        #: each attempt's lock.
        self.opening: dict[str, list[list[uuid.UUID]]] = {}
        #: Whether an Idempotency-Key answering a touch stored between the keys' deletion and the lock is there,
        #: for each attempt in turn.
        self.left: list[bool] = []
        #: Whether a quarantined submission released as a touch of a lead between their deletion and the lock is
        #: there, for each attempt in turn.
        self.released: list[bool] = []
        #: What the erasure asked, in turn: ("forget_answers", leads, touches), ("lock", leads), ("rollback",), ...
        self.calls: list[tuple] = []
        self.touches_erased: list[uuid.UUID] = []
        #: Another person's touches on the leads the erasure clears (sales merged a lead of theirs into one).
        self.others_touches: list[uuid.UUID] = []

    async def person_found(self, key):
        if key not in self.people:
            return None
        return Found(leads=list(self.people[key]), touches=list(self.touches.get(key, [])))

    async def forget_quarantined(self, lead_ids, touch_ids=(), *, key, same_person):
        self.calls.append(("forget_quarantined", sorted(lead_ids), sorted(touch_ids)))
        return self.quarantined.pop(key, 0)

    async def forget_answers(self, lead_ids, touch_ids=()):
        self.calls.append(("forget_answers", sorted(lead_ids), sorted(touch_ids)))

    async def answers_left(self, lead_ids, touch_ids=()):
        return self.left.pop(0) if self.left else False

    async def released_left(self, lead_ids, touch_ids=()):
        return self.released.pop(0) if self.released else False

    async def lock_erasure(self, lead_ids, *, key, by_id):
        self.calls.append(("lock", sorted(lead_ids)))
        for k, opened in self.opening.items():
            if opened:
                self.people[k] = [*self.people[k], *opened.pop(0)]
        return Savepoint(self)

    async def erased(self, lead_ids):
        return [lead for lead in lead_ids if lead in self.erasures]

    async def has_lead(self, lead_id):
        return any(lead_id in leads for leads in self.people.values())

    async def merged_into(self, lead_ids):
        return [merged for lead in lead_ids for merged in self.merges.get(lead, [])]

    async def erase(self, lead_ids, *, key, by_id, touch_ids=(), at, by):
        self.calls.append(("erase", list(lead_ids), list(touch_ids)))
        self.people.pop(key, None)
        self.touches.pop(key, None)
        self.touches_erased += touch_ids
        self.erasures |= self.meanwhile  # erased by another erasure while this one waited on its locks
        fresh = [lead for lead in lead_ids if lead not in self.erasures]  # as ON CONFLICT DO NOTHING RETURNING
        self.erasures.update(lead_ids)
        return Cleared(recorded=fresh, others_touches=list(self.others_touches))


class Engine:
    async def dispose(self) -> None:
        pass


@pytest.fixture
def erase(monkeypatch):
    uow = MemoryUnitOfWork(Store())
    monkeypatch.setattr("capture.commands.make_engine", lambda settings: Engine())
    monkeypatch.setattr("capture.commands.unit_of_work", lambda engine: uow)
    run = lambda *args: CliRunner().invoke(cli, ["erase", *args], env={"COLUMNS": "500",  # noqa: E731
                                                                       "DATABASE_URL": "postgresql+asyncpg://x@h/d"})
    run.uow = uow
    return run


def test_an_erasure_by_address_prints_the_persons_leads_and_sends_lead_erased_once(erase):
    done = erase("--email", "Jane.Doe@gmail.com", "--by", "dpo")
    assert done.exit_code == 0, done.output
    assert f"1 lead(s) erased now, lead.erased sent for each; the person's leads: {LEAD}" in done.output
    assert [m.header("ce_type") for m in erase.uow.published] == ["lead.erased"]
    # The address leads to nothing now; the lead's id is still answered, sending nothing.
    again = erase("--email", "jane.doe+x@gmail.com")
    assert again.exit_code == 1 and str(LEAD) not in again.output
    assert "An erasure keeps nothing of the address" in again.output
    by_id = erase("--lead", str(LEAD))
    assert by_id.exit_code == 0 and f"already erased, nothing sent: {LEAD}" in by_id.output
    assert len(erase.uow.published) == 1


def test_an_erasure_from_the_command_line_is_logged_on_stderr_apart_from_what_it_prints(erase):
    """Its log line (who asked, which leads) went through structlog's default printer to stdout, among the
    command's answer, and into no log: --by promises it is kept in the log."""
    done = erase("--email", "Jane.Doe@gmail.com", "--by", "dpo-ticket-7")
    assert done.exit_code == 0, done.output
    assert "person erased" not in done.stdout and "lead(s) erased now" in done.stdout
    assert "person erased" in done.stderr and "dpo-ticket-7" in done.stderr


def test_who_asks_for_an_erasure_is_refused_when_it_names_an_address_kept_for_ever_with_it(erase):
    done = erase("--email", "Jane.Doe@gmail.com", "--by", "request from jane.doe@gmail.com")
    assert done.exit_code == 2 and "holds an e-mail address" in done.output
    assert not erase.uow.published and "jane.doe@gmail.com" not in done.output.replace("--by", "")


def test_a_dry_run_of_an_erasure_says_what_it_would_do_and_erases_and_sends_nothing(erase):
    """An erasure cannot be undone, and an address names every spelling of the person: a DPO looks first."""
    done = erase("--email", "Jane.Doe@gmail.com", "--dry-run")
    assert done.exit_code == 0, done.output
    assert "a dry run: nothing was erased or sent" in done.stdout
    assert f"1 lead(s) would be erased now, lead.erased would be sent for each; the person's leads: {LEAD}" in done.stdout
    assert erase.uow.published == [] and erase.uow.commits == 0
    assert "person erased" not in done.stderr


def test_an_erasure_of_a_lead_another_erased_at_the_same_time_is_a_repeat_and_sends_nothing(erase):
    erase.uow.store.meanwhile = {LEAD}
    done = erase("--lead", str(LEAD))
    assert done.exit_code == 0, done.output
    assert f"already erased, nothing sent: {LEAD}" in done.output
    assert erase.uow.published == []


def test_a_lead_the_person_opens_before_the_erasure_locks_them_is_erased_with_them_its_keys_forgotten_first(erase):
    """The re-read found the new lead with the people rows locked, and deleted its Idempotency-Keys then: keys after
    people, the reverse of every other capture transaction, a deadlock with one holding such a key."""
    new = uuid.uuid4()
    erase.uow.store.opening = {"janedoe@gmail.com": [[new]]}
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert [c for c in erase.uow.store.calls if c[0] != "forget_quarantined"] == [
        ("forget_answers", [LEAD], []), ("lock", [LEAD]), ("rollback",),  # found more: the people let go
        ("forget_answers", sorted([LEAD, new]), []), ("lock", sorted([LEAD, new])),
        ("erase", [LEAD, new], [])]
    assert f"2 lead(s) erased now, lead.erased sent for each; the person's leads: {LEAD}, {new}" in done.output


def test_an_answer_stored_between_the_keys_deletion_and_the_lock_is_forgotten_in_a_fresh_attempt(erase):
    """A touch of the person's lead stored in that moment left its Idempotency-Key (the address, perhaps) naming
    it: the re-read compared the leads alone."""
    erase.uow.store.left = [True]
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert [c[0] for c in erase.uow.store.calls] == ["forget_quarantined", "forget_answers", "lock", "rollback",
                                                     "forget_quarantined", "forget_answers", "lock", "erase"]


def test_a_submission_released_as_a_touch_between_the_deletion_and_the_lock_is_forgotten_in_a_fresh_attempt(erase):
    """Released while the erasure deleted the leads' quarantined submissions, it was no touch of theirs yet: it
    stayed in quarantine, contact and all, when erased by lead id."""
    erase.uow.store.released = [True]
    done = erase("--lead", str(LEAD))
    assert done.exit_code == 0, done.output
    assert [c[0] for c in erase.uow.store.calls] == ["forget_quarantined", "forget_answers", "lock", "rollback",
                                                     "forget_quarantined", "forget_answers", "lock", "erase"]


def test_a_person_who_keeps_submitting_while_locked_is_not_erased_and_told_to_ask_again(erase):
    erase.uow.store.left = [True] * erasure.ATTEMPTS
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 1 and "nothing erased" in done.output and "ask again" in done.output
    assert [c[0] for c in erase.uow.store.calls].count("lock") == erasure.ATTEMPTS
    assert erase.uow.published == [] and erase.uow.commits == 0


def test_touches_on_another_persons_lead_are_cleared_and_that_lead_listed_not_erased(erase):
    """A's lead merged by sales into B's lead S: A's next submission touched S, carrying A's contact, and A's
    erasure did not find it."""
    theirs, touch = uuid.uuid4(), uuid.uuid4()
    erase.uow.store.touches = {"janedoe@gmail.com": [(touch, theirs)]}
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert ("forget_answers", [LEAD], [touch]) in erase.uow.store.calls  # its key's answer may name the touch
    # A submission released from quarantine as that touch is kept under the touch's id.
    assert ("forget_quarantined", [LEAD], [touch]) in erase.uow.store.calls
    assert erase.uow.store.touches_erased == [touch] and theirs not in erase.uow.store.erasures
    assert [m.key for m in erase.uow.published] == [str(LEAD).encode()]  # no lead.erased of the other's lead
    assert f"their touches cleared on another person's lead(s), not erased: {theirs}" in done.output


def test_leads_merged_into_an_erased_lead_are_listed_for_the_dpo_not_erased(erase):
    duplicate = uuid.uuid4()
    erase.uow.store.merges = {LEAD: [duplicate]}
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert duplicate not in erase.uow.store.erasures
    assert f"merged into an erased lead, not erased (--lead each one that is the person's): {duplicate}" \
        in done.output


def test_another_persons_touches_erased_with_the_persons_lead_are_printed(erase):
    """Bob's lead merged into hers, his later submissions touched it: they went with her lead and nobody was told."""
    his = uuid.uuid4()
    erase.uow.store.others_touches = [his]
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert ("another person's touches on an erased lead, erased with it (their next submission opens a new lead): "
            f"{his}") in done.output


def test_an_address_with_only_quarantined_submissions_has_them_erased_not_a_404(erase):
    """An address that opened no lead but was quarantined (a bot posting it) answered "holds no lead" and kept the
    submissions."""
    erase.uow.store.quarantined = {"nobody@example.com": 2}
    done = erase("--email", "nobody@example.com")
    assert done.exit_code == 0, done.output
    assert "no lead of the person: their record and quarantined submissions erased, nothing sent" in done.output
    assert erase.uow.commits == 1 and erase.uow.published == []


def test_an_erasure_deletes_the_idempotency_keys_answering_the_persons_leads_in_its_unit_of_work(erase):
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert ("forget_answers", [LEAD], []) in erase.uow.store.calls and erase.uow.commits == 1


@pytest.mark.parametrize(("args", "said"), [
    ((), "give an address (--email), a lead id (--lead), or both"),
    (("--email", ""), "'' is empty"),
    (("--email", "not an address"), "Invalid value for --email"),
    (("--lead", "42"), "'42' is not a lead id (a UUID)"),
], ids=["nothing", "empty", "no-address", "bad-lead"])
def test_a_bad_erasure_is_refused_with_a_message_and_no_traceback(erase, args, said):
    done = erase(*args)
    assert done.exit_code == 2 and said in done.output
    assert "Traceback" not in done.output
    assert erase.uow.published == []


def test_an_address_capture_holds_nothing_under_is_said_with_what_was_searched_and_nothing_is_erased(erase):
    """It said the address "holds no lead", which a DPO read as "capture holds nothing of them"."""
    done = erase("--email", "nobody@example.com")
    assert done.exit_code == 1
    assert f"nothing erased: email: {erasure.NOBODY}" in " ".join(done.output.split())
    assert "nobody" not in done.output
