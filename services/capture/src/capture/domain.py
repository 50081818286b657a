"""What a submitted form or API call must look like to become a lead.

Pure: no IO, no clock, no randomness; the caller passes the lead id, the event
time and the form configuration in.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes, urlsplit, urlunsplit
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from leadpipe_common.domain_names import ascii_domain, domain_alone, is_domain, unicode_domain
from leadpipe_common.events import Attribution, Contact, LeadCaptured
from leadpipe_common.origins import PLAIN_ORIGIN, web_origin
from leadpipe_common.page_urls import PAGE_FIELDS, holds_address, without_visitor
from leadpipe_common.problems import FieldProblem, field_problems

#: The public contract: the same names in JSON bodies and in HTML forms.
CONTACT_FIELDS = ("email", "first_name", "last_name", "company", "job_title", "phone", "country", "message")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
ATTRIBUTION_FIELDS = ("form_id", "offer", *UTM_FIELDS, "referrer", "landing_page")
FIELDS = (*CONTACT_FIELDS, "marketing_consent", *ATTRIBUTION_FIELDS)

_TRUE = {"true", "on", "yes", "1", "y"}
_FALSE = {"false", "off", "no", "0", "n"}


def _blank_to_none(v: Any) -> Any:
    if isinstance(v, str):
        v = _trimmed(v)
        return v or None
    return v


#: Characters nobody sees and that say nothing at a value's ends: zero-width space, non-joiner and joiner, the
#: direction marks, embeddings, overrides and isolates, the word joiner and invisible operators, the byte order
#: mark. Not every format character (Cf): the tag characters spelling England's flag, or U+0600 before Arabic
#: numbers, mean something.
_INVISIBLE = "".join(map(chr, (*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065),
                               *range(0x2066, 0x206A), 0xFEFF)))


def _trimmed(text: str) -> str:
    """``text`` without the spaces and ``_INVISIBLE`` characters at its ends. ``strip`` left those: a field of
    nothing but a zero-width space was given, and a touch put an invisible first name over the lead's. Inside
    text they stay (Persian's zero-width non-joiner, a right-to-left mark). What decides what a submission says
    uses it (a field, a form's id, an address to erase, a UTM, the honeypot), so that none disagrees; a CAPTCHA
    answer is the provider's to judge, and ``erase --email`` refuses only an empty one (``erasure_key`` says the
    rest)."""
    while (trimmed := text.strip().strip(_INVISIBLE)) != text:
        text = trimmed
    return text


def _required(v: Any) -> Any:
    # A blank or null value is absent, as in every field, and an absent e-mail is said as one left out is: pydantic's
    # "Input should be a valid string" told a person who had left it empty nothing.
    v = _blank_to_none(v)
    if v is None:
        raise ValueError("is required")
    return v


def _consent(v: Any) -> bool | None:
    # Browsers send "on" for a ticked checkbox and nothing for an unticked one: nothing says nothing (None), while
    # the hidden "0" before the checkbox, or a JSON false, says no, which on a touch withdraws a consent given before.
    # A blank value is nothing too, as in every other field: importers and Zapier mappings send "" for what they do
    # not know, and taken for a no it withdrew the consent of every person they touched.
    # A value that is neither (a form builder's label, "yes please") says nothing either: refused, it lost the whole
    # lead over a value the person could not change, and it must never be taken for a yes (``unread_consent``).
    v = _blank_to_none(v)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):  # JSON 1 and 0, as the text "1" and "0"
        return bool(v)
    if isinstance(v, str) and v.lower() in _TRUE | _FALSE:
        return v.lower() in _TRUE
    return None


def unread_consent(fields: Mapping[str, Any]) -> list[str]:
    """The consent fields of ``fields`` holding a value ``capture_lead`` reads as neither yes nor no, and so takes
    as nothing said."""
    value = _blank_to_none(fields.get("marketing_consent"))
    return ["marketing_consent"] if value is not None and _consent(value) is None else []


def _text(max_length: int, pattern: str | None = None) -> Any:
    """Optional text: blank means absent; the limit applies only to a present value."""
    return Annotated[
        Annotated[str, Field(max_length=max_length, pattern=pattern)] | None, BeforeValidator(_blank_to_none)
    ]


Name = _text(200)
#: The longest offer, submitted or a form's.
OFFER_LENGTH = 200
Tag = _text(OFFER_LENGTH)

#: The attribution a page's script fills in (from the ad's link, ``document.referrer``, ``location.href``), which
#: the person never sees and cannot shorten, and each one's limit. Refused, a landing page carrying long tracking
#: parameters lost its lead to a "Please check the form" no one could act on: over its limit, a value is cut to it.
FILLED_IN = {**dict.fromkeys(UTM_FIELDS, 200), "referrer": 2048, "landing_page": 2048}
#: A percent escape the cut left unfinished at the end (``%2``): a decoder would read it as wrong or refuse it.
_HALF_ESCAPE = re.compile(r"%[0-9A-Fa-f]?\Z")
#: The whole percent escapes at the end, where a character's UTF-8 bytes may have been cut short.
_ESCAPES_AT_END = re.compile(r"(?:%[0-9A-Fa-f]{2})+\Z")


def _cut(v: Any, limit: int) -> Any:
    v = _blank_to_none(v)
    if isinstance(v, str) and len(v) > limit:
        # Whole characters (code points) are kept, as the limit counts them.
        v = _whole_character_escapes(_HALF_ESCAPE.sub("", v[:limit])).rstrip()
    return v


def _whole_character_escapes(v: str) -> str:
    """``v`` without the escapes of a character the cut left short at its end: ``%C3`` of ``%C3%A9`` (é) is no
    character, and decodeURIComponent throws on it."""
    if not (escapes := _ESCAPES_AT_END.search(v)):
        return v
    data = bytes.fromhex(escapes[0].replace("%", ""))
    follow = 0  # the continuation bytes (10xxxxxx) at the end, of which a character has at most three
    while follow < min(3, len(data) - 1) and data[-1 - follow] & 0xC0 == 0x80:
        follow += 1
    first = data[-1 - follow]
    wanted = 2 if first & 0xE0 == 0xC0 else 3 if first & 0xF0 == 0xE0 else 4 if first & 0xF8 == 0xF0 else 1
    if follow + 1 >= wanted:
        return v  # whole, or not UTF-8 the cut could have split (the page sent it so)
    return v[:escapes.end() - 3 * (follow + 1)]


def _unnamed(v: Any, page: bool) -> Any:
    v = _blank_to_none(v)
    if not isinstance(v, str):
        return v
    if page:
        return without_visitor(v)
    # A UTM holding an address (a mail tool's merge tag, utm_source=ann@example.com) would go on every lifecycle
    # event, kept for ever where no erasure reaches: left out, as one read from the landing page is.
    return None if holds_address(v) else v


def _filled(v: Any, limit: int, page: bool) -> Any:
    # The visitor cut first: cut to its limit first, an address could lose its dot, and pass for none.
    return _cut(_unnamed(v, page), limit)


def _filled_in(field: str) -> Any:
    """Optional text a script fills in: blank means absent; longer than its limit, it is cut to it, not refused;
    a page's address without what names its visitor (``without_visitor``), a UTM holding an address absent."""
    limit, page = FILLED_IN[field], field in PAGE_FIELDS
    return Annotated[str | None, BeforeValidator(functools.partial(_filled, limit=limit, page=page)),
                     Field(description=f"cut to its first {limit:,} characters when longer" + (
                         "; without its userinfo, and any query parameter or fragment that names its visitor "
                         "(an e-mail address, a name, a phone number, a token or a password)" if page else
                         "; left out when it holds an e-mail address"))]


def overlong(fields: Mapping[str, Any]) -> list[str]:
    """The attribution fields of ``fields`` that ``capture_lead`` cuts to their limit, those it takes from the
    landing page's query string among them."""
    read = _as_read(fields)
    return [name for name, limit in FILLED_IN.items()
            if isinstance(value := _unnamed(read.get(name), name in PAGE_FIELDS), str) and len(value) > limit]


def naming_visitors(fields: Mapping[str, Any]) -> list[str]:
    """The page fields of ``fields`` (``landing_page``, ``referrer``) from which ``capture_lead`` cuts what names
    their visitor (``without_visitor``), or which it drops whole."""
    return [name for name in PAGE_FIELDS
            if isinstance(value := _blank_to_none(fields.get(name)), str) and without_visitor(value) != value]


class Submission(BaseModel):
    """A raw submission, validated; unknown fields (websites add their own) are ignored. A JSON number in a text
    field is its text: Zapier, Make and spreadsheets send a phone number or a numeric campaign term as one."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    email: Annotated[str, BeforeValidator(_required), Field(max_length=320)]
    first_name: Name = None
    last_name: Name = None
    company: Name = None
    job_title: Name = None
    phone: _text(40) = None
    country: _text(100) = None
    message: _text(5000) = None
    marketing_consent: Annotated[bool | None, BeforeValidator(_consent)] = None
    form_id: _text(100, pattern=r"^[A-Za-z0-9_.:-]+$") = None
    offer: Tag = None
    utm_source: _filled_in("utm_source") = None
    utm_medium: _filled_in("utm_medium") = None
    utm_campaign: _filled_in("utm_campaign") = None
    utm_term: _filled_in("utm_term") = None
    utm_content: _filled_in("utm_content") = None
    referrer: _filled_in("referrer") = None
    landing_page: _filled_in("landing_page") = None

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


#: The siteverify endpoints and answer fields of the CAPTCHA services whose protocol capture speaks.
CAPTCHA_PROVIDERS = {
    "turnstile": ("https://challenges.cloudflare.com/turnstile/v0/siteverify", "cf-turnstile-response"),
    "hcaptcha": ("https://api.hcaptcha.com/siteverify", "h-captcha-response"),
    "recaptcha": ("https://www.google.com/recaptcha/api/siteverify", "g-recaptcha-response"),
}
#: The longest answers the providers document (Cloudflare: a Turnstile token is at most 2,048 characters).
_MAX_ANSWERS = {"turnstile": 2048}


@dataclass(frozen=True)
class Captcha:
    """A form's CAPTCHA: where to verify the answer (the "siteverify" protocol) and what to do when that fails."""

    verify_url: str
    #: The environment variable holding the secret key: secrets stay out of the forms file.
    secret_env: str
    #: The form field the widget puts its answer in.
    field: str
    timeout_s: float = 3.0
    #: When the verifier cannot be reached or refuses our secret: accept the submission (open) or quarantine it.
    fail_open: bool = True
    #: reCAPTCHA v3 answers a score: below it, or without one (a v2 token solved with the same secret), is a bot.
    min_score: float | None = None
    #: The sites the widget is on (empty: any): the keys, or a provider's public test keys, may be used elsewhere.
    hostnames: frozenset[str] = frozenset()
    #: The widget's action (reCAPTCHA v3, Turnstile): a token solved for another widget of the same keys is a bot's.
    action: str | None = None
    #: The longest answer the provider's widget gives (Turnstile's are at most 2,048 characters); None: none known.
    max_answer: int | None = None


@dataclass(frozen=True)
class Form:
    """A form marketing has defined (the ``forms.yaml`` reference file)."""

    form_id: str
    name: str
    thank_you_url: str | None = None
    offer: str | None = None
    #: Web origins whose pages may post this form with ``fetch()`` (beyond ``CAPTURE_CORS_ORIGINS``), and frame its
    #: pages (``api._framed_by_its_origins``).
    allowed_origins: frozenset[str] = frozenset()
    #: A field hidden from people (CSS) that bots fill in: filled means a bot.
    honeypot: str = "_gotcha"
    #: Submissions per client address (``30/minute``); None: ``CAPTURE_RATE_LIMIT``.
    rate_limit: str | None = None
    #: Submissions must carry a form token (``token.js``) at least ``min_fill_seconds`` old and younger than
    #: ``token_max_age_seconds``: people take seconds to fill a form, scripts milliseconds.
    require_token: bool = False
    min_fill_seconds: float = 3.0
    token_max_age_seconds: float = 86_400.0
    captcha: Captcha | None = None


DEFAULT_HONEYPOT = "_gotcha"
#: The field a form token travels in.
TOKEN_FIELD = "_token"
_FORGED = "the form token is forged or belongs to another form"


def issue_form_token(form_id: str, shown_at: datetime, key: bytes) -> str:
    """A token saying this form was shown at ``shown_at``, signed with ``key`` (HMAC-SHA256, bound to the form).

    It starts with that time, in hexadecimal milliseconds, which ``token.js`` reads to tell each token's age."""
    stamp = format(int(shown_at.timestamp() * 1000), "x")
    return f"{stamp}.{_token_mac(key, form_id, stamp)}"


def _token_mac(key: bytes, form_id: str, stamp: str) -> str:
    digest = hmac.new(key, f"{form_id}\n{stamp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_suspicions(token: str | None, form: Form, now: datetime, key: bytes) -> list[str]:
    """Why a form token does not vouch for a person (empty: it does)."""
    if not token:
        return ["no form token (the form's token script did not run)"]
    if not token.isascii():
        # Every token issued is ASCII; JSON lets a bot send a lone surrogate, which could not even be hashed.
        return [_FORGED]
    stamp, _, mac = token.partition(".")
    if not hmac.compare_digest(mac.encode(), _token_mac(key, form.form_id, stamp).encode()):
        return [_FORGED]
    try:
        shown_at = datetime.fromtimestamp(int(stamp, 16) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return [_FORGED]  # signed by this key, so only if the key leaked
    age = (now - shown_at).total_seconds()
    if age < form.min_fill_seconds:
        return [f"sent {max(age, 0):.1f} s after the form was shown (at least {form.min_fill_seconds:g} s expected)"]
    if age > form.token_max_age_seconds:
        return [f"the form token expired ({age / 3600:.1f} h old; at most {form.token_max_age_seconds / 3600:g} h)"]
    return []


def suspicions(fields: Mapping[str, Any], form: Form | None, now: datetime, token_key: bytes) -> list[str]:
    """Why a submission looks like a bot's, before any CAPTCHA (empty: it looks like a person's)."""
    name = form.honeypot if form else DEFAULT_HONEYPOT
    if _trimmed(str(fields.get(name) or "")):
        return [f"the hidden field {name} was filled in"]
    if form is not None and form.require_token:
        token = fields.get(TOKEN_FIELD)
        return token_suspicions(token if isinstance(token, str) else None, form, now, token_key)
    return []


def captcha_answer(fields: Mapping[str, Any], captcha: Captcha) -> str | None:
    answer = fields.get(captcha.field)
    return (answer.strip() or None) if isinstance(answer, str) else None


def unverifiable(captcha: Captcha, answer: str) -> str | None:
    """Why ``answer`` cannot be one the widget gave (None: the verifier is to judge it): an unsolved CAPTCHA,
    for which the verifier is not asked."""
    try:
        answer.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON lets a bot send and no request to the verifier can
        return "the answer is not text a widget gives"
    if captcha.max_answer is not None and len(answer) > captcha.max_answer:
        return f"the answer is {len(answer):,} characters long; the widget's are at most {captcha.max_answer:,}"
    return None


#: Error codes that mean the verifier refused *our* configuration, not the person's answer. Not hCaptcha's
#: sitekey-secret-mismatch: the answer was solved under a sitekey our secret does not own, which is what a token
#: solved on another site looks like (a wrong secret is invalid-input-secret); taken for ours, a form failing open
#: let it in unchecked.
_OUR_FAULT = frozenset({"missing-input-secret", "invalid-input-secret"})
#: ... and those that mean the verifier failed itself (Turnstile's, asking for a retry): as when it is unreachable.
_THEIR_FAULT = frozenset({"internal-error"})


def captcha_suspicions(captcha: Captcha, answer: str | None, verdict: Mapping[str, Any] | None) -> list[str]:
    """Why a CAPTCHA does not vouch for a person; ``verdict`` is siteverify's JSON answer, None if unavailable."""
    if answer is None:
        return ["no CAPTCHA answer"]
    if (why := unverifiable(captcha, answer)) is not None:
        return [f"the CAPTCHA was not solved ({why})"]
    codes = captcha_error_codes(verdict)
    if verdict is None or (not verdict.get("success") and (_OUR_FAULT | _THEIR_FAULT) & set(codes)):
        return [] if captcha.fail_open else [
            f"the CAPTCHA could not be verified ({', '.join(codes) or 'verifier unavailable'}; the form fails closed)"]
    if not verdict.get("success"):
        return [f"the CAPTCHA was not solved ({', '.join(codes) or 'no reason given'})"]
    # "Solved" only says the token is genuine, not that it was solved on our page, for this form, as a v3 check.
    reasons = []
    host, action, score = verdict.get("hostname"), verdict.get("action"), verdict.get("score")
    if captcha.hostnames and not (isinstance(host, str) and host.lower() in captcha.hostnames):
        hosts = ", ".join(sorted(captcha.hostnames))
        reasons.append(f"the CAPTCHA was solved on {_shown(host)}, not on {hosts}" if host else
                       f"the CAPTCHA answer names no host; the form expects {hosts}")
    if captcha.action is not None and action != captcha.action:
        reasons.append(f"the CAPTCHA was solved for the action {_shown(action)}, not {captcha.action}" if action else
                       f"the CAPTCHA answer carries no action; the form expects {captcha.action}")
    if captcha.min_score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float):
            reasons.append(f"the CAPTCHA answer carries no score; the form asks for at least {captcha.min_score:g}")
        elif not score >= captcha.min_score:  # not <: a NaN score is no pass
            reasons.append(f"the CAPTCHA score {score:g} is below the form's {captcha.min_score:g}")
    return reasons


def captcha_error_codes(verdict: Mapping[str, Any] | None) -> list[str]:
    """The verifier's ``error-codes`` as text, whatever it sent: a list's items, a lone code not in one, or none (a
    verifier behind a proxy may answer anything, and a number there was a 500)."""
    codes = (verdict or {}).get("error-codes")
    if isinstance(codes, list):
        return [str(code) for code in codes]
    return [codes] if isinstance(codes, str) else []


def _shown(value: Any, limit: int = 100) -> str:
    """A value the verifier echoed from the solver's page, fit for a reason an admin reads."""
    text = str(value)
    text = text if len(text) <= limit else f"{text[:limit]}…"
    return text if text.isprintable() else repr(text)


def parse_origins(values: Any, where: str) -> frozenset[str]:
    """Web origins as browsers send them (``https://www.example.com``, no path), as ``web_origin`` writes them;
    raises ValueError naming ``where``."""
    if isinstance(values, str):
        values = [v for v in (part.strip() for part in values.split(",")) if v]
    if not isinstance(values, list | tuple):
        raise ValueError(f"{where}: expected a list of origins")
    origins = _each_like(values, PLAIN_ORIGIN, where, "an origin like https://www.example.com (scheme, host and "
                                                      "port only; no path, no wildcard)")
    for origin in origins:
        port = PLAIN_ORIGIN.fullmatch(origin).group(2)  # type: ignore[union-attr]  # matched by _each_like
        # Checked here, not left to web_origin: the refusal names ``where`` and the port as the operator meant it.
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"{where}: {origin!r} names port {int(port)}; a port is 1 to 65535")
    # Written https://www.example.com:443, an origin matched no page's: browsers leave the default port out.
    return frozenset(web_origin(origin) for origin in origins)


def _each_like(values: list[Any] | tuple[Any, ...], pattern: re.Pattern[str], where: str, like: str) -> frozenset[str]:
    """``values`` when each is text ``pattern`` matches whole; raises ValueError naming ``where`` and the first
    that is not (``like`` says what it should be)."""
    for value in values:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{where}: {value!r} is not {like}")
    return frozenset(values)


def may_post_from(origin: str, form: Form | None, everywhere: frozenset[str]) -> bool:
    """Whether a page of ``origin`` may post (to ``form``, or to the JSON API when None) from a browser."""
    return origin in everywhere or (form is not None and origin in form.allowed_origins)


def landing_utms(landing_page: Any) -> dict[str, str]:
    """The ``utm_*`` parameters in ``landing_page``'s query string, decoded: the first of each name, none blank.

    A page's script sends ``location.href`` as it is, while few pages copy its UTMs into fields of their own: without
    these, the lead of every such page had no source, and routing and the reports had nothing to go by."""
    if not isinstance(landing_page, str):
        return {}
    try:
        query = urlsplit(landing_page.strip()).query
    except ValueError:  # an unclosed IPv6 bracket, say: a page's address no browser gives
        return {}
    found: dict[str, str] = {}
    for pair in query.split("&"):
        raw_name, _, raw = pair.partition("=")
        name = _query_text(raw_name)  # utm%5Fsource too, as parse_qsl read it
        if name not in UTM_FIELDS or name in found:
            continue
        value = _query_text(raw)
        # Decoded, %00 is a NUL, which no field may hold (PostgreSQL cannot store it): the parameter says nothing.
        # One holding an address (a mail tool's utm_content=ada@stripe.com) is cut from the page kept
        # (page_urls.without_visitor), and copied here it would go on every lifecycle event, kept for ever.
        if value is not None and _trimmed(value) and "\x00" not in value and not holds_address(value):
            found[name] = value
    return found


def _query_text(raw: str) -> str | None:
    """A query string's value as text: its escapes read as UTF-8, as browsers write them, else as windows-1252
    (an older page's ``%E9t%E9``: été), else None. parse_qsl put U+FFFD in place of bytes UTF-8 has no reading
    for, and the campaign went on every lifecycle event, kept for ever, with its letters lost."""
    data = unquote_to_bytes(raw.replace("+", " "))
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def form_named(fields: Mapping[str, Any], form_id: str | None) -> str | None:
    """The form a submission names, as ``capture_lead`` files it: ``form_id`` (from the URL of a form post), or its
    ``form_id`` field, blank-trimmed, a JSON number as its text (``Submission``)."""
    named = form_id or fields.get("form_id")
    if isinstance(named, int | float) and not isinstance(named, bool):
        return str(named)
    return _trimmed(named) if isinstance(named, str) else None


def _as_read(fields: Mapping[str, Any], form_id: str | None = None) -> dict[str, Any]:
    """``fields`` as ``Submission`` reads them: ``form_id`` over the field, and the UTMs of ``landing_page``'s
    query string (``landing_utms``) in those left out or blank."""
    data = dict(fields)
    if form_id is not None:
        data["form_id"] = form_id
    for name, value in landing_utms(data.get("landing_page")).items():
        if _blank_to_none(data.get(name)) is None:
            data[name] = value
    return data


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
    a form's configured offer fills in when the submission names none, and the
    UTMs of ``landing_page``'s query string (``landing_utms``) those it left out
    or blank, within the same limits.
    """
    try:
        sub = Submission.model_validate(_as_read(fields, form_id))
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
        marketing_consent=bool(sub.marketing_consent),
        marketing_consent_at=received_at if sub.marketing_consent else None,
    )
    attribution = Attribution(
        form_id=sub.form_id, offer=offer,
        utm_source=sub.utm_source, utm_medium=sub.utm_medium, utm_campaign=sub.utm_campaign,
        utm_term=sub.utm_term, utm_content=sub.utm_content,
        referrer=sub.referrer, landing_page=sub.landing_page,
    )
    return LeadCaptured(lead_id=lead_id, captured_at=received_at, contact=contact, attribution=attribution)


def stated_consent(fields: Mapping[str, Any]) -> bool | None:
    """What a submission ``capture_lead`` took said of marketing consent: None when it said nothing (an unticked
    checkbox without its hidden "0", or a blank value), which a lead's contact, always true or false, cannot tell
    from a no."""
    return _consent(fields.get("marketing_consent"))


@dataclass(frozen=True)
class OnRecord:
    """What capture holds of a lead's person: the contact their submissions left, and when they last said no to
    marketing. A yes's time is the contact's ``marketing_consent_at``; a no's has no place there (the contact's
    false is also a consent never asked for), yet without it a word older than the no cannot be told from a newer."""

    contact: Contact
    #: None: they have not said no since their last yes (or ever), or said it before capture kept its time.
    consent_withdrawn_at: datetime | None = None

    @classmethod
    def first(cls, lead: LeadCaptured, consent: bool | None, person_said: ConsentWord | None = None) -> OnRecord:
        """What the submission that opens a lead puts on record; ``consent`` as in ``latest_contact``.

        ``person_said`` is its person's word on record (``ConsentWord``), given on a lead of theirs since closed
        (or merged away): the lead is new, its person is not. A no newer than what this submission said (silence
        included) holds on the new lead, as it would on a touch: a yes released from quarantine, older than the
        no, must not open a lead marketing may mail, and the lead keeps the no's time, or an older yes released
        onto it next would count. A yes is not carried over: a first submission that says nothing records no
        consent."""
        return cls(lead.contact, lead.captured_at if consent is False else None).heeding(person_said)

    def heeding(self, person_said: ConsentWord | None) -> OnRecord:
        """This record with its person's no (``person_said``) on it when that no is newer than the word it holds
        (silence included; one as old counts as older): given on a lead of theirs since closed, or on one sales
        merged into this lead, it holds here too. A yes is not carried over."""
        if person_said is None or person_said.consent:
            return self
        said_at = self.consent_said_at
        if said_at is not None and said_at > person_said.said_at:
            return self
        return OnRecord(self.contact.model_copy(update={"marketing_consent": False, "marketing_consent_at": None}),
                        person_said.said_at)

    @property
    def consent_said_at(self) -> datetime | None:
        """When the word on marketing consent now on record was given (None: none known)."""
        return self.contact.marketing_consent_at if self.contact.marketing_consent else self.consent_withdrawn_at


@dataclass(frozen=True)
class ConsentWord:
    """What a person last said of marketing consent, whichever of their leads they said it on: yes or no, and when
    it was sent (not when it was stored: a submission released from quarantine is stored days after)."""

    consent: bool
    said_at: datetime

    @classmethod
    def of(cls, submitted: LeadCaptured, consent: bool | None) -> ConsentWord | None:
        """What ``submitted`` said (``consent`` as in ``latest_contact``); None: nothing."""
        return None if consent is None else cls(consent, submitted.captured_at)


def newer_word(on_record: ConsentWord | None, said: ConsentWord | None) -> ConsentWord | None:
    """Of two words the newer by when it was sent, as ``latest_contact`` weighs them: one as old as the word on
    record counts as older."""
    if said is None or (on_record is not None and said.said_at <= on_record.said_at):
        return on_record
    return said


_CONSENT_FIELDS = frozenset({"marketing_consent", "marketing_consent_at"})


def latest_contact(known: OnRecord, submitted: LeadCaptured, consent: bool | None = None) -> OnRecord:
    """What is known of a person after a submission: what they sent now, and what they sent before where they
    left a field out (a short form must not erase the job title a long one gave).

    ``consent`` is what the submission said of marketing consent (``stated_consent``): a no withdraws the
    consent given before, and its time with it. ``submitted`` cannot say it: its false is also a form without the
    checkbox, which must not withdraw anything. A yes or a no counts only if it was sent after the word on record:
    a quarantined submission is released after its person may have spoken again, and its old yes must not undo a
    no they gave since (the rest of what it sent is taken as from any touch)."""
    sent = submitted.contact.model_dump(exclude_none=True, exclude_defaults=True)
    if consent is False:
        sent |= {"marketing_consent": False, "marketing_consent_at": None}
    withdrawn_at = known.consent_withdrawn_at
    if "marketing_consent" in sent:
        said_at = known.consent_said_at
        if said_at is not None and submitted.captured_at <= said_at:
            sent = {k: v for k, v in sent.items() if k not in _CONSENT_FIELDS}
        else:
            withdrawn_at = None if sent["marketing_consent"] else submitted.captured_at
    return OnRecord(known.contact.model_copy(update=sent), withdrawn_at)


#: What quarantine keeps of a submission besides its known fields: this many fields in all, names and values cut,
#: and at most KEPT_BYTES of them as JSON. JSON writes a control character in six bytes: 100 fields of 5,000 of
#: them made a 3 MB leads.quarantined event, past what the broker takes, and capture's relay, which sends its
#: outbox in order, retried that one message for ever while every lead behind it waited.
KEPT_FIELDS, KEPT_NAME, KEPT_VALUE, KEPT_BYTES = 100, 100, 5000, 64 * 1024


def quarantined_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """What quarantine keeps of a submission: text an admin reads and a release makes the lead of again.

    The known fields whatever the cap (a release needs the e-mail a bot's padding would push out), whole; others
    while there is room, cut. A JSON null is left out, as ``capture_lead`` leaves it: kept as "None" it would be a
    company called None, or a consent no release could read. Text a store cannot hold (a lone surrogate, which
    JSON lets a bot send) is replaced, so the submission is quarantined rather than refused with a 503.
    """
    present = [(str(k), v) for k, v in fields.items() if v is not None]
    kept = {k: _kept_text(k, v) for k, v in present if k in FIELDS}
    room = KEPT_BYTES
    for k, v in present:
        if len(kept) >= KEPT_FIELDS:
            break
        if k not in FIELDS and (name := k[:KEPT_NAME]) not in kept:
            value = str(v)[:KEPT_VALUE]
            room -= len(json.dumps(name)) + len(json.dumps(value))
            if room < 0:
                break
            kept[name] = value
    return {_storable(k): _storable(v) for k, v in kept.items()}


def _kept_text(name: str, value: Any) -> str:
    """A known field's value as quarantine keeps it, which a release reads as ``capture_lead`` read the value sent.

    A consent sent as no text is kept as the word capture read it as: a JSON 1.0, a yes, was kept as "1.0", which
    a release read as nothing said (as it reads that text sent), and the released lead lost its yes. Text is kept
    as sent: it reads alike."""
    if name == "marketing_consent" and not isinstance(value, str) and (said := _consent(value)) is not None:
        return "true" if said else "false"
    return str(value)


def _storable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def quarantine_kept_since(now: datetime, keep_days: float) -> datetime | None:
    """The earliest a quarantined submission may have been received and still be kept, ``keep_days`` before
    ``now``. None: every one is kept (0 keeps them for ever, and so does a retention reaching back before year 1,
    longer than any submission's age)."""
    if keep_days <= 0:
        return None
    try:
        return now - timedelta(days=keep_days)
    except OverflowError:  # infinity too
        return None


_FORM_KEYS = {"name", "thank_you_url", "offer", "allowed_origins", "honeypot", "rate_limit", "require_token",
              "min_fill_seconds", "token_max_age_seconds", "captcha"}
_CAPTCHA_KEYS = {"provider", "verify_url", "field", "secret_env", "timeout_s", "on_error", "min_score", "hostnames",
                 "action"}
#: A host name as siteverify answers it: lower-case labels, no scheme, port, path or wildcard.
_HOST = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
#: reCAPTCHA v3 allows letters, digits, _ and /; Turnstile letters, digits, _ and -.
_ACTION = re.compile(r"[A-Za-z0-9_/-]{1,100}")


def _seconds(value: Any, where: str, *, positive: bool = False, most: float) -> float:
    # YAML reads .nan and .inf as floats: NaN passes every comparison (a fill-time check that checks nothing),
    # and a token age of 1e12 s overflowed the token's time (a 500 on every token asked for).
    if (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= most
            or (positive and value == 0)):
        raise ValueError(f"{where}: expected a {'positive' if positive else 'non-negative'} number of seconds, "
                         f"at most {most:,g}")
    return float(value)


def parse_captcha(spec: Any, where: str) -> Captcha:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(spec) - _CAPTCHA_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_CAPTCHA_KEYS)})")
    provider = spec.get("provider")
    # Text first: a list or a mapping is no key of the table, a TypeError ("unhashable") at start.
    if provider is not None and (not isinstance(provider, str) or provider not in CAPTCHA_PROVIDERS):
        raise ValueError(f"{where}.provider: {provider!r} is not one of {sorted(CAPTCHA_PROVIDERS)}")
    for key in ("verify_url", "field"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError(f"{where}.{key}: expected text, not {type(spec[key]).__name__}")
    url, field = CAPTCHA_PROVIDERS.get(provider or "", (None, None))
    url, field = spec.get("verify_url") or url, spec.get("field") or field
    if not url or not field:
        raise ValueError(f"{where}: name a provider ({', '.join(CAPTCHA_PROVIDERS)}) or both verify_url and field")
    if not re.match(r"^https?://", str(url)):
        raise ValueError(f"{where}.verify_url: {url!r} is not an http(s) URL")
    secret_env = spec.get("secret_env")
    if not isinstance(secret_env, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", secret_env):
        raise ValueError(f"{where}.secret_env: name the environment variable that holds the secret key "
                         "(the secret itself stays out of this file)")
    on_error = spec.get("on_error", "open")
    if on_error not in ("open", "closed"):
        raise ValueError(f"{where}.on_error: expected open (accept when the verifier fails) or closed (quarantine)")
    min_score = spec.get("min_score")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, int | float)
                                  or not 0 <= min_score <= 1):
        raise ValueError(f"{where}.min_score: expected a number from 0 to 1")
    if min_score is not None and provider in ("turnstile", "hcaptcha") and not spec.get("verify_url"):
        # Their answers carry no such score: every submission would be quarantined for the lack of one.
        raise ValueError(f"{where}.min_score: {provider} answers no score (reCAPTCHA v3 does); leave it out")
    hostnames = spec.get("hostnames")
    action = spec.get("action")
    if action is not None and not (isinstance(action, str) and _ACTION.fullmatch(action)):
        raise ValueError(f"{where}.action: expected the widget's action (1 to 100 letters, digits, _, / or -)")
    if action is not None and provider == "hcaptcha" and not spec.get("verify_url"):
        raise ValueError(f"{where}.action: hcaptcha answers no action (reCAPTCHA v3 and Turnstile do); leave it out")
    return Captcha(verify_url=str(url), secret_env=secret_env, field=str(field),
                   timeout_s=_seconds(spec.get("timeout_s", 3.0), f"{where}.timeout_s", positive=True, most=60),
                   fail_open=on_error == "open", min_score=min_score,
                   hostnames=frozenset() if hostnames is None else _hostnames(hostnames, f"{where}.hostnames"),
                   action=action, max_answer=_MAX_ANSWERS.get(provider or ""))


def _hostnames(values: Any, where: str) -> frozenset[str]:
    # An empty list would silently check nothing; a bare string would be read letter by letter.
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{where}: expected a list of host names, like [www.example.com, example.com]")
    return _each_like(values, _HOST, where, "a host name like www.example.com (lower case; no scheme, port, path "
                                            "or wildcard)")


#: The longest a form token may live (and so the longest fill time asked for): a page left open for a month.
_TOKEN_AGE_MOST = 30 * 86_400

#: What a form id may be: it is part of the URL a form posts to.
FORM_ID = r"[A-Za-z0-9_.:-]{1,100}"
_FORM_ID = re.compile(f"^{FORM_ID}$")
#: What the ``unlisted:`` checks may set: a form not listed has no page of its own to name or send people to.
_UNLISTED_KEYS = _FORM_KEYS - {"name", "thank_you_url", "offer", "allowed_origins"}


def parse_forms(raw: Mapping[str, Any]) -> dict[str, Form]:
    """The ``forms:`` mapping of the forms file, checked; raises ``ValueError`` naming the bad entry."""
    unknown = set(raw) - {"forms", "unlisted"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(map(str, unknown))} (known: forms, unlisted)")
    listed = raw.get("forms") or {}
    if not isinstance(listed, Mapping):
        raise ValueError("forms: expected a mapping of form ids to their settings")
    forms = {}
    for key, spec in listed.items():
        # YAML reads an id of digits as a number (it means the same), yes/no/on/off as booleans (not what was meant).
        form_id = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(form_id, str) or not _FORM_ID.match(form_id):
            raise ValueError(f"forms.{key}: a form id is 1 to 100 letters, digits and _ . : - (it is part of the URL "
                             "the form posts to; quote one YAML reads otherwise)")
        if form_id in forms:  # 2024: and '2024': are two keys to YAML, one form id
            raise ValueError(f"forms.{form_id}: listed twice (once as a number, once as text); list it once")
        forms[form_id] = _form(form_id, spec, f"forms.{form_id}", _FORM_KEYS)
    return forms


def parse_unlisted(raw: Mapping[str, Any]) -> Form:
    """The forms file's ``unlisted:`` checks, for a post to a form id not listed and a post to ``/v1/leads`` without
    an API key (the honeypot alone when not set); raises ``ValueError`` naming the bad entry."""
    return _form("", raw.get("unlisted"), "unlisted", _UNLISTED_KEYS)


def _form(form_id: str, spec: Any, where: str, keys: set[str]) -> Form:
    spec = spec or {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(spec) - keys
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))} (known: {sorted(keys)})")
    _yes_or_no(spec.get("require_token", False), f"{where}.require_token")
    # YAML reads 2024, 1.0, no and on as numbers and booleans: quoted, they are the text they look like.
    for text in ("name", "offer", "honeypot", "rate_limit"):
        if spec.get(text) is not None and not isinstance(spec[text], str):
            raise ValueError(f"{where}.{text}: expected text (quote it: {text}: \"{spec[text]}\")")
    captcha = parse_captcha(spec["captcha"], f"{where}.captcha") if spec.get("captcha") else None
    if spec.get("honeypot") in (*FIELDS, TOKEN_FIELD, *((captcha.field,) if captcha else ())):
        # A field the form's people fill in (or its token script, or its CAPTCHA widget, does): each of them would
        # be taken for a bot.
        raise ValueError(f"{where}.honeypot: {spec['honeypot']} is a field of the submission, which people fill "
                         f"in; every one who did would be quarantined. Name a field of its own, hidden from "
                         f"people, like {DEFAULT_HONEYPOT}")
    thank_you_url = spec.get("thank_you_url")
    if thank_you_url is not None and not (isinstance(thank_you_url, str) and _absolute_url(thank_you_url)):
        raise ValueError(f"{where}.thank_you_url: expected an absolute http(s) URL, like https://example.com/thanks")
    if thank_you_url is not None:
        thank_you_url = _ascii_url(thank_you_url)
        if not thank_you_url.isascii():
            raise ValueError(f"{where}.thank_you_url: its host is no domain name IDNA can spell in ASCII")
    if captcha is not None and captcha.field in (*FIELDS, TOKEN_FIELD):
        # The provider would be sent every person's address (or name, or token) as the widget's answer, and would
        # refuse it: every submission quarantined.
        raise ValueError(f"{where}.captcha.field: {captcha.field} is a field of the submission; name the field "
                         "the CAPTCHA widget fills in (its provider's, when left out)")
    # As a submitted offer is read: rules and reports match an offer whole, so "demo " would match no "demo".
    offer = _trimmed(spec.get("offer") or "") or None
    if offer is not None and len(offer) > OFFER_LENGTH:
        raise ValueError(f"{where}.offer: at most {OFFER_LENGTH} characters, as a submitted offer")
    min_fill = _seconds(spec.get("min_fill_seconds", 3), f"{where}.min_fill_seconds", most=_TOKEN_AGE_MOST)
    max_age = _seconds(spec.get("token_max_age_seconds", 86_400), f"{where}.token_max_age_seconds", positive=True,
                       most=_TOKEN_AGE_MOST)
    if min_fill > max_age / 2:
        # token.js renews a page's token once it is half its life old and sends the new one once that is
        # min_fill_seconds old: past half, the old one expires first, and what is posted meanwhile is quarantined
        # (at or past the whole life, every submission is).
        raise ValueError(f"{where}.min_fill_seconds: {min_fill:g} is more than half token_max_age_seconds "
                         f"({max_age:g}): a page's renewed token would not be old enough before its old one expired")
    return Form(
        form_id=form_id,
        name=spec.get("name") or form_id,
        thank_you_url=thank_you_url,
        offer=offer,
        allowed_origins=parse_origins(spec.get("allowed_origins") or [], f"{where}.allowed_origins"),
        honeypot=spec.get("honeypot") or DEFAULT_HONEYPOT,
        rate_limit=spec.get("rate_limit") or None,
        require_token=spec.get("require_token", False),
        min_fill_seconds=min_fill,
        token_max_age_seconds=max_age,
        captcha=captcha,
    )


def _absolute_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in text)


#: What a URL keeps unescaped: its delimiters and the escapes already in it (as Starlette's RedirectResponse).
_URL_SAFE = ":/%#?=@[]!$&'()*+,;"


def _ascii_url(text: str) -> str:
    """``text`` as a response header may carry it: the host in IDNA's ASCII form, the rest percent-encoded as
    Starlette encodes a redirect's ``Location``. Headers are written in Latin-1: a thank-you page at a Japanese
    host, sent to htmx in ``HX-Redirect`` as written, was a 500 after the lead was stored."""
    parts = urlsplit(text)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not hostport.isascii():  # an IPv6 literal is ASCII: only a name is spelt again
        host, colon, port = hostport.partition(":")
        hostport = ascii_domain(host) + colon + port
    return urlunsplit((parts.scheme, quote(userinfo, safe=_URL_SAFE) + at + hostport,
                       *(quote(part, safe=_URL_SAFE) for part in (parts.path, parts.query, parts.fragment))))


# -- one person, one lead --------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    ignore_dots: bool = False
    plus_tags: bool | None = None
    same_as: str | None = None


@dataclass(frozen=True)
class IdentityRules:
    """How an e-mail address names a person (the ``identity.yaml`` reference file)."""

    plus_tags: bool = True
    providers: Mapping[str, Provider] = dataclasses.field(default_factory=dict)


_PROVIDER_KEYS = ("ignore_dots", "plus_tags", "same_as")


def parse_identity(raw: Mapping[str, Any]) -> IdentityRules:
    """Raises ValueError naming the bad entry and key."""
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping with plus_tags: and providers: at the top level")
    unknown = set(raw) - {"plus_tags", "providers"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(map(str, unknown))} (known: plus_tags, providers)")
    # Left empty (plus_tags: ~), a setting is its default, as one left out is (as earlier versions read a provider's).
    plus_tags = _yes_or_no(True if raw.get("plus_tags") is None else raw["plus_tags"], "plus_tags")
    listed = raw.get("providers") or {}
    if not isinstance(listed, Mapping):
        raise ValueError("providers: expected a mapping of mail domains to their settings, like gmail.com: "
                         "{ignore_dots: true}")
    providers: dict[str, Provider] = {}
    written_as: dict[str, str] = {}
    for written, spec in listed.items():
        where = f"providers.{written}"
        domain = _mail_domain(written, where)
        if domain in written_as:
            # YAML sees two keys in Gmail.com and gmail.com; kept both, the later would silently win.
            raise ValueError(f"{where}: {written_as[domain]} is listed already; give each domain once")
        written_as[domain] = str(written)
        spec = {} if spec is None else spec  # a domain with nothing under it: its settings are the defaults
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected a mapping of {', '.join(_PROVIDER_KEYS)}, like {{ignore_dots: true}}")
        unknown = set(spec) - set(_PROVIDER_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))} (known: {', '.join(_PROVIDER_KEYS)})")
        spec = {key: value for key, value in spec.items() if value is not None}  # ignore_dots: ~ is the default
        same_as = spec.get("same_as")
        if same_as is not None and len(spec) > 1:
            # An alias's addresses take the rules of the domain it names: its own would be read by nobody.
            raise ValueError(f"{where}: an alias (same_as) takes the rules of {same_as}; give "
                             f"{', '.join(sorted(set(spec) - {'same_as'}))} there, not here")
        providers[domain] = Provider(
            ignore_dots=_yes_or_no(spec.get("ignore_dots", False), f"{where}.ignore_dots"),
            plus_tags=_yes_or_no(spec["plus_tags"], f"{where}.plus_tags") if "plus_tags" in spec else None,
            same_as=None if same_as is None else _as_addresses_spell_it(_mail_domain(same_as, f"{where}.same_as"),
                                                                        f"{where}.same_as"))
    for domain, provider in providers.items():
        if provider.same_as and providers.get(ascii_domain(provider.same_as), Provider()).same_as:
            raise ValueError(f"providers.{written_as[domain]}.same_as: {provider.same_as} is itself an alias")
    return IdentityRules(plus_tags=plus_tags, providers=providers)


#: What YAML reads as true or false unquoted: quoted, it is text.
_YAML_BOOLEANS = frozenset({"true", "false", "yes", "no", "on", "off"})


def _yes_or_no(value: Any, where: str) -> bool:
    # Taken for its truth, the text "false" (or "no", quoted) was true: j.doe and jdoe at a company became one person.
    if not isinstance(value, bool):
        quoted = isinstance(value, str) and value.lower() in _YAML_BOOLEANS
        raise ValueError(f"{where}: expected true or false, not {value!r}{' (leave out the quotes)' if quoted else ''}")
    return value


def _mail_domain(written: Any, where: str) -> str:
    """``written``, a domain an address may end in, in the ASCII form rules are looked up by (``ascii_domain``);
    raises ValueError naming ``where`` and what to write instead."""
    if not isinstance(written, str) or not is_domain(written):
        alone = domain_alone(written) if isinstance(written, str) else None
        fix = f"write the domain alone: {alone}" if alone else "write it like gmail.com"
        raise ValueError(f"{where}: {written!r} is not a domain as it follows the @ of an address ({fix})")
    return ascii_domain(written)


def _as_addresses_spell_it(domain: str, where: str) -> str:
    """``domain`` as capture keeps it in an address (email-validator's spelling: ``xn--mller-kva.de`` is
    ``müller.de``): an alias's addresses name their person by it, the same one as an address written there."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError as exc:  # an xn-- label that is no IDNA, say: no address ends in it
        raise ValueError(f"{where}: {domain!r} is not a domain as it follows the @ of an address ({exc})") from None


def person_key(email: str, rules: IdentityRules) -> str:
    """The person an address names: ``Jane.Doe+news@GoogleMail.com`` and ``janedoe@gmail.com`` are one."""
    local, _, domain = email.strip().rpartition("@")
    # The domain folded as IDNA 2008 folds it: casefold made straße.de's people strasse.de's, another domain's.
    local, domain = local.casefold(), unicode_domain(domain)
    provider = rules.providers.get(ascii_domain(domain), Provider())
    if provider.same_as:
        domain = provider.same_as
        provider = rules.providers.get(ascii_domain(domain), Provider())
    plus_tags = rules.plus_tags if provider.plus_tags is None else provider.plus_tags
    if plus_tags and "+" in local[1:]:
        local = local[: local.index("+", 1)]
    if provider.ignore_dots:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def address_stem(email: str) -> str:
    """The start of every person key ``email`` (an address as capture keeps it) can have, whatever the identity
    rules: its local part casefolded, up to its first dot, or its first plus sign past the first character. A
    plus tag is cut at a plus sign past the first character and an ignored dot dropped, so the key an erasure
    computes, under the rules of its day, begins with it: a quarantined submission is found by it
    (``store.forget_quarantined``), whichever rules held when it was kept."""
    local = email.strip().rpartition("@")[0].casefold()
    end = next((i for i, c in enumerate(local) if c == "." or (c == "+" and i > 0)), len(local))
    return local[:end]


def erasure_key(email: str, rules: IdentityRules) -> str:
    """The person an erasure names by ``email``: the address read as a submission's is (``Submission``), then its
    person key, so every spelling of it that one of their leads came with names them. ValueError when it is no
    address, saying why (not repeating it)."""
    try:
        normalized = validate_email(_trimmed(email), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return person_key(normalized, rules)


def fingerprint(fields: Mapping[str, Any], form_id: str | None) -> str:
    """What an ``Idempotency-Key`` promises is repeated: the submitted fields (order aside) and the form."""
    canonical = json.dumps({"form_id": form_id, "fields": fields}, sort_keys=True, default=str, ensure_ascii=False)
    # surrogatepass: a lone surrogate in a field nobody reads must not fail the request (valid text hashes as ever).
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
