"""routing, declared: what it consumes, where it writes, what it serves and what runs beside it."""

from leadpipe_common.events import LeadDispositioned, LeadErased, LeadScored
from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.service import Runtime, Service

from routing.api import queues_router, reps_router, router
from routing.handlers import Routing, handle_lead_erased, handle_scored_and_dispositioned
from routing.settings import RoutingSettings
from routing.sla import ReferenceWatch, SlaWatch
from routing.store import RoutingStore, inbox, outbox


def _watches(rt: Runtime[Routing, RoutingStore]) -> list[BackgroundLoop]:
    settings = rt.settings
    assert isinstance(settings, RoutingSettings)
    # Processes whose files differ (a rolling update, a reload one has not seen yet) would move a lead between
    # their queues every round: a move waits at least as long as a reload may take to be seen everywhere.
    loops: list[BackgroundLoop] = [SlaWatch(rt, every_s=settings.sla_check_s,
                                            settle_s=max(60.0, settings.reload_check_s))]
    if settings.reload_check_s:
        loops.append(ReferenceWatch(rt.context, every_s=settings.reload_check_s))
    return loops


SERVICE: Service[Routing, RoutingStore] = Service(
    name="routing",
    summary="Hands MQLs to the account owner or a fair weighted rotation of reps who can take them now, holds "
            "reps to the hand-off SLA, and takes sales feedback.",
    consumes={LeadScored: handle_scored_and_dispositioned, LeadDispositioned: handle_scored_and_dispositioned,
              LeadErased: handle_lead_erased},
    store=RoutingStore,
    inbox=inbox,
    outbox=outbox,
    routes=[router, reps_router, queues_router],
    background=_watches,
)

