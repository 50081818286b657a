from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

DATA = Path(__file__).parent / "data"


class ScoringSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore", frozen=True)

    port: int = 8002
    rules_file: Path = Field(DATA / "rules.yaml", description="fit, intent and disqualify rules, grades, MQL and "
                                                             "nurture thresholds, and how soon a repeated intent "
                                                             "counts again")
