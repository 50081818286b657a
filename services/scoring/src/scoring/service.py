"""scoring, declared: what it consumes, where it writes."""

import asyncio
import contextlib
from typing import Any

import structlog

from leadpipe_common.events import LeadEnriched, LeadMerged
from leadpipe_common.service import Runtime, Service

from scoring.domain import unbumped_rules
from scoring.handlers import Scoring, handle_lead_enriched, handle_lead_merged
from scoring.store import ScoringStore, inbox, outbox

log = structlog.get_logger(__name__)


class RulesCheck:
    """Once at start, warns when the rules file says otherwise than its version did when the newest score was
    given: the scores before and after would carry one version, and a re-score's events would be taken for an
    earlier re-score's. A warning only: a service refusing to start over it would stop scoring altogether."""

    name = "scoring-rules-check"
    failing = False
    essential = False

    def __init__(self, rt: Runtime[Scoring, ScoringStore]) -> None:
        self._rt = rt
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.check())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> None:
        rules = self._rt.context
        try:
            async with self._rt.unit_of_work() as uow:
                scored = await uow.store.newest_rules()
        except Exception as exc:  # a database away at start is the readiness check's to tell
            log.warning("rules not compared with the newest score's", error=str(exc))
            return
        why = unbumped_rules(rules.rules.version, rules.digest, scored)
        if why:
            log.warning("rules changed under an unchanged version", rules_version=rules.rules.version, why=why)


SERVICE: Service[Scoring, ScoringStore] = Service(
    name="scoring",
    summary="Scores enriched leads by fit and by intent over all their touches, and decides MQL, nurture or "
            "disqualified; a nurture lead a touch lifts to the MQL bar is recycled.",
    consumes={LeadEnriched: handle_lead_enriched, LeadMerged: handle_lead_merged},
    store=ScoringStore,
    inbox=inbox,
    outbox=outbox,
    background=lambda rt: [RulesCheck(rt)],
)
