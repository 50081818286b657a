"""capture, declared: what it serves, what it follows of the lifecycle, and what runs beside it.

Its leads table is its own outbox (the relay claims, in one statement,
unpublished leads, then unpublished touches, then its outbox table's other
events), so it serves without the broker: leads wait for the relay while the
broker is away.
"""

from leadpipe_common.events import LeadMerged, LeadStageChanged
from leadpipe_common.service import Service

from capture.api import Capture, PublicPosts, people_router, quarantine_router, router
from capture.handlers import handle_lead_merged, handle_lead_stage_changed, is_terminal_step, publishable
from capture.redrive import Redriver
from capture.retention import QuarantinePurge
from capture.store import CaptureStore, outbox
from capture.writer import ExpiredKeys

SERVICE: Service[Capture, CaptureStore] = Service(
    name="capture",
    summary="Accepts leads from web forms and API clients; a 2xx means the lead is durable.",
    consumes={LeadStageChanged: handle_lead_stage_changed, LeadMerged: handle_lead_merged},
    select=is_terminal_step,
    store=CaptureStore,
    outbox=outbox,
    relay=publishable,
    serves_without_broker=True,
    routes=[router, quarantine_router, people_router],
    # The public posts and form tokens: a site's forms and script tags add their own query, and the posts read
    # their bodies as forms are read (a name's last value).
    lenient_paths=frozenset({"/v1/leads", "/v1/forms/{form_id}", "/v1/forms/{form_id}/token",
                             "/v1/forms/{form_id}/token.js"}),
    fast_lane=PublicPosts,
    background=lambda rt: [
        rt.context.writer,
        Redriver(rt.engine, after_s=rt.settings.redrive_after_s, every_s=rt.settings.redrive_check_s,  # type: ignore[attr-defined]
                 max_redrives=rt.settings.redrive_max, backoff=rt.settings.redrive_backoff,  # type: ignore[attr-defined]
                 on_redrive=rt.wake_relay),
        ExpiredKeys(rt.engine, clock=rt.context.clock),
        QuarantinePurge(rt.unit_of_work, clock=rt.context.clock,
                        keep_days=rt.settings.quarantine_keep_days),  # type: ignore[attr-defined]
    ],
)
