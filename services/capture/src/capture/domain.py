"""What a submitted form or API call must look like to become a lead.

Pure: no IO, no clock, no randomness; the caller passes the lead id, the event
time and the form configuration in.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from leadpipe_common.events import Attribution, Contact, LeadCaptured
from leadpipe_common.problems import FieldProblem, field_problems

#: The public contract: the same names in JSON bodies and in HTML forms.
CONTACT_FIELDS = ("email", "first_name", "last_name", "company", "job_title", "phone", "country", "message")
ATTRIBUTION_FIELDS = (
    "form_id", "offer", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "referrer", "landing_page",
)
FIELDS = (*CONTACT_FIELDS, "marketing_consent", *ATTRIBUTION_FIELDS)

_TRUE = {"true", "on", "yes", "1", "y"}
_FALSE = {"false", "off", "no", "0", "n", ""}


def _blank_to_none(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


def _consent(v: Any) -> bool:
    # Browsers send "on" for a ticked checkbox and nothing for an unticked one.
    if v is None or isinstance(v, bool):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError("must be true or false (a ticked checkbox sends 'on')")


def _text(max_length: int, pattern: str | None = None) -> Any:
    """Optional text: blank means absent; the limit applies only to a present value."""
    return Annotated[
        Annotated[str, Field(max_length=max_length, pattern=pattern)] | None, BeforeValidator(_blank_to_none)
    ]


Name = _text(200)
Tag = _text(200)
Url = _text(2048)


class Submission(BaseModel):
    """A raw submission, validated; unknown fields (websites add their own) are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: Annotated[str, BeforeValidator(_blank_to_none), Field(max_length=320)]
    first_name: Name = None
    last_name: Name = None
    company: Name = None
    job_title: Name = None
    phone: _text(40) = None
    country: _text(100) = None
    message: _text(5000) = None
    marketing_consent: Annotated[bool, BeforeValidator(_consent)] = False
    form_id: _text(100, pattern=r"^[A-Za-z0-9_.:-]+$") = None
    offer: Tag = None
    utm_source: Tag = None
    utm_medium: Tag = None
    utm_campaign: Tag = None
    utm_term: Tag = None
    utm_content: Tag = None
    referrer: Url = None
    landing_page: Url = None

    @field_validator("email")
    @classmethod
    def _valid_email(cls, v: str) -> str:
        try:
            # Deliverability needs DNS, which a front door must not wait on.
            return validate_email(v, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None


class InvalidSubmission(ValueError):
    def __init__(self, errors: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Form:
    """A form marketing has defined (the ``forms.yaml`` reference file)."""

    form_id: str
    name: str
    thank_you_url: str | None = None
    offer: str | None = None
    #: Web origins whose pages may post this form with ``fetch()`` (beyond ``CAPTURE_CORS_ORIGINS``).
    allowed_origins: frozenset[str] = frozenset()
    #: A field hidden from people (CSS) that bots fill in: filled means a bot.
    honeypot: str = "_gotcha"
    #: Submissions per client address (``30/minute``); None: ``CAPTURE_RATE_LIMIT``.
    rate_limit: str | None = None


DEFAULT_HONEYPOT = "_gotcha"


def suspicions(fields: Mapping[str, Any], form: Form | None) -> list[str]:
    """Why a submission looks like a bot's (empty: it looks like a person's)."""
    name = form.honeypot if form else DEFAULT_HONEYPOT
    if str(fields.get(name) or "").strip():
        return [f"the hidden field {name} was filled in"]
    return []


_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")


def parse_origins(values: Any, where: str) -> frozenset[str]:
    """Web origins as browsers send them (``https://www.example.com``, no path); raises ValueError naming ``where``."""
    if isinstance(values, str):
        values = [v for v in (part.strip() for part in values.split(",")) if v]
    if not isinstance(values, list | tuple):
        raise ValueError(f"{where}: expected a list of origins")
    for origin in values:
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise ValueError(f"{where}: {origin!r} is not an origin like https://www.example.com "
                             "(scheme, host and port only; no path, no wildcard)")
    return frozenset(values)


def may_post_from(origin: str, form: Form | None, everywhere: frozenset[str]) -> bool:
    """Whether a page of ``origin`` may post (to ``form``, or to the JSON API when None) from a browser."""
    return origin in everywhere or (form is not None and origin in form.allowed_origins)


def capture_lead(
    fields: Mapping[str, Any],
    *,
    lead_id: uuid.UUID,
    received_at: datetime,
    form: Form | None = None,
    form_id: str | None = None,
) -> LeadCaptured:
    """Turn submitted fields into a ``lead.captured`` fact, or raise ``InvalidSubmission``.

    ``form_id`` (from the URL of a form post) wins over a ``form_id`` field;
    a form's configured offer fills in when the submission names none.
    """
    data = dict(fields)
    if form_id is not None:
        data["form_id"] = form_id
    try:
        sub = Submission.model_validate(data)
    except ValidationError as exc:
        raise InvalidSubmission(field_problems(exc.errors())) from None
    offer = sub.offer or (form.offer if form else None)
    contact = Contact(
        email=sub.email,
        first_name=sub.first_name,
        last_name=sub.last_name,
        company=sub.company,
        job_title=sub.job_title,
        phone=sub.phone,
        country=sub.country,
        message=sub.message,
        marketing_consent=sub.marketing_consent,
        marketing_consent_at=received_at if sub.marketing_consent else None,
    )
    attribution = Attribution(
        form_id=sub.form_id, offer=offer,
        utm_source=sub.utm_source, utm_medium=sub.utm_medium, utm_campaign=sub.utm_campaign,
        utm_term=sub.utm_term, utm_content=sub.utm_content,
        referrer=sub.referrer, landing_page=sub.landing_page,
    )
    return LeadCaptured(lead_id=lead_id, captured_at=received_at, contact=contact, attribution=attribution)


def parse_forms(raw: Mapping[str, Any]) -> dict[str, Form]:
    """The ``forms:`` mapping of the forms file, checked; raises ``ValueError`` naming the bad entry."""
    forms = {}
    for form_id, spec in (raw.get("forms") or {}).items():
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"forms.{form_id}: expected a mapping")
        unknown = set(spec) - {"name", "thank_you_url", "offer", "allowed_origins", "honeypot", "rate_limit"}
        if unknown:
            raise ValueError(f"forms.{form_id}: unknown keys {sorted(unknown)}")
        forms[str(form_id)] = Form(
            form_id=str(form_id),
            name=str(spec.get("name") or form_id),
            thank_you_url=spec.get("thank_you_url"),
            offer=spec.get("offer"),
            allowed_origins=parse_origins(spec.get("allowed_origins") or [], f"forms.{form_id}.allowed_origins"),
            honeypot=str(spec.get("honeypot") or DEFAULT_HONEYPOT),
            rate_limit=str(spec["rate_limit"]) if spec.get("rate_limit") else None,
        )
    return forms
