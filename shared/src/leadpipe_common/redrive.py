"""``leadpipe-redrive``: send dead-lettered records back to the topic they came from.

Guarantees:
- Each record goes back with its original key, value and headers (the
  ``dlq.*`` headers removed), to the topic named by its ``dlq.source.topic``;
  so it keeps its event id, and stages that already applied it do nothing.
- A letter rejected for good (``dlq.final``: ``consumer.Rejected.final``, a
  sales report illegal for where its lead was) is not sent back: its stage
  would only answer it with the same letter. It is listed and counted.
- Progress is kept by the consumer group ``leadpipe-redrive``: a run sends
  each dead letter once, and only those that were there when it started
  (the log end at its first fetch of each partition); a record that fails
  again is dead-lettered again and waits for the next run.
- Offsets are committed only after every record of a batch is acknowledged
  by the broker, so an interrupted run resends rather than skips.
- A run narrowed by ``--stage`` or ``--kind`` keeps its progress in a group of
  its own (``leadpipe-redrive.<stage>.<kind>``; its first run reads the topic
  from the start), so the letters it leaves out stay for a plain run, and it
  never sends one of its letters twice. What one group sent, another sends
  again (same event ids: stages that applied them do nothing; a letter still
  poisonous is dead-lettered again, once a run).
- ``--dry-run`` lists what would be sent and moves nothing.
- A letter that went without the original's value, headers or key (it was
  too big to produce with them: ``dlq.value.dropped``, which the others come
  after) is not sent back empty:
  it is listed with where the original is (its source topic, partition and
  offset; or, for a message an outbox relay set aside, ``dlq.source.outbox``,
  the service whose rows keep it) and counted as too big.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from leadpipe_common import topics, topology
from leadpipe_common.cli_help import Command
from leadpipe_common.envelope import Message
from leadpipe_common.logging import configure_command, escaped, run_command
from leadpipe_common.producer import Producer
from leadpipe_common.kafka import client_options, quiet_client_logs
from leadpipe_common.settings import KafkaSettings

GROUP = "leadpipe-redrive"
#: The kinds of error a dead letter names (``dlq.error.kind``).
KINDS = ("undecodable", "schema", "rejected", "handler", "unreadable", "reused_id")
#: The services that consume, and so may dead-letter what they read: what ``--stage`` takes.
STAGES = tuple(sorted(s.name for s in topology.SERVICES if topology.inputs_of(s.name)))


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), None)

    @property
    def whole(self) -> bool:
        """Whether it carries the original's value and headers (see ``consumer.dead_letter``): not when they were
        too big, or could not be read at all (kind ``unreadable``)."""
        return self.header("dlq.value.dropped") is None and self.header("dlq.error.kind") != "unreadable"

    def original(self) -> Message | None:
        source = self.header("dlq.source.topic")
        if source not in topology.TOPICS or source == topics.DEADLETTER or not self.whole:
            return None
        kept = tuple((k, v) for k, v in self.headers if not k.startswith("dlq."))
        return Message(topic=source, key=self.key, value=self.value, headers=kept)


def selected(letter: DeadLetter, stage: str | None, kind: str | None) -> bool:
    return (stage is None or letter.header("dlq.stage") == stage) and (
        kind is None or letter.header("dlq.error.kind") == kind
    )


def group_for(stage: str | None, kind: str | None) -> str:
    """The consumer group keeping the progress of runs with this filter (the plain runs': ``GROUP``)."""
    if stage is None and kind is None:
        return GROUP
    return f"{GROUP}.{stage or 'any-stage'}.{kind or 'any-kind'}"


def dead_letter_reader(settings: KafkaSettings, group: str = GROUP) -> AIOKafkaConsumer:
    """A redrive group's consumer; its committed offsets are the progress of its runs."""
    return AIOKafkaConsumer(**client_options(settings), group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest")


async def redrive(settings: KafkaSettings, *, stage: str | None, kind: str | None, dry_run: bool,
                  from_start: bool = False, say=print) -> Counter:  # noqa: ANN001
    consumer = dead_letter_reader(settings, group_for(stage, kind))
    producer: Producer | None = None
    tally: Counter = Counter()
    try:
        await consumer.start()
        partitions = [TopicPartition(topics.DEADLETTER, p)
                      for p in sorted(consumer.partitions_for_topic(topics.DEADLETTER) or ())]
        consumer.assign(partitions)
        if from_start:  # every letter the topic holds, those sent back before too (a dry run: nothing committed)
            await consumer.seek_to_beginning(*partitions)
        # This run's share of the work: the log end as the broker reports it, raised
        # to each partition's high watermark at its first fetch (the embedded Tansu
        # reports only the last record batch's base offset + 1; see scan.py).
        ends = await consumer.end_offsets(partitions)
        unfetched = set(partitions)
        if not dry_run:
            producer = Producer(settings, client_id=GROUP)
            await producer.start()
        while True:
            remaining = [tp for tp in partitions if tp in unfetched or await consumer.position(tp) < ends[tp]]
            if not remaining:
                break
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp in remaining:
                highwater = consumer.highwater(tp)
                if tp in unfetched and highwater is not None:
                    # Raised once, at the first fetch, never after: letters that
                    # fail again during this run wait for the next one.
                    unfetched.discard(tp)
                    ends[tp] = max(ends[tp], highwater)
            outgoing: list[Message] = []
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    letter = DeadLetter(r.partition, r.offset, r.key, r.value or b"", tuple(r.headers))
                    if not selected(letter, stage, kind):
                        tally["skipped"] += 1
                        continue
                    # Each line names the letter's key (the lead's id, as the stages key their records), so that
                    # one left here can be found and acted on; a key and an error are what a producer wrote:
                    # escaped, never run by the terminal.
                    key = escaped((r.key or b"").decode(errors="replace"))
                    error = escaped((letter.header("dlq.error.message") or "")[:120])
                    if letter.header("dlq.error.kind") == "unreadable":
                        say(f"not sent: key={key}: the original could not be read; it is "
                            f"{letter.header('dlq.source.topic')}/{letter.header('dlq.source.partition')} at offset "
                            f"{letter.header('dlq.source.offset')}")
                        tally["unreadable"] += 1
                        continue
                    if not letter.whole:
                        outbox = letter.header("dlq.source.outbox")
                        where = (f"kept by {outbox}, which never sent it to {letter.header('dlq.source.topic')}"
                                 if outbox else
                                 f"{letter.header('dlq.source.topic')}/{letter.header('dlq.source.partition')} at "
                                 f"offset {letter.header('dlq.source.offset')}")
                        say(f"not sent: key={key}: too big for a dead letter; the original is {where} "
                            f"({letter.header('dlq.value.dropped')} bytes)")
                        tally["too big to send back"] += 1
                        continue
                    if letter.header("dlq.final") == "true":
                        say(f"not sent: key={key}: rejected for good by {letter.header('dlq.stage')} ({error}); "
                            "send a new event instead")
                        tally["rejected for good"] += 1
                        continue
                    original = letter.original()
                    if original is None:
                        say(f"not sent: key={key}: it came from "
                            f"{escaped(str(letter.header('dlq.source.topic')))}, no topic it can be sent back to")
                        tally["unknown source"] += 1
                        continue
                    say(f"{'would send' if dry_run else 'sending'} {original.topic} key={key} "
                        f"({letter.header('dlq.stage')}: {letter.header('dlq.error.kind')}: {error})")
                    outgoing.append(original)
                    tally[original.topic] += 1
            if producer is not None and batch:
                await producer.send_all(outgoing)
                await consumer.commit({tp: min(rs[-1].offset + 1, ends[tp]) for tp, rs in batch.items()})
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
    return tally


cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0].split(": ", 1)[1])


@cli.command(cls=Command)
def main(
    stage: str | None = typer.Option(None, help=f"only records dead-lettered by this service: "
                                                f"{', '.join(STAGES[:-1])} or {STAGES[-1]}"),
    kind: str | None = typer.Option(None, help=f"only this kind of error: {', '.join(KINDS[:-1])} or {KINDS[-1]}"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be sent; send nothing"),
    every: bool = typer.Option(False, "--all", help="with --dry-run: list every letter the topic holds, those sent "
                                                    "back before too (to find a person's, say), not only those "
                                                    "left to send"),
) -> None:
    """Send dead-lettered records back to their source topics, once each.

    The cluster is the one in KAFKA_BOOTSTRAP_SERVERS (with KAFKA_SECURITY_PROTOCOL and friends).

    Webhook calls that failed for good are not dead letters but dead deliveries, in delivery's own table:
    `leadpipe-delivery redrive` sends those again.
    """
    from leadpipe_common.cli import load_settings

    # A misspelt filter would match no letter and report "sent nothing": as if there were nothing to send.
    if stage is not None and stage not in STAGES:
        raise typer.BadParameter(f"{stage!r} is no consuming service; one of {', '.join(STAGES)}",
                                 param_hint="--stage")
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"{kind!r}: one of {', '.join(KINDS)}", param_hint="--kind")
    if every and not dry_run:
        # Sent again, every letter ever redriven would be a second copy of each.
        raise typer.BadParameter("lists only: give --dry-run with it", param_hint="--all")
    settings = load_settings(KafkaSettings)
    try:
        with quiet_client_logs():  # the one-line error below says it
            tally = run_command(redrive(settings, stage=stage, kind=kind, dry_run=dry_run, from_start=every,
                                        say=typer.echo))
    except KafkaError as exc:
        typer.secho(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    sent = {t: n for t, n in tally.items() if t in topology.TOPICS}
    verb = "would send" if dry_run else "sent"
    summary = ", ".join(f"{n} to {t}" for t, n in sorted(sent.items())) or "nothing"
    extra = ", ".join(f"{n} {what}" for what, n in tally.items() if what not in topology.TOPICS)
    typer.echo(f"{verb} {summary}" + (f" ({extra})" if extra else ""))


def run() -> None:
    configure_command("redrive")
    cli()


if __name__ == "__main__":
    run()
