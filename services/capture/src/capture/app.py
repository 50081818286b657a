"""capture's HTTP API and its composition root.

The composition root (``create_app`` and its lifespan) is the only place that
reads settings and builds clients; nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import functools
import html
import itertools
import json
import uuid
from collections.abc import Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import Counter
from starlette.datastructures import UploadFile

from leadpipe_common import asyncapi
from leadpipe_common import logging as lp_logging
from leadpipe_common import topology
from leadpipe_common.consumer import BatchApplier, ConsumerRunner
from leadpipe_common.db import make_engine, make_sessionmaker, ping
from leadpipe_common.envelope import child_traceparent
from leadpipe_common.ops import Check, RequestMetrics, ops_router
from leadpipe_common.producer import Producer
from leadpipe_common.retry import backoff
from leadpipe_common.uow import SqlUnitOfWork

from capture.domain import FieldError, Form, InvalidSubmission, capture_lead, parse_forms
from capture.handlers import CONSUMES, captured_lead_messages, is_terminal_step
from capture.settings import CaptureSettings
from capture.store import CaptureStore, LeadWriter, NewLead, OutboxRelay, Redriver

log = structlog.get_logger(__name__)

ACCEPTED = Counter("capture_leads_accepted_total", "Leads accepted (durable)", ["endpoint"])
REJECTED = Counter("capture_requests_rejected_total", "Requests refused", ["status"])

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, errors or [], dict(headers or {})


def load_forms(path: Any) -> dict[str, Form]:
    """Raises ValueError naming the file and the entry that is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_forms(yaml.safe_load(f) or {})
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept.split("application/json")[0]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"request body is larger than {limit // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPProblem(413, f"request body is larger than {limit // 1024} KiB")
    request._body = bytes(body)  # lets request.form() parse what we already read
    return bytes(body)


async def _parse_fields(request: Request, limit: int, allowed: tuple[str, ...]) -> dict[str, Any]:
    media = _media_type(request)
    if media not in allowed:
        raise HTTPProblem(415, f"unsupported content type {media or '(none)'!r}; send one of: {', '.join(allowed)}")
    body = await _read_body(request, limit)
    if media == "application/json":
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPProblem(422, "body is not valid JSON", [FieldError("body", str(exc))]) from None
        if not isinstance(parsed, dict):
            raise HTTPProblem(422, "body must be a JSON object", [FieldError("body", "must be a JSON object")])
        return parsed
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise HTTPProblem(422, "form body is not UTF-8", [FieldError("body", "must be UTF-8")]) from None
        fields: dict[str, Any] = {}
        for k, v in pairs:
            fields.setdefault(k, v)  # the first value wins when a name repeats
        return fields
    try:
        form = await request.form(max_files=10, max_fields=200)
    except Exception as exc:  # python-multipart's errors for malformed bodies
        raise HTTPProblem(422, "malformed multipart body", [FieldError("body", str(exc))]) from None
    fields = {}
    for k, v in form.multi_items():
        if isinstance(v, UploadFile):
            continue  # attachments are not part of a lead
        fields.setdefault(k, v)
    return fields


def create_app(settings: CaptureSettings | None = None) -> FastAPI:
    settings = settings or CaptureSettings()
    forms = load_forms(settings.forms_file)
    checks: dict[str, Check] = {}
    components: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        lp_logging.configure("capture", settings.log_level, settings.log_json)
        engine = make_engine(settings)
        committed = asyncio.Event()
        producer = Producer(settings, client_id="capture")
        writer = LeadWriter(engine, settings.write_batch_max, committed)
        relay = OutboxRelay(engine, producer, captured_lead_messages, settings.relay_batch_max,
                            settings.relay_idle_ms / 1000, committed)
        redriver = Redriver(engine, after_s=settings.redrive_after_s, every_s=settings.redrive_check_s,
                            max_redrives=settings.redrive_max, wake=committed, backoff=settings.redrive_backoff)
        lifecycle_producer = Producer(settings, client_id="capture-lifecycle")
        # Outcomes only feed the re-drive deadline (minutes away): fetch lazily,
        # in big batches, and leave the CPU to the requests.
        follower_settings = settings.model_copy(update={"fetch_max_wait_ms": 1000, "batch_timeout_ms": 1000})
        applier = BatchApplier(
            service="capture", handlers={event.type: handler for event, handler in CONSUMES.items()},
            unit_of_work=functools.partial(SqlUnitOfWork, make_sessionmaker(engine), CaptureStore),
            select=is_terminal_step,
        )
        lifecycle = ConsumerRunner(settings=follower_settings, service="capture",
                                   input_topics=topology.inputs_of("capture"), applier=applier,
                                   producer=lifecycle_producer)
        writer.start()
        relay.start()
        redriver.start()
        # Capture accepts leads with the broker away, so it must also start without it.
        lifecycle_start = asyncio.create_task(_start_when_broker_is_up(lifecycle_producer, lifecycle))
        components["writer"] = writer
        # Only the database decides whether capture can accept: with the
        # broker away, leads wait in the outbox and capture stays ready.
        checks["database"] = lambda: ping(engine)
        log.info("capture ready", port=settings.port, forms=len(forms))
        try:
            yield
        finally:
            lifecycle_start.cancel()
            await lifecycle.stop()
            await redriver.stop()
            await writer.stop()
            await relay.stop()
            await producer.stop()
            await lifecycle_producer.stop()
            await engine.dispose()

    app = FastAPI(
        title="leadpipe capture",
        version="1",
        summary="Accepts leads from web forms and API clients; a 2xx means the lead is durable.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestMetrics)
    app.include_router(ops_router(lambda: checks))
    app.include_router(asyncapi.router())

    async def accept(request: Request, fields: dict[str, Any], form_id: str | None, endpoint: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        form = forms.get(form_id) if form_id else None
        lead = capture_lead(fields, lead_id=uuid.uuid4(), received_at=now, form=form, form_id=form_id)
        if form_id and form is None:
            log.info("lead posted to a form not in the forms file", form_id=form_id)
        new = NewLead(
            lead_id=lead.lead_id, request_id=uuid.uuid4(), email=lead.contact.email, form_id=lead.attribution.form_id,
            captured_at=now, traceparent=child_traceparent(request.headers.get("traceparent")),
            event=lead.model_dump_json().encode(),
        )
        try:
            await components["writer"].write(new)
        except Exception:
            raise HTTPProblem(503, "leads cannot be stored right now; please retry", headers={"Retry-After": "5"}) from None
        ACCEPTED.labels(endpoint).inc()
        structlog.contextvars.bind_contextvars(lead_id=str(lead.lead_id))
        return {"lead_id": str(lead.lead_id), "status": "accepted", "captured_at": now.isoformat(),
                "form_id": lead.attribution.form_id}

    @app.exception_handler(InvalidSubmission)
    async def invalid(request: Request, exc: InvalidSubmission) -> Response:
        return await problem(request, HTTPProblem(422, "the lead was not accepted", exc.errors))

    @app.exception_handler(HTTPProblem)
    async def problem(request: Request, exc: HTTPProblem) -> Response:
        REJECTED.labels(str(exc.status)).inc()
        browser_form = request.url.path.startswith("/v1/forms/") and not _wants_json(request)
        if browser_form:
            return HTMLResponse(_error_page(exc), status_code=exc.status, headers=exc.headers)
        body: dict[str, Any] = {"error": exc.message}
        if exc.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in exc.errors]
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.post(
        "/v1/leads",
        status_code=202,
        summary="Submit a lead as JSON",
        responses={413: {"description": "body over the limit"}, 415: {"description": "not JSON"},
                   422: {"description": "a field is missing or invalid"}, 503: {"description": "storage unavailable"}},
    )
    async def post_lead(request: Request) -> JSONResponse:
        fields = await _parse_fields(request, settings.max_body_bytes, JSON_TYPES)
        return JSONResponse(await accept(request, fields, None, "api"), status_code=202)

    @app.post(
        "/v1/forms/{form_id}",
        summary="Submit a lead from an HTML form",
        description="Accepts what browsers send. Answers 303 to the form's thank-you URL, a confirmation "
                    "page when none is configured, or 202 JSON when the client sends Accept: application/json.",
        status_code=303,
    )
    async def post_form(form_id: str, request: Request) -> Response:
        fields = await _parse_fields(request, settings.max_body_bytes, (*FORM_TYPES, *JSON_TYPES))
        answer = await accept(request, fields, form_id, "form")
        if _wants_json(request):
            return JSONResponse(answer, status_code=202)
        form = forms.get(form_id)
        if form and form.thank_you_url:
            return RedirectResponse(form.thank_you_url, status_code=303)
        return HTMLResponse(_thanks_page(form.name if form else None), status_code=200)

    return app


async def _start_when_broker_is_up(producer: Producer, runner: ConsumerRunner) -> None:
    for attempt in itertools.count():
        try:
            await producer.start()
            await runner.start()
            return
        except Exception as exc:
            delay = backoff(attempt, base=0.5, cap=10)
            log.warning("lifecycle consumer cannot start yet; retrying", error=repr(exc), retry_in_s=round(delay, 2))
            await producer.stop()
            await asyncio.sleep(delay)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2933}}
h1{{font-size:1.5rem}}li{{margin:.25rem 0}}a{{color:#2563eb}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _thanks_page(form_name: str | None) -> str:
    what = f" for “{html.escape(form_name)}”" if form_name else ""
    return _PAGE.format(title="Thank you", body=f"<p>We received your submission{what} and will be in touch.</p>")


def _error_page(exc: HTTPProblem) -> str:
    items = "".join(f"<li><strong>{html.escape(e.field)}</strong>: {html.escape(e.reason)}</li>" for e in exc.errors)
    listing = f"<ul>{items}</ul>" if items else ""
    return _PAGE.format(
        title="Please check the form",
        body=f"<p>{html.escape(exc.message)}.</p>{listing}<p><a href=\"javascript:history.back()\">Go back</a></p>",
    )
