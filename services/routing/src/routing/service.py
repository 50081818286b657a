"""routing, declared: what it consumes, where it writes, what it serves and what runs beside it."""

from leadpipe_common.events import LeadDispositioned, LeadScored
from leadpipe_common.service import Service

from routing.api import router
from routing.handlers import Routing, handle_lead_dispositioned, handle_lead_scored
from routing.sla import SlaWatch
from routing.store import RoutingStore, inbox, outbox

SERVICE: Service[Routing, RoutingStore] = Service(
    name="routing",
    summary="Hands MQLs to the account owner or a fair weighted rotation, holds reps to the hand-off SLA, "
            "and takes sales feedback.",
    consumes={LeadScored: handle_lead_scored, LeadDispositioned: handle_lead_dispositioned},
    store=RoutingStore,
    inbox=inbox,
    outbox=outbox,
    routes=[router],
    background=lambda rt: [SlaWatch(rt, every_s=rt.settings.sla_check_s)],  # type: ignore[attr-defined]
)
