"""Topic administration.

Guarantees: ``ensure_topics`` is idempotent (existing topics are left as they
are) and returns only once every topic exists, so services started after it
never race topic auto-creation with a partition count of one.
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from leadpipe_common import topics


async def ensure_topics(
    bootstrap: str,
    names: tuple[str, ...] = topics.ALL,
    partitions: int = topics.DEFAULT_PARTITIONS,
    replication: int = 1,
    timeout_s: float = 30,
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadpipe-admin")
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
        missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
    finally:
        await admin.close()


def main() -> None:
    """``leadpipe-create-topics``: create leadpipe's topics on the cluster in KAFKA_BOOTSTRAP_SERVERS."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="leadpipe-create-topics", description=main.__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--partitions", type=int, default=topics.DEFAULT_PARTITIONS)
    parser.add_argument("--replication", type=int, default=1, help="3 on a production cluster")
    args = parser.parse_args()
    try:
        asyncio.run(ensure_topics(args.bootstrap, partitions=args.partitions, replication=args.replication))
    except KafkaConnectionError as exc:
        raise SystemExit(f"cannot reach Kafka at {args.bootstrap}: {exc}") from None
    print(f"topics ready: {', '.join(topics.ALL)}")
