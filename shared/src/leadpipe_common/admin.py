"""Topic administration: ``leadpipe-create-topics`` and the local stack create topics here.

Guarantees: ``ensure_topics`` is idempotent (existing topics are left as they
are, retention included: change a live topic's retention with your cluster's
tools) and returns only once every topic exists, so services started after
it never race topic auto-creation with a partition count of one. Every topic
it creates gets an explicit ``retention.ms`` (``topology``, overridden by
``TOPIC_RETENTION``), never the cluster's default.
"""

from __future__ import annotations

import asyncio

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from leadpipe_common import topology
from leadpipe_common.kafka import client_options
from leadpipe_common.settings import TopicSettings


def admin_client(settings: TopicSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings), client_id="leadpipe-admin")


async def ensure_topics(settings: TopicSettings, timeout_s: float = 30) -> None:
    retention = topology.retention_ms(settings.retention_overrides())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = admin_client(settings)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication,
                     topic_configs={"retention.ms": str(retention[name])})
            for name in topology.TOPICS if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
    finally:
        await admin.close()


cli = typer.Typer(add_completion=False)


@cli.command()
def main() -> None:
    """Create leadpipe's topics on the cluster in KAFKA_BOOTSTRAP_SERVERS.

    Partitions, replication and retention come from TOPIC_PARTITIONS, TOPIC_REPLICATION (3 on a
    production cluster) and TOPIC_RETENTION (e.g. "leads.captured=7d,leads.routed=90d"); topics
    that exist are left as they are.
    """
    from leadpipe_common.cli import load_settings

    settings = load_settings(TopicSettings)
    try:
        asyncio.run(ensure_topics(settings))
    except KafkaError as exc:
        typer.secho(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    retention = topology.retention_ms(settings.retention_overrides())
    for name in topology.TOPICS:
        kept = "forever" if retention[name] < 0 else f"{retention[name] / 86_400_000:g} days"
        typer.echo(f"{name}: {settings.topic_partitions} partitions, kept {kept}")


def run() -> None:
    cli()
