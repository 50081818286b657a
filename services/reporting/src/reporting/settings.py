from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings


class ReportingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore", frozen=True)

    port: int = 8004
    # Reports are read, not waited on: bigger batches make catching up after
    # a pause (or a burst of four lifecycle steps per lead) cheaper.
    batch_max_records: int = 2000
    fetch_max_wait_ms: int = 200
