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
    reps_file: Path = Field(DATA / "reps.yaml", description="reps: team, weight, active, time zone, working hours")
    accounts_file: Path = Field(DATA / "accounts.csv", description="account domains and their owners")
    territories_file: Path = Field(DATA / "territories.yaml", description="regions, segments and team rules")
    sla_file: Path = Field(DATA / "sla.yaml", description="acceptance deadline per grade; reassignments before "
                                                          "escalation")
    reasons_file: Path = Field(DATA / "reasons.yaml", description="rejection and loss reason codes")
    sla_check_s: float = Field(5.0, gt=0, description="how often the SLA watch looks for missed deadlines")


    def load_data(self) -> RoutingData:
        return load_routing_data(self.reps_file, self.accounts_file, self.territories_file,
                                 self.sla_file, self.reasons_file)
