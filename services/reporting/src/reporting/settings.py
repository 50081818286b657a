from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings


class ReportingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore", frozen=True)

    port: int = 8004
    # Reports are read, not waited on: a second of freshness buys big batches,
    # and every batch costs fixed work (a transaction, and SQLAlchemy compiles
    # PostgreSQL upserts afresh each time: it never caches them). Measured at
    # 200 leads/s on 2 cores, this is CPU the pipeline's stages get back.
    batch_max_records: int = Field(5000, ge=1)
    fetch_max_wait_ms: int = Field(1000, ge=1)
