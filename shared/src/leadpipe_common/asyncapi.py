"""The AsyncAPI 3 document of every topic, key and event schema, generated from the code.

Guarantees: the document is built from ``topology`` and the pydantic models in
``events`` only, so it cannot drift from what services produce; the copy
checked in at ``docs/asyncapi.yaml`` is compared with it by the test suite
(``make asyncapi`` rewrites it); every producing service serves it at
``/asyncapi.json`` and ``/asyncapi.yaml``.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic.json_schema import models_json_schema

from leadpipe_common import topics
from leadpipe_common.envelope import dataschema
from leadpipe_common.events import Event
from leadpipe_common.topology import CHANNELS

CE_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary content mode; the value is the event's JSON.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "format": "uuid",
                  "description": "Unique per event; a redelivered cause yields the same id (de-duplicate by it)."},
        "ce_source": {"type": "string", "examples": ["leadpipe/capture"]},
        "ce_type": {"type": "string"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "format": "uuid", "description": "The lead id."},
        "ce_dataschema": {"type": "string", "description": "urn:leadpipe:schema:<type>:v<version>"},
        "ce_tostage": {"type": "string", "description": (
            "lead.stage_changed: the stage entered; lead.merged: merged (the lead merged away closes, which some "
            "readers follow unparsed). Absent on every other type: pick stage changes by ce_type.")},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}


def _channel_id(topic: str) -> str:
    return "".join(part.capitalize() if i else part for i, part in enumerate(topic.replace("-", ".").split(".")))


def _refs(cid: str, models: tuple[type[Event], ...]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{cid}/messages/{m.__name__}"} for m in models]


def summary_of(model: type[Event]) -> str:
    """What ``model`` is, for a document: its docstring's first paragraph, whole (its first line alone stops
    mid-sentence)."""
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())


def document() -> dict[str, Any]:
    models = sorted({m for c in CHANNELS for m in c.readable}, key=lambda m: m.type)
    _, defs = models_json_schema([(m, "serialization") for m in models],
                                 ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    messages: dict[str, Any] = {}
    for m in models:
        messages[m.__name__] = {
            "name": m.type,
            "title": m.type,
            "summary": summary_of(m),
            "contentType": "application/json",
            "headers": CE_HEADERS,
            "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
            "correlationId": {"location": "$message.header#/ce_subject"},
            "bindings": {"kafka": {"key": {"type": "string", "format": "uuid",
                                           "description": "The lead id: one lead's events share a partition."},
                                   "bindingVersion": "0.5.0"}},
            "x-leadpipe-dataschema": dataschema(m.type, m.version),
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for c in CHANNELS:
        cid = _channel_id(c.topic)
        if not c.events:  # raw records of any shape (the dead letters): described, not typed
            channels[cid] = {"address": c.topic, "description": c.summary}
            continue
        refs = {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in c.readable}
        retired = "".join(f" Earlier versions also wrote {m.type} here, which nothing writes here now: records of "
                          "it stay on the topic, and its consumers still read them." for m in c.retired)
        channels[cid] = {"address": c.topic, "description": c.summary + retired, "messages": refs,
                         "bindings": {"kafka": {"topic": c.topic, "partitions": topics.DEFAULT_PARTITIONS,
                                                "bindingVersion": "0.5.0"}}}
        # Sent: what its producers write now; received: that, and what earlier versions left on it.
        sent = _refs(cid, c.events)
        operations[f"send{cid[0].upper()}{cid[1:]}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{cid}"}, "messages": sent,
            "summary": f"Produced by {', '.join(c.producers)}.",
        }
        operations[f"receive{cid[0].upper()}{cid[1:]}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{cid}"},
            "messages": _refs(cid, c.readable) if c.retired else sent,
            "summary": f"Consumed by {', '.join(c.consumers)}.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "leadpipe events", "version": "1",
                 "description": "The topics of the leadpipe lead pipeline: capture -> enrichment -> scoring -> "
                                "routing, sales feedback, and the lifecycle stream. Every record is a CloudEvent "
                                "in Kafka binary mode keyed by lead id."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "`make run`'s embedded broker; set KAFKA_BOOTSTRAP_SERVERS for yours"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def router() -> APIRouter:
    r = APIRouter(tags=["events"])

    @r.get("/asyncapi.json", summary="AsyncAPI 3 document of every topic and event schema")
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(document())

    @r.get("/asyncapi.yaml", summary="The same document as YAML")
    async def asyncapi_yaml() -> Response:
        return Response(to_yaml(document()), media_type="application/yaml")

    return r

