"""Settings every service shares, read from the environment.

Guarantees: a setting is read once, when a service's composition root builds
its settings object (never at import time); a bad value fails the start with
the variable's name, not a stack trace deep inside a client. Service settings
subclass :class:`ServiceSettings` and add their own, prefixed with the
service's name (``CAPTURE_PORT``); the connection settings are unprefixed so
one ``DATABASE_URL`` and one ``KAFKA_BOOTSTRAP_SERVERS`` serve a whole stack.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/leadpipe"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        DEFAULT_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    # The embedded broker cannot answer InitProducerId; a real cluster can.
    kafka_enable_idempotence: bool = Field(
        False, validation_alias="KAFKA_ENABLE_IDEMPOTENCE"
    )
    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    db_pool_size: int = Field(10, ge=1, validation_alias="DB_POOL_SIZE")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_json: bool | None = Field(None, validation_alias="LOG_JSON")

    host: str = "127.0.0.1"
    port: int = 8000
    # uvicorn worker processes behind the port. Consumers scale by replicas
    # (processes in the group) instead, so this matters for capture.
    workers: int = Field(1, ge=1)

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        # Users paste the URL their Postgres provider gives them; the async
        # engine needs the asyncpg dialect spelled out.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return url


class ConsumerSettings(ServiceSettings):
    """A service that reads a topic through the consumer runner."""

    batch_max_records: int = Field(500, ge=1)
    batch_timeout_ms: int = Field(100, ge=1)
    # How long the broker may hold a fetch open waiting for data. Each stage
    # adds up to this much latency to a lead; Kafka's default (500 ms) would
    # add 1.5 s over three stages.
    fetch_max_wait_ms: int = Field(50, ge=1)
    # How long the group waits for a silent member before giving its
    # partitions to the others: the recovery time after a crash.
    session_timeout_ms: int = Field(10_000, ge=3000)
    heartbeat_interval_ms: int = Field(3_000, ge=500)
    retry_backoff_max_s: float = Field(30.0, gt=0)
