"""A full replay's refusal of a stream that no longer starts at its first event, the broker and database stood in
for: what it names, and that it comes before anything is written."""

import pytest
from aiokafka import TopicPartition

from reporting import replay as replay_module
from reporting.replay import TruncatedStream, refuse_truncated, replay

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


class Scan:
    """A scan of partitions whose first offsets held are ``starts``, holding no record."""

    def __init__(self, starts: dict[TopicPartition, int]) -> None:
        self.starts, self.total = starts, 0

    def __call__(self, *args, **kwargs):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def batches(self):
        return
        yield

    async def extend(self) -> int:
        return 0


class Database:
    """An engine whose connections note each statement's text."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def begin(self):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def execution_options(self, **options):
        return self

    async def execute(self, statement, *args) -> None:
        self.statements.append(str(statement))

    async def run_sync(self, work) -> None:
        self.statements.append("CREATE TABLE ...")

    async def dispose(self) -> None:
        pass


@pytest.mark.parametrize("force, written", [(False, False), (True, True)])
async def test_a_truncated_stream_is_refused_before_anything_is_written_unless_forced(monkeypatch, force, written):
    """The shadow schema was dropped and made before the stream was looked at."""
    database = Database()
    monkeypatch.setattr(replay_module, "make_engine", lambda settings: database)
    monkeypatch.setattr(replay_module, "TopicScan", Scan({TopicPartition(LIFECYCLE, 0): 500}))
    if force:
        await replay(object(), force=True)
    else:
        with pytest.raises(TruncatedStream):
            await replay(object())
    assert any("reporting_replay" in s for s in database.statements) is written
