"""reporting, declared: what it consumes and what it serves."""

from leadpipe_common.events import (
    LeadAssigned, LeadHandedOver, LeadMerged, LeadQuarantined, LeadQueued, LeadReengaged, LeadSlaBreached,
    LeadStageChanged, LeadTouched, LeadTouchRecorded, LeadWonAmountCorrected,
)
from leadpipe_common.service import Service

from reporting.api import router as api_router
from reporting.dashboard import router as dashboard_router
from reporting.handlers import (
    Reporting, handle_lead_assigned, handle_lead_handed_over, handle_lead_merged, handle_lead_quarantined,
    handle_lead_queued, handle_lead_reengaged, handle_lead_sla_breached, handle_lead_stage_changed,
    handle_lead_touch_recorded, handle_lead_touched, handle_lead_won_amount_corrected,
)
from reporting.store import ReportingStore

SERVICE: Service[Reporting, ReportingStore] = Service(
    name="reporting",
    summary="The shared funnel, closed-loop attribution, velocity, SLA and spam reports, built from "
            "leads.lifecycle and leads.quarantined.",
    consumes={LeadStageChanged: handle_lead_stage_changed, LeadSlaBreached: handle_lead_sla_breached,
              LeadQuarantined: handle_lead_quarantined, LeadTouchRecorded: handle_lead_touch_recorded,
              LeadReengaged: handle_lead_reengaged, LeadMerged: handle_lead_merged, LeadQueued: handle_lead_queued,
              LeadAssigned: handle_lead_assigned, LeadHandedOver: handle_lead_handed_over,
              LeadWonAmountCorrected: handle_lead_won_amount_corrected,
              # An earlier version's lifecycle touch: leads.lifecycle keeps those for ever.
              LeadTouched: handle_lead_touched},
    store=ReportingStore,
    routes=[api_router, dashboard_router],
)
