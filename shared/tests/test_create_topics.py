"""``leadpipe-create-topics`` says what the cluster did, topic by topic (a stand-in cluster: nothing connects)."""

from types import SimpleNamespace

import pytest
import typer
from aiokafka.errors import UnsupportedVersionError
from aiokafka.protocol.admin import CreateTopicsResponse_v0, CreateTopicsResponse_v3

from leadpipe_common import admin, topics, topology
from leadpipe_common.settings import TopicSettings

TOO_FEW_BROKERS = (38, "Replication factor: 3 larger than available brokers: 1.")


class StandInCluster:
    """Answers as Kafka does: a CreateTopics request succeeds, each topic carrying its own error code."""

    def __init__(self, *, existing: dict[str, int] | None = None, answer: tuple[int, str] = (0, ""),
                 partitions: int | None = None, held: dict[str, int] | None = None,
                 describes_configs: bool = True) -> None:
        self.topics = dict(existing or {})
        self.answer, self.partitions = answer, partitions
        #: Each topic's retention.ms as the cluster holds it (a topic created here: as asked).
        self.held = dict(held or {})
        self.describes_configs = describes_configs

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
            self.held.update({t.name: int(t.topic_configs["retention.ms"]) for t in new_topics if t.name not in self.held})
        return CreateTopicsResponse_v3(throttle_time_ms=0, topic_errors=[(t.name, code, message) for t in new_topics])

    async def describe_configs(self, resources) -> list:
        if not self.describes_configs:
            raise UnsupportedVersionError("DescribeConfigs")
        answer = {"resources": [{"error_code": 0, "resource_name": r.name, "config_entries": [
            {"config_names": "retention.ms", "config_value": str(self.held[r.name])}]} for r in resources
            if r.name in self.held]}
        return [SimpleNamespace(to_object=lambda: answer)]

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
    cluster = StandInCluster(existing={topics.CAPTURED: 3}, held={topics.CAPTURED: 30 * 86_400_000})
    assert create_topics_with(monkeypatch, cluster, TOPIC_PARTITIONS="12") == 0
    out, err = capsys.readouterr()
    assert "leads.captured: 3 partitions, kept 30 days" in out
    assert "leads.captured: 3 partitions, not TOPIC_PARTITIONS=12" in err
    assert "leads.routed: 12 partitions, kept 30 days" in out


def test_an_existing_topic_kept_otherwise_than_asked_is_reported_as_the_cluster_keeps_it(monkeypatch, capsys):
    """It printed the retention asked for ("kept forever") of a lifecycle topic the cluster had made itself, with
    its 7-day default: a replay a week on finds the stream cut."""
    cluster = StandInCluster(existing={topics.LIFECYCLE: 1}, held={topics.LIFECYCLE: 7 * 86_400_000})
    assert create_topics_with(monkeypatch, cluster, TOPIC_PARTITIONS="1") == 0
    out, err = capsys.readouterr()
    assert f"{topics.LIFECYCLE}: 1 partitions, kept 7 days\n" in out
    assert f"{topics.LIFECYCLE}: kept 7 days by the cluster, not forever as TOPIC_RETENTION" in err


def test_a_cluster_that_does_not_say_its_retention_is_reported_as_asked_and_said_so(monkeypatch, capsys):
    assert create_topics_with(monkeypatch, StandInCluster(describes_configs=False), TOPIC_PARTITIONS="1") == 0
    assert f"{topics.LIFECYCLE}: 1 partitions, kept forever (as asked; the cluster did not say)" in \
        capsys.readouterr().out


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
