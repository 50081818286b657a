"""scoring, declared: what it consumes, where it writes."""

from leadpipe_common.events import LeadEnriched, LeadMerged
from leadpipe_common.service import Service

from scoring.handlers import Scoring, handle_lead_enriched, handle_lead_merged
from scoring.store import ScoringStore, inbox, outbox

SERVICE: Service[Scoring, ScoringStore] = Service(
    name="scoring",
    summary="Scores enriched leads by fit and by intent over all their touches, and decides MQL, nurture or "
            "disqualified; a nurture lead a touch lifts to the MQL bar is recycled.",
    consumes={LeadEnriched: handle_lead_enriched, LeadMerged: handle_lead_merged},
    store=ScoringStore,
    inbox=inbox,
    outbox=outbox,
)
