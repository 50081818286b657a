"""TLS and SASL settings reach every Kafka client leadpipe builds (nothing connects here)."""

import pytest
from pydantic import ValidationError

from leadpipe_common.admin import admin_client
from leadpipe_common.consumer import BatchApplier, ConsumerRunner
from leadpipe_common.producer import Producer
from leadpipe_common.redrive import dead_letter_reader
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import ConsumerSettings, KafkaSettings, TopicSettings

SECURE = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "leadpipe",
          "KAFKA_SASL_PASSWORD": "s3cret"}


@pytest.fixture
def secure_env(monkeypatch):
    for name, value in SECURE.items():
        monkeypatch.setenv(name, value)


def connection(client) -> tuple:
    c = getattr(client, "_client", None) or client.client  # aiokafka's connection manager inside each client
    return (c._bootstrap_servers, c._security_protocol, c._sasl_mechanism, c._sasl_plain_username,
            c._sasl_plain_password, c._ssl_context is not None)


async def test_every_client_leadpipe_builds_connects_with_tls_and_sasl(secure_env):
    expected = ("kafka.example.com:9093", "SASL_SSL", "SCRAM-SHA-512", "leadpipe", "s3cret", True)
    consumer_settings = ConsumerSettings()
    runner = ConsumerRunner(settings=consumer_settings, service="scoring", input_topics=["leads.enriched"],
                            applier=BatchApplier(service="scoring", handlers={}, unit_of_work=lambda: None),
                            producer=Producer(consumer_settings, client_id="scoring"))
    clients = {
        "producer": Producer(consumer_settings, client_id="scoring")._client,
        "consumer runner": runner._make_consumer(),
        "topic admin": admin_client(TopicSettings()),
        "topic scan (replay, export)": TopicScan(KafkaSettings(), "leads.lifecycle")._consumer,
        "redrive": dead_letter_reader(KafkaSettings()),
    }
    try:
        assert {name: connection(client) for name, client in clients.items()} == dict.fromkeys(clients, expected)
    finally:
        for client in clients.values():
            await (client.close() if hasattr(client, "close") else client.stop())


def test_the_password_never_shows_in_the_settings():
    settings = KafkaSettings(**{"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u",
                                "kafka_sasl_password": "s3cret"})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_sasl_without_credentials_is_refused_naming_the_variables(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        KafkaSettings()
