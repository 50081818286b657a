"""The connection options of every Kafka client leadpipe builds.

Guarantees: the producer, the consumer runner, the topic admin, topic scans
(replay, export) and the dead-letter redrive all connect through
``client_options``, so TLS and SASL (PLAIN, SCRAM-SHA-256/512) set once in
the environment reach every one of them; the SASL password leaves its
``SecretStr`` only here, into the client. The TLS context comes from
``KafkaSettings.kafka_ssl_context``, which the settings ran when they were
read: a file it cannot use stopped the start, naming its variable.
A command line holds aiokafka's own log lines back (``quiet_client_logs``)
and says in one line what failed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from leadpipe_common.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = settings.kafka_ssl_context()
    if protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # the settings refuse SASL without one
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
    """Around a command's use of Kafka: aiokafka's log lines held back, critical ones aside.

    With no logging set up, Python prints aiokafka's errors bare on stderr: an ``Unable connect to ...`` line
    for every attempt at an unreachable broker, ahead of the command's own one-line message, which says it."""
    logger = logging.getLogger("aiokafka")
    kept = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(kept)
