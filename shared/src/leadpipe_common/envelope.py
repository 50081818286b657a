"""The event envelope: CloudEvents 1.0 in Kafka binary content mode.

Guarantees:
- Attributes travel as ``ce_*`` headers (``ce_id``, ``ce_type``,
  ``ce_source``, ``ce_specversion``, ``ce_time``, ``ce_subject`` = lead id,
  ``ce_dataschema`` naming type and schema version), ``content-type:
  application/json``; the value is the event's JSON. Any Kafka client can
  read it without this library.
- The record key is the lead id, so one lead's events stay in order.
- Output ids are derived from the input id (uuid5 of input id and output
  type, or of a name of the output's own when one input has two outputs of
  a type): a redelivered input yields the same output ids, so downstream
  de-duplication by id just works.
- A W3C ``traceparent`` header rides along; outputs continue the input's trace.
- ``lead.stage_changed`` also carries ``ce_tostage``, so a consumer can pick
  the stages it wants from the headers alone; ``lead.merged`` carries
  ``ce_tostage: merged`` (the lead merged away closes), so a stage change is
  told by ``ce_type``, not by the header's presence.
- Decoding never raises anything but :class:`DecodeError`, whose ``kind``
  (``undecodable`` or ``schema``) tells the dead-letter topic what went wrong.
  The cloudevents SDK writes structured-mode events (webhooks); the Kafka
  binary mode is written and read here, held equal to the SDK's binding by
  the tests (see ``encode`` and ``_attributes`` for why).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from leadpipe_common.events import Event, UnknownEventType, parse_event
from leadpipe_common.problems import NUL_REASON, nul_path

_FORMAT = JSONFormat()
_SCHEMA_RE = re.compile(r"^urn:leadpipe:schema:(?P<type>[a-z_.]+):v(?P<version>\d+)$")
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def dataschema(event_type: str, version: int) -> str:
    return f"urn:leadpipe:schema:{event_type}:v{version}"


#: The variant and version bits of a name-based SHA-1 UUID (RFC 4122 section 4.3), as ``uuid.UUID`` sets them.
_VARIANT_VERSION_MASK = ~((0xC000 << 48) | (0xF000 << 64))
_RFC4122_VERSION_5 = (0x8000 << 48) | (5 << 76)


def derive_id(input_id: uuid.UUID, output_type: str) -> uuid.UUID:
    """``uuid.uuid5(input_id, output_type)``, computed without ``UUID.__init__``'s argument checks: every output
    of every stage takes one (timeit: 2.8 -> 1.6 us; a test holds it equal to ``uuid5``)."""
    digest = hashlib.sha1(input_id.bytes + output_type.encode()).digest()
    value = (int.from_bytes(digest[:16]) & _VARIANT_VERSION_MASK) | _RFC4122_VERSION_5
    derived = object.__new__(uuid.UUID)
    object.__setattr__(derived, "int", value)
    object.__setattr__(derived, "is_safe", uuid.SafeUUID.unknown)
    return derived


# Trace and span ids must be unique, not secret: a seeded PRNG is enough and
# spares a system call per event.
_ids = random.Random()


def new_traceparent() -> str:
    return f"00-{_ids.getrandbits(128):032x}-{_ids.getrandbits(64):016x}-01"


def child_traceparent(parent: str | None) -> str:
    """Continue ``parent``'s trace with a new span, or start one if it is absent or malformed."""
    match = _TRACEPARENT_RE.match(parent or "")
    if not match:
        return new_traceparent()
    return f"00-{match.group(1)}-{_ids.getrandbits(64):016x}-{match.group(3)}"


@dataclass(frozen=True)
class Message:
    """A record ready for the producer, and storable as JSON (outbox, inbox)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    # Bytes are stored as latin-1 text: lossless for any bytes (a dead letter
    # keeps originals that need not be UTF-8), cheaper than base64, and a JSON
    # value stays readable in the table.
    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "key": None if self.key is None else self.key.decode("latin-1"),
            "value": self.value.decode("latin-1"),
            # A header may have no value (Kafka allows it): null, read back as None.
            "headers": [[k, None if v is None else v.decode("latin-1")] for k, v in self.headers],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Message:
        return cls(
            topic=d["topic"],
            key=None if d["key"] is None else d["key"].encode("latin-1"),
            value=d["value"].encode("latin-1"),
            headers=tuple((k, None if v is None else v.encode("latin-1")) for k, v in d["headers"]),
        )

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name and v is not None:
                return v.decode()
        return None


@dataclass(frozen=True)
class Envelope:
    """A decoded incoming event."""

    id: uuid.UUID
    source: str
    time: datetime
    data: Event
    traceparent: str | None

    @property
    def type(self) -> str:
        return self.data.type


#: What of an event's data a body leaves out (pydantic's ``exclude``): by part, the fields cut whole
#: (``{"contact": {"phone"}}``), or by field the items of a list (``{"score": {"reasons": {0, 2}}}``).
Exclude = Mapping[str, Collection[str] | Mapping[str, Collection[int]]]


def cloud_event(event: Event, *, event_id: uuid.UUID, source: str, time: datetime,
                structured: bool = False, exclude: Exclude | None = None) -> CloudEvent:
    """``structured``: the data as a JSON value (structured mode), not as bytes (Kafka's binary mode);
    ``exclude``: what of the data's parts is left out (``Exclude``), each field or item named in the ``withheld``
    extension attribute (``contact.phone,score.reasons[2]``, comma-separated), so the receiver can tell a field
    left out from one never given. A cut that leaves out a field the schema requires (``contact.email``) drops
    ``dataschema``: the data no longer adheres to it, and a receiver validating by it would refuse the event (items
    of a list leave it valid)."""
    cut = {"withheld": ",".join(_paths(exclude))} if exclude else {}
    schema = {} if exclude and _cuts_required(event, exclude) else {"dataschema": dataschema(event.type,
                                                                                             event.version)}
    return CloudEvent(
        attributes={
            "id": str(event_id),
            "type": event.type,
            "source": source,
            "specversion": "1.0",
            "time": time,
            "subject": str(event.lead_id),
            "datacontenttype": "application/json",
            **schema,
            **event.extensions(),
            **cut,
        },
        data=(event.model_dump(mode="json", exclude=exclude) if structured
              else event.model_dump_json(exclude=exclude).encode()),
    )


def _paths(cut: Any, at: str = "") -> list[str]:
    """Each field and list item ``cut`` (an ``Exclude``) leaves out, as a path: ``contact.phone``,
    ``score.reasons[2]``."""
    def step(key: str | int) -> str:
        return f"{at}[{key}]" if isinstance(key, int) else f"{at}.{key}" if at else key

    if isinstance(cut, Mapping):
        return [path for key in sorted(cut) for path in _paths(cut[key], step(key))]
    return [step(key) for key in sorted(cut)]


def _cuts_required(event: Event, exclude: Exclude) -> bool:
    """Whether ``exclude`` leaves out a field the event's schema requires of one of its parts (a field some of
    whose items it leaves out is still there)."""
    return any(type(getattr(event, part)).model_fields[name].is_required()
               for part, names in exclude.items() if not isinstance(names, Mapping) for name in names)


def _stamp(time: datetime) -> bytes:
    """``ce_time`` as the SDK's Kafka binding writes it: RFC 3339, UTC as ``Z``."""
    if time.tzinfo is None:
        raise ValueError("a CloudEvent's time must be timezone aware")
    text = time.isoformat()
    return (text[:-6] + "Z" if text.endswith("+00:00") else text).encode()


@functools.cache
def _schema_header(event_type: str, version: int) -> bytes:
    return dataschema(event_type, version).encode()


def encode(
    topic: str,
    event: Event,
    *,
    event_id: uuid.UUID,
    source: str,
    time: datetime,
    traceparent: str | None = None,
) -> Message:
    """``event`` in Kafka binary mode, header for header what the SDK's ``to_binary`` writes for
    :func:`cloud_event` (a test holds the two equal for every event type). Written here because building the
    SDK's event and binding it was two thirds of encoding (~30 of 48 us), paid for every output of every
    stage; the attributes are constants of this code or values already validated."""
    lead_id = str(event.lead_id).encode()
    headers = [
        ("ce_id", str(event_id).encode()), ("ce_type", event.type.encode()), ("ce_source", source.encode()),
        ("ce_specversion", b"1.0"), ("ce_time", _stamp(time)), ("ce_subject", lead_id),
        ("content-type", b"application/json"), ("ce_dataschema", _schema_header(event.type, event.version)),
    ]
    headers += [(f"ce_{name}", value.encode()) for name, value in event.extensions().items()]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return Message(topic=topic, key=lead_id, value=event.model_dump_json().encode(), headers=tuple(headers))


def unvalidated(topic: str, value: bytes, *, event_type: str, lead_id: uuid.UUID, event_id: uuid.UUID, source: str,
                time: datetime, traceparent: str | None = None) -> Message:
    """``value``, stored as an event of ``event_type`` that no longer validates, as ``encode`` would write the
    event but for the headers only its model knows (``ce_dataschema``, its extensions): what an outbox relay sets
    aside in place of the event it cannot build (``outbox.Unbuildable``). Read without ``ce_dataschema``, it is
    taken for the type's first version and upcast, so once the model takes it again it decodes."""
    headers = [
        ("ce_id", str(event_id).encode()), ("ce_type", event_type.encode()), ("ce_source", source.encode()),
        ("ce_specversion", b"1.0"), ("ce_time", _stamp(time)), ("ce_subject", str(lead_id).encode()),
        ("content-type", b"application/json"),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return Message(topic=topic, key=str(lead_id).encode(), value=value, headers=tuple(headers))


def schema_violations(exc: ValidationError) -> str:
    """Each field ``exc`` refuses and why, without the value refused (a lead's address, say)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
                     for e in exc.errors())


def structured(env: Envelope, exclude: Exclude | None = None) -> bytes:
    """An incoming event as a CloudEvent in structured JSON mode (``application/cloudevents+json``), with the
    id, source and time it arrived with: what a webhook carries; ``exclude``: what of its data is left out (see
    ``cloud_event``)."""
    return _FORMAT.write(cloud_event(env.data, event_id=env.id, source=env.source, time=env.time, structured=True,
                                     exclude=exclude))


class DecodeError(ValueError):
    """Input the consumer cannot process, ever: it belongs on the dead-letter topic."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


_REQUIRED = ("id", "source", "type")


def _attributes(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """The CloudEvents attributes of a Kafka binary-mode record, checked as the spec requires.

    Read here rather than through the SDK's ``from_binary``: the binding is a
    plain header-to-attribute mapping, and the SDK's generic validation and
    date parsing were over half the cost of decoding (profiled on replay),
    which every stage pays per event. The SDK still writes every event.
    """
    attrs: dict[str, str] = {}
    for k, v in headers:
        if k.startswith("ce_"):
            if v is None:  # a header without a value: as if absent (a required one is then missing)
                continue
            try:
                attrs[k[3:]] = v.decode()
            except UnicodeDecodeError:
                raise DecodeError("undecodable", f"not a CloudEvent: header {k} is not UTF-8") from None
    if attrs.get("specversion") != "1.0":
        raise DecodeError("undecodable", "not a CloudEvent in Kafka binary mode: ce_specversion is not 1.0")
    for name in _REQUIRED:
        if not attrs.get(name):
            raise DecodeError("undecodable", f"not a CloudEvent in Kafka binary mode: ce_{name} is missing")
    return attrs


def decode(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], key: bytes | None, value: bytes | None) -> Envelope:
    attrs = _attributes(headers)
    try:
        time = datetime.fromisoformat(attrs["time"]) if "time" in attrs else None
    except ValueError:
        raise DecodeError("undecodable", f"ce_time {attrs['time']!r} is not an RFC 3339 time") from None
    if time is not None and time.tzinfo is None:
        raise DecodeError("undecodable", f"ce_time {attrs['time']!r} has no UTC offset")
    data = value or b""
    if not data.lstrip().startswith(b"{"):
        raise DecodeError("undecodable", "value is not a JSON object")
    match = _SCHEMA_RE.match(attrs.get("dataschema", ""))
    try:
        version = int(match.group("version")) if match else 1
    except ValueError:
        # Python reads at most 4,300 digits as a number (sys.set_int_max_str_digits): a bigger version is no
        # schema of ours, and said so, not left to the runner's catch-all for what decode did not foresee.
        raise DecodeError("undecodable", f"ce_dataschema's version has {len(match.group('version'))} digits, "
                                         "more than any schema version") from None
    event_type = attrs["type"]
    try:
        event = parse_event(event_type, version, data)
    except UnknownEventType as exc:
        raise DecodeError("schema", str(exc)) from exc
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise DecodeError("undecodable", f"value is not JSON: {exc}") from exc
        if unparsed := [e["msg"] for e in exc.errors() if e["type"] == "json_invalid"]:
            # The message alone: the error's text quotes the record's first and last bytes (a lead's contact).
            raise DecodeError("undecodable", f"value is not JSON: {'; '.join(unparsed)}") from exc
        raise DecodeError("schema", f"{event_type} violates its schema: {schema_violations(exc)}") from exc
    # Checked on the event as validated: an unknown field is ignored, so it does not matter what it holds.
    if b"\\u0000" in data and (where := nul_path(event.model_dump(mode="json"))) is not None:
        raise DecodeError("schema", f"{event_type} violates its schema: {where}: {NUL_REASON}")
    try:
        event_id = uuid.UUID(attrs["id"])
    except ValueError as exc:
        raise DecodeError("schema", f"ce_id {attrs['id']!r} is not a UUID") from exc
    if key is not None and key != str(event.lead_id).encode():
        raise DecodeError("schema", "record key does not match the event's lead_id")
    traceparent = next((v.decode(errors="replace") for k, v in headers if k == "traceparent" and v is not None), None)
    if time is None:
        raise DecodeError("schema", "ce_time is missing")
    return Envelope(id=event_id, source=attrs["source"], time=time, data=event, traceparent=traceparent)



def follow_up(cause: Envelope, topic: str, event: Event, *, source: str, time: datetime,
              name: str | None = None) -> Message:
    """An output caused by ``cause``: its id derived from the cause's and ``name`` (the event's type unless
    given: two outputs of one type need a name each), its trace continued."""
    return encode(
        topic, event, event_id=derive_id(cause.id, name or event.type), source=source, time=time,
        traceparent=child_traceparent(cause.traceparent),
    )
