"""The topology table: topics, their retention, and who reads and writes what."""

import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from leadpipe_common import topics, topology
from leadpipe_common.settings import TopicSettings


def test_every_topic_is_kept_explicitly_and_the_lifecycle_forever():
    kept = topology.retention_ms()
    assert set(kept) == set(topology.TOPICS)
    assert kept[topics.LIFECYCLE] == -1 and kept[topics.DEADLETTER] == -1
    assert kept[topics.CAPTURED] == 30 * 86_400_000


def test_nothing_a_service_writes_to_a_topic_kept_for_ever_holds_a_persons_contact_or_what_they_submitted():
    """Such a topic is read by analysts and exported; the contact goes only where it is needed (the pipeline's
    stage topics, kept 30 days; capture's own tables), a quarantined submission's fields only to the admin."""
    for channel in topology.CHANNELS:
        if channel.retention is topology.FOREVER:
            # Anywhere in the event, however deep: its schema defines Contact if any part holds one.
            held = [event.type for event in channel.events if "Contact" in event.model_json_schema().get("$defs", {})
                    or "fields" in event.model_fields]
            assert held == [], channel.topic


def test_retention_can_be_set_per_topic():
    overrides = topology.parse_retention("leads.captured=7d, leads.routed=forever,leads.feedback=12h")
    assert overrides == {topics.CAPTURED: 7 * 86_400_000, topics.ROUTED: -1, topics.FEEDBACK: 12 * 3_600_000}
    assert topology.retention_ms(overrides)[topics.LIFECYCLE] == -1


@pytest.mark.parametrize(("text", "says"), [("leads.bogus=1d", "unknown topic"), ("leads.captured=soon", "duration"),
                                            ("leads.captured=0d", "duration")])
def test_a_bad_retention_names_the_entry(text, says):
    with pytest.raises(ValueError, match=says):
        topology.parse_retention(text)


def test_stage_inputs_and_service_inputs_come_from_the_table():
    assert topology.STAGE_INPUTS == {topics.CAPTURED, topics.ENRICHED, topics.SCORED}
    assert topology.inputs_of("routing") == [topics.SCORED, topics.FEEDBACK]
    assert topology.inputs_of("reporting") == [topics.LIFECYCLE, topics.QUARANTINED]
    assert topics.ROUTED in topology.outputs_of("routing")


def test_leads_feedback_is_the_one_input_written_outside_leadpipe():
    """Sales tools write it, and may give one ce_id to two reports: routing's inbox keeps digests for it."""
    assert topology.EXTERNAL_INPUTS == {topics.FEEDBACK}


def test_every_service_that_consumes_is_named_among_the_producers_of_dead_letters():
    """Every consumer runner dead-letters what it can never apply; delivery's too, though the table left it out."""
    consuming = {s.name for s in topology.SERVICES if topology.inputs_of(s.name)}
    assert consuming <= set(topology.channel(topics.DEADLETTER).producers)
    assert topics.DEADLETTER in topology.outputs_of("delivery")


async def test_the_topics_on_the_broker_carry_the_retention_of_the_table(bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topology.TOPICS])
    finally:
        await admin.close()
    # resources: (error code, error message, resource type, name, [(config name, value, ...)])
    seen = {r[3]: dict((e[0], e[1]) for e in r[4]).get("retention.ms")
            for response in described for r in response.resources}
    expected = topology.retention_ms(TopicSettings().retention_overrides())
    assert seen == {name: str(ms) for name, ms in expected.items()}


def test_create_topics_on_a_cluster_that_has_them_reports_the_partitions_each_has(stack):
    made = stack.topic_settings().topic_partitions
    asked = made + 1
    result = subprocess.run([sys.executable, "-c", "from leadpipe_common.admin import run; run()"],
                            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                                 "TOPIC_PARTITIONS": str(asked), "COLUMNS": "500"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    retention = topology.retention_ms(TopicSettings().retention_overrides())
    kept = {name: "forever" if ms < 0 else f"{ms / 86_400_000:g} days" for name, ms in retention.items()}
    # The retention the broker holds, read back (it answers DescribeConfigs); the warnings on stderr.
    assert [line for line in result.stdout.splitlines() if line.startswith("leads.")] == [
        f"{name}: {made} partitions, kept {kept[name]}" for name in topology.TOPICS]
    assert [line for line in result.stderr.splitlines() if line.startswith("leads.")] == [
        f"{name}: {made} partitions, not TOPIC_PARTITIONS={asked} (a topic that exists is left as it is)"
        for name in topology.TOPICS]
