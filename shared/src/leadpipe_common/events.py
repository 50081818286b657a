"""The event contracts: one pydantic model per event type and schema version.

Guarantees:
- Producers always write the latest version of a type (``LATEST``).
- Consumers accept every older version (each step is upcast by a function
  registered in ``UPCASTERS``) and ignore fields they do not know, so a
  producer may add a field without breaking anyone.
- Types are past-tense facts named ``lead.<verb>``; never class paths.

Each later event carries the whole lead as known so far (contact,
attribution, enrichment, score), so no service ever reads another's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import from_json

Stage = Literal[
    "captured", "enriched", "mql", "nurture", "disqualified", "routed", "deadlettered",
    "accepted", "rejected", "contacted", "qualified", "won", "lost",
]
#: Where the pipeline's part ends (sales feedback comes later and is not the
#: pipeline's). ``deadlettered`` ends it until the record is redriven after a
#: fix; the lead then moves on to one of the others.
TERMINAL_STAGES: frozenset[str] = frozenset({"routed", "nurture", "disqualified", "deadlettered"})
#: A lead in one of these is closed: its person's next submission starts a new lead (any other stage is open:
#: a new submission is a touch of it).
CLOSED_STAGES: frozenset[str] = frozenset({"won", "lost", "disqualified"})
#: The waterfall everyone agrees on: a lead that reached a stage has reached
#: every stage before it (a lead won without a recorded "qualified" was qualified).
FUNNEL: tuple[str, ...] = ("captured", "enriched", "mql", "routed", "accepted", "qualified", "won")
Decision = Literal["mql", "nurture", "disqualified"]
Grade = Literal["A", "B", "C", "D"]
#: What a sales tool reports back about a routed lead.
Disposition = Literal["accepted", "rejected", "contacted", "qualified", "won", "lost"]
#: The seniorities and departments a lead.enriched may carry (``Enrichment``): what enrichment reads from a job
#: title, and all scoring may compare them with, so a rule naming another (``directors``) is refused rather than
#: never matching; enrichment refuses a titles file that would give another, which no consumer would know. Kept
#: text in the models, not a Literal: a record enriched before these were the contract's, from a titles file of
#: its own, must still decode (tightened, it would be dead-lettered, and the event's published shape change).
SENIORITIES: tuple[str, ...] = ("entry", "individual-contributor", "manager", "director", "vp", "c-level")
DEPARTMENTS: tuple[str, ...] = ("marketing", "sales", "engineering", "it", "finance", "operations", "hr", "product",
                                "customer-success", "executive")

T = TypeVar("T")

#: A moment every reader can store and compare: with its offset (a naive time compared with an aware one raises
#: TypeError), and a day inside what Postgres's timestamptz and Python both hold in UTC (0001-01-01T00:00+01:00
#: is year 0 in UTC: asyncpg cannot encode it). Refused where it comes in (422 at the API), so no event carrying
#: one reaches a stage that would fail on it for ever. Checked by pydantic's core: no Python call per field.
Moment = Annotated[AwareDatetime, Field(gt=datetime(1, 1, 2, tzinfo=UTC), lt=datetime(9999, 12, 30, tzinfo=UTC))]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Attribution(Model):
    """First-touch attribution: what closed-loop reporting joins outcomes to."""

    form_id: str | None = None
    offer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    referrer: str | None = None
    landing_page: str | None = None


class Contact(Model):
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    job_title: str | None = None
    phone: str | None = None
    country: str | None = None
    message: str | None = None
    marketing_consent: bool = False
    marketing_consent_at: Moment | None = None


class Sourced(Model, Generic[T]):
    """An enriched value and where it came from (``form``, ``companies``, ...)."""

    value: T
    source: str


_OLDER_TITLES = " (one enriched by an older release, from a titles file of its own, may hold another)"


class Enrichment(Model):
    email_domain: str
    company_domain: Sourced[str] | None = None
    is_free_mail: Sourced[bool]
    is_disposable: Sourced[bool]
    company_name: Sourced[str] | None = None
    industry: Sourced[str] | None = None
    employee_count: Sourced[int] | None = None
    company_country: Sourced[str] | None = None
    seniority: Sourced[str] | None = Field(None, description=f"From the job title: one of {', '.join(SENIORITIES)}"
                                                            f"{_OLDER_TITLES}")
    department: Sourced[str] | None = Field(None, description=f"From the job title: one of {', '.join(DEPARTMENTS)}"
                                                             f"{_OLDER_TITLES}")
    phone_e164: Sourced[str] | None = None
    country: Sourced[str] | None = None


class ScoreReason(Model):
    rule: str
    category: Literal["fit", "intent", "disqualify"]
    #: What the rule counts for now: an intent rule's points decay with the age of the touch that earned them.
    points: int
    #: The touch an intent rule matched (the lead's first touch is the lead's id), and when it happened.
    touch_id: UUID | None = None
    touch_at: Moment | None = None
    #: The rule's points before decay.
    full_points: int | None = None
    #: The contact fields the rule's fact comes from (``seniority``: ``job_title``), so the reason tells of them;
    #: ``[]``: none (a fact about the company, the e-mail's domain or the touch's attribution). None: not said
    #: (scored before reasons said it): it may tell of any field.
    reads: list[str] | None = None


class Score(Model):
    value: int = Field(ge=0, le=100)
    grade: Grade
    fit: int
    intent: int
    decision: Decision
    reasons: list[ScoreReason]
    rules_version: str


class Assignment(Model):
    owner_id: str
    owner_name: str
    owner_email: str | None = None
    team: str
    #: ``overflow``: the lead's own team had nobody who could take it now; a rep of its overflow team did.
    method: Literal["account", "territory", "overflow", "queue"]
    reason: str


class Touch(Model):
    """One submission by a person whose lead was open: what they did then, not who they are."""

    touch_id: UUID
    at: Moment
    attribution: Attribution


class Event(Model):
    """Base of every event payload; ``type`` and ``version`` name the contract."""

    type: ClassVar[str]
    version: ClassVar[int]
    lead_id: UUID

    def extensions(self) -> dict[str, str]:
        """CloudEvents extension attributes (``ce_<name>`` headers) consumers may filter on unparsed."""
        return {}


# The lead's events repeat the fields they share instead of inheriting them:
# each type is its own contract with its own version, so a new version of
# lead.captured cannot silently change lead.enriched, lead.scored or
# lead.routed. (docs/schemas/ holds every published version; a test fails
# when a schema changes under an old version number.)


class LeadCaptured(Event):
    """A person submitted a form or an API call: contact, consent and first-touch attribution."""

    type: ClassVar[str] = "lead.captured"
    version: ClassVar[int] = 2
    captured_at: Moment
    contact: Contact
    attribution: Attribution
    #: The person (by normalised e-mail address) across their leads: stable when a closed lead's person returns.
    person_id: UUID | None = None


class LeadTouched(Event):
    """A person whose lead is open submitted again: a new touch on that lead (no second lead, no second routing).

    ``contact`` is what they submitted now (the latest data); ``attribution`` and ``captured_at`` stay the
    lead's first touch, as on every event of the lead; ``touch`` is this touch. It goes to enrichment alone (to
    enrich and score the lead again); the lifecycle gets ``lead.touch_recorded``, without the contact (earlier
    versions put this one there too, and ``leads.lifecycle`` still holds those).
    """

    type: ClassVar[str] = "lead.touched"
    version: ClassVar[int] = 1
    captured_at: Moment
    contact: Contact
    attribution: Attribution
    person_id: UUID | None = None
    touch: Touch


class LeadTouchRecorded(Event):
    """A later touch of an open lead as the lifecycle keeps it: when it came and what brought the person (``touch``),
    beside the lead's first touch (``attribution``, as on every lifecycle event), and nothing of who they are.

    ``leads.lifecycle`` is kept for ever and read by analysts, whose reports need no one's address, phone or
    message: those go to enrichment alone, on ``lead.touched``.
    """

    type: ClassVar[str] = "lead.touch_recorded"
    version: ClassVar[int] = 1
    touch: Touch
    attribution: Attribution


class LeadEnriched(Event):
    """The captured lead with company, seniority and contact data added, each value with its source."""

    type: ClassVar[str] = "lead.enriched"
    version: ClassVar[int] = 2
    captured_at: Moment
    contact: Contact
    attribution: Attribution
    enrichment: Enrichment
    enriched_at: Moment
    person_id: UUID | None = None
    #: The touch this enrichment followed (None: the lead's capture).
    touch: Touch | None = None


class LeadScored(Event):
    """The enriched lead with an explainable score, a grade and the MQL decision."""

    type: ClassVar[str] = "lead.scored"
    version: ClassVar[int] = 3
    captured_at: Moment
    contact: Contact
    attribution: Attribution
    enrichment: Enrichment
    enriched_at: Moment
    score: Score
    scored_at: Moment
    person_id: UUID | None = None
    #: The touch that re-scored the lead (None: its first score).
    touch: Touch | None = None


class LeadRouted(Event):
    """A sales-ready lead and who owns it now."""

    type: ClassVar[str] = "lead.routed"
    version: ClassVar[int] = 6
    captured_at: Moment
    contact: Contact
    attribution: Attribution
    enrichment: Enrichment
    enriched_at: Moment
    score: Score
    scored_at: Moment
    assignment: Assignment
    routed_at: Moment
    person_id: UUID | None = None
    #: The touch whose score this follows: a re-engagement's (a lead its holder already has: same owner, same
    #: deadline), or a routing's when a touch lifted the lead to MQL (from nurture, or recycled after a rejection).
    touch: Touch | None = None
    #: Which reps, teams and territories routed it (a digest of routing's files; changes on every reload).
    routing_data_version: str | None = None
    #: The number of the hand-off this announces, among the lead's: one more at every change of its holder (a
    #: rep, or a team's queue); a re-engagement announces the holder's again, with its number. Routing sends a
    #: lead's records by two paths (its consumer's own sends, its outbox), which may overtake each other: a
    #: consumer ignores one numbered below the highest it applied. None: not said (routed before v5).
    handoff_seq: int | None = Field(default=None, ge=1)
    #: The grade routing holds the lead at, its hand-off's, as every lifecycle step of the lead names it (their
    #: ``grade``): the score's when routing placed it, raised by a later touch that scored better, never lowered by
    #: one that scored worse (a re-engagement's ``score`` is the touch's, told as it is). What a webhook's grade
    #: filter follows. None: not said (routed before v6).
    held_grade: Grade | None = None


class LeadStageChanged(Event):
    """One transition in the funnel; the whole funnel can be rebuilt from these."""

    type: ClassVar[str] = "lead.stage_changed"
    version: ClassVar[int] = 2
    from_stage: Stage | None
    to_stage: Stage
    at: Moment
    by: str
    reason: str
    attribution: Attribution
    # Who holds the lead and by when they must accept it (set from routing on).
    owner_id: str | None = None
    team: str | None = None
    grade: Grade | None = None
    due_at: Moment | None = None
    # What sales said: a code from the editable list, and a won deal's value. A recycle (nurture -> mql by
    # routing) carries the code of the rejection it came after, so it can be judged without that step.
    reason_code: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    #: On a ``rejected`` step: the number of the hand-off the rejection ended (lead.routed's ``handoff_seq``), so a
    #: consumer reading leads.routed apart from the lifecycle tells that hand-off's lead.routed (numbered no higher)
    #: from a recycle's (higher) by routing's count, not by times that different routing processes' clocks set.
    #: None: another step, or not said (before v2).
    handoff_seq: int | None = Field(default=None, ge=1)

    def extensions(self) -> dict[str, str]:
        # Most followers of the lifecycle want a few stages; a header spares
        # them parsing every event to find those.
        return {"tostage": self.to_stage}


class DispositionReport(Model):
    """What a sales tool says about a routed lead; the shape is checked here so the HTTP
    API and ``leads.feedback`` refuse the same malformed reports. Whether the move
    is legal for the lead's current state is routing's call."""

    outcome: Disposition
    rep_id: str = Field(min_length=1, max_length=200,
                        description="who reports it, by their id in the reps file: the lead's holder (while the "
                                    "lead waits in a team's queue, any active rep of that team, who then holds it)")
    # What each outcome needs is checked on the field it concerns (validate_default: also when it is left
    # out), so a refusal names that field, not the report as a whole.
    reason_code: str | None = Field(None, max_length=100, validate_default=True)
    reason: str | None = Field(None, max_length=2000, validate_default=True)
    amount: Decimal | None = Field(None, gt=0, max_digits=18, decimal_places=2, validate_default=True)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", validate_default=True)
    #: When it happened in the sales tool; absent = when leadpipe hears of it.
    at: Moment | None = None

    @field_validator("reason_code")
    @classmethod
    def _rejection_has_a_code(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("outcome") == "rejected" and not v:
            raise ValueError("a rejection needs a reason_code")
        return v

    @field_validator("reason")
    @classmethod
    def _loss_has_a_reason(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("outcome") == "lost" and not (v or info.data.get("reason_code")):
            raise ValueError("a lost deal needs a reason_code or a reason")
        return v

    @field_validator("amount")
    @classmethod
    def _cents(cls, v: Decimal | None) -> Decimal | None:
        return None if v is None else v.quantize(Decimal("0.01"))  # one spelling per amount in every event

    @field_validator("amount", "currency")
    @classmethod
    def _only_a_win_has_a_value(cls, v: Any, info: ValidationInfo) -> Any:
        won = info.data.get("outcome") == "won"
        if won and v is None:
            raise ValueError(f"a won deal needs an amount and a currency: the {info.field_name} is missing")
        if not won and v is not None and "outcome" in info.data:
            raise ValueError("only a won deal has an amount and a currency")
        return v


class LeadDispositioned(Event, DispositionReport):
    """A sales tool's report on ``leads.feedback`` (the same report the HTTP API takes)."""

    type: ClassVar[str] = "lead.dispositioned"
    version: ClassVar[int] = 1


class LeadSlaBreached(Event):
    """The holder of a lead did not accept it within the hand-off SLA."""

    type: ClassVar[str] = "lead.sla_breached"
    version: ClassVar[int] = 2
    owner_id: str
    team: str
    grade: Grade | None
    due_at: Moment
    breached_at: Moment
    #: 1 for the first breach of this lead, 2 for the next holder's, ...
    breach: int = Field(ge=1)
    action: Literal["reassigned", "escalated"]
    next_owner_id: str
    next_owner_name: str
    next_due_at: Moment | None
    #: The next holder's team (or the queue's): routing may hand the lead along an overflow to another team than
    #: ``team``. None: not said (breached before v2).
    next_team: str | None = None
    attribution: Attribution


class LeadQueued(Event):
    """Nobody who may take a routed lead can now (off shift, on holiday, out of office, at capacity): it waits in
    ``team``'s queue and goes to the first rep who can take it (``lead.assigned``); no SLA clock runs meanwhile."""

    type: ClassVar[str] = "lead.queued"
    version: ClassVar[int] = 1
    team: str
    at: Moment
    reason: str
    grade: Grade | None
    attribution: Attribution


class LeadAssigned(Event):
    """A lead that waited in a team's queue went to a rep who can take it; its SLA clock starts ``at``."""

    type: ClassVar[str] = "lead.assigned"
    version: ClassVar[int] = 1
    owner_id: str
    owner_name: str
    team: str
    at: Moment
    queued_at: Moment
    due_at: Moment | None
    reason: str
    grade: Grade | None
    attribution: Attribution


class LeadHandedOver(Event):
    """A lead a rep held, open, handed to another holder: a manager's hand-over (the rep left, or is away for long),
    or routing's when a re-engaged lead's holder is no longer active. It goes to a rep the manager named, or where
    routing placed it as a new lead of its route (an unaccepted one to a team's queue when nobody can take it now;
    one sales accepted only to a rep).
    ``stage`` is where it stands, unchanged; an unaccepted lead's acceptance deadline starts again (``due_at``), and
    the hand-off it had (``from_owner_id``'s, of ``from_team``, due ``from_due_at``) ends unanswered, neither met
    nor missed."""

    type: ClassVar[str] = "lead.handed_over"
    version: ClassVar[int] = 1
    from_owner_id: str
    from_team: str
    #: The deadline of the hand-off the hand-over ended: None for a lead sales accepted (it had none left).
    from_due_at: Moment | None
    owner_id: str
    owner_name: str
    team: str
    stage: Literal["routed", "accepted", "contacted", "qualified"]
    at: Moment
    by: str = Field(description="Who handed it over: the manager (their API key's name), or `routing` when a "
                                "re-engaged lead's holder is no longer active.")
    reason: str
    due_at: Moment | None
    grade: Grade | None
    attribution: Attribution


class LeadReengaged(Event):
    """A lead already with sales was touched again, by a touch that earned intent points of its own or changed the
    person's contact: its holder is told (on ``leads.routed`` too); the SLA clock does not restart. A holder no longer
    active (from v4) is not: routing hands the lead on first (``lead.handed_over``, by ``routing``), and the
    re-engagement names its new holder (``owner_id``, ``team``).

    Who the person is stays on ``leads.routed``: the lifecycle, kept for ever, names the lead alone (v1 carried its
    ``person_id``, which ``lead.touch_recorded`` never did)."""

    type: ClassVar[str] = "lead.reengaged"
    version: ClassVar[int] = 4
    touch: Touch
    owner_id: str
    team: str
    at: Moment
    reason: str
    attribution: Attribution
    #: What the touch scored.
    score: int
    grade: Grade
    #: The grade routing holds the lead at after the touch (``LeadRouted.held_grade``): ``grade`` if that is better,
    #: else the one it held before. None: not said (re-engaged before v3).
    held_grade: Grade | None = None
    #: The holder (``owner_id``) is out of office until then: the lead stays with them, and ``reason`` says so.
    #: None: they are not, or it is not said (re-engaged before v4).
    holder_away_until: Moment | None = None


class LeadMerged(Event):
    """Sales said two leads are one person: this lead (``lead_id``) is closed as merged into ``survivor_id``,
    which keeps the earliest first touch and every touch of both; reports count the person once."""

    type: ClassVar[str] = "lead.merged"
    version: ClassVar[int] = 2
    survivor_id: UUID
    at: Moment
    by: str
    reason: str
    #: Who held this lead when it was merged away (a rep, or a team's queue, ``queue:<team>``), their team and
    #: the lead's grade, as routing stored its hand-off: a receiver following that team or rep is told the lead
    #: it holds is closed. None: not said (merged before v2).
    owner_id: str | None = None
    team: str | None = None
    grade: Grade | None = None
    #: The same of the survivor, which may be another team's: its receiver is told the lead took in another.
    survivor_owner_id: str | None = None
    survivor_team: str | None = None
    survivor_grade: Grade | None = None
    attribution: Attribution

    def extensions(self) -> dict[str, str]:
        return {"tostage": "merged"}  # capture follows it unparsed, as it does closing steps


class LeadWonAmountCorrected(Event):
    """Sales corrected the amount (or currency) of a won deal: the lead stays won (its ``lead.stage_changed`` to won
    keeps the amount first reported) and ``amount``/``currency`` stand for the deal from now on. ``correction``
    numbers the lead's corrections (1 for the first, as routing applied them, one after another): of several, the
    highest is in force, however they arrive."""

    type: ClassVar[str] = "lead.won_amount_corrected"
    version: ClassVar[int] = 1
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    #: What the deal stood at before: the won report's, or the correction's before this one.
    previous_amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    previous_currency: str = Field(pattern=r"^[A-Z]{3}$")
    correction: int = Field(ge=1)
    at: Moment
    #: The rep who reported it.
    by: str
    reason: str
    owner_id: str
    team: str
    grade: Grade | None
    attribution: Attribution


class LeadQuarantined(Event):
    """A submission capture took for a bot's: kept out of the pipeline, with the reasons, until an admin
    releases it (``lead_id`` is the id the sender was answered with, and the lead's id if released).

    Where it came from and why, not what it said: that stays in capture's quarantine, where an admin reviews
    and releases it. v1 carried it too (``fields``), on a topic kept for ever, for the false positives too.
    """

    type: ClassVar[str] = "lead.quarantined"
    version: ClassVar[int] = 2
    received_at: Moment
    reasons: list[str]
    form_id: str | None
    utm_source: str | None


class LeadErased(Event):
    """The person a lead belongs to asked to be erased (GDPR art. 17): every stage clears what it holds of the lead's
    contact (the address, names, phone, job title, company, message, consent, a landing page's query) and passes this
    on; ids, times, attribution and the lead's stages stay, so reports still count the lead, anonymously. ``by`` is
    who asked for it (an API key's name), never the address."""

    type: ClassVar[str] = "lead.erased"
    version: ClassVar[int] = 1
    at: Moment
    by: str


LATEST: dict[str, type[Event]] = {
    m.type: m
    for m in (LeadCaptured, LeadTouched, LeadTouchRecorded, LeadEnriched, LeadScored, LeadRouted, LeadStageChanged,
              LeadDispositioned, LeadSlaBreached, LeadQueued, LeadAssigned, LeadHandedOver, LeadReengaged, LeadMerged,
              LeadWonAmountCorrected, LeadQuarantined, LeadErased)
}

def _without(data: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != name}


#: (type, version) -> function turning that version's JSON into the next one's.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    # v2 added person_id and touch, both optional: a v1 lead is one that no person and no touch was known for.
    **{(t, 1): dict for t in ("lead.captured", "lead.enriched", "lead.scored", "lead.routed")},
    # lead.routed v3 added routing_data_version (optional) and the assignment method overflow: v2 is valid v3.
    ("lead.routed", 2): dict,
    # lead.scored v3 and lead.routed v4 added the score's reasons' reads (optional): a reason of the older ones
    # does not say what it read.
    ("lead.scored", 2): dict, ("lead.routed", 3): dict,
    # lead.sla_breached v2 added next_team (optional): a v1 breach does not say which team the lead went to.
    ("lead.sla_breached", 1): dict,
    # lead.routed v5 added handoff_seq (optional): a v4 record does not say which of the lead's hand-offs it
    # announces, so a consumer cannot tell it stale.
    ("lead.routed", 4): dict,
    # lead.routed v6 and lead.reengaged v3 added held_grade (optional): a record of the older ones does not say the
    # grade routing held the lead at, which a re-engagement's score may be below.
    ("lead.routed", 5): dict, ("lead.reengaged", 2): dict,
    # lead.reengaged v4 added holder_away_until (optional): a v3 record does not say whether its holder was away.
    ("lead.reengaged", 3): dict,
    # lead.stage_changed v2 added handoff_seq (optional): a v1 rejection does not say which hand-off it ended.
    ("lead.stage_changed", 1): dict,
    # lead.merged v2 added who held each of the two leads (optional): a v1 merge does not say. Its ``by`` is no
    # stand-in: a rep of the team says a merge of a lead in its queue, and before that rule any name could.
    ("lead.merged", 1): dict,
    # lead.quarantined v2 left out what was submitted (v1's fields): read from an older record, it is dropped too.
    # No reader older than v2 reads a v2 record (a field it requires is missing): upgrade reporting first.
    ("lead.quarantined", 1): lambda v1: _without(v1, "fields"),
    # lead.reengaged v2 left out person_id, which was optional: a v1 reader takes a v2 record (None), and one read
    # from an older record is dropped too.
    ("lead.reengaged", 1): lambda v1: _without(v1, "person_id"),
}


class UnknownEventType(ValueError):
    pass


def parse_event(event_type: str, version: int, data: bytes | dict[str, Any]) -> Event:
    """Validate ``data`` (JSON bytes or a parsed object) of ``event_type`` at ``version`` into the latest model.

    Raises ``UnknownEventType`` for a type this library does not know, pydantic's ``ValidationError`` for data
    that breaks the contract, and ``ValueError`` for bytes of an older version that are not JSON as pydantic reads
    it (the same JSON for every version).
    """
    model = LATEST.get(event_type)
    if model is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    if isinstance(data, bytes):
        if version >= model.version:
            return model.model_validate_json(data)  # the common case: one pass, no dict in between
        # The parser model_validate_json uses, not json.loads: that one takes a lone surrogate ("\ud800"), which
        # the event then holds and cannot write out again, so every output of it failed its batch; an older
        # version must be refused just as the latest is (and as deeply nested JSON is, by its depth limit).
        data = from_json(data)
    while version < model.version:
        upcast = UPCASTERS.get((event_type, version))
        if upcast is None:
            raise UnknownEventType(f"no upcaster for {event_type} v{version}")
        data = upcast(data)
        version += 1
    # A newer version than we know is read with the fields we know: additive changes are the only ones an
    # older reader takes, so any other needs a new type, or, like lead.quarantined v2 (which left a field
    # out), its readers upgraded before its writer.
    return model.model_validate(data)
