"""The topology: which service reads and writes which topic, carrying which events, kept how long.

Guarantees: this table is the one place the topology is declared. Derived
from it, never written again elsewhere: the topics ``make run`` and
``leadpipe-create-topics`` create (with their retention), each consuming
service's input topics (``inputs_of``), the stage inputs whose dead letters
stall a lead (``STAGE_INPUTS``), the topics written outside leadpipe
(``EXTERNAL_INPUTS``: a producer named is no leadpipe service), whose event ids
are no promise (their consumers' inboxes keep a digest of each record), the
AsyncAPI channels, and the services and ports of the local stack. The test suite checks each service's declaration
(what it consumes and produces) against this table.

Retention is explicit on every topic, so a real cluster's default (7 days)
never decides what a later replay can rebuild: ``leads.lifecycle`` (the
stream every report is rebuilt from), ``leads.quarantined`` (which the
spam report is rebuilt from) and ``leads.deadletter`` (records waiting for a
human) are kept forever; the stage topics, which only carry a lead from one
stage to the next, for 30 days. ``TOPIC_RETENTION`` overrides
any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from leadpipe_common import topics
from leadpipe_common.events import (
    Event, LeadAssigned, LeadCaptured, LeadDispositioned, LeadEnriched, LeadErased, LeadHandedOver, LeadMerged,
    LeadQuarantined,
    LeadQueued, LeadReengaged, LeadRouted, LeadScored, LeadSlaBreached, LeadStageChanged, LeadTouched,
    LeadTouchRecorded, LeadWonAmountCorrected,
)


@dataclass(frozen=True)
class Service:
    name: str
    #: The local stack's port; replicas add ``stack.REPLICA_PORT_STEP`` each.
    port: int


SERVICES: tuple[Service, ...] = (
    Service("capture", 8000),
    Service("enrichment", 8001),
    Service("scoring", 8002),
    Service("routing", 8003),
    Service("reporting", 8004),
    Service("delivery", 8005),
)
PORTS: dict[str, int] = {s.name: s.port for s in SERVICES}

#: Kept until deleted by hand.
FOREVER = None
STAGE_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class Channel:
    topic: str
    summary: str
    events: tuple[type[Event], ...]
    #: leadpipe services, or outside parties in words ("sales tools").
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    #: A dead letter from this input stalls its lead in the pipeline (announced on the lifecycle).
    stage_input: bool = False
    retention: timedelta | None = STAGE_RETENTION
    #: Types earlier versions wrote here and no producer writes any more, which the topic may still hold (kept for
    #: ever): its consumers may still read them, and the AsyncAPI document says it holds them.
    retired: tuple[type[Event], ...] = ()

    @property
    def external(self) -> bool:
        """Whether something outside leadpipe writes to it: leadpipe derives its own events' ids from their
        cause, an outside producer may give one id to two different records."""
        return any(p not in PORTS for p in self.producers)

    @property
    def readable(self) -> tuple[type[Event], ...]:
        """What a consumer may find on it: what its producers write, and what earlier versions wrote."""
        return self.events + self.retired


CHANNELS: tuple[Channel, ...] = (
    Channel(topics.CAPTURED, "Leads as captured from forms and the API, with first-touch attribution, each "
                             "later touch of an open lead by its person, merges (for scoring's touches), and "
                             "erasures of a person's leads (each stage clears their contact and passes it on).",
            (LeadCaptured, LeadTouched, LeadMerged, LeadErased), ("capture",), ("enrichment",), stage_input=True),
    Channel(topics.ENRICHED, "Leads with company, seniority and contact data added, each value with its source "
                             "(and merges and erasures passed on to scoring).",
            (LeadEnriched, LeadMerged, LeadErased), ("enrichment",), ("scoring",), stage_input=True),
    Channel(topics.SCORED, "Leads with an explainable fit and intent score, a grade and the MQL decision (and "
                           "erasures passed on to routing).",
            (LeadScored, LeadErased), ("scoring",), ("routing",), stage_input=True),
    Channel(topics.ROUTED, "Sales-ready leads with their owner; a lead re-appears here when the SLA reassigns "
                           "it, when it leaves its team's queue for a rep, when a manager hands it over, and when a "
                           "touch earning intent points or changing the contact re-engages its holder.",
            (LeadRouted,), ("routing",), ("delivery", "sales tools")),
    # Kept for ever and read by analysts: no contact on it (a first touch is a stage change to captured, a later
    # one lead.touch_recorded); lead.touched, which earlier versions put here whole, is retired.
    Channel(topics.LIFECYCLE, "Every stage transition of every lead, every later touch (when, and what brought "
                              "the person: not who they are), every re-engagement of "
                              "a lead's holder, every merge, every missed hand-off deadline, every wait in a team's "
                              "queue and its end, every hand-over, every correction of a won deal's amount, every "
                              "erasure of a lead's person (who asked, not whom): the stream the funnel reports are "
                              "rebuilt from.",
            (LeadStageChanged, LeadSlaBreached, LeadQueued, LeadAssigned, LeadHandedOver, LeadTouchRecorded,
             LeadReengaged, LeadMerged, LeadWonAmountCorrected, LeadErased),
            ("capture", "enrichment", "scoring", "routing"),
            ("capture", "reporting", "delivery"), retention=FOREVER, retired=(LeadTouched,)),
    Channel(topics.FEEDBACK, "Sales tools' dispositions of routed leads (the same reports routing's HTTP API takes).",
            (LeadDispositioned,), ("sales tools",), ("routing",)),
    # Kept as long as the lifecycle: the spam report is rebuilt from it. So it holds no submitted field (nor the
    # false positives', real people's): an admin reads those in capture's quarantine, through its API, for as long
    # as it keeps them (CAPTURE_QUARANTINE_KEEP_DAYS).
    Channel(topics.QUARANTINED, "Submissions taken for a bot's (honeypot filled, form token missing or too fresh, "
                                "CAPTCHA failed), with the reasons, form and source, not what was submitted (capture's "
                                "admin API shows that); an admin may release one into the pipeline (it then appears "
                                "on leads.captured once, under the same lead id).",
            (LeadQuarantined,), ("capture",), ("reporting", "review tools"), retention=FOREVER),
    Channel(topics.DEADLETTER, "Records a stage could not apply, and messages an outbox relay could never send: "
                               "the original key, value and headers, plus dlq.* headers (dlq.error.kind, "
                               "dlq.error.message, dlq.source.topic/partition/offset, or dlq.source.outbox for an "
                               "outbox's, dlq.stage, dlq.at, dlq.final). `make redrive` sends them back, except "
                               "those rejected for good (dlq.final: true).",
            (), ("enrichment", "scoring", "routing", "capture", "reporting", "delivery"), ("leadpipe-redrive",),
            retention=FOREVER),
)

TOPICS: tuple[str, ...] = tuple(c.topic for c in CHANNELS)
STAGE_INPUTS: frozenset[str] = frozenset(c.topic for c in CHANNELS if c.stage_input)
EXTERNAL_INPUTS: frozenset[str] = frozenset(c.topic for c in CHANNELS if c.external)


def channel(topic: str) -> Channel:
    return next(c for c in CHANNELS if c.topic == topic)


def inputs_of(service: str) -> list[str]:
    """The topics ``service`` consumes."""
    return [c.topic for c in CHANNELS if service in c.consumers]


def outputs_of(service: str) -> list[str]:
    """The topics ``service`` produces to."""
    return [c.topic for c in CHANNELS if service in c.producers]


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_retention(text: str) -> dict[str, int]:
    """``TOPIC_RETENTION``: ``topic=duration`` pairs, comma-separated (``leads.captured=7d,leads.routed=forever``)
    as milliseconds, ``-1`` for forever. Raises ValueError naming the entry that is wrong."""
    out: dict[str, int] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        topic, _, value = (part.strip() for part in entry.partition("="))
        if topic not in TOPICS:
            raise ValueError(f"{entry!r}: unknown topic {topic!r}; leadpipe's topics are {', '.join(TOPICS)}")
        if value == "forever":
            out[topic] = -1
            continue
        match = _DURATION.match(value)
        if not match or int(match.group(1)) == 0:
            raise ValueError(f"{entry!r}: {value!r} is not a duration like 12h, 30d or forever")
        out[topic] = int(match.group(1)) * _UNIT_MS[match.group(2)]
    return out


def retention_ms(overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Every topic's ``retention.ms``: the table's choice, unless ``overrides`` names the topic."""
    chosen = {c.topic: -1 if c.retention is None else int(c.retention.total_seconds() * 1000) for c in CHANNELS}
    return {**chosen, **(overrides or {})}
