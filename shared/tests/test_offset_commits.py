"""The runner's offset commits that do not happen: each is counted by why, and none stops the runner."""

import asyncio

import pytest
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from leadpipe_common import topics
from leadpipe_common.consumer import ConsumerRunner
from leadpipe_common.settings import ConsumerSettings

PARTITION = TopicPartition(topics.CAPTURED, 0)


class Consumer:
    """The consumer's two calls a commit makes, its commit failing as ``commit`` says."""

    def __init__(self, commit) -> None:  # noqa: ANN001
        self._commit = commit

    async def end_offsets(self, partitions):  # noqa: ANN001, ANN201
        return dict.fromkeys(partitions, 100)

    async def commit(self, offsets) -> None:  # noqa: ANN001
        await self._commit()


async def refused() -> None:
    raise CommitFailedError("the group rebalanced")


async def broker_gone() -> None:
    raise KafkaConnectionError("no coordinator")


async def never_answered() -> None:
    await asyncio.Event().wait()


def failures(why: str) -> float:
    return REGISTRY.get_sample_value("leadpipe_consumer_commit_failures_total", {"why": why}) or 0.0


@pytest.mark.parametrize(("commit", "why"), [(refused, "refused"), (broker_gone, "refused"),
                                             (never_answered, "timeout")])
async def test_an_offset_commit_that_does_not_happen_is_counted_by_why_and_the_runner_goes_on(commit, why):
    runner = ConsumerRunner(settings=ConsumerSettings(), service="scoring",
                            input_topics=[topics.CAPTURED], applier=None, producer=None)  # type: ignore[arg-type]
    runner._consumer = Consumer(commit)  # type: ignore[assignment]
    before = failures(why)
    await runner._commit({PARTITION: 10}, timeout_s=0.05)  # as a revocation's commit, bounded
    assert failures(why) == before + 1
