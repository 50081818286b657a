"""Dead letters from every stage, then `leadpipe-redrive` sending them home."""

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from leadpipe_common.envelope import Message
from leadpipe_common.events import LeadDispositioned
from leadpipe_common.testing import factories
from leadpipe_common.testing.kafka import for_lead, produce, read_all, read_topic

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

INPUTS = {"leads.captured": "enrichment", "leads.enriched": "scoring", "leads.scored": "routing"}


def redrive(bootstrap: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "leadpipe_common.redrive", *args],
                            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def schema_poison(topic: str) -> Message:
    """A well-formed CloudEvent of the topic's type whose data lacks a required field."""
    event = {"leads.captured": factories.captured(), "leads.enriched": factories.enriched(),
             "leads.scored": factories.scored()}[topic]
    valid = factories.message(topic, event)
    return Message(topic=topic, key=valid.key, headers=valid.headers,
                   value=valid.value.replace(b'"captured_at":', b'"captured_on":'))


async def test_poison_in_every_input_topic_is_dead_lettered_then_redriven_home(bootstrap):
    poison = {topic: (str(uuid.uuid4()).encode(), f"\x00poison for {topic}".encode()) for topic in INPUTS}
    broken = [schema_poison(topic) for topic in INPUTS]
    await produce(bootstrap, [Message(topic=t, key=k, value=v) for t, (k, v) in poison.items()] + broken)
    keys = {k for k, _ in poison.values()} | {m.key for m in broken}
    dead = await read_topic(bootstrap, "leads.deadletter", where=lambda r: r.key in keys,
                            until=lambda f: len(f) >= 6)
    assert {(r.headers["dlq.source.topic"], r.headers["dlq.stage"], r.headers["dlq.error.kind"]) for r in dead} == {
        (topic, stage, kind) for topic, stage in INPUTS.items() for kind in ("undecodable", "schema")}
    assert all("captured_at" in r.headers["dlq.error.message"] for r in dead if r.headers["dlq.error.kind"] == "schema")
    steps = await read_topic(bootstrap, "leads.lifecycle", where=lambda r: r.key in keys,
                             until=lambda f: len(f) >= 6)
    assert {r.json()["to_stage"] for r in steps} == {"deadlettered"}

    # A valid lead that an older, buggy enrichment dead-lettered: after the fix it must flow.
    fixed = factories.captured("cto@datadoghq.com", job_title="CTO")
    original = factories.message("leads.captured", fixed)
    letter = Message(topic="leads.deadletter", key=original.key, value=original.value, headers=original.headers + (
        ("dlq.error.kind", b"rejected"), ("dlq.error.message", b"bug fixed in 1.0.1"),
        ("dlq.source.topic", b"leads.captured"), ("dlq.source.partition", b"0"), ("dlq.source.offset", b"0"),
        ("dlq.stage", b"enrichment"), ("dlq.at", datetime.now(UTC).isoformat().encode())))
    await produce(bootstrap, [letter])

    listing = redrive(bootstrap, "--dry-run", "--stage", "enrichment")
    assert f"key={fixed.lead_id}" in listing and "would send" in listing
    assert not await read_topic(bootstrap, "leads.enriched", where=for_lead(fixed.lead_id), until=bool, timeout=3)

    redrive(bootstrap)
    routed = await read_topic(bootstrap, "leads.routed", where=for_lead(fixed.lead_id), until=bool)
    assert routed and routed[0].json()["assignment"]["owner_id"] == "dan.kim"
    for topic, (key, value) in poison.items():  # back home, byte for byte, and dead again
        home = await read_topic(bootstrap, topic, where=lambda r, k=key: r.key == k, until=lambda f: len(f) >= 2)
        assert [r.value for r in home] == [value, value]
        assert not any(h.startswith("dlq.") for r in home for h in r.headers)


def dead_letter(original: Message, stage: str) -> Message:
    """``original`` as ``stage`` dead-lettered it: rejected by a bug that is fixed now."""
    return Message(topic="leads.deadletter", key=original.key, value=original.value, headers=original.headers + (
        ("dlq.error.kind", b"rejected"), ("dlq.error.message", b"bug fixed in 1.0.2"),
        ("dlq.source.topic", original.topic.encode()), ("dlq.source.partition", b"0"),
        ("dlq.source.offset", b"0"), ("dlq.stage", stage.encode()), ("dlq.at", datetime.now(UTC).isoformat().encode())))


async def test_letters_a_narrowed_redrive_leaves_out_wait_for_a_plain_run(bootstrap):
    # Enrichment's letter first: a run for scoring's letters alone passes over it on the way to its own.
    left = factories.captured("vp@stripe.com", job_title="VP Marketing")
    taken = factories.enriched("cmo@datadoghq.com", seniority="executive")
    await produce(bootstrap, [dead_letter(factories.message("leads.captured", left), "enrichment"),
                              dead_letter(factories.message("leads.enriched", taken), "scoring")])

    assert f"key={taken.lead_id}" in redrive(bootstrap, "--stage", "scoring")
    assert await read_topic(bootstrap, "leads.scored", where=for_lead(taken.lead_id), until=bool)
    assert not await read_topic(bootstrap, "leads.enriched", where=for_lead(left.lead_id), until=bool, timeout=3)
    assert f"key={taken.lead_id}" not in redrive(bootstrap, "--stage", "scoring")  # its own, sent once

    assert f"key={left.lead_id}" in redrive(bootstrap)
    assert await read_topic(bootstrap, "leads.enriched", where=for_lead(left.lead_id), until=bool)
    # Both sent back now: only a listing of every letter the topic holds still names them (a DPO's search).
    assert f"key={left.lead_id}" not in redrive(bootstrap, "--dry-run")
    everything = redrive(bootstrap, "--dry-run", "--all")
    assert f"would send leads.captured key={left.lead_id}" in everything and f"key={taken.lead_id}" in everything


async def test_a_letter_rejected_for_good_is_listed_and_not_sent_back(bootstrap):
    """routing refused the report for where its lead was: sent back, it would only get the same letter again."""
    report = factories.message("leads.feedback", LeadDispositioned(lead_id=uuid.uuid4(), outcome="accepted",
                                                                    rep_id="dan.kim"))
    letter = dead_letter(report, "routing")
    # leads.feedback takes any key: one a sales tool (or anyone who may write there) made a terminal's escape.
    rogue = replace(letter, key=b"\x1b]0;pwned\x07\x1b[2J", headers=(
        ("dlq.final", b"true"), ("dlq.error.message", b"\x1b[31mred"), *letter.headers))
    await produce(bootstrap, [replace(letter, headers=(("dlq.final", b"true"), *letter.headers)), rogue])

    listing = redrive(bootstrap)
    assert f"not sent: key={report.key.decode()}: rejected for good by routing" in listing
    assert "send a new event" in listing
    assert "key=\\x1b]0;pwned\\x07\\x1b[2J" in listing and "(\\x1b[31mred" in listing and "\x1b" not in listing
    assert not await read_all(bootstrap, "leads.feedback", where=lambda r: r.key == report.key)
