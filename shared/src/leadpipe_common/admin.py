"""Topic administration: ``leadpipe-create-topics`` and the local stack create topics here.

Guarantees: ``ensure_topics`` is idempotent (existing topics are left as they
are, retention included: change a live topic's retention with your cluster's
tools; ``leadpipe-create-topics`` prints the retention the cluster holds and
warns on stderr where it is not what was asked) and returns only once the cluster lists every topic, with the
partitions each has, so services started after it never race topic
auto-creation with a partition count of one. A topic the cluster refuses to
create (a replication factor above its brokers, a policy, an authorization)
raises ``TopicsRefused`` naming the topic and Kafka's reason: Kafka answers
such a request without an error, each topic carrying its own, and aiokafka
raises none. Every topic it creates gets an explicit ``retention.ms``
(``topology``, overridden by ``TOPIC_RETENTION``), never the cluster's default.
A cluster it cannot reach yet is tried again for up to ``WAIT_S`` (an init
container may start with the broker); ``waiting`` is told once, at the first
failed attempt, so that the wait is said rather than silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from leadpipe_common import topology
from leadpipe_common.cli_help import Command
from leadpipe_common.kafka import client_options, quiet_client_logs
from leadpipe_common.logging import configure_command, run_command
from leadpipe_common.settings import TopicSettings


def admin_client(settings: TopicSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings), client_id="leadpipe-admin")


class TopicsRefused(RuntimeError):
    """The cluster did not create some of the topics, or does not list them."""


def refusals(response: Any) -> dict[str, list[str]]:
    """The topics a CreateTopics ``response`` says were not created, by Kafka's reason; one that exists (another
    process created it first) is no refusal."""
    refused: dict[str, list[str]] = {}
    for name, code, *message in response.topic_errors:  # version 0 carries no message
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        error = for_code(code)
        said = message[0] if message and message[0] else error.description
        refused.setdefault(f"{said} ({error.message})", []).append(name)
    return refused


#: How long a cluster that cannot be reached is tried again, and one that created the topics waited to list them.
WAIT_S = 30.0


async def ensure_topics(settings: TopicSettings, timeout_s: float = WAIT_S, *,
                        waiting: Callable[[], object] = lambda: None) -> dict[str, int]:
    """Create the topics missing; the partitions of every topic once the cluster lists them all. ``waiting`` is
    called once, when the cluster could not be reached at the first attempt."""
    retention = topology.retention_ms(settings.retention_overrides())
    deadline = asyncio.get_running_loop().time() + timeout_s
    attempts = 0
    while True:
        admin = admin_client(settings)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            attempts += 1
            if attempts == 1:
                waiting()
            await asyncio.sleep(0.3)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication,
                     topic_configs={"retention.ms": str(retention[name])})
            for name in topology.TOPICS if name not in existing
        ]
        if missing:
            refused = refusals(await admin.create_topics(missing))
            if refused:
                raise TopicsRefused("; ".join(f"{', '.join(names)}: {reason}" for reason, names in refused.items()))
        while True:
            listed = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if t["error_code"] == 0}
            unlisted = [name for name in topology.TOPICS if not listed.get(name)]
            if not unlisted:
                return {name: listed[name] for name in topology.TOPICS}
            if asyncio.get_running_loop().time() > deadline:
                raise TopicsRefused(f"{', '.join(unlisted)}: created, yet the cluster did not list them within "
                                    f"{timeout_s:g}s")
            await asyncio.sleep(0.3)  # a new topic reaches every broker's metadata a moment after its creation
    finally:
        await admin.close()


async def retention_held(settings: TopicSettings, names: list[str]) -> dict[str, int]:
    """The ``retention.ms`` the cluster holds for each of ``names`` it says (DescribeConfigs); those it does not
    say (a broker without the call, an authorization that does not cover it) are left out."""
    admin = admin_client(settings)
    try:
        await admin.start()
        # Every config of each topic, not retention.ms alone: the embedded Tansu answers nothing to a filtered ask.
        answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    except (KafkaError, OSError, asyncio.TimeoutError):
        return {}
    finally:
        await admin.close()
    held: dict[str, int] = {}
    for answer in answers:
        for resource in answer.to_object().get("resources", []):
            if resource.get("error_code"):
                continue
            for entry in resource.get("config_entries", []):
                if entry.get("config_names") == "retention.ms" and str(entry.get("config_value", "")).lstrip("-").isdigit():
                    held[resource["resource_name"]] = int(entry["config_value"])
    return held


def _kept(ms: int) -> str:
    return "forever" if ms < 0 else f"{ms / 86_400_000:g} days"


cli = typer.Typer(add_completion=False)


@cli.command(cls=Command)
def main() -> None:
    """Create leadpipe's topics on the cluster in KAFKA_BOOTSTRAP_SERVERS.

    Partitions, replication and retention come from TOPIC_PARTITIONS, TOPIC_REPLICATION (3 on a
    production cluster) and TOPIC_RETENTION (e.g. "leads.captured=7d,leads.routed=90d"); topics
    that exist are left as they are.
    """
    from leadpipe_common.cli import load_settings

    settings = load_settings(TopicSettings)
    servers = settings.kafka_bootstrap_servers
    try:
        # aiokafka would log every failed attempt of the wait (~100 lines): the wait is said once instead.
        with quiet_client_logs():
            partitions = run_command(ensure_topics(settings, WAIT_S, waiting=lambda: typer.echo(
                f"waiting for Kafka at {servers} (up to {WAIT_S:g} s)...", err=True)))
    except TopicsRefused as exc:
        typer.secho(f"cannot create the topics on {servers}: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    except KafkaError as exc:
        typer.secho(f"cannot reach Kafka at {servers}: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    retention = topology.retention_ms(settings.retention_overrides())
    # What the cluster holds, not what was asked: a topic that existed (auto-created, or made before with the
    # cluster's 7-day default) keeps its own, and leads.lifecycle kept 7 days cannot be replayed.
    with quiet_client_logs():
        held = run_command(retention_held(settings, list(topology.TOPICS)))
    for name in topology.TOPICS:
        kept = _kept(held.get(name, retention[name])) + ("" if name in held else " (as asked; the cluster did not say)")
        typer.echo(f"{name}: {partitions[name]} partitions, kept {kept}")
        if partitions[name] != settings.topic_partitions:
            typer.secho(f"{name}: {partitions[name]} partitions, not TOPIC_PARTITIONS={settings.topic_partitions} "
                        "(a topic that exists is left as it is)", fg="yellow", err=True)
        if name in held and held[name] != retention[name]:
            typer.secho(f"{name}: kept {_kept(held[name])} by the cluster, not {_kept(retention[name])} as "
                        "TOPIC_RETENTION and leadpipe's defaults ask (a topic that exists is left as it is: change "
                        "its retention.ms with your cluster's tools)", fg="yellow", err=True)


def run() -> None:
    configure_command("create-topics")
    cli()
