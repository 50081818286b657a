"""What erasing a person (GDPR art. 17, ``lead.erased``) leaves of a lead's copies, for every stage alike.

Guarantees: pure, no IO (``dropped`` alone logs and counts). A lead's contact is cleared whole (the address left empty, the one field the contract
requires; names, company, job title, phone, country, message and consent gone); a landing page or a referrer
keeps its origin and path, not its userinfo, query or fragment, where a page's links may carry the address
(``?email=``), though capture cuts what it recognises there from the start (``page_urls``).
Ids, times, the rest of the attribution (form, offer, UTMs), an enrichment's company facts and a score stay: they
are the company's and the campaign's, and reports count the lead by them, anonymously. What a stage keeps as a
stored message (an inbox's outputs, a delivery's body) is cleared the same way, in the JSON it holds.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import structlog
from prometheus_client import Counter

from leadpipe_common.envelope import Envelope, Message
from leadpipe_common.events import Contact
from leadpipe_common.page_urls import PAGE_FIELDS, without_visitor

log = structlog.get_logger(__name__)
DROPPED = Counter("leadpipe_erased_events_dropped_total",
                  "Events of erased leads a stage dropped (a redrive, a late event): nothing stored, nothing sent",
                  ["type"])

#: What an erased lead's contact is: the address the contract requires, empty; nothing else said.
ERASED_CONTACT: dict[str, Any] = Contact(email="").model_dump(mode="json")
#: The enrichment facts read from the person, not their company (the phone's number, the country they typed).
PERSONAL_ENRICHMENT = ("phone_e164", "country")


def without_query(url: str | None) -> str | None:
    """``url``'s scheme, host and path, without its userinfo, query or fragment (``page_urls.without_visitor``);
    None for None, for text that is no URL (which may be anything a page sent) and for one whose path holds an
    address."""
    return None if url is None else without_visitor(url, query=False)


def _erased_attribution(attribution: Any) -> Any:
    if not isinstance(attribution, dict):
        return attribution
    return {**attribution, **{f: without_query(attribution[f]) for f in PAGE_FIELDS
                              if isinstance(attribution.get(f), str)}}


def erased_event(data: dict[str, Any]) -> dict[str, Any]:
    """An event's JSON (any type, any version) with the person cleared: its contact, its attribution's pages and a
    touch's, and the enrichment facts read from the person. Anything else is left as it is."""
    out = dict(data)
    if "contact" in out:
        out["contact"] = dict(ERASED_CONTACT)
    if "attribution" in out:
        out["attribution"] = _erased_attribution(out["attribution"])
    if isinstance(out.get("touch"), dict):
        out["touch"] = {**out["touch"], "attribution": _erased_attribution(out["touch"].get("attribution"))}
    if isinstance(out.get("enrichment"), dict):
        out["enrichment"] = {**out["enrichment"], **dict.fromkeys(
            (f for f in PERSONAL_ENRICHMENT if f in out["enrichment"]), None)}
    return out


def erased_value(value: bytes) -> bytes:
    """An event's JSON bytes with the person cleared (``erased_event``); bytes that are no JSON object, which may
    hold anything (a dead letter keeps what it could not read), are left out whole."""
    try:
        data = json.loads(value)
    except ValueError:
        return b""
    if not isinstance(data, dict):
        return b""
    return json.dumps(erased_event(data), separators=(",", ":"), ensure_ascii=False).encode()


def erased_message(message: Message) -> Message:
    """A stored message (an inbox's output) with the person cleared from its value; its topic, key and headers
    (ids, types, times) kept, so a redelivered input re-emits it under the same ids."""
    return Message(topic=message.topic, key=message.key, value=erased_value(message.value), headers=message.headers)


def dropped(batch: Sequence[Envelope], erased: Collection[Any]) -> list[Envelope]:
    """``batch``'s events of leads in ``erased``, logged and counted: a stage drops them whole (stores nothing of
    them, sends nothing on), as what they carry is a person erased since (a dead letter redriven, an event read late
    on another partition)."""
    out = [env for env in batch if env.data.lead_id in erased]
    for env in out:
        DROPPED.labels(env.type).inc()
        log.info("event of an erased lead dropped", event_id=str(env.id), type=env.type,
                 lead_id=str(env.data.lead_id))
    return out
