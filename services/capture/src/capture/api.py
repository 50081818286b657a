"""capture's HTTP API: the JSON endpoint API clients use and the endpoint HTML forms post to.

A 2xx means the lead is durable (its row is committed; the relay publishes
it). Every refusal is a ``Problem``: JSON with the field and the reason, or,
for a browser's form post, the same problem as a readable page.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from leadpipe_common.envelope import child_traceparent
from leadpipe_common.http import FieldProblem, Problem, problem_responses
from leadpipe_common.service import Runtime, runtime

from capture.domain import Form, InvalidSubmission, capture_lead
from capture.store import CaptureStore
from capture.writer import LeadWriter, NewLead

log = structlog.get_logger(__name__)

ACCEPTED = Counter("capture_leads_accepted_total", "Leads accepted (durable)", ["endpoint"])
REJECTED = Counter("capture_requests_rejected_total", "Requests refused", ["status"])

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Capture:
    """What capture's routes need besides its settings."""

    forms: dict[str, Form]
    writer: LeadWriter
    clock: Callable[[], datetime]


CaptureRuntime = Annotated[Runtime[Capture, CaptureStore], Depends(runtime)]
router = APIRouter(tags=["capture"])


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept.split("application/json")[0]


async def _parse_fields(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    media = _media_type(request)
    if media not in allowed:
        raise Problem(415, f"unsupported content type {media or '(none)'!r}; send one of: {', '.join(allowed)}")
    body = await request.body()  # http.BodyLimit refuses one over the limit with 413
    if media == "application/json":
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(422, "body is not valid JSON", [FieldProblem("body", str(exc))]) from None
        if not isinstance(parsed, dict):
            raise Problem(422, "body must be a JSON object", [FieldProblem("body", "must be a JSON object")])
        return parsed
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise Problem(422, "form body is not UTF-8", [FieldProblem("body", "must be UTF-8")]) from None
        fields: dict[str, Any] = {}
        for k, v in pairs:
            fields.setdefault(k, v)  # the first value wins when a name repeats
        return fields
    try:
        form = await request.form(max_files=10, max_fields=200)
    except Exception as exc:  # python-multipart's errors for malformed bodies
        raise Problem(422, "malformed multipart body", [FieldProblem("body", str(exc))]) from None
    fields = {}
    for k, v in form.multi_items():
        if isinstance(v, UploadFile):
            continue  # attachments are not part of a lead
        fields.setdefault(k, v)
    return fields


async def _accept(request: Request, rt: Runtime[Capture, CaptureStore], fields: dict[str, Any],
                  form_id: str | None, endpoint: str) -> dict[str, Any]:
    now = rt.context.clock()
    form = rt.context.forms.get(form_id) if form_id else None
    try:
        lead = capture_lead(fields, lead_id=uuid.uuid4(), received_at=now, form=form, form_id=form_id)
    except InvalidSubmission as exc:
        raise Problem(422, "the lead was not accepted", exc.errors) from None
    if form_id and form is None:
        log.info("lead posted to a form not in the forms file", form_id=form_id)
    new = NewLead(
        lead_id=lead.lead_id, request_id=uuid.uuid4(), email=lead.contact.email, form_id=lead.attribution.form_id,
        captured_at=now, traceparent=child_traceparent(request.headers.get("traceparent")),
        event=lead.model_dump_json().encode(),
    )
    try:
        await rt.context.writer.write(new)
    except Exception:
        raise Problem(503, "leads cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
    ACCEPTED.labels(endpoint).inc()
    structlog.contextvars.bind_contextvars(lead_id=str(lead.lead_id))
    return {"lead_id": str(lead.lead_id), "status": "accepted", "captured_at": now.isoformat(),
            "form_id": lead.attribution.form_id}


class Accepted(BaseModel):
    """A 2xx: the lead is durable (stored; its events follow)."""

    lead_id: uuid.UUID
    status: Literal["accepted"]
    captured_at: datetime
    form_id: str | None


def _body(*media_types: str) -> dict[str, Any]:
    """The request body as documented: the same fields in every media type a route takes."""
    schema = {"$ref": "#/components/schemas/Submission"}
    return {"requestBody": {"required": True, "content": {m: {"schema": schema} for m in media_types}}}


_ERRORS = problem_responses(413, 415, 422, 503)


@router.post(
    "/v1/leads",
    status_code=202,
    summary="Submit a lead as JSON",
    description="The fields of `Submission`; unknown fields are ignored. A 202 means the lead is durable.",
    response_model=Accepted,
    responses=_ERRORS,
    openapi_extra=_body("application/json"),
)
async def post_lead(request: Request, rt: CaptureRuntime) -> JSONResponse:
    fields = await _parse_fields(request, JSON_TYPES)
    return JSONResponse(await _accept(request, rt, fields, None, "api"), status_code=202)


@router.post(
    "/v1/forms/{form_id}",
    summary="Submit a lead from an HTML form",
    description="Accepts what browsers send, with the fields of `Submission`. Answers 303 to the form's "
                "thank-you URL, a confirmation page when none is configured, or 202 JSON when the client sends "
                "`Accept: application/json`. A browser's refused post gets the problem as a readable page.",
    status_code=303,
    response_class=Response,
    responses={
        202: {"model": Accepted, "description": "accepted (`Accept: application/json`); the lead is durable"},
        200: {"description": "accepted; a confirmation page (the form has no thank-you URL)",
              "content": {"text/html": {"schema": {"type": "string"}}}},
        303: {"description": "accepted; on to the form's thank-you URL (`Location`)"},
        **_ERRORS,
    },
    openapi_extra=_body("application/x-www-form-urlencoded", "multipart/form-data", "application/json"),
)
async def post_form(form_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")], request: Request,
                    rt: CaptureRuntime) -> Response:
    fields = await _parse_fields(request, (*FORM_TYPES, *JSON_TYPES))
    answer = await _accept(request, rt, fields, form_id, "form")
    if _wants_json(request):
        return JSONResponse(answer, status_code=202)
    form = rt.context.forms.get(form_id)
    if form and form.thank_you_url:
        return RedirectResponse(form.thank_you_url, status_code=303)
    return HTMLResponse(_thanks_page(form.name if form else None), status_code=200)


async def problem_response(request: Request, exc: Problem) -> Response:
    """The shared error model, as a page for a person whose browser posted a form."""
    REJECTED.labels(str(exc.status)).inc()
    if request.url.path.startswith("/v1/forms/") and not _wants_json(request):
        return HTMLResponse(_error_page(exc), status_code=exc.status, headers=exc.headers)
    return exc.response()


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2933}}
h1{{font-size:1.5rem}}li{{margin:.25rem 0}}a{{color:#2563eb}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _thanks_page(form_name: str | None) -> str:
    what = f" for “{html.escape(form_name)}”" if form_name else ""
    return _PAGE.format(title="Thank you", body=f"<p>We received your submission{what} and will be in touch.</p>")


def _error_page(exc: Problem) -> str:
    items = "".join(f"<li><strong>{html.escape(e.field)}</strong>: {html.escape(e.reason)}</li>" for e in exc.errors)
    listing = f"<ul>{items}</ul>" if items else ""
    return _PAGE.format(
        title="Please check the form",
        body=f"<p>{html.escape(exc.message)}.</p>{listing}<p>Go back to the form, correct it and send it again.</p>",
    )
