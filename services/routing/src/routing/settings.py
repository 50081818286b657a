from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

from routing.reference import RoutingFiles

DATA = Path(__file__).parent / "data"


class RoutingSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore", frozen=True)

    port: int = 8003
    reps_file: Path = Field(DATA / "reps.yaml", description="reps (team, weight, active, time zone, working "
                                                                 "hours, holidays, capacity) and team policies")
    accounts_file: Path = Field(DATA / "accounts.csv", description="account domains and their owners")
    territories_file: Path = Field(DATA / "territories.yaml", description="regions, segments and team rules")
    sla_file: Path = Field(DATA / "sla.yaml", description="acceptance deadline per grade; reassignments before "
                                                          "escalation")
    reasons_file: Path = Field(DATA / "reasons.yaml", description="rejection and loss reason codes; a rejection "
                                                                  "code given as `{text: ..., recycle: false}` "
                                                                  "keeps a lead rejected for it in nurture (see A "
                                                                  "recycle)")
    sla_check_s: float = Field(5.0, gt=0, description="how often the watch looks for missed deadlines, hands out "
                                                       "leads waiting in a team's queue and counts what is in each "
                                                       "team's queue (`routing_queue_leads`)")
    reload_check_s: float = Field(5.0, ge=0, description="how often the routing files are checked for changes "
                                                         "(reloaded without a restart); 0: never")

    @property
    def files(self) -> RoutingFiles:
        return RoutingFiles(self.reps_file, self.accounts_file, self.territories_file, self.sla_file,
                            self.reasons_file)
