"""capture's HTTP API: the JSON endpoint API clients use and the endpoint HTML forms post to.

A 2xx means the lead is durable (its row is committed; the relay publishes
it). Every refusal is a ``Problem``: JSON with the field and the reason, or,
for a browser's form post, the same problem as a readable page.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, NoReturn
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.routing import APIRoute
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from leadpipe_common import pages, topics
from leadpipe_common.auth import Principal, TooManyWrongKeys, has_key, identify, needs
from leadpipe_common.db import UNAVAILABLE, is_unavailable, raw_connection, sqlstate
from leadpipe_common.envelope import child_traceparent, derive_id, encode
from leadpipe_common.events import LeadQuarantined
from leadpipe_common.http import (FieldProblem, Problem, ProblemBody, StrictRoute, frame_by, problem_responses,
                                  routed_path)
from leadpipe_common.problems import NUL_REASON, nul_path
from leadpipe_common.service import Runtime, runtime, runtime_of
from leadpipe_common.throttle import Network, Rate, Throttle, parse_rate, request_address

from capture import erasure
from capture.captcha import Verifier
from capture.domain import (FORM_ID, TOKEN_FIELD, Form, IdentityRules, InvalidSubmission, address_stem,
                            captcha_answer, captcha_suspicions, capture_lead, fingerprint, form_named,
                            issue_form_token, naming_visitors, overlong, person_key, quarantined_fields,
                            stated_consent, suspicions, unread_consent, unverifiable)
from capture.handlers import SOURCE
from capture.throttle import browser_identity
from capture.store import CaptureStore
from capture.writer import (Admitted, IdempotencyMismatch, LeadWriter, Submitted, WriterStopped, WriteTimedOut, admit,
                            answer_for, claim_key)

log = structlog.get_logger(__name__)

ACCEPTED = Counter("capture_leads_accepted_total", "Leads accepted (durable)", ["endpoint"])
REJECTED = Counter("capture_requests_rejected_total", "Requests refused", ["status"])
THROTTLED = Counter("capture_requests_throttled_total", "Submissions refused with 429", ["by"])
QUARANTINED = Counter("capture_submissions_quarantined_total", "Submissions taken for bots' (answered as people)",
                      ["endpoint"])
CUT = Counter("capture_attribution_cut_total", "Attribution fields a page filled in past their limit, cut to it",
              ["field"])
VISITOR_CUT = Counter("capture_attribution_visitor_cut_total",
                      "Page addresses (landing page, referrer) a page filled in from which what named their visitor "
                      "was cut (an address, a contact-like or secret parameter, userinfo), or dropped whole",
                      ["field"])
UNREAD_CONSENT = Counter("capture_consent_unread_total",
                         "Consent values read as neither yes nor no, kept as nothing said", ["field"])

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Limits:
    """capture's rate limits, parsed at start (``capture.throttle``)."""

    per_address: Rate
    per_key: Rate
    per_form: dict[str, Rate]
    trusted_proxies: tuple[Network, ...]
    throttle: Throttle = field(default_factory=Throttle)
    #: Submissions per client address to forms not listed and to ``/v1/leads`` (``unlisted.rate_limit``);
    #: None: ``per_address``.
    unlisted: Rate | None = None


@dataclass(frozen=True)
class Capture:
    """What capture's routes need besides its settings."""

    forms: dict[str, Form]
    writer: LeadWriter
    clock: Callable[[], datetime]
    limits: Limits
    #: Signs and checks form tokens (``CAPTURE_TOKEN_SECRET``).
    token_key: bytes
    verifier: Verifier
    #: How an e-mail address names a person (``CAPTURE_IDENTITY_FILE``).
    identity: IdentityRules
    #: The checks of a post naming no form listed (the forms file's ``unlisted:``); its form id is blank.
    unlisted: Form = Form(form_id="", name="")

    def checks(self, form_id: str | None) -> Form:
        """The bot checks a post naming ``form_id`` gets: its form's, or the unlisted ones under its id (a form
        token is signed for the form id it is posted to)."""
        form = self.forms.get(form_id or "")
        return form if form is not None else replace(self.unlisted, form_id=form_id or "")


@dataclass(frozen=True)
class Sender:
    """Who sent a submission, as far as capture can tell before reading it."""

    #: A ``capture:write`` key vouches for it: the browser-only checks (honeypot, token, CAPTCHA) do not apply.
    vouched: bool
    #: The client's address (``X-Forwarded-For`` only from a trusted proxy); None for a key.
    address: str | None
    #: Whose Idempotency-Keys these are: the API key's id, or every anonymous client together.
    caller: str = "public"


async def _admit(request: Request, rt: Runtime[Capture, CaptureStore], form_id: str | None) -> Sender:
    """Who sends this; raises 401/403 for a bad key and 429 over the limit, before the body is read."""
    limits = rt.context.limits
    who = await _key_holder(request)
    if who is not None and not who.may("capture:write"):
        raise Problem(403, f"this API key ({who.name}) lacks the scope capture:write")
    address = None
    if who is not None:
        own = _key_rate(who.key_id, who.rate_limit) if who.rate_limit else None
        rate, identity = (own if own is not None else limits.per_key), ("key", who.key_id)
    else:
        listed = form_id is not None and form_id in rt.context.forms
        rate = (limits.per_form.get(form_id, limits.per_address) if listed  # type: ignore[arg-type]
                else limits.unlisted or limits.per_address)
        address = _address(request, limits)
        identity = browser_identity(address, form_id, rt.context.forms)
    _throttle(limits, rate, identity, "key" if who else "address")
    return Sender(vouched=who is not None, address=address, caller=who.key_id if who else "public")


def _address(request: Request, limits: Limits) -> str:
    return request_address(request, limits.trusted_proxies)


async def _key_holder(request: Request) -> Principal | None:
    """The key's holder (only a key sent on purpose vouches for a submission: no dashboard session); 401 for an
    unknown or revoked key, and 429 once the client's address has sent too many of those, in one count with its
    keys to every other route (``auth.check_key``)."""
    if not has_key(request):
        return None
    try:
        return await identify(request, sessions=False)
    except TooManyWrongKeys:
        THROTTLED.labels("bad key").inc()
        raise


def _throttle(limits: Limits, rate: Rate, identity: tuple[str, ...], by: str) -> None:
    wait = limits.throttle.retry_after(rate, *identity)
    if wait is not None:
        THROTTLED.labels(by).inc()
        raise Problem(429, f"too many submissions; retry in {wait} s", headers={"Retry-After": str(wait)})


@functools.lru_cache(maxsize=256)
def _key_rate(key_id: str, text: str) -> Rate | None:
    """A key's own rate limit; None, with a warning (once a process, as cached), for one capture cannot count by."""
    try:
        return parse_rate(text, "the key's rate limit")
    except ValueError as exc:
        # leadpipe-keys took 0/second (and a row may be edited by hand): each of the key's posts was a 500.
        log.warning("an API key's stored rate limit is invalid; its posts are counted under CAPTURE_KEY_RATE_LIMIT",
                    key_id=key_id, error=str(exc))
        return None


#: What the checks of posts naming no listed form go by in metrics and logs (``forms.yaml``'s ``unlisted:``).
UNLISTED = "(unlisted)"
CaptureRuntime = Annotated[Runtime[Capture, CaptureStore], Depends(runtime)]
FormId = Annotated[str, Path(pattern=f"^{FORM_ID}$")]
router = APIRouter(tags=["capture"])


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    if "application/json" in accept:
        return "text/html" not in accept.split("application/json")[0]
    if "text/html" in accept:
        return False  # a browser's form, or a script that shows the page it gets (htmx 4 asks for text/html)
    if _media_type(request) in JSON_TYPES:
        return True  # no HTML form sends JSON
    # htmx 1 and 2 post a form body by XMLHttpRequest with its "*/*" and swap the answer into the page: JSON there
    # is the lead's id where the page's thanks should be. They say so in HX-Request alone.
    if _from_htmx(request):
        return False
    # fetch() and XMLHttpRequest send "*/*" unless told otherwise, a FormData body too, and a redirect to a
    # thank-you page on another site fails the fetch after the lead was stored (the page may send it again). A
    # browser marks them, in headers no script can set: a script's request is for no document (Sec-Fetch-Dest:
    # empty), a form's is a navigation.
    return (request.headers.get("sec-fetch-dest") == "empty"
            or request.headers.get("sec-fetch-mode") in ("cors", "same-origin"))


def _from_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


#: How deep a JSON body may nest. A lead's fields are flat; json.loads takes a body nested almost to the
#: interpreter's recursion limit, and hashing it for an Idempotency-Key (json.dumps) then failed: a 500.
MAX_NESTING = 64
TOO_DEEP = f"is nested more than {MAX_NESTING} levels deep"


def _deeper_than(value: dict[str, Any], limit: int) -> bool:
    """Whether ``value``'s objects and arrays nest more than ``limit`` levels (it is the first), level by level:
    no recursion, whatever the depth."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [child for v in level for child in (v.values() if isinstance(v, dict) else v)
                 if isinstance(child, dict | list)]
        if not level:
            return False
    return True


def _no_constant(name: str) -> NoReturn:
    # Python's json reads NaN, Infinity and -Infinity, which JSON has not (RFC 8259): taken, a phone or utm_term
    # was stored as the text "nan" or "inf". Called on those tokens alone: a body without them costs nothing more.
    raise ValueError(f"JSON has no {name}: send a finite number, or text in quotes")


def _finite(text: str) -> float:
    # Called on numbers with a fraction or an exponent alone (an integer's digits are not), rare in a lead.
    value = float(text)
    if math.isinf(value):  # 1e400, past what a float holds: read as Infinity, and stored as "inf"
        raise ValueError(f"the number {text[:20]}{'…' if len(text) > 20 else ''} is too large: send it as text")
    return value


_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _gone() -> Problem:
    """A client that closed its connection before its body was whole (a tab closed mid-submit): a 400 no one reads,
    counted as a refusal, where it was a traceback at ERROR and a 500 (capture's fast lane had no handler for it)."""
    return Problem(400, "the client closed the connection before its body was whole",
                   [FieldProblem("body", "did not arrive whole")])


async def _parse_fields(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    media = _media_type(request)
    if media not in allowed:
        raise Problem(415, f"unsupported content type {media or '(none)'!r}; send one of: {', '.join(allowed)}",
                      [FieldProblem("Content-Type", f"must be one of: {', '.join(allowed)}")])
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        # Read as it came, a gzip body was "not UTF-8" or "must not contain the NUL character": the importer was
        # told its data was wrong, not that capture reads no compressed body.
        raise Problem(415, f"unsupported content encoding {coding[:40]!r}; send the body uncompressed",
                      [FieldProblem("Content-Encoding", "must be identity (no compression)")])
    # http.BodyLimit refuses one over the limit with 413, and one still arriving at its deadline with 408.
    try:
        body = await request.body()
    except ClientDisconnect:
        raise _gone() from None
    if media == "application/json":
        try:
            # UTF-8 only (RFC 8259): json.loads would take UTF-16 and UTF-32 too, past the NUL check, which
            # reads the UTF-8 escape. A byte order mark before it, which RFC 8259 lets a parser ignore and
            # Windows tools (PowerShell, Notepad) write, is skipped rather than refused.
            parsed = _JSON.decode(body.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise Problem(422, "body is not UTF-8", [FieldProblem("body", "must be UTF-8")]) from None
        except ValueError as exc:
            raise Problem(422, "body is not valid JSON", [FieldProblem("body", str(exc))]) from None
        except RecursionError:
            raise Problem(422, "body is nested too deeply", [FieldProblem("body", TOO_DEEP)]) from None
        if not isinstance(parsed, dict):
            raise Problem(422, "body must be a JSON object", [FieldProblem("body", "must be a JSON object")])
        if _deeper_than(parsed, MAX_NESTING):
            raise Problem(422, "body is nested too deeply", [FieldProblem("body", TOO_DEEP)])
        return parsed
    if media == "application/x-www-form-urlencoded":
        charset = _charset(request)
        fields: dict[str, Any] = {}
        # Split with each byte kept as itself (latin-1), percent-encoded or raw alike, then each name and value
        # decoded strictly on its own: a page in another charset is refused naming the field, not stored with
        # U+FFFD in place of its letters (where jérôme@ and jèrûme@ become one person).
        for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
            name = _decoded(k, charset, None)
            # The last value wins when a name repeats, as in this endpoint's JSON and as Rails, Django and PHP read
            # forms: a hidden "0" before a checkbox's "1" is the box unticked or ticked. (The admin JSON APIs refuse
            # a repeated key instead: http.StrictRoute.)
            fields[name] = _decoded(v, charset, name)
        return fields
    charset = _charset(request)
    # Starlette reads the text parts in the charset the header names, by Python's meaning of the name, and as
    # latin-1, silently, those not in it. Told to read them as latin-1 (each byte kept as itself), it leaves them
    # to be decoded here, strictly and by the web's meaning, as a URL-encoded body's are.
    as_bytes = request.headers["content-type"] + "; charset=latin-1"  # the last one counts
    if parse_options_header(as_bytes)[1].get(b"charset") != b"latin-1":  # an unclosed quote took it in
        raise Problem(422, "malformed multipart body", [FieldProblem("body", "its Content-Type is malformed")])
    try:
        form = await MultiPartParser(Headers({"content-type": as_bytes}), request.stream(), max_files=10,
                                     max_fields=200).parse()
    except MultiPartException as exc:  # no boundary, too many files or fields
        raise Problem(422, "malformed multipart body", [FieldProblem("body", exc.message)]) from None
    except Exception as exc:  # python-multipart's errors for malformed bodies
        raise Problem(422, "malformed multipart body", [FieldProblem("body", str(exc))]) from None
    fields = {}
    for k, v in form.multi_items():
        if isinstance(v, UploadFile):
            continue  # attachments are not part of a lead
        name = _decoded(k, charset, None)
        fields[name] = _decoded(v, charset, name)  # the last value wins, as in a URL-encoded form
    # http.RefuseNul leaves multipart bodies to us: a file's bytes may hold anything, its text fields not.
    if (where := nul_path(fields)) is not None:
        raise Problem(422, "the lead was not accepted", [FieldProblem(where, NUL_REASON)])
    return fields


class Charset(NamedTuple):
    #: As the WHATWG Encoding Standard names it (and a refusal does).
    name: str
    #: The Python codec that reads it.
    codec: str


#: The charsets a form body is read in: the web's (the WHATWG Encoding Standard's), each with the Python codec that
#: reads it and the labels the standard gives it, the only names it is taken under, with the standard's meaning:
#: iso-8859-1, latin1 and us-ascii name windows-1252, which a browser sends for them (Python's latin-1 read its
#: 0x80-0x9F, € and curly quotes among them, as control characters), shift_jis names cp932, euc-kr cp949, gbk
#: gb18030. Each single-byte codec reads every letter as the standard does but one (windows-1255's 0xCA, U+05BA,
#: which Python's cp1255 leaves undefined: a vocalised Hebrew page's holam haser is refused); a byte it leaves
#: undefined (the standard's C1 control) is refused. The multi-byte ones are the nearest Python has: a sequence they read
#: otherwise they mostly refuse, a handful are look-alikes (EUC-JP's 〜 for ～).
#: Each writes = & + % as ASCII does, so that a body's pairs are told apart before they are decoded, and decodes
#: U+0000 from a 0 byte only, which the shared NUL check reads. Left out: UTF-16 (its pairs cannot be told apart),
#: KOI8-U (Python's reads two of its letters, ў and Ў, as box drawings), the standard's replacement and
#: x-user-defined; and every other Python codec, no charset a page sends (idna raised UnicodeError, a 500;
#: unicode_escape made "%5Cud800" a lone surrogate and "%5Cx00" a NUL).
_WEB_ENCODINGS = {
    Charset("UTF-8", "utf-8"): "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    Charset("IBM866", "cp866"): "866 cp866 csibm866 ibm866",
    Charset("ISO-8859-2", "iso8859_2"): "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
                                         "iso_8859-2:1987 l2 latin2",
    Charset("ISO-8859-3", "iso8859_3"): "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
                                         "iso_8859-3:1988 l3 latin3",
    Charset("ISO-8859-4", "iso8859_4"): "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
                                         "iso_8859-4:1988 l4 latin4",
    Charset("ISO-8859-5", "iso8859_5"): "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
                                         "iso_8859-5 iso_8859-5:1988",
    Charset("ISO-8859-6", "iso8859_6"): "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 "
                                         "iso-8859-6 iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 "
                                         "iso_8859-6 iso_8859-6:1987",
    Charset("ISO-8859-7", "iso8859_7"): "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
                                         "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    Charset("ISO-8859-8", "iso8859_8"): "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
                                         "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual",
    Charset("ISO-8859-8-I", "iso8859_8"): "csiso88598i iso-8859-8-i logical",
    Charset("ISO-8859-10", "iso8859_10"): "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    Charset("ISO-8859-13", "iso8859_13"): "iso-8859-13 iso8859-13 iso885913",
    Charset("ISO-8859-14", "iso8859_14"): "iso-8859-14 iso8859-14 iso885914",
    Charset("ISO-8859-15", "iso8859_15"): "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    Charset("ISO-8859-16", "iso8859_16"): "iso-8859-16",
    Charset("KOI8-R", "koi8_r"): "cskoi8r koi koi8 koi8-r koi8_r",
    Charset("macintosh", "mac_roman"): "csmacintosh mac macintosh x-mac-roman",
    Charset("windows-874", "cp874"): "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    Charset("windows-1250", "cp1250"): "cp1250 windows-1250 x-cp1250",
    Charset("windows-1251", "cp1251"): "cp1251 windows-1251 x-cp1251",
    Charset("windows-1252", "cp1252"): "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
                                       "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii "
                                       "windows-1252 x-cp1252",
    Charset("windows-1253", "cp1253"): "cp1253 windows-1253 x-cp1253",
    Charset("windows-1254", "cp1254"): "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
                                       "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    Charset("windows-1255", "cp1255"): "cp1255 windows-1255 x-cp1255",
    Charset("windows-1256", "cp1256"): "cp1256 windows-1256 x-cp1256",
    Charset("windows-1257", "cp1257"): "cp1257 windows-1257 x-cp1257",
    Charset("windows-1258", "cp1258"): "cp1258 windows-1258 x-cp1258",
    Charset("x-mac-cyrillic", "mac_cyrillic"): "x-mac-cyrillic x-mac-ukrainian",
    Charset("GBK", "gb18030"): "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk",
    Charset("gb18030", "gb18030"): "gb18030",
    Charset("Big5", "big5hkscs"): "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    Charset("EUC-JP", "euc_jp"): "cseucpkdfmtjapanese euc-jp x-euc-jp",
    Charset("ISO-2022-JP", "iso2022_jp"): "csiso2022jp iso-2022-jp",
    Charset("Shift_JIS", "cp932"): "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    Charset("EUC-KR", "cp949"): "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
                                "ksc5601 ksc_5601 windows-949",
}
WEB_CHARSETS = {label: charset for charset, labels in _WEB_ENCODINGS.items() for label in labels.split()}
UTF_8 = Charset("UTF-8", "utf-8")
#: What the standard strips from around a label.
_ASCII_WHITESPACE = " \t\n\f\r"


def _charset(request: Request) -> Charset:
    """The charset a form body's ``charset=`` names (browsers send none: UTF-8), by its WHATWG label; 415 for one
    that is not among ``WEB_CHARSETS``."""
    params = (p.partition("=") for p in request.headers.get("content-type", "").split(";")[1:])
    named = next((v.strip().strip('"') for k, _, v in params if k.strip().lower() == "charset"), None)
    if named is None:
        return UTF_8
    label = named.strip(_ASCII_WHITESPACE).lower()
    if label in WEB_CHARSETS:
        return WEB_CHARSETS[label]
    raise Problem(415, f"unsupported charset {named!r}",
                  [FieldProblem("Content-Type", f"charset {named!r} is not one capture reads forms in; send UTF-8")])


def _decoded(raw: str, charset: Charset, name: str | None) -> str:
    """A form name (``name`` None) or ``name``'s value, its bytes as latin-1 text, decoded in ``charset``;
    422 naming the field when they are not in it."""
    data = raw.encode("latin-1")
    try:
        return data.decode(charset.codec)
    except UnicodeError:  # not only UnicodeDecodeError: a codec may raise its base class
        _not_in(charset, name if name is not None else data.decode(charset.codec, "backslashreplace"))


def _not_in(charset: Charset, field: str) -> NoReturn:
    raise Problem(422, f"the form was not sent as {charset.name}", [FieldProblem(
        field, f"is not {charset.name}: the page must send its form as UTF-8 (accept-charset=\"UTF-8\" on the "
               f"<form>, or <meta charset=\"utf-8\"> on the page)")])


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(request: Request, sender: Sender) -> str | None:
    """The request's ``Idempotency-Key``, scoped by caller and endpoint (one API key's never answers another's
    request; anonymous clients share one scope, so theirs must be unguessable: a key another could guess, another
    could spend first); raises 422 for one that is not 1-255 visible ASCII characters."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise Problem(422, "the Idempotency-Key is invalid",
                      [FieldProblem("Idempotency-Key", "must be 1 to 255 visible ASCII characters (a UUID is best)")])
    # Without the trailing slash a form's action may carry: a retry to either path is the same post.
    return f"{sender.caller} {request.url.path.rstrip('/')} {key}"


def _cannot_store_now() -> Problem:
    """A post that an outage (Postgres away, the writer stopping or past its deadline) kept from being stored: a
    retry a few seconds later may well be."""
    return Problem(503, "leads cannot be stored right now; please retry", headers={"Retry-After": "5"})


async def _accept(request: Request, rt: Runtime[Capture, CaptureStore], fields: dict[str, Any],
                  form_id: str | None, endpoint: str, sender: Sender) -> Admitted:
    key = _idempotency_key(request, sender)
    now = rt.context.clock()
    limits = rt.context.limits
    # Looked up as the lead will be filed (a JSON post names its form in the body): " demo" must not be a form
    # without checks that is stored as "demo", nor 2024 one without its own rate limit that is stored as "2024".
    form = rt.context.forms.get(form_named(fields, form_id) or "")
    try:
        lead = capture_lead(fields, lead_id=uuid.uuid4(), received_at=now, form=form, form_id=form_id)
    except InvalidSubmission as exc:
        raise Problem(422, "the lead was not accepted", exc.errors) from None
    if form_id and form is None:
        log.info("lead posted to a form not in the forms file", form_id=form_id)
    if form_id is None and form is not None and sender.address is not None and form.form_id in limits.per_form:
        # Named in a JSON body, not the URL: counted under the "api" limit before the body was read; the
        # form's own limit applies all the same, or posting to /v1/leads would be the way around it.
        _throttle(limits, limits.per_form[form.form_id], browser_identity(sender.address, form.form_id,
                                                                          rt.context.forms), "address")
    checks = rt.context.checks(lead.attribution.form_id)
    # What names this submission's retries to the CAPTCHA verifier (``capture.captcha``), until it is stored.
    answered = fingerprint(fields, checks.form_id) if checks.captcha is not None and not sender.vouched else None
    reasons = [] if sender.vouched else await _suspicions(rt.context, fields, checks, now, sender, answered)
    submitted = Submitted(lead=lead, person_key=person_key(lead.contact.email, rt.context.identity),
                          request_id=uuid.uuid4(), traceparent=child_traceparent(request.headers.get("traceparent")),
                          idempotency_key=key, fingerprint=fingerprint(fields, form_id) if key else None,
                          consent=stated_consent(fields), keyed=sender.vouched)
    try:
        # A bot is answered as a person is: it learns nothing from the answer.
        admitted = await (_quarantine(request, rt, submitted, fields, reasons) if reasons
                          else rt.context.writer.write(submitted))
    except IdempotencyMismatch as exc:
        raise Problem(422, "the Idempotency-Key was used before", [FieldProblem("Idempotency-Key", str(exc))]) from None
    except Problem:
        raise
    except (WriterStopped, WriteTimedOut):
        raise _cannot_store_now() from None
    except Exception as exc:
        if not is_unavailable(exc):
            if sqlstate(exc) is not None:
                # Postgres refused it for good (a missing table, a constraint): answered "please retry", it was
                # retried for ever and logged nowhere. A 500, logged with its traceback by the server, as on every
                # route (http.install_problem_handlers).
                raise
            # Neither an outage nor Postgres's refusal: the client's own error on a connection lost mid-round
            # (asyncpg's InternalClientError, seen while Postgres restarted), or a bug. A retry may cure the first,
            # so the lead is not refused for it; the traceback is logged so that the second is seen.
            log.exception("a lead could not be stored for an unexpected reason; answered 503 to retry")
        raise _cannot_store_now() from None
    if answered is not None:
        # Stored, as a lead or in the quarantine: the verdict kept for the retries of a failed write must let no
        # replay of it through.
        rt.context.verifier.forget(answered)
    if not reasons:
        # The lead and the touch by their own ids, for operators only: a keyless touch is answered with the touch's
        # id, which logged as lead_id sent whoever read the logs to a lead that does not exist. Before `existing`
        # is dropped below: an old answer that says it names the lead is logged as the lead's.
        structlog.contextvars.bind_contextvars(**admitted.logged())
    if not sender.vouched and "existing" in admitted.answer:
        # An answer kept for an Idempotency-Key by an earlier version, which told anyone: replayed, it must not.
        # Dead once every key claimed before 0d1cb50 has expired (one idempotency window after that release).
        admitted = replace(admitted, answer={k: v for k, v in admitted.answer.items() if k != "existing"})
    if not admitted.repeated:
        (QUARANTINED if reasons else ACCEPTED).labels(endpoint).inc()
        if not reasons:
            _tell_kept(fields, lead.attribution.form_id)
    return admitted


def _tell_kept(fields: Mapping[str, Any], form_id: str | None) -> None:
    """Count and log what capture made of the fields of a submission it kept as a lead or a touch, at once or on
    its release from quarantine: once a submission, and only a kept one. Counted when quarantined too, a released
    one counted twice, and a bot's, never released, said a form needed mending that did not."""
    # Field names only, never their values: a landing page's query may hold the person's address, and a consent
    # field whatever a form builder put in it.
    _tell(CUT, overlong(fields), "attribution cut to its limit", form_id)
    _tell(VISITOR_CUT, naming_visitors(fields), "what named the visitor cut from the attribution's pages", form_id)
    _tell(UNREAD_CONSENT, unread_consent(fields), "consent neither yes nor no; kept as nothing said", form_id)


def _tell(counter: Counter, names: list[str], what: str, form_id: str | None) -> None:
    """Count and log what capture made of ``names``, fields of a lead it kept."""
    if names:
        for name in names:
            counter.labels(name).inc()
        log.info(what, fields=names, form_id=form_id)


async def _suspicions(ctx: Capture, fields: dict[str, Any], form: Form, now: datetime, sender: Sender,
                      answered: str | None) -> list[str]:
    reasons = suspicions(fields, form, now, ctx.token_key)
    if reasons or form.captcha is None:
        return reasons  # a known bot costs no call to the verifier
    answer = captcha_answer(fields, form.captcha)
    # Counted under the form's id only when it is listed: ids a caller makes up would each be a metric series.
    label = form.form_id if form.form_id in ctx.forms else UNLISTED
    # An answer no widget gives (a lone surrogate, an over-long one) is unsolved without a call to the verifier.
    # The submission's fingerprint names its retries: a post retried after a 503 brings the answer its first post
    # spent, which the provider, asked again, refuses as a duplicate (``capture.captcha``).
    verdict = (await ctx.verifier.verify(label, form.captcha, answer, sender.address, answered)
               if answer is not None and unverifiable(form.captcha, answer) is None else None)
    return captcha_suspicions(form.captcha, answer, verdict)


def _replayed(admitted: Admitted) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if admitted.repeated else {}


async def _quarantine(request: Request, rt: Runtime[Capture, CaptureStore], submitted: Submitted,
                      fields: dict[str, Any], reasons: list[str]) -> Admitted:
    """Keep the submission out of the pipeline, answered as a person's; with an Idempotency-Key, the key is
    claimed for that answer (a repeat gets exactly it, bot checks passed or not), or answered as before."""
    lead = submitted.lead
    kept = quarantined_fields(fields)
    # What it said stays in the quarantine table, for the admin's review: leads.quarantined is kept for ever, and
    # what reads it (the spam report) counts submissions, by form and source.
    # A utm_source holding an address is none already (``domain._unnamed``): the event says where a submission
    # came from, never who it named.
    event = LeadQuarantined(lead_id=lead.lead_id, received_at=lead.captured_at, reasons=reasons,
                            form_id=lead.attribution.form_id, utm_source=lead.attribution.utm_source)
    try:
        async with rt.request_unit_of_work() as uow:
            # First, as it opens the transaction the key's claim must be part of (the session begins on its first
            # statement): stored together or not at all. A key answered before rolls it back (no commit).
            await uow.store.quarantine({"lead_id": lead.lead_id, "received_at": lead.captured_at, "reasons": reasons,
                                        "form_id": lead.attribution.form_id,
                                        "utm_source": lead.attribution.utm_source, "fields": kept,
                                        "address_stem": address_stem(lead.contact.email)})
            # As admit answers a sender without a key (a bot's has none), whether or not its person has an open
            # lead: the id it is stored under, which a release gives its lead or touch.
            answer = answer_for(lead.lead_id, submitted, existing=False)
            if submitted.idempotency_key:
                earlier = await claim_key(await raw_connection(uow.store.session), submitted, rt.context.clock(),
                                          answer)
                if isinstance(earlier, Exception):
                    raise earlier
                if earlier is not None:
                    return earlier
            uow.publish([encode(topics.QUARANTINED, event, event_id=derive_id(lead.lead_id, event.type),
                                source=SOURCE, time=lead.captured_at,
                                traceparent=child_traceparent(request.headers.get("traceparent")))])
            await uow.commit()
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise _cannot_store_now() from None
    log.info("submission quarantined", lead_id=str(lead.lead_id), reasons=reasons)
    return Admitted(answer)


class Accepted(BaseModel):
    """A 2xx: the lead is durable (stored; its events follow)."""

    lead_id: uuid.UUID = Field(description="To a caller with a `capture:write` key, the lead this submission opened "
                                           "or touched (`existing`). To anyone else, the id this submission is "
                                           "kept under: the lead's it opened, or, when its person already had an "
                                           "open lead, its touch's (on that lead's timeline), never an earlier "
                                           "lead's.")
    status: Literal["accepted"]
    #: When this submission was received.
    captured_at: datetime
    form_id: str | None
    # Left out of an anonymous caller's answer, never null: documented as a boolean that is not required.
    existing: bool | SkipJsonSchema[None] = Field(
        None, json_schema_extra=lambda schema: schema.pop("default", None),
        description="Told only to a caller with a `capture:write` key (an importer): `true` when the person "
                    "already had an open lead, and this submission is a new touch of it (`lead_id` is that lead's). "
                    "Absent for anyone else: anyone may post any address, and whether that person is in a sales "
                    "pipeline is not theirs to learn.")


def _body(*media_types: str) -> dict[str, Any]:
    """The request body as documented: the same fields in every media type a route takes."""
    schema = {"$ref": "#/components/schemas/Submission"}
    return {"requestBody": {"required": True, "content": {m: {"schema": schema} for m in media_types}}}


_ERRORS = {**problem_responses(401, 403, 413, 415, 422, 503,
                                _401="an API key was sent, but it is unknown or revoked (no key: a browser)",
                                _403="the API key sent lacks capture:write"),
           429: {"model": ProblemBody, "description": "over the rate limit; retry after `Retry-After` seconds"}}


@router.post(
    "/v1/leads",
    status_code=202,
    summary="Submit a lead as JSON",
    description="The fields of `Submission`; unknown fields are ignored. A 202 means the lead is durable.",
    response_model=Accepted,
    responses=_ERRORS,
    openapi_extra=_body("application/json"),
)
async def post_lead(request: Request) -> JSONResponse:
    # The runtime read from the app, not through Depends: on capture's two public routes FastAPI's dependency
    # solving was ~6 % of a request's CPU (measured in-process with callgrind).
    rt: Runtime[Capture, CaptureStore] = runtime_of(request)
    sender = await _admit(request, rt, None)
    fields = await _parse_fields(request, JSON_TYPES)
    admitted = await _accept(request, rt, fields, None, "api", sender)
    return JSONResponse(admitted.answer, status_code=202, headers=_replayed(admitted))


@router.post(
    "/v1/forms/{form_id}",
    summary="Submit a lead from an HTML form",
    description="Accepts what browsers send, with the fields of `Submission`. Answers 303 to the form's "
                "thank-you URL (to htmx, `HX-Request: true`: 200 with that URL in `HX-Redirect`), a confirmation "
                "page when none is configured, or 202 JSON when the client sends "
                "`Accept: application/json`, or, without asking for `text/html`, posts from a page's script "
                "(`fetch()`: `Sec-Fetch-Dest: empty`; not htmx's form posts, `HX-Request: true`) or a JSON body. A "
                "browser's refused form post gets the problem as a readable page.",
    status_code=303,
    response_class=Response,
    responses={
        202: {"model": Accepted, "description": "accepted (`Accept: application/json`, or `fetch()`); the lead is "
                                                "durable"},
        200: {"description": "accepted; a confirmation page (the form has no thank-you URL, or the post is htmx's "
                             "and `HX-Redirect` names the thank-you URL)",
              "headers": {"HX-Redirect": {"description": "the form's thank-you URL, to an htmx post (`HX-Request: "
                                                         "true`): htmx loads it as a page",
                                          "schema": {"type": "string"}}},
              "content": {"text/html": {"schema": {"type": "string"}}}},
        303: {"description": "accepted; on to the form's thank-you URL (`Location`)"},
        **_ERRORS,
    },
    openapi_extra=_body("application/x-www-form-urlencoded", "multipart/form-data", "application/json"),
)
async def post_form(form_id: FormId, request: Request) -> Response:
    rt: Runtime[Capture, CaptureStore] = runtime_of(request)  # not through Depends, as post_lead
    sender = await _admit(request, rt, form_id)
    fields = await _parse_fields(request, (*FORM_TYPES, *JSON_TYPES))
    admitted = await _accept(request, rt, fields, form_id, "form", sender)
    if _wants_json(request):
        return JSONResponse(admitted.answer, status_code=202, headers=_replayed(admitted))
    form = rt.context.forms.get(form_id)
    _framed_by_its_origins(request, form)
    if form and form.thank_you_url:
        if _from_htmx(request):
            # htmx follows a redirect inside its own request, and one to a thank-you page on another site fails
            # there (CORS) after the lead was stored: the visitor saw an error. Told in HX-Redirect on a 2xx,
            # htmx loads the page as a navigation; the thanks page is what it swaps in if it cannot read that.
            return HTMLResponse(_thanks_page(form.name), status_code=200,
                                headers={"HX-Redirect": form.thank_you_url, **_replayed(admitted)})
        return RedirectResponse(form.thank_you_url, status_code=303, headers=_replayed(admitted))
    return HTMLResponse(_thanks_page(form.name if form else None), status_code=200, headers=_replayed(admitted))


#: The public posts, a trailing slash allowed: a form's action written with one (``/v1/forms/demo-request/``) got
#: the router's 307 to the path without, built with the scheme this process sees (http:// behind a TLS proxy,
#: whose 301 to https turns the POST into a GET) and no CORS headers: the lead was lost.
_PUBLIC_POST = re.compile(f"/v1/(?:leads|forms/({FORM_ID}))/?")


class PublicPosts:
    """Pure ASGI (``Service.fast_lane``): capture's two public posts go straight to their endpoint functions.

    They come by the thousand, and FastAPI's layers between the shared middlewares and an endpoint (its
    exception and exit-stack middlewares, the router, the route's request wrapper, dependency solving) were a
    quarter of a request's instructions on capture's HTTP path (callgrind: 1.04 -> 0.79 M a request, the bare
    FastAPI endpoint 0.76), an eighth of the whole process's under wrk. Those endpoints take the request alone and
    read what they need from it, so nothing those layers do for them is lost: the same functions answer, a
    refusal (a ``Problem``, the body limit's 413, the NUL check's 422) is rendered by the app's own exception
    handlers as the router would have it rendered, and the matched route is left in the scope for the request
    metrics. Every other request, a form id the route's pattern refuses included, goes on to the router.
    """

    def __init__(self, app: Any, routes: Sequence[Any] | None = None) -> None:
        """``routes``: where the two routes are declared (capture's ``router``, which consumer_app includes
        as it is)."""
        self.app = app
        found = {route.endpoint: route for route in (router.routes if routes is None else routes)
                 if isinstance(route, APIRoute)}
        self._lead, self._form = found[post_lead], found[post_form]
        # The lane solves no dependency: one declared on these routes (a key check, say) would be enforced by the
        # router and skipped here, so such a declaration stops the service at start rather than serve them open.
        guarded = [route.path for route in (self._lead, self._form)
                   if route.dependencies or route.dependant.dependencies]
        if guarded:
            raise RuntimeError(f"capture's fast lane cannot serve {guarded}: they declare dependencies it would skip")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = _PUBLIC_POST.fullmatch(routed_path(scope))
        if match is None:
            await self.app(scope, receive, send)
            return
        if (form_id := match.group(1)) is None:
            scope["route"], scope["path_params"] = self._lead, {}
            endpoint: Callable[[Request], Any] = post_lead
        else:
            scope["route"], scope["path_params"] = self._form, {"form_id": form_id}
            endpoint = functools.partial(post_form, form_id)
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _exception_handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise  # to ServerErrorMiddleware, as from the router
            response = (await handler(request, exc) if inspect.iscoroutinefunction(handler)
                        else await run_in_threadpool(handler, request, exc))
        await response(scope, receive, send)


def _exception_handler(handlers: dict[Any, Any], exc: Exception) -> Callable[..., Any] | None:
    """The app's handler for ``exc``, found as Starlette's ExceptionMiddleware finds it: by status code for an
    HTTP error, then by the nearest class; a handler for 500 or ``Exception`` is ServerErrorMiddleware's."""
    if isinstance(exc, HTTPException) and exc.status_code != 500 and (by_status := handlers.get(exc.status_code)):
        return by_status
    return next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers and cls is not Exception), None)


class FormToken(BaseModel):
    """Proof of when a form was shown: send ``token`` in the field ``field`` with the submission."""

    field: str
    token: str
    #: The earliest a submission with this token counts as a person's (the form's ``min_fill_seconds``).
    valid_from: datetime
    expires_at: datetime


_NO_STORE = {"Cache-Control": "no-store"}  # a cached token would say the form was shown long ago


def _known_form(rt: Runtime[Capture, CaptureStore], form_id: str) -> Form:
    """The form a token is asked for: a listed one, or any while ``unlisted:`` requires tokens."""
    form = rt.context.checks(form_id)
    if not form.require_token and form_id not in rt.context.forms:
        raise Problem(404, f"no form {form_id!r} in the forms file")
    return form


@router.get(
    "/v1/forms/{form_id}/token", summary="A form token, for pages that post with fetch()", response_model=FormToken,
    description="A signed token recording when the form was shown. A form with `require_token` quarantines "
                "submissions without one, with a forged or expired one, or sent sooner than its "
                "`min_fill_seconds` after it was shown. Fetch it when the form is shown, not when it is sent.",
    responses=problem_responses(404, _404="no such form in the forms file"),
)
async def form_token(form_id: FormId, rt: CaptureRuntime) -> JSONResponse:
    form = _known_form(rt, form_id)
    now = rt.context.clock()
    body = FormToken(field=TOKEN_FIELD, token=issue_form_token(form_id, now, rt.context.token_key),
                     valid_from=now + timedelta(seconds=form.min_fill_seconds),
                     expires_at=now + timedelta(seconds=form.token_max_age_seconds))
    return JSONResponse(body.model_dump(mode="json"), headers=_NO_STORE)


#: Filled in at submit time and when the person first moves into a form or types in it, so that a form rendered after
#: the page loaded (React, Vue, a modal, a lazy embed) gets its token, one a script sends with form.submit() too;
#: and renewed, so that a tab left open longer than the token's max age does not send an expired one: a
#: new copy of this script is loaded (a script, not fetch(): no CORS or connect-src asked of the page) once the
#: newest token is half that age, and hands its token over, used only once it is min_fill_seconds old, the older
#: one, still valid, until then. Each token's age is read from the time it was issued, which it starts with
#: (``issue_form_token``), not from when it arrived: a renewal asked for before a laptop slept runs when it wakes.
_TOKEN_SCRIPT = """(function () {
  var formId = %(form_id)s, field = %(field)s, token = %(token)s, action = "/v1/forms/" + formId;
  var maxAgeMs = %(max_age)s * 1000, minFillMs = %(min_fill)s * 1000;
  var running = window.leadpipeTokenScripts = window.leadpipeTokenScripts || {};
  if (running[formId]) return running[formId](token);
  var src = document.currentScript && document.currentScript.src, tokens = window.leadpipeTokens || {};
  var ahead = Infinity, pending = null, asking = false;
  window.leadpipeTokens = tokens;
  // Read by a page posting with fetch() as it sends, as a submit event reads it: a renewal it holds, old enough,
  // is sent (no timer ran while a laptop slept), and an old token is renewed.
  Object.defineProperty(tokens, formId, {
    configurable: true, enumerable: true,
    get: function () { current(); return token; },
    set: function (t) { token = t; }
  });
  arrived(token);
  running[formId] = function (fresh) {
    arrived(fresh);
    pending = fresh;
    setTimeout(current, minFillMs + 50);
  };
  function issued(t) {
    return parseInt(t, 16);  // capture's milliseconds, in hex before the "."
  }
  function arrived(t) {
    // How far this clock is ahead of capture's: the least seen, as a token may arrive long after it was issued (a
    // renewal asked for before a laptop slept runs when it wakes, taken for a new one while as old as the sleep),
    // never before. So an age is never overstated: a token is sent no sooner than min_fill_seconds after it was issued.
    ahead = Math.min(ahead, Date.now() - issued(t));
  }
  function age(t) {
    return Date.now() - ahead - issued(t);
  }
  function postsThisForm(form, submitter) {
    // The action's path names the form, a trailing slash allowed: the resolved URL may carry a query (?src=ads)
    // or a fragment, and form.action would be an <input name="action"> of the form's own. The button a form is
    // sent with posts it where its formaction says, when it has one.
    var to = submitter && submitter.getAttribute ? submitter.getAttribute("formaction") : null;
    try {
      var path = new URL(to === null ? form.getAttribute("action") || "" : to, document.baseURI).pathname
        .replace(/\\/$/, "");
    } catch (e) {
      return false;
    }
    return path.slice(-action.length) === action;
  }
  function put(form, submitter) {
    if (!postsThisForm(form, submitter)) return;
    var input = form.querySelector('input[name="' + field + '"]');
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = field;
      form.appendChild(input);
    }
    input.value = token;
  }
  function current() {
    if (pending && age(pending) >= minFillMs) {
      token = pending;
      pending = null;
      fill();
    }
    if (src && !asking && age(pending || token) > maxAgeMs / 2) {
      asking = true;
      var script = document.createElement("script");
      script.src = src;
      script.onload = script.onerror = function () { asking = false; script.remove(); };
      (document.head || document.documentElement).appendChild(script);
    }
  }
  document.addEventListener("submit", function (event) {
    current();
    put(event.target, event.submitter);
  }, true);
  // A form a page's script sends with form.submit() fires no submit event: one rendered after load gets its token
  // when the person moves into it or types in it (the target's form owner, one its form attribute names included).
  function interacted(event) {
    var form = event.target && event.target.form;
    current();
    if (form && form.nodeName === "FORM") put(form);
  }
  document.addEventListener("focusin", interacted, true);
  document.addEventListener("input", interacted, true);
  document.addEventListener("visibilitychange", current);
  window.addEventListener("pageshow", current);
  setInterval(current, Math.min(60000, maxAgeMs / 4));
  function fill() {
    document.querySelectorAll("form").forEach(function (form) { put(form); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fill); else fill();
})();
"""


@router.get(
    "/v1/forms/{form_id}/token.js", summary="A script that puts a form token into the page's form",
    description="Include `<script src=\".../v1/forms/{form_id}/token.js\"></script>` on the page: it adds the "
                "token (a hidden field) to every form posting to `/v1/forms/{form_id}`, those on the page when it "
                "loads and any rendered later (when sent, or when the person first moves into it or types in "
                "it), keeps it in `window.leadpipeTokens[form_id]` for pages that "
                "post with fetch(), and renews it while the page stays open.",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {"schema": {"type": "string"}}}},
               **problem_responses(404, _404="no such form in the forms file")},
)
async def form_token_script(form_id: FormId, rt: CaptureRuntime) -> Response:
    form = _known_form(rt, form_id)
    token = issue_form_token(form_id, rt.context.clock(), rt.context.token_key)
    script = _TOKEN_SCRIPT % {"form_id": json.dumps(form_id), "field": json.dumps(TOKEN_FIELD),
                              "token": json.dumps(token), "max_age": json.dumps(form.token_max_age_seconds),
                              "min_fill": json.dumps(form.min_fill_seconds)}
    return Response(script, media_type="text/javascript", headers=_NO_STORE)


class Quarantined(BaseModel):
    lead_id: uuid.UUID
    received_at: datetime
    reasons: list[str]
    form_id: str | None
    utm_source: str | None
    fields: dict[str, str]
    released_at: datetime | None


class Released(BaseModel):
    lead_id: uuid.UUID
    released_at: datetime
    repeated: bool


quarantine_router = APIRouter(prefix="/v1/quarantine", tags=["quarantine"], route_class=StrictRoute,
                              dependencies=[needs("admin")], responses=problem_responses(401, 403, 503))


@quarantine_router.get(
    "", summary="Submissions taken for bots', newest first, a page at a time", response_model=list[Quarantined],
    description="At most `limit` submissions, newest first. When more follow, the answer's `Link` header names "
                "the next page (`rel=\"next\"`: the same query, with `before` where this page ended); the last page "
                "has none. A bot's flood buries a person's submission no page of 1,000 reaches: follow the pages, "
                "or ask for one form's (`form_id`).",
    responses={200: {"headers": {"Link": {"description": "`</v1/quarantine?...>; rel=\"next\"` while more follow",
                                          "schema": {"type": "string"}}}},
               **problem_responses(422, _422="`limit`, `before` or `form_id` is not one this list takes")},
)
async def list_quarantine(
        request: Request, response: Response, rt: CaptureRuntime,
        limit: Annotated[int, Query(ge=1, le=1000, description="submissions a page holds at most")] = 100,
        before: Annotated[str | None, Query(description="where the page before ended, as the `Link` header of "
                                                        "its answer gives it (opaque)")] = None,
        form_id: Annotated[str | None, Query(pattern=f"^{FORM_ID}$", description="only submissions to this "
                                                                                  "form")] = None) -> list[Any]:
    try:
        after = None if before is None else pages.parse_cursor(before, "before")
    except ValueError as exc:
        raise Problem(422, "the request is invalid", [FieldProblem("before", str(exc))]) from None
    async with rt.request_unit_of_work() as uow:
        # One more than the page: whether a next page exists, without a page that turns out empty.
        rows = await uow.store.quarantined(limit + 1, before=after, form_id=form_id)
    page = rows[:limit]
    if len(rows) > limit:
        last = page[-1]
        query = {"limit": limit, "before": pages.cursor(last["received_at"], last["lead_id"]),
                 **({"form_id": form_id} if form_id is not None else {})}
        response.headers["Link"] = pages.next_page(request, "list_quarantine", query)
    return page


@quarantine_router.post(
    "/{lead_id}/release", summary="Send a false positive into the pipeline, once", response_model=Released,
    description="The submission becomes a lead under the id it is kept under (the one its sender was answered "
                "with, as the quarantine lists it), or, when its person has an open lead by now, a touch of that "
                "lead under that id, and goes on leads.captured exactly once: releasing it again changes nothing "
                "and says `repeated`.",
    responses=problem_responses(404, 409, 503, _404="nothing quarantined under this id",
                                _409="what was kept is not a valid lead: `errors` names each field"),
)
async def release(lead_id: uuid.UUID, request: Request, rt: CaptureRuntime) -> dict[str, Any]:
    now = rt.context.clock()
    try:
        async with rt.request_unit_of_work() as uow:
            row = await uow.store.lock_quarantined(lead_id)
            if row is None:
                raise Problem(404, f"nothing quarantined under {lead_id}")
            if row.released_at is not None:
                return {"lead_id": lead_id, "released_at": row.released_at, "repeated": True}
            try:
                lead = capture_lead(row.fields, lead_id=lead_id, received_at=row.received_at,
                                    form=rt.context.forms.get(row.form_id or ""), form_id=row.form_id)
            except InvalidSubmission as exc:
                # Quarantined before what a release needs was kept whatever came with it (a null was kept as
                # "None", an e-mail past the 100th field was dropped): it stays in quarantine, the admin told why.
                raise Problem(409, "the quarantined submission is not a valid lead", exc.errors) from None
            # Like any submission: a lead of its own, or a touch of its person's open lead.
            await admit(await raw_connection(uow.store.session), [Submitted(
                lead=lead, person_key=person_key(lead.contact.email, rt.context.identity),
                request_id=derive_id(lead_id, "release"),
                traceparent=child_traceparent(request.headers.get("traceparent")),
                consent=stated_consent(row.fields))], now)
            await uow.store.mark_released(lead_id, now)
            await uow.commit()
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise Problem(503, "the release cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    rt.wake_relay()
    log.info("quarantined submission released", lead_id=str(lead_id))
    _tell_kept(row.fields, lead.attribution.form_id)
    return {"lead_id": lead_id, "released_at": now, "repeated": False}


class EraseRequest(BaseModel):
    """Whom to erase: a person by an address of theirs, a lead by its id, or both."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320, description="an address of the person: every lead of theirs "
                                                                "(any spelling of it naming the same person) is erased")
    lead_id: uuid.UUID | None = Field(None, description="one lead, whoever's")

    @model_validator(mode="after")
    def _names_someone(self) -> EraseRequest:
        if self.email is None and self.lead_id is None:
            raise ValueError("give an email, a lead_id, or both")
        return self


class ErasedLeads(BaseModel):
    lead_ids: list[uuid.UUID] = Field(description="every lead the request names, erased now or (by id) before")
    touched_leads: list[uuid.UUID] = Field(
        description="another person's leads the person's later submissions touched (sales had merged a lead of "
                    "theirs into it): their touches are cleared, the leads are not erased")
    merged_leads: list[uuid.UUID] = Field(
        description="leads sales merged into an erased lead, not erased: another person's, or the same human's "
                    "under another address; erase them by `lead_id` if they are the person's")
    others_touches: list[uuid.UUID] = Field(
        description="touches on a lead erased now that another person sent (sales had merged a lead of theirs into "
                    "it, and they submitted again): erased with the lead, which is the person's; that person's next "
                    "submission opens a new lead")


people_router = APIRouter(prefix="/v1/people", tags=["people"], route_class=StrictRoute,
                          dependencies=[needs("admin")], responses=problem_responses(401, 403, 503))


@people_router.post(
    "/erase", status_code=202, summary="Erase a person's leads (GDPR art. 17)", response_model=ErasedLeads,
    description="capture clears what it holds of the person (contact, landing pages' queries, quarantined "
                "submissions, the person's record) and sends `lead.erased` down the pipeline for each lead, which every "
                "stage clears its copies on and delivery gives up what it has not sent. Ids, times and attribution "
                "stay, so reports count the leads anonymously. Nothing leads from the address to the erased leads "
                "afterwards: the same address again answers 404 (or only the person's leads since: a new submission "
                "is a new lead, of a new person); a lead id again answers it and sends nothing more. Another "
                "person's lead is never erased for them: one the person's touches were on is listed in "
                "`touched_leads` (the touches cleared), leads merged into an erased lead in `merged_leads`; an erased "
                "lead goes whole, another person's touches on it listed in `others_touches`. See the "
                "README's \"Erasing a person\" for what is not erased (Kafka's copies until retention, backups, "
                "sales tools, a touch's contact in the stages' copies of another person's lead).",
    responses=problem_responses(404, 422, 503, _404="nothing capture holds is under this address (no record of a "
                                "person, so none of their leads or touches, no quarantined submission), or no lead "
                                "of this id: `errors` names which, and what was searched",
                                _422="neither an email nor a lead_id, or an email that is no address",
                                _503="the person kept submitting while the erasure locked them, or the database is "
                                     "unavailable: nothing was erased, ask again"),
)
async def erase_person(body: EraseRequest, rt: CaptureRuntime,
                       who: Annotated[Principal, needs("admin")]) -> dict[str, Any]:
    try:
        async with rt.request_unit_of_work() as uow:
            done = await erasure.erase(uow, rt.context.identity, email=body.email, lead_id=body.lead_id,
                                       at=rt.context.clock(), by=who.name)
    except erasure.NothingToErase as exc:
        raise Problem(404, "nothing to erase", [FieldProblem(exc.field, exc.reason)]) from None
    except erasure.StillSubmitting as exc:
        raise Problem(503, str(exc), headers={"Retry-After": "1"}) from None
    except ValueError as exc:
        raise Problem(422, "the request is invalid", [FieldProblem("email", str(exc))]) from None
    if done.fresh:
        rt.wake_relay()
    return {"lead_ids": done.lead_ids, "touched_leads": done.touched_leads, "merged_leads": done.merged_leads,
            "others_touches": done.others_touches}


async def problem_response(request: Request, exc: Problem) -> Response:
    """The shared error model, as a page for a person whose browser posted a form."""
    REJECTED.labels(str(exc.status)).inc()
    if routed_path(request.scope).startswith("/v1/forms/") and not _wants_json(request):
        # The route's form id: none when no route matched the path (a 404 naming no form's page).
        _framed_by_its_origins(request, runtime_of(request).context.forms.get(request.path_params.get("form_id", "")))
        return HTMLResponse(_error_page(exc), status_code=exc.status, headers=exc.headers)
    return exc.response()


def _framed_by_its_origins(request: Request, form: Form | None) -> None:
    """Let the pages of a listed form's ``allowed_origins`` show capture's page for it (its thanks, a refusal) in a
    frame: a landing page builder or a CMS widget embeds the form in an iframe, where the answer to its post shows.
    Those origins may already post the form from a script; the page has nothing to click that changes anything, so
    framing it gives a clickjacker nothing to make a visitor do. Any other page (a form not listed, a path naming
    no form) stays unframeable."""
    if form is not None:
        frame_by(request.scope, form.allowed_origins)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2933}}
h1{{font-size:1.5rem}}li{{margin:.25rem 0}}a{{color:#2563eb}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _thanks_page(form_name: str | None) -> str:
    what = f" for “{html.escape(form_name)}”" if form_name else ""
    return _PAGE.format(title="Thank you", body=f"<p>We received your submission{what} and will be in touch.</p>")


#: The refusals of what the form sent, which the person corrects; others are no fault of theirs.
_INPUT_REFUSED = frozenset({400, 413, 415, 422})
#: Fields whose refusal is the site's to mend (the form's address, how its page sends it), not the person's.
_SITE_SIDE = frozenset({"form_id", "Content-Type", "Content-Encoding"})
#: Why a submission refused for now was, to the person: its body too slow to arrive (a weak mobile signal), over
#: the rate limit of their address (an office or a mobile network may share it), or capture unable to store it.
_NOT_NOW = {408: "Your submission took too long to reach us.",
            429: "Many submissions have come from your network in a short time.",
            503: "We could not store your submission just now."}


def _error_page(exc: Problem) -> str:
    if exc.status in _NOT_NOW:
        # Told to correct a form they had right, people changed it or gave up; what they are to do is wait.
        return _PAGE.format(title="Please try again shortly", body=f"<p>{_NOT_NOW[exc.status]}</p><p>Go back to "
                                                                   f"the form and send it again {_wait(exc)}.</p>")
    items = "".join(f"<li><strong>{html.escape(e.field)}</strong>: {html.escape(e.reason)}</li>" for e in exc.errors)
    listing = f"<ul>{items}</ul>" if items else ""
    if exc.status == 413:
        # A form with a file field: the person cannot tell that the file is what is too large.
        return _PAGE.format(title="Please check the form", body=(
            f"<p>{html.escape(exc.message)}.</p><p>An attached file is not sent with this form: remove it (or "
            "shorten a long text) and send the form again.</p>"))
    if exc.status == 415 or any(e.field in _SITE_SIDE for e in exc.errors):
        # Told to correct the form, a person changes what they typed, which is not what is wrong.
        return _PAGE.format(title="The form could not be sent", body=(
            f"<p>{html.escape(exc.message)}.</p>{listing}<p>This is a problem with the site's form, not with what "
            "you entered: please let the site know.</p>"))
    if exc.status not in _INPUT_REFUSED:
        return _PAGE.format(title="The form could not be sent", body=f"<p>{html.escape(exc.message)}.</p>{listing}")
    return _PAGE.format(
        title="Please check the form",
        body=f"<p>{html.escape(exc.message)}.</p>{listing}<p>Go back to the form, correct it and send it again.</p>",
    )


def _wait(exc: Problem) -> str:
    """When to send it again, as the answer's ``Retry-After`` says (in seconds, as capture sends it)."""
    after = exc.headers.get("Retry-After", "")
    if not after.isdecimal():
        return "in a few seconds"
    seconds = max(int(after), 1)
    if seconds <= 90:
        return "in 1 second" if seconds == 1 else f"in {seconds} seconds"
    # A form's rate of 5/hour told a person to come back "in 3600 seconds".
    minutes = -(-seconds // 60)
    if minutes <= 90:
        return f"in {minutes} minutes"
    hours = -(-minutes // 60)
    return "in 1 hour" if hours == 1 else f"in {hours} hours"
