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
