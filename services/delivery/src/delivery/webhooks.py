"""What delivery sends a receiver, as the ``webhooks`` of its OpenAPI document: documented, never served.

One operation per type a subscription may ask for (``domain.DELIVERABLE``): its body the event's model
(``events.LATEST``) in the CloudEvent envelope the handler queues it in (``envelope.structured``), its headers
those the dispatcher signs it with, its answers what ``domain.after_attempt`` makes of each status. Built from
those lists, so a type made deliverable is documented with it; the tests hold each operation to a body the
handler queues and to the headers the dispatcher sends. Needs no settings.
"""

# No ``from __future__ import annotations`` here: FastAPI reads each operation's body type from its annotation,
# which names a model made in the function that makes the operation, where a string could not be resolved.

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Body, Header
from fastapi.responses import Response
from pydantic import BaseModel, Field, create_model

from leadpipe_common.asyncapi import summary_of
from leadpipe_common.envelope import dataschema
from leadpipe_common.events import LATEST, Contact, Event, LeadErased, LeadMerged, LeadStageChanged, Stage

from delivery.dispatcher import RESPONSE_BYTES
from delivery.domain import DELIVERABLE, REFUSED_ATTEMPTS, SALES_STAGES, TRANSIENT_4XX, WAITS_AS_ASKED

#: The media type of every delivery: a CloudEvent in structured JSON mode.
CLOUDEVENTS = "application/cloudevents+json"


def _absent(description: str) -> Any:
    """A field a body may leave out, never null: not required, and no default shown (a default of null would
    tell a client generator it may be null)."""
    return Field(None, description=description, json_schema_extra=lambda schema: schema.pop("default", None))


class CloudEventBody(BaseModel):
    """A lead event as a CloudEvent 1.0 in structured JSON mode (``application/cloudevents+json``)."""

    specversion: Literal["1.0"]
    id: uuid.UUID = Field(description="The event's id, as in the `webhook-id` header: the same on every attempt "
                                      "and redrive of its delivery; drop a repeat by it.")
    source: str = Field(description="The service that produced the event.", examples=["leadpipe/routing"])
    type: str
    time: datetime = Field(description="When the event was produced. A lead's events come from two topics "
                                       "(`lead.routed` from leads.routed, the rest from leads.lifecycle), so one "
                                       "may arrive before an earlier one of the other: order a lead's steps by "
                                       "this time.")
    subject: uuid.UUID = Field(description="The lead's id (`data.lead_id`).")
    datacontenttype: Literal["application/json"]
    dataschema: str = _absent("The schema `data` adheres to, `urn:leadpipe:schema:<type>:v<version>` (published "
                              "as docs/schemas/<type>/v<version>.json). Absent when `withheld` names a field that "
                              "schema requires (`contact.email`): the data then no longer adheres to it.")
    withheld: str = _absent("Present only when the subscription is sent some contact fields alone (its "
                            "`contact`): each field and list item of `data` left out, as a path, comma-separated "
                            "(`contact.phone,enrichment.phone_e164,score.reasons[1]`), so a field left out is "
                            "told from one never given. A field left out is absent, never null.")


#: The extension attributes beside ``withheld`` that each type's body carries (``Event.extensions``).
EXTENSIONS: dict[str, dict[str, Any]] = {
    LeadStageChanged.type: {"tostage": (
        Literal[tuple(stage for stage in get_args(Stage) if stage in SALES_STAGES)],
        Field(description="`data.to_stage`: the stage sales moved the lead to. Only sales' dispositions are "
                          "delivered, not the pipeline's own steps."))},
    LeadMerged.type: {"tostage": (Literal["merged"], Field(description="The lead merged away closes as merged."))},
}

#: A contact as a body carries it: a subscription's ``contact`` leaves out the fields it does not list, the
#: e-mail address, which the event requires, too.
DeliveredContact = create_model(
    "DeliveredContact", __base__=Contact, __doc__="The person's contact details: a field the subscription is not "
                                                  "sent (its `contact`) is absent and named in `withheld`.",
    **{name: (info.annotation, _absent("Absent when the subscription is not sent it (`withheld` names "
                                       f"`contact.{name}`)."))
       for name, info in Contact.model_fields.items() if info.is_required()})


def delivered(model: type[Event]) -> type[Event]:
    """``model`` as a body carries it: its contact as ``DeliveredContact``, when it has one."""
    if "contact" not in model.model_fields:
        return model
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, contact=(DeliveredContact, ...))


def body_model(event_type: str) -> type[CloudEventBody]:
    """The body of a delivery of ``event_type``: the envelope, its type's extensions, the event as ``data``."""
    model = LATEST[event_type]
    schema = dataschema(model.type, model.version)
    return create_model(
        f"{model.__name__}Delivery", __base__=CloudEventBody, __doc__=f"A `{event_type}` delivery: {CLOUDEVENTS}.",
        type=(Literal[event_type], ...), dataschema=(Literal[schema], _absent(CloudEventBody.model_fields[
            "dataschema"].description)),
        **EXTENSIONS.get(event_type, {}),
        data=(delivered(model), Field(description=f"The `{event_type}` event (schema version {model.version}); a "
                                                  "field `withheld` names is absent.")))


def answers() -> dict[int | str, dict[str, Any]]:
    """What delivery makes of a receiver's answer, by status or range (``domain.after_attempt``), as each webhook's
    responses say it; ``x-delivery-outcome`` names it for machines: delivered, gone, retried or refused."""
    retried = ("retried with exponential backoff and jitter (from `DELIVERY_RETRY_BASE_S`) until the retry window "
               "ends (`DELIVERY_RETRY_HOURS`, or the subscription's `retry_hours`, from the delivery's first "
               "attempt); then dead, until redriven. The lead's later deliveries wait behind it meanwhile")
    waits = "; a longer `Retry-After` is waited out, up to an hour (never past the window's end)"
    refused = (f"sent again with backoff until its receiver has refused it `DELIVERY_REFUSED_ATTEMPTS` "
               f"({REFUSED_ATTEMPTS} by default) times in a row, then dead (its last error says so) and the lead's "
               "next delivery goes. Fix the receiver, then redrive")
    return {
        "2XX": {"description": f"Taken: the delivery is done. Answer 2xx to an event you ignore too (a type, a team "
                               "or an owner you do not map, an overtaken `handoff_seq`): keep 4xx for a message "
                               f"you will never take. Only the first {RESPONSE_BYTES:,} bytes of an answer are "
                               "read.", "x-delivery-outcome": "delivered"},
        410: {"description": "Gone: the subscription is switched off; nothing is sent to it until an admin "
                             "switches it back on (`POST /v1/subscriptions/{id}/enable`), and what waits for it "
                             "is sent then.", "x-delivery-outcome": "gone"},
        **{code: {"description": f"{HTTPStatus(code).phrase}: not now, rather than not this: {retried}"
                                 f"{waits if code in WAITS_AS_ASKED else ''}.", "x-delivery-outcome": "retried"}
           for code in sorted(TRANSIENT_4XX | WAITS_AS_ASKED)},
        "3XX": {"description": f"Refused: a delivery follows no redirect (its last error names the origin the "
                               f"`Location` points to, its last response, shown to admin keys, the whole `Location`: "
                               f"set the subscription's url to it); {refused}.", "x-delivery-outcome": "refused"},
        "4XX": {"description": f"Refused: this message will never be taken (a wrong secret, a wrong path); "
                               f"{refused}.", "x-delivery-outcome": "refused"},
        "5XX": {"description": f"An outage, as a timeout or a connection error is: {retried}.",
                "x-delivery-outcome": "retried"},
    }


def _operation(body: type[CloudEventBody]) -> Callable[..., Awaitable[None]]:
    async def deliver(
        event: Annotated[body, Body(media_type=CLOUDEVENTS)],  # type: ignore[valid-type]
        webhook_id: Annotated[uuid.UUID, Header(alias="webhook-id", description=(
            "The event's id (the body's `id`): the same on every attempt and redrive; drop a repeat by it."))],
        webhook_timestamp: Annotated[int, Header(alias="webhook-timestamp", description=(
            "When this attempt was signed, in seconds since the Unix epoch: refuse a delivery whose time is far "
            "from yours (the Standard Webhooks libraries allow 5 minutes either way), so a captured one cannot be "
            "replayed later."))],
        webhook_signature: Annotated[str, Header(alias="webhook-signature", pattern=r"^v1,\S+( v1,\S+)*$",
                                                 description=(
            "Standard Webhooks: `v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` "
            "under the secret (the base64 after `whsec_`), one for each secret of the subscription, separated by "
            "spaces (two while a secret is rotated): take the delivery when one matches. The Standard Webhooks "
            "libraries check it and the timestamp."))],
        user_agent: Annotated[str, Header(alias="user-agent", description="leadpipe's delivery service and its "
                                                                          "version", examples=["leadpipe-delivery/1"])],
        accept_encoding: Annotated[Literal["identity"], Header(alias="accept-encoding", description=(
            "Answer uncompressed: the start of an answer is kept as it came, for `GET /v1/deliveries`."))],
    ) -> None:
        raise NotImplementedError("documents what a receiver is sent; never served")

    return deliver


#: How a type's filter is judged, where it is not as for every other (``domain.wants``).
_FILTERED = {LeadErased.type: "whatever its `filter` (the event names the lead alone, and a receiver that holds the "
                              "lead must erase the person whoever holds it now: one that does not ignores it); what "
                              "waited for it of the lead is given up (its last error `erased`), and nothing more of "
                              "the lead is sent after it but an attempt already under way"}


def router() -> APIRouter:
    """One webhook operation per deliverable type, named by the type."""
    webhooks = APIRouter(tags=["webhooks"])
    for event_type in DELIVERABLE:
        model = LATEST[event_type]
        webhooks.add_api_route(
            event_type, _operation(body_model(event_type)), methods=["POST"],
            operation_id=f"deliver_{event_type.replace('.', '_')}", summary=f"{event_type} to a subscription",
            description=f"{summary_of(model)}\n\nSent to each subscription that asks for `{event_type}` "
                        f"{_FILTERED.get(event_type, 'and whose `filter` it passes')}, signed per Standard Webhooks; a "
                        "lead's deliveries to it go one at a time, in the order delivery read them.",
            # Documented as the range a receiver answers in (``answers``): FastAPI writes the operation's own status
            # as given, and would otherwise add a 200 beside it.
            status_code="2XX",  # type: ignore[arg-type]
            response_class=Response, responses=answers())
    return webhooks
