from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

DATA = Path(__file__).parent / "data"


class RoutingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore", frozen=True)

    port: int = 8003
    reps_file: Path = DATA / "reps.yaml"
    accounts_file: Path = DATA / "accounts.csv"
    territories_file: Path = DATA / "territories.yaml"
