"""A full replay's refusal of a stream that no longer starts at its first event, the broker and database stood in
for: what it names, and that it comes before anything is written."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import DBAPIError

from leadpipe_common.testing.fakes import TopicScanOf
from reporting import replay as replay_module
from reporting.replay import (
    CatchUpFailed, LostHistory, ReplayBusy, SwapBusy, TruncatedStream, refuse_truncated, replay,
)

LIFECYCLE, QUARANTINED = "leads.lifecycle", "leads.quarantined"


def test_a_rebuild_is_refused_naming_each_partition_that_no_longer_starts_at_its_first_event():
    starts = {TopicPartition(LIFECYCLE, 0): 0, TopicPartition(LIFECYCLE, 1): 1234, TopicPartition(QUARANTINED, 0): 7}
    with pytest.raises(TruncatedStream) as refused:
        refuse_truncated(starts)
    said = str(refused.value)
    assert "leads.lifecycle partition 1 from offset 1,234, leads.quarantined partition 0 from offset 7" in said
    assert "leads.lifecycle partition 0" not in said
    assert "--since 1970-01-01" in said and "--force" in said


def test_a_stream_held_from_its_first_event_is_rebuilt():
    refuse_truncated({TopicPartition(LIFECYCLE, 0): 0, TopicPartition(QUARANTINED, 0): 0})


class Database:
    """An engine whose connections note each statement's text; its live tables hold ``lost`` leads (captured on
    ``earliest``) that tables rebuilt from the stream lack; ``locked``: another replay or a migrate holds the
    advisory lock; ``held``: the first so many LOCK TABLE statements find the tables held (55P03)."""

    def __init__(self, lost: int = 0, earliest: datetime | None = None, locked: bool = False, held: int = 0,
                 lock_lost: bool = False) -> None:
        self.statements: list[str] = []
        self._missing = (lost, earliest)
        self._locked, self._held, self._lock_lost = locked, held, lock_lost

    def scalar_one(self):
        return not self._locked

    async def commit(self) -> None:
        pass

    async def rollback(self) -> None:
        self.statements.append("ROLLBACK")

    def begin(self):
        return self

    def connect(self):
        return self

    def one(self):
        return self._missing

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def execution_options(self, **options):
        return self

    async def execute(self, statement, *args):
        self.statements.append(str(statement))
        if str(statement) == "SELECT 1" and self._lock_lost:
            raise DBAPIError("SELECT 1", None, ConnectionResetError("the server closed the connection"))
        if str(statement).startswith("LOCK TABLE") and self._held:
            self._held -= 1
            raise DBAPIError(str(statement), None, LockHeld("canceling statement due to lock timeout"))
        return self

    async def run_sync(self, work) -> None:
        self.statements.append("CREATE TABLE ...")

    async def dispose(self) -> None:
        pass


class LockHeld(Exception):
    sqlstate = "55P03"


async def test_a_full_replay_is_refused_while_another_or_a_migrate_holds_the_lock_before_anything_is_written(
        monkeypatch):
    """A second replay dropped the first's shadow tables under it; the first then swapped in what the second had
    written since, or failed blaming the broker."""
    database = Database(locked=True)
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0}))
    with pytest.raises(ReplayBusy) as refused:
        await replay(object(), force=True)
    assert "leadpipe-migrate:reporting" in str(refused.value) and "nothing was written" in str(refused.value)
    assert not any("reporting_replay" in s for s in database.statements)


async def test_the_swap_waits_for_tables_held_elsewhere_and_gives_up_leaving_the_live_ones(monkeypatch):
    """Queued without a limit, the swap's lock held every reader and the live consumer behind an analyst's open
    transaction; a deadlock with a batch reading the tables in another order threw the whole rebuild away."""
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0}))
    sleeps: list[float] = []

    async def slept(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(replay_module.asyncio, "sleep", slept)
    patient = Database(held=3)
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: patient)
    await replay(object(), force=True)
    assert [s for s in patient.statements if s.startswith("SET LOCAL lock_timeout")] == [
        "SET LOCAL lock_timeout = '100ms'"] * 4
    assert any(s.startswith("ALTER TABLE") for s in patient.statements) and len(sleeps) == 3

    monkeypatch.setattr(replay_module, "SWAP_PATIENCE_S", 0.0)
    held_for_good = Database(held=1_000)
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: held_for_good)
    with pytest.raises(SwapBusy) as refused:
        await replay(object(), force=True)
    assert "left as they were" in str(refused.value)
    assert not any(s.startswith("ALTER TABLE") or s.startswith("DROP TABLE") for s in held_for_good.statements)
    assert held_for_good.statements[-2:] == ['DROP SCHEMA "reporting_replay" CASCADE', "ROLLBACK"]


@pytest.mark.parametrize("force, written", [(False, False), (True, True)])
async def test_a_truncated_stream_is_refused_before_anything_is_written_unless_forced(monkeypatch, force, written):
    """The shadow schema was dropped and made before the stream was looked at."""
    database = Database()
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 500}))
    if force:
        await replay(object(), force=True)
    else:
        with pytest.raises(TruncatedStream):
            await replay(object())
    assert any("reporting_replay" in s for s in database.statements) is written


async def test_a_catch_up_that_fails_after_the_swap_names_the_since_that_applies_what_it_missed(monkeypatch):
    """The broker went away after the swap: the events the live service applied to the old tables during the
    rebuild were in neither, and the command said only "cannot read leads.lifecycle"."""
    database, lost = Database(), KafkaConnectionError("broker gone")
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan",
                        TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0}, fails_to_extend=lost))
    began = datetime.now(UTC).replace(microsecond=0)
    with pytest.raises(CatchUpFailed) as failed:
        await replay(object())
    ended = datetime.now(UTC)
    assert any(s.startswith("ALTER TABLE") for s in database.statements)  # swapped in
    # From before the scan began, with room for producers' clocks: re-applying more changes nothing.
    assert began - timedelta(minutes=5) <= failed.value.since <= ended - timedelta(minutes=5)
    assert f"leadpipe-reporting replay --since {failed.value.since.isoformat()}" in str(failed.value)
    assert failed.value.__cause__ is lost


@pytest.mark.parametrize("force, swapped", [(False, False), (True, True)])
async def test_a_rebuild_lacking_leads_the_live_tables_hold_is_not_swapped_in_unless_forced(monkeypatch, force, swapped):
    """The embedded broker keeps its log in memory: after a restart the stream starts at offset 0 again with only
    what came since, and a rebuild from it swapped out every lead reporting had kept in Postgres."""
    database = Database(lost=1234, earliest=datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0}))
    if force:
        await replay(object(), force=True)
    else:
        with pytest.raises(LostHistory) as refused:
            await replay(object())
        said = str(refused.value)
        assert "1,234 leads" in said and "2026-11-02 09:30 UTC" in said and "left as they were" in said
        assert "--since 1970-01-01" in said and "--force" in said
        # The rebuilt tables, unused; then the lock's transaction ended, letting it go.
        assert database.statements[-2:] == ['DROP SCHEMA "reporting_replay" CASCADE', "ROLLBACK"]
    assert any(s.startswith("ALTER TABLE") for s in database.statements) is swapped


async def test_a_replay_since_a_moment_before_what_the_stream_holds_says_which_topics_lost_events_since_and_from_when(
        monkeypatch):
    """`replay --since 1970-01-01`, as a refused rebuild advises, over a stream retention had cut: it re-applied
    what was left and said nothing of what was not."""
    since = datetime(2026, 11, 1, tzinfo=UTC)
    held_from = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: Database())
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(first_held={
        TopicPartition(LIFECYCLE, 0): held_from, TopicPartition(QUARANTINED, 0): None,
        TopicPartition(QUARANTINED, 1): since - timedelta(days=1)}))
    stats = await replay(object(), since=since)
    assert stats.truncated == {LIFECYCLE: held_from, QUARANTINED: None}


async def test_a_catch_up_interrupted_by_ctrl_c_still_names_the_since_that_applies_what_it_missed(monkeypatch):
    """Ctrl-C cancels the command's task: the catch-up stopped without a word of what the new tables lack."""
    import asyncio

    database = Database()
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0},
                                                                fails_to_extend=asyncio.CancelledError()))
    with pytest.raises(CatchUpFailed) as failed:
        await replay(object())
    assert isinstance(failed.value.__cause__, asyncio.CancelledError)


async def test_a_rebuild_whose_lock_connection_was_closed_is_dropped_not_swapped_in(monkeypatch):
    """A server's idle_in_transaction_session_timeout (or a proxy) closed the connection holding the lock while
    the rebuild ran: another replay or a migrate may have begun since."""
    from reporting.replay import LockLost

    database = Database(lock_lost=True)
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", TopicScanOf(starts={TopicPartition(LIFECYCLE, 0): 0}))
    with pytest.raises(LockLost) as refused:
        await replay(object(), force=True)
    assert "run the replay again" in str(refused.value)
    assert not any(s.startswith("ALTER TABLE") or s.startswith("LOCK TABLE") for s in database.statements)
    assert 'DROP SCHEMA "reporting_replay" CASCADE' in database.statements
