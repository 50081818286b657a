from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

DATA = Path(__file__).parent / "data"


class CaptureSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="CAPTURE_", extra="ignore", frozen=True)

    port: int = 8000
    # Capture is CPU-bound in Python; two processes share the port (and the
    # outbox, through SKIP LOCKED).
    workers: int = Field(2, ge=1)
    forms_file: Path = DATA / "forms.yaml"
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Group commit: requests arriving while a transaction commits share the next one.
    write_batch_max: int = Field(500, ge=1)
    relay_batch_max: int = Field(1000, ge=1)
    relay_idle_ms: int = Field(200, ge=10)
    # A lead with no terminal outcome on leads.lifecycle this long after it was
    # published is published again (the broker may have lost it).
    redrive_after_s: float = Field(300, gt=0)
    redrive_check_s: float = Field(30, gt=0)
    redrive_max: int = Field(10, ge=1)
    redrive_backoff: float = Field(2.0, ge=1.0)  # each further try of a lead waits this much longer
