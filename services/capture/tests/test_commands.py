"""``leadpipe-capture erase`` from the command line (the database stood in for: a unit of work over a store that
records what it is asked)."""

import uuid

import pytest
from typer.testing import CliRunner

from leadpipe_common.uow import MemoryUnitOfWork

from capture.__main__ import cli

LEAD = uuid.uuid4()


class Store:
    """A person, jane, with one lead; what was erased."""

    def __init__(self) -> None:
        self.people = {"janedoe@gmail.com": [LEAD]}
        self.erasures: set[uuid.UUID] = set()
        #: What another erasure records once this one has found the leads not erased yet (a test erases at once).
        self.meanwhile: set[uuid.UUID] = set()
        #: Leads a person opens before the erasure's lock is taken (a test opens one), by person key.
        self.opening: dict[str, list[uuid.UUID]] = {}
        #: The leads of each lock_erasure, in turn.
        self.locked: list[list[uuid.UUID]] = []
        #: The leads whose Idempotency-Keys' answers were deleted, in turn.
        self.forgotten: list[list[uuid.UUID]] = []

    async def person_leads(self, key):
        return list(self.people.get(key, []))

    async def forget_answers(self, lead_ids):
        self.forgotten.append(sorted(lead_ids))

    async def lock_erasure(self, lead_ids, *, key, by_id):
        self.locked.append(sorted(lead_ids))
        self.people = {k: [*leads, *self.opening.get(k, [])] for k, leads in self.people.items()}
        self.opening = {}

    async def erased(self, lead_ids):
        return [lead for lead in lead_ids if lead in self.erasures]

    async def has_lead(self, lead_id):
        return any(lead_id in leads for leads in self.people.values())

    async def erase(self, lead_ids, *, key, by_id, same_person, at, by):
        self.people.pop(key, None)
        self.erasures |= self.meanwhile  # erased by another erasure while this one waited on its locks
        fresh = [lead for lead in lead_ids if lead not in self.erasures]  # as ON CONFLICT DO NOTHING RETURNING
        self.erasures.update(lead_ids)
        return fresh


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
    assert "an erasure does not keep the address" in again.output
    by_id = erase("--lead", str(LEAD))
    assert by_id.exit_code == 0 and f"already erased, nothing sent: {LEAD}" in by_id.output
    assert len(erase.uow.published) == 1


def test_an_erasure_of_a_lead_another_erased_at_the_same_time_is_a_repeat_and_sends_nothing(erase):
    erase.uow.store.meanwhile = {LEAD}
    done = erase("--lead", str(LEAD))
    assert done.exit_code == 0, done.output
    assert f"already erased, nothing sent: {LEAD}" in done.output
    assert erase.uow.published == []


def test_a_lead_the_person_opens_before_the_erasure_locks_them_is_erased_with_them_its_holder_locked_too(erase):
    new = uuid.uuid4()
    erase.uow.store.opening = {"janedoe@gmail.com": [new]}
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert erase.uow.store.locked == [[LEAD], sorted([LEAD, new])]
    assert erase.uow.store.forgotten == [[LEAD], [new]]
    assert f"2 lead(s) erased now, lead.erased sent for each; the person's leads: {LEAD}, {new}" in done.output


def test_an_erasure_deletes_the_idempotency_keys_answering_the_persons_leads_in_its_unit_of_work(erase):
    done = erase("--email", "jane.doe@gmail.com")
    assert done.exit_code == 0, done.output
    assert erase.uow.store.forgotten == [[LEAD]] and erase.uow.commits == 1


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


def test_an_address_capture_holds_no_lead_of_is_said_and_nothing_is_erased(erase):
    done = erase("--email", "nobody@example.com")
    assert done.exit_code == 1
    assert "nothing erased: email: capture holds no lead of this address" in done.output
    assert "nobody" not in done.output
