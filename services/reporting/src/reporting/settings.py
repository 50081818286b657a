from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings


class ReportingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore", frozen=True)

    port: int = 8004
    # Reports are read, not waited on: a second of freshness buys big batches,
    # and every batch costs fixed work (a transaction and its statements).
    # 1,000 rather than 5,000 since the upserts are compiled once: make bench,
    # resident memory after a backlog 143-174 -> 122 MB, live ingest no slower
    # (4,500 events/s).
    batch_max_records: int = Field(1000, ge=1)
    fetch_max_wait_ms: int = Field(1000, ge=1)
    fetch_batch_target: int = Field(0, ge=0)
    # A report reads every lead of its cohort, and the dashboard runs eight of them in one request: honest work that
    # a shorter deadline would cut short on a big database (with no statement timeout, slow and silent look alike).
    db_request_deadline_s: float = Field(60.0, ge=0)
