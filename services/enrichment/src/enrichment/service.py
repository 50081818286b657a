"""enrichment, declared: what it consumes, where it writes."""

from leadpipe_common.events import LeadCaptured, LeadErased, LeadMerged, LeadTouched
from leadpipe_common.service import Service

from enrichment.handlers import (Enrichment, handle_lead_captured, handle_lead_erased, handle_lead_merged,
                                 handle_lead_touched)
from enrichment.store import EnrichmentStore, enrichments, inbox

SERVICE: Service[Enrichment, EnrichmentStore] = Service(
    name="enrichment",
    summary="Turns an e-mail address into a company, and a job title into seniority and department.",
    consumes={LeadCaptured: handle_lead_captured, LeadTouched: handle_lead_touched, LeadMerged: handle_lead_merged,
              LeadErased: handle_lead_erased},
    store=EnrichmentStore.of(enrichments),
    inbox=inbox,
)
