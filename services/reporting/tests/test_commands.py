"""``leadpipe-reporting replay`` and ``export`` from the command line, the stream stood in for: what they refuse
before reading anything."""

from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaConnectionError

import reporting.commands
from leadpipe_common.testing.cli import invoke
from reporting.__main__ import cli
from reporting.replay import CatchUpFailed, ReplayStats, TruncatedStream


class Commands:
    """The commands, with replay and export only noting what they were asked for."""

    def __init__(self) -> None:
        self.replays: list[object] = []
        #: (format, since, until) of each export.
        self.exports: list[tuple[str, object, object]] = []
        #: Whether each replay was forced.
        self.forced: list[bool] = []
        #: Set: the stream no longer starts at its first event, and a full rebuild not forced is refused so.
        self.truncated: str | None = None
        #: Set: a replay fails so after the swap.
        self.behind: CatchUpFailed | None = None
        #: Records an export leaves out as undecodable.
        self.undecodable = 0
        #: What a replay or an export since a moment finds the stream no longer holds (``scan.truncated_since``).
        self.lost: dict[str, datetime | None] = {}

    async def replay(self, settings, *, since=None, force=False, progress=lambda done, total: None) -> ReplayStats:
        self.replays.append(since)
        self.forced.append(force)
        if self.truncated and since is None and not force:
            raise TruncatedStream(self.truncated)
        if self.behind is not None:
            raise self.behind
        return ReplayStats(0, 0, 0, 0.1, self.lost if since else {})

    async def export(self, settings, output, fmt, *, since, until,
                     progress=lambda done, total: None) -> tuple[int, int, dict[str, datetime | None], str | None]:
        self.exports.append((fmt, since, until))
        return 3, self.undecodable, self.lost if since else {}, None if since else self.truncated

    def __call__(self, *args: str):
        return invoke(cli, args)


@pytest.fixture
def command(monkeypatch) -> Commands:
    commands = Commands()
    monkeypatch.setattr(reporting.commands, "replay", commands.replay)
    monkeypatch.setattr(reporting.commands, "export", commands.export)
    return commands


def test_an_empty_since_is_refused_not_taken_for_a_rebuild_from_the_start(command):
    """`replay --since="$SINCE"` with the variable unset dropped the live tables for a rebuild of the whole
    stream: far more than re-applying a day."""
    refused = command("replay", "--since=")
    assert refused.exit_code == 2 and "--since" in refused.said and "'' is empty" in refused.said
    assert command.replays == []


def test_a_rebuild_from_a_stream_that_lost_its_first_events_is_refused_with_a_message_not_a_traceback(command):
    command.truncated = "it holds leads.lifecycle partition 0 from offset 1,234"
    refused = command("replay")
    assert refused.exit_code == 1 and "replay refused: it holds leads.lifecycle partition 0 from offset 1,234" in (
        refused.said)
    assert "Traceback" not in refused.output


def test_a_rebuild_with_force_goes_ahead_from_what_the_stream_holds(command):
    """--force is the operator's word that the leads of the events the stream lost may go."""
    command.truncated = "it holds leads.lifecycle partition 0 from offset 1,234"
    done = command("replay", "--force")
    assert done.exit_code == 0, done.said
    assert "swapped in" in done.said and command.forced == [True]


def test_a_replay_that_fails_after_the_swap_says_which_replay_applies_what_it_missed_and_why(command):
    behind = CatchUpFailed(datetime(2026, 11, 23, 9, 50, tzinfo=UTC))
    behind.__cause__ = KafkaConnectionError("broker gone")
    command.behind = behind
    failed = command("replay")
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert "run `leadpipe-reporting replay --since 2026-11-23T09:50:00+00:00`" in failed.said
    assert "cannot read leads.lifecycle at" in failed.said and "broker gone" in failed.said


def test_a_replay_interrupted_after_the_swap_says_which_replay_applies_what_it_missed(command):
    import asyncio

    behind = CatchUpFailed(datetime(2026, 11, 23, 9, 50, tzinfo=UTC))
    behind.__cause__ = asyncio.CancelledError()
    command.behind = behind
    failed = command("replay")
    assert failed.exit_code == 130 and "Traceback" not in failed.output
    assert "run `leadpipe-reporting replay --since 2026-11-23T09:50:00+00:00`" in failed.said


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_an_empty_since_or_until_of_an_export_is_refused_not_taken_for_the_whole_stream(command, tmp_path, option):
    refused = command("export", str(tmp_path / "out.jsonl"), f"{option}=")
    assert refused.exit_code == 2 and option in refused.said and "'' is empty" in refused.said
    assert command.exports == []


@pytest.mark.parametrize("args", [["replay", "--since", "1969-06-01"],
                                  ["export", "out.jsonl", "--since", "1969-06-01"],
                                  ["export", "out.jsonl", "--until", "1969-06-01"]])
def test_a_moment_before_1970_is_refused_naming_the_option_before_the_stream_is_read(command, tmp_path,
                                                                                   monkeypatch, args):
    """The broker client refused a negative timestamp with a bare ValueError, after the replay or export began:
    a traceback."""
    monkeypatch.chdir(tmp_path)
    refused = command(*args)
    assert refused.exit_code == 2 and args[-2] in refused.said
    assert "'1969-06-01' is before 1970-01-01T00:00Z" in refused.said
    assert command.replays == command.exports == []


@pytest.mark.parametrize("until", ["2026-11-01T00:00Z", "2026-10-31"])
def test_an_export_until_no_later_than_since_is_refused_not_written_as_an_empty_export(command, tmp_path, until):
    """It wrote 0 events over the previous export."""
    refused = command("export", str(tmp_path / "out.jsonl"), "--since", "2026-11-01", "--until", until)
    assert refused.exit_code == 2 and "--until" in refused.said and "is not after --since" in refused.said
    assert command.exports == []
    done = command("export", str(tmp_path / "out.jsonl"), "--since", "2026-11-01", "--until", "2026-11-01")
    assert done.exit_code == 0, done.said
    assert command.exports == [("jsonl", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))]


def test_an_export_to_a_directory_is_refused_before_the_stream_is_read(command, tmp_path):
    """It failed only when renaming the finished file over it, after reading the whole stream."""
    for name in ("out.jsonl", "exports"):
        (tmp_path / name).mkdir()
        refused = command("export", str(tmp_path / name))
        assert refused.exit_code == 2 and "is a directory: name the file to write" in refused.said
    assert command.exports == []


@pytest.mark.parametrize("args, chosen", [(["out.parquet", "--format", "PARQUET"], "parquet"),
                                          (["out.PARQUET"], "parquet"), (["out.JSONL"], "jsonl"),
                                          (["out.json", "--format", "Jsonl"], "jsonl"),
                                          (["out.txt", "--format", "jsonl"], "jsonl")])
def test_the_export_format_is_read_in_any_case_from_the_option_or_the_name(command, tmp_path, monkeypatch, args,
                                                                           chosen):
    monkeypatch.chdir(tmp_path)
    done = command("export", *args)
    assert done.exit_code == 0, done.said
    assert [fmt for fmt, _, _ in command.exports] == [chosen]


@pytest.mark.parametrize("args, said", [(["out.parquet", "--format", "jsonl"], "out.parquet is named as parquet but "
                                                                               "--format is jsonl"),
                                        (["out.jsonl", "--format", "parquet"], "out.jsonl is named as jsonl but "
                                                                               "--format is parquet"),
                                        (["out.jsonl", "--format="], "'': use jsonl or parquet")])
def test_a_format_the_file_name_contradicts_or_an_empty_one_is_refused(command, tmp_path, monkeypatch, args, said):
    """--format jsonl wrote JSON Lines into out.parquet, which a Parquet reader then refused."""
    monkeypatch.chdir(tmp_path)
    refused = command("export", *args)
    assert refused.exit_code == 2 and "--format" in refused.said and said in refused.said
    assert command.exports == []


def test_an_export_says_how_many_records_it_left_out_as_undecodable(command, tmp_path):
    """Replay said so; export wrote a file lacking them without a word, and the analyst took it for the stream."""
    command.undecodable = 2
    done = command("export", str(tmp_path / "out.jsonl"))
    assert done.exit_code == 0, done.output
    assert "wrote 3 events to" in done.output and "; 2 undecodable left out" in done.output
    command.undecodable = 0
    assert "undecodable" not in command("export", str(tmp_path / "out.jsonl")).output


def test_an_export_since_a_moment_before_what_the_stream_holds_is_written_with_a_warning_naming_from_when(
        command, tmp_path):
    """The stream had lost a month after --since to retention: the export wrote what was left without a word, and
    the analyst took the slice for whole. It is still written, exit 0, but says so."""
    command.lost = {"leads.lifecycle": datetime(2026, 11, 3, 9, 30, tzinfo=UTC)}
    done = command("export", str(tmp_path / "out.jsonl"), "--since", "2026-11-01")
    assert done.exit_code == 0, done.output
    assert "wrote 3 events to" in done.said
    assert ("warning: the stream no longer holds all it recorded since --since 2026-11-01T00:00:00+00:00 "
            "(retention, or a truncated log): it holds leads.lifecycle only from 2026-11-03T09:30:00.000+00:00; "
            "the events it recorded since --since and no longer holds are not in the export, so it may be short; a "
            "--since of 2026-11-03T09:30:00.000+00:00 or later exports a slice it holds whole") in done.said
    command.lost = {}
    assert "warning" not in command("export", str(tmp_path / "out.jsonl"), "--since", "2026-11-04").said


def test_an_export_since_a_moment_from_a_partition_that_lost_every_record_is_warned_of_naming_no_moment(
        command, tmp_path):
    """A partition emptied by retention has no record left to date its cut by: no --since is known to be whole."""
    command.lost = {"leads.lifecycle": None}
    done = command("export", str(tmp_path / "out.jsonl"), "--since", "2026-11-01")
    assert done.exit_code == 0, done.output
    assert ("it holds leads.lifecycle nothing since --since in a partition that lost every record it had; the events "
            "it recorded since --since and no longer holds are not in the export") in done.said
    assert "no --since is known to export a slice it holds whole" in done.said and "or later" not in done.said


def test_a_replay_since_a_moment_before_what_the_stream_holds_says_what_it_could_not_re_apply(command):
    """`replay --since 1970-01-01`, as a refused rebuild advises, re-applied what a cut stream held and said
    nothing of what it no longer did."""
    command.lost = {"leads.lifecycle": datetime(2026, 11, 3, 9, 30, tzinfo=UTC), "leads.quarantined": None}
    done = command("replay", "--since", "1970-01-01")
    assert done.exit_code == 0, done.output
    assert "re-applied over the live tables since 1970-01-01T00:00:00+00:00" in done.said
    assert ("warning: the stream no longer holds all it recorded since --since 1970-01-01T00:00:00+00:00 "
            "(retention, or a truncated log): it holds leads.lifecycle only from 2026-11-03T09:30:00.000+00:00, "
            "leads.quarantined nothing since --since in a partition that lost every record it had; the events it "
            "recorded since --since and no longer holds were not re-applied: the tables keep what the live service "
            "applied of them, and lack any it never did") in done.said
    command.lost = {}
    assert "warning" not in command("replay", "--since", "2026-11-04").said


def test_a_whole_export_of_a_stream_that_no_longer_starts_at_its_first_event_is_written_with_a_warning(
        command, tmp_path):
    """Retention (or kafka-delete-records, as the upgrade notes suggest for old contacts) had taken the oldest
    events: the export wrote what was left, exited 0 and said nothing, and the analysts took it for the history."""
    command.truncated = "leads.lifecycle partition 0 from offset 1,234"
    result = command("export", str(tmp_path / "all.jsonl"))
    assert result.exit_code == 0, result.output
    assert "warning: the stream no longer starts at its first event" in result.stderr
    assert "leads.lifecycle partition 0 from offset 1,234" in result.stderr and "not the whole history" in result.stderr
