"""scoring, declared: what it consumes, where it writes."""

from leadpipe_common.db import UpsertStore
from leadpipe_common.events import LeadEnriched
from leadpipe_common.service import Service

from scoring.handlers import Scoring, handle_lead_enriched
from scoring.store import inbox, scores

SERVICE: Service[Scoring, UpsertStore] = Service(
    name="scoring",
    summary="Scores enriched leads by fit and intent and decides MQL, nurture or disqualified.",
    consumes={LeadEnriched: handle_lead_enriched},
    store=UpsertStore.of(scores),
    inbox=inbox,
)
