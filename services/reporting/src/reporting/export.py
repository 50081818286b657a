"""Handing the log to analysts: ``leads.lifecycle`` (or a time slice) as JSON Lines or Parquet, one row per event.

Guarantees: memory stays flat (rows are written a fetched batch at a time);
an event is in the slice when its CloudEvents time is at or after ``since``
and before ``until``; an undecodable record is left out, as the live service
dead-letters it; the output file changes only when the export completes: it
is written under a hidden name beside it and renamed over it at the end, so
a failure or an interruption leaves the previous export as it was. An
export since a moment holds what the stream still holds: where retention
(or a truncated log) deleted events recorded since then, ``export`` says
from when the stream holds them all (``scan.truncated_since``), for the
analyst to hear that the slice lacks them.

The columns (``EXPORT_COLUMNS``) flatten what analysts filter on; ``data`` is
the whole event, but for an earlier version's ``lead.touched``, whose
person's contact (and ``person_id``) the file leaves out, as the lifecycle's
touch now carries none. ``to_stage`` is the stage entered, or for another
event its type without ``lead.``, a later touch's ``touched`` (as on the
timeline) whichever version wrote it (``lead.touch_recorded``, or an earlier
one's ``lead.touched``). ``at`` is when it happened: the step's time, the
breach's, or for a touch the touch's (``lead.reengaged``: when the holder
was told). ``utm_*``, ``form_id`` and ``offer`` are the lead's first touch,
as every event carries it, except on a touch and ``lead.reengaged``, which
are about a later touch: there they are that touch's.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from leadpipe_common import topics
from leadpipe_common.envelope import Envelope
from leadpipe_common.events import LeadTouched, LeadTouchRecorded
from leadpipe_common.scan import TopicScan, cut_from_start, truncated_since
from leadpipe_common.settings import KafkaSettings

from reporting.replay import CLOCK_MARGIN, Progress, decoded

EXPORT_COLUMNS = ("event_id", "type", "time", "lead_id", "from_stage", "to_stage", "at", "by", "reason",
                  "reason_code", "owner_id", "team", "grade", "amount", "currency", "utm_source", "utm_medium",
                  "utm_campaign", "utm_content", "form_id", "offer", "partition", "offset", "data")

#: What a step that enters no stage is called, where it is not its type without ``lead.``: a later touch is
#: ``touched``, as on the timeline, whichever version's event it came in.
_STEP_OF = {LeadTouchRecorded.type: "touched"}
#: What of an event's data the file leaves out: the record keeps it, but no copy for analysts need hold it.
_LEFT_OUT = {LeadTouched.type: {"contact", "person_id"}}


class OutputError(Exception):
    """Writing the output file failed (as opposed to reading the topic, or the Kafka client's own files)."""

    def __init__(self, output: Path, cause: OSError) -> None:
        super().__init__(f"cannot write {output}: {cause.strerror or cause}")


@contextmanager
def _writing(output: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise OutputError(output, exc) from exc


def export_row(env: Envelope, partition: int, offset: int) -> dict[str, Any]:
    data = env.data.model_dump(mode="json", exclude=_LEFT_OUT.get(env.type))
    # A touch's events are about that touch: its time and attribution, not the first touch every event carries.
    touch = data.get("touch") or {}
    attribution = touch.get("attribution") or data.get("attribution") or {}
    return {
        "event_id": str(env.id), "type": env.type, "time": env.time.isoformat(), "lead_id": str(env.data.lead_id),
        "from_stage": data.get("from_stage"),
        "to_stage": data.get("to_stage", _STEP_OF.get(env.type, env.type.removeprefix("lead."))),
        "at": data.get("at") or data.get("breached_at") or touch.get("at"), "by": data.get("by"),
        "reason": data.get("reason"),
        "reason_code": data.get("reason_code"), "owner_id": data.get("owner_id"), "team": data.get("team"),
        "grade": data.get("grade"), "amount": data.get("amount"), "currency": data.get("currency"),
        **{k: attribution.get(k) for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "form_id", "offer")},
        "partition": partition, "offset": offset, "data": json.dumps(data, separators=(",", ":")),
    }


async def export(settings: KafkaSettings, output: Path, fmt: str, *, since: datetime | None, until: datetime | None,
                 progress: Progress = lambda done, total: None) -> tuple[int, int, dict[str, datetime | None],
                                                                         str | None]:
    """Write the events as JSON Lines or Parquet, a fetched batch at a time (memory stays flat); how many were
    written, how many records were left out as undecodable, and, of an export since a moment, whether the stream
    no longer holds all it recorded since (``truncated_since``), of a whole one, which partitions no longer start
    at their first event (``cut_from_start``; None: all do): the analyst must hear that the file lacks them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c in ("partition", "offset") else pa.string()) for c in EXPORT_COLUMNS])
    written, seen, skipped = 0, 0, 0
    # Beside the output, so the rename cannot cross file systems; created exclusively.
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
    with _writing(output):
        partial.open("x").close()
    try:
        with _writing(output), contextlib.suppress(FileNotFoundError):
            # A file exported again keeps the permissions its analyst gave it (a chmod 600 of a file of people's
            # steps), not the umask's, from its first byte: not only once it replaces the old one. Within the try:
            # a chmod refused (a file system without modes) leaves no partial file behind.
            os.chmod(partial, stat.S_IMODE(output.stat().st_mode))
        with ExitStack() as files:
            with _writing(output):
                jsonl = files.enter_context(partial.open("w", encoding="utf-8")) if fmt == "jsonl" else None
                parquet = None if jsonl else files.enter_context(pq.ParquetWriter(partial, schema, compression="zstd"))
            # Sought from a little before --since by the records' broker time: a record is stamped by the clock of
            # the process that relayed it, maybe behind the one that dated the event; the rows are kept by the
            # event's own time all the same (below).
            async with TopicScan(settings, topics.LIFECYCLE, since=since - CLOCK_MARGIN if since else None) as scan:
                async for records in scan.batches():
                    readable, unreadable = decoded(records)
                    skipped += unreadable
                    rows = [export_row(env, r.partition, r.offset) for r, env in readable
                            if not (since and env.time < since) and not (until and env.time >= until)]
                    with _writing(output):
                        if jsonl is not None:
                            jsonl.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
                        elif rows:
                            parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
                    written += len(rows)
                    seen += len(records)
                    progress(seen, scan.total)
                first_held = [(tp.topic, at) for tp, at in scan.first_held.items()]
                cut = cut_from_start(scan.starts) if since is None else None
            with _writing(output):
                files.close()  # the last writes (and Parquet's footer) fail here, if anywhere
        with _writing(output):
            os.replace(partial, output)
    except BaseException:  # an interruption (Ctrl-C cancels the task) as much as an error
        partial.unlink(missing_ok=True)
        raise
    return written, skipped, {} if since is None else truncated_since(since, first_held), cut
