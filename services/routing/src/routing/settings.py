from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

from routing.domain import RoutingData
from routing.reference import load_routing_data

DATA = Path(__file__).parent / "data"


class RoutingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore", frozen=True)

    port: int = 8003
    reps_file: Path = DATA / "reps.yaml"
    accounts_file: Path = DATA / "accounts.csv"
    territories_file: Path = DATA / "territories.yaml"
    sla_file: Path = DATA / "sla.yaml"
    reasons_file: Path = DATA / "reasons.yaml"
    # How often the SLA watch looks for missed acceptance deadlines.
    sla_check_s: float = Field(5.0, gt=0)
    # How long an event written by the API or the SLA watch may wait before
    # the outbox relay looks again (it is also woken at once after a write).
    outbox_idle_s: float = Field(1.0, gt=0)

    def load_data(self) -> RoutingData:
        return load_routing_data(self.reps_file, self.accounts_file, self.territories_file,
                                 self.sla_file, self.reasons_file)
