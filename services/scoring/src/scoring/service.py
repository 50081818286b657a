"""scoring, declared: what it consumes, where it writes."""

import structlog

from leadpipe_common.events import LeadEnriched, LeadErased, LeadMerged
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.service import Runtime, Service

from scoring.domain import unbumped_rules
from scoring.handlers import Scoring, handle_lead_enriched, handle_lead_erased, handle_lead_merged
from scoring.store import ScoringStore, inbox, outbox

log = structlog.get_logger(__name__)


class RulesCheck(BackgroundLoop):
    """Once at start (a round retried, as every loop's, while Postgres cannot answer), warns when the rules file
    says otherwise than its version did when the newest score was given: the scores before and after would carry
    one version, and a re-score's events would be taken for an earlier re-score's. A warning only: a service
    refusing to start over it would stop scoring altogether."""

    name = "scoring-rules-check"
    essential = False

    def __init__(self, rt: Runtime[Scoring, ScoringStore]) -> None:
        # One thing to do: a round that finds it done waits a day for the next, or for the stop.
        super().__init__(batch_max=1, idle_s=86_400)
        self._rt = rt
        self._done = False

    async def step(self) -> int:
        if not self._done:
            await self.check()
            self._done = True
        return 0

    async def check(self) -> None:
        rules = self._rt.context
        async with self._rt.unit_of_work() as uow:
            scored = await uow.store.newest_rules()
        why = unbumped_rules(rules.rules.version, rules.digest, scored)
        if why:
            log.warning("rules changed under an unchanged version", rules_version=rules.rules.version, why=why)


SERVICE: Service[Scoring, ScoringStore] = Service(
    name="scoring",
    summary="Scores enriched leads by fit and by intent over all their touches, and decides MQL, nurture or "
            "disqualified; a nurture lead a touch lifts to the MQL bar is recycled.",
    consumes={LeadEnriched: handle_lead_enriched, LeadMerged: handle_lead_merged, LeadErased: handle_lead_erased},
    store=ScoringStore,
    inbox=inbox,
    outbox=outbox,
    background=lambda rt: [RulesCheck(rt)],
)
