"""From a validated submission to the rows and events that make it durable."""

from __future__ import annotations

import uuid
from datetime import datetime

from leadpipe_common import topics
from leadpipe_common.envelope import derive_id, encode
from leadpipe_common.events import LeadCaptured, LeadStageChanged

from capture.store import NewLead

SOURCE = "leadpipe/capture"


def captured_lead_rows(lead: LeadCaptured, *, event_id: uuid.UUID, traceparent: str, now: datetime) -> NewLead:
    """The lead row plus its two outbox messages: ``lead.captured`` and its first lifecycle step."""
    via = f"form {lead.attribution.form_id}" if lead.attribution.form_id else "api"
    changed = LeadStageChanged(
        lead_id=lead.lead_id, from_stage=None, to_stage="captured", at=lead.captured_at,
        by="capture", reason=f"submitted via {via}", attribution=lead.attribution,
    )
    messages = (
        encode(topics.CAPTURED, lead, event_id=event_id, source=SOURCE, time=now, traceparent=traceparent),
        encode(topics.LIFECYCLE, changed, event_id=derive_id(event_id, changed.type), source=SOURCE,
               time=now, traceparent=traceparent),
    )
    return NewLead(
        lead_id=lead.lead_id, event_id=event_id, email=lead.contact.email,
        form_id=lead.attribution.form_id, captured_at=lead.captured_at,
        data=lead.model_dump(mode="json"), messages=messages,
    )
