"""``leadpipe-create-topics`` says what the cluster did, topic by topic (a stand-in cluster: nothing connects)."""

import pytest
import typer
from aiokafka.protocol.admin import CreateTopicsResponse_v0, CreateTopicsResponse_v3

from leadpipe_common import admin, topics, topology
from leadpipe_common.settings import TopicSettings

TOO_FEW_BROKERS = (38, "Replication factor: 3 larger than available brokers: 1.")


class StandInCluster:
    """Answers as Kafka does: a CreateTopics request succeeds, each topic carrying its own error code."""

    def __init__(self, *, existing: dict[str, int] | None = None, answer: tuple[int, str] = (0, ""),
                 partitions: int | None = None) -> None:
        self.topics = dict(existing or {})
        self.answer, self.partitions = answer, partitions

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return list(self.topics)

    async def create_topics(self, new_topics):
        code, message = self.answer
        if code in (0, 36):
            self.topics.update({t.name: self.partitions or t.num_partitions for t in new_topics})
        return CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=[(t.name, code, message) for t in new_topics])

    async def describe_topics(self) -> list[dict]:
        return [{"error_code": 0, "topic": name, "is_internal": False, "partitions": [{}] * n}
                for name, n in self.topics.items()]


def create_topics_with(monkeypatch, cluster: StandInCluster, **env: str) -> int:
    monkeypatch.setattr(admin, "admin_client", lambda settings: cluster)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        admin.main()
    except typer.Exit as exc:
        return exc.exit_code
    return 0


def test_topics_the_cluster_refuses_fail_the_command_naming_them_and_kafkas_reason(monkeypatch, capsys):
    code = create_topics_with(monkeypatch, StandInCluster(answer=TOO_FEW_BROKERS), TOPIC_REPLICATION="3")
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert topics.CAPTURED in err and "larger than available brokers: 1" in err and "INVALID_REPLICATION_FACTOR" in err
    assert "Traceback" not in err


def test_a_refusal_without_a_message_is_named_by_its_error():
    answer = CreateTopicsResponse_v0(topic_errors=[(topics.CAPTURED, 38), (topics.ROUTED, 0)])
    assert admin.refusals(answer) == {"Replication-factor is invalid. (INVALID_REPLICATION_FACTOR)": [topics.CAPTURED]}


def test_a_topic_another_process_created_first_is_no_failure(monkeypatch, capsys):
    code = create_topics_with(monkeypatch, StandInCluster(answer=(36, "Topic already exists.")), TOPIC_PARTITIONS="12")
    assert code == 0 and "leads.captured: 12 partitions, kept 30 days" in capsys.readouterr().out


def test_an_existing_topic_with_other_partitions_is_reported_as_it_is(monkeypatch, capsys):
    cluster = StandInCluster(existing={topics.CAPTURED: 3})
    assert create_topics_with(monkeypatch, cluster, TOPIC_PARTITIONS="12") == 0
    out = capsys.readouterr().out
    assert "leads.captured: 3 partitions, not TOPIC_PARTITIONS=12" in out
    assert "leads.routed: 12 partitions, kept 30 days" in out


async def test_topics_the_cluster_never_lists_fail_once_the_wait_is_over(monkeypatch):
    cluster = StandInCluster()
    monkeypatch.setattr(cluster, "describe_topics", _nothing_listed)
    monkeypatch.setattr(admin, "admin_client", lambda settings: cluster)
    with pytest.raises(admin.TopicsRefused, match="did not list them"):
        await admin.ensure_topics(TopicSettings(), timeout_s=0.1)
    assert set(cluster.topics) == set(topology.TOPICS)


async def _nothing_listed() -> list[dict]:
    return []


def test_a_cluster_out_of_reach_is_waited_for_out_loud_then_named_in_one_line(monkeypatch, capsys, caplog):
    """It waited 30 s in silence but for aiokafka's "Unable connect to ..." at every attempt (~100 lines)."""
    monkeypatch.setattr(admin, "WAIT_S", 0.5)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(typer.Exit) as failed:
        admin.main()
    out, err = capsys.readouterr()
    assert failed.value.exit_code == 1 and out == ""
    assert err.splitlines()[0] == "waiting for Kafka at 127.0.0.1:1 (up to 0.5 s)..."
    assert err.splitlines()[1].startswith("cannot reach Kafka at 127.0.0.1:1: ") and len(err.splitlines()) == 2
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []


def test_a_cluster_reached_at_once_is_not_said_to_be_waited_for(monkeypatch, capsys):
    assert create_topics_with(monkeypatch, StandInCluster()) == 0
    assert "waiting" not in capsys.readouterr().err
