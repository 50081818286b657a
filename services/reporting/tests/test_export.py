"""The export's output file: replaced only by a complete export, and a write error told apart from a read error."""

import asyncio
import json
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from typer.testing import CliRunner

from leadpipe_common.events import (
    Attribution, LeadReengaged, LeadStageChanged, LeadTouched, LeadTouchRecorded, Touch,
)
from leadpipe_common.settings import KafkaSettings
from leadpipe_common.testing import factories
from leadpipe_common.testing.fakes import TopicScanOf
from reporting import export as export_module
from reporting.__main__ import cli
from reporting.export import export, export_row

PREVIOUS = '{"event_id":"earlier","type":"lead.captured"}\n'


def step(offset: int):
    event = LeadStageChanged(lead_id=uuid.uuid4(), from_stage=None, to_stage="captured",
                             at=datetime(2026, 11, 23, 9, tzinfo=UTC), by="t", reason="r", attribution=Attribution())
    return factories.consumed(factories.message("leads.lifecycle", event), offset)


def previous_export(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"event_id": ["earlier"]}), target)
    else:
        target.write_text(PREVIOUS)
    return target


async def run_export(target: Path, scan: TopicScanOf, monkeypatch: pytest.MonkeyPatch, *,
                     since: datetime | None = None) -> tuple[int, int, dict[str, datetime | None], str | None]:
    monkeypatch.setattr(export_module, "TopicScan", scan)
    return await export(KafkaSettings(), target, target.suffix.removeprefix("."), since=since, until=None)


@pytest.mark.parametrize("name", ["old.jsonl", "old.parquet"])
async def test_an_export_the_broker_cannot_serve_leaves_the_previous_export_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    target = previous_export(tmp_path, name)
    before = target.read_bytes()
    with pytest.raises(KafkaConnectionError):
        await run_export(target, TopicScanOf([], fails_at_end=KafkaConnectionError("unreachable")), monkeypatch)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("name", ["old.jsonl", "old.parquet"])
async def test_an_export_failing_midway_never_leaves_part_of_the_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    target = previous_export(tmp_path, name)
    before = target.read_bytes()
    with pytest.raises(KafkaConnectionError):
        scan = TopicScanOf([[step(0), step(1)]], fails_at_end=KafkaConnectionError("gone"))
        await run_export(target, scan, monkeypatch)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


async def test_an_export_interrupted_midway_leaves_the_previous_export_and_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = previous_export(tmp_path, "old.jsonl")
    # Ctrl-C under asyncio.run cancels the running task: the export sees a CancelledError.
    with pytest.raises(asyncio.CancelledError):
        await run_export(target, TopicScanOf([[step(0)]], fails_at_end=asyncio.CancelledError()), monkeypatch)
    assert target.read_text() == PREVIOUS
    assert [p.name for p in tmp_path.iterdir()] == ["old.jsonl"]


@pytest.mark.parametrize("name", ["old.jsonl", "old.parquet"])
async def test_a_complete_export_replaces_the_previous_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    target = previous_export(tmp_path, name)
    assert await run_export(target, TopicScanOf([[step(0), step(1)], [step(2)]]), monkeypatch) == (3, 0, {}, None)
    if name.endswith(".parquet"):
        offsets = pq.read_table(target).column("offset").to_pylist()
    else:
        offsets = [json.loads(line)["offset"] for line in target.read_text().splitlines()]
    assert offsets == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == [name]


async def test_an_export_replacing_one_keeps_the_permissions_its_analyst_gave_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A new file took the umask's 0644: a file of people's steps its analyst had made 0600 was readable by all."""
    target = previous_export(tmp_path, "old.jsonl")
    target.chmod(0o600)
    await run_export(target, TopicScanOf([[step(0)]]), monkeypatch)
    assert target.read_text() != PREVIOUS and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_missing_kafka_ca_file_is_named_as_the_setting_it_is_not_a_write_error(tmp_path: Path):
    target = previous_export(tmp_path, "old.jsonl")
    done = CliRunner().invoke(cli, ["export", str(target)], env={
        "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "missing-ca.pem")})
    assert done.exit_code == 2
    assert done.output.startswith("invalid settings: KAFKA_SSL_CAFILE: cannot read ") and "cannot write" not in done.output
    assert target.read_text() == PREVIOUS


def test_an_output_the_export_cannot_write_is_reported_as_a_write_error(tmp_path: Path, monkeypatch):
    target = tmp_path / "lifecycle.jsonl"
    scan = TopicScanOf([[step(0)]])
    # Running as root, permissions would not stop the write; a directory put in the way while it reads does.
    monkeypatch.setattr(export_module, "TopicScan", lambda *args, **kwargs: (target.mkdir(), scan)[1])
    done = CliRunner().invoke(cli, ["export", str(target)])
    assert done.exit_code == 1
    assert f"cannot write {target}" in done.output
    assert [p.name for p in tmp_path.iterdir()] == ["lifecycle.jsonl"]


def test_a_touchs_row_has_that_touchs_time_and_attribution_not_the_leads_first_touch():
    first, again = Attribution(utm_source="google", offer="demo"), Attribution(utm_source="newsletter", offer="ebook")
    lead, at = uuid.uuid4(), datetime(2026, 11, 23, 9, tzinfo=UTC)
    touch = Touch(touch_id=uuid.uuid4(), at=at, attribution=again)
    touched = LeadTouchRecorded(lead_id=lead, attribution=first, touch=touch)
    earlier = LeadTouched(lead_id=lead, captured_at=datetime(2026, 11, 1, tzinfo=UTC),
                          contact={"email": "jo@x.example"}, attribution=first, touch=touch)
    told = LeadReengaged(lead_id=lead, touch=touch, owner_id="ana", team="emea", at=at + timedelta(minutes=1),
                         reason="came back", attribution=first, score=80, grade="A")
    rows = [export_row(factories.envelope("leads.lifecycle", e), 0, 0) for e in (touched, earlier, told)]
    assert [(r["to_stage"], r["at"], r["utm_source"], r["offer"]) for r in rows] == [
        ("touched", "2026-11-23T09:00:00Z", "newsletter", "ebook"),
        ("touched", "2026-11-23T09:00:00Z", "newsletter", "ebook"),  # as an earlier version wrote the touch
        ("reengaged", "2026-11-23T09:01:00Z", "newsletter", "ebook")]


def test_an_earlier_versions_touch_is_exported_without_its_persons_contact_as_a_touch_is_now():
    """leads.lifecycle keeps the lead.touched records of earlier versions, contact and all: the file need not."""
    touch = Touch(touch_id=uuid.uuid4(), at=datetime(2026, 11, 23, 9, tzinfo=UTC), attribution=Attribution(offer="x"))
    earlier = LeadTouched(lead_id=uuid.uuid4(), captured_at=datetime(2026, 11, 1, tzinfo=UTC), person_id=uuid.uuid4(),
                          contact={"email": "jo@x.example", "phone": "+1 415 555 2671", "message": "call me"},
                          attribution=Attribution(utm_source="google"), touch=touch)
    row = export_row(factories.envelope("leads.lifecycle", earlier), 0, 0)
    assert json.loads(row["data"]) == {"lead_id": str(earlier.lead_id), "captured_at": "2026-11-01T00:00:00Z",
                                       "attribution": earlier.attribution.model_dump(mode="json"),
                                       "touch": touch.model_dump(mode="json")}
    # The phone by its "+" (its digits alone, "555", turned up in a random id now and then).
    assert not any(secret in json.dumps(row) for secret in ("jo@x", "+1 415", "+1415", "call me",
                                                             str(earlier.person_id)))


async def test_an_export_counts_the_records_it_leaves_out_as_undecodable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    garbled = step(1)
    garbled.value = b"{not json"
    assert await run_export(tmp_path / "out.jsonl", TopicScanOf([[step(0), garbled], [step(2)]]), monkeypatch) == (2, 1, {}, None)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


async def test_an_export_since_a_moment_before_what_the_stream_holds_says_from_when_it_holds_all_it_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A TOPIC_RETENTION on leads.lifecycle deleted a month of events after --since: the export wrote what was
    left, and the analyst took the slice for whole."""
    since = datetime(2020, 1, 1, tzinfo=UTC)
    held_from = since + timedelta(days=30)
    cut = {TopicPartition("leads.lifecycle", 0): since - timedelta(days=5),  # lost only what came before --since
           TopicPartition("leads.lifecycle", 1): held_from}
    written = await run_export(tmp_path / "out.jsonl", TopicScanOf([[step(0)]], first_held=cut), monkeypatch,
                               since=since)
    assert written == (1, 0, {"leads.lifecycle": held_from}, None)
    whole = await run_export(tmp_path / "out.jsonl", TopicScanOf([[step(0)]], first_held=cut), monkeypatch,
                             since=held_from)
    assert whole == (1, 0, {}, None)


async def test_a_whole_export_names_the_partitions_that_no_longer_start_at_their_first_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    starts = {TopicPartition("leads.lifecycle", 0): 0, TopicPartition("leads.lifecycle", 1): 1234}
    written = await run_export(tmp_path / "out.jsonl", TopicScanOf([[step(0)]], starts=starts), monkeypatch)
    assert written == (1, 0, {}, "leads.lifecycle partition 1 from offset 1,234")


async def test_an_export_since_a_moment_seeks_a_little_earlier_by_broker_time_and_keeps_rows_by_the_events_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A record is stamped by the relaying process's clock, maybe behind the one that dated its event: sought from
    --since exactly, such a record of an event at or after --since sat before the offset sought, left out."""
    scan, asked = TopicScanOf([[step(0)]]), []

    def scanned(settings, topic, *, since):  # noqa: ANN001, ANN202
        asked.append(since)
        return scan

    monkeypatch.setattr(export_module, "TopicScan", scanned)
    since = datetime(2020, 1, 1, tzinfo=UTC)
    await export(KafkaSettings(), tmp_path / "out.jsonl", "jsonl", since=since, until=None)
    assert asked == [since - timedelta(minutes=5)]


async def test_a_file_system_that_refuses_modes_leaves_no_partial_file_and_the_previous_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The partial file was made and its mode set before the clean-up took over: a chmod refused (CIFS, vfat) left
    a hidden .part file beside every export, each under a new name."""
    from reporting.export import OutputError

    target = previous_export(tmp_path, "out.jsonl")

    def refused(path, mode):  # noqa: ANN001, ANN202
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(export_module.os, "chmod", refused)
    with pytest.raises(OutputError):
        await run_export(target, TopicScanOf([[step(0)]]), monkeypatch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"] and target.read_text() == PREVIOUS
