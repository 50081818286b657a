"""enrichment, declared: what it consumes, where it writes."""

from leadpipe_common.db import UpsertStore
from leadpipe_common.events import LeadCaptured
from leadpipe_common.service import Service

from enrichment.handlers import Enrichment, handle_lead_captured
from enrichment.store import enrichments, inbox

SERVICE: Service[Enrichment, UpsertStore] = Service(
    name="enrichment",
    summary="Turns an e-mail address into a company, and a job title into seniority and department.",
    consumes={LeadCaptured: handle_lead_captured},
    store=UpsertStore.of(enrichments),
    inbox=inbox,
)
