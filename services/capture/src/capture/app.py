"""capture's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import FastAPI
from limits import RateLimitItem

from leadpipe_common.http import Problem
from leadpipe_common.service import Clients, consumer_app, utc_now

from capture.api import Capture, Limits, problem_response
from capture.cors import CrossOrigin
from capture.domain import Form, Submission, parse_forms
from capture.service import SERVICE
from capture.settings import CaptureSettings
from capture.throttle import parse_networks, parse_rate
from capture.writer import LeadWriter


def load_forms(path: Any) -> dict[str, Form]:
    """Raises ValueError naming the file and the entry that is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            forms = parse_forms(yaml.safe_load(f) or {})
        form_rates(forms)
        return forms
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def form_rates(forms: dict[str, Form]) -> dict[str, RateLimitItem]:
    return {form_id: parse_rate(form.rate_limit, f"forms.{form_id}.rate_limit")
            for form_id, form in forms.items() if form.rate_limit}


def create_app(settings: CaptureSettings | None = None) -> FastAPI:
    settings = settings or CaptureSettings()
    forms = load_forms(settings.forms_file)

    limits = Limits(per_address=parse_rate(settings.rate_limit, "CAPTURE_RATE_LIMIT"),
                    per_key=parse_rate(settings.key_rate_limit, "CAPTURE_KEY_RATE_LIMIT"),
                    per_form=form_rates(forms), trusted_proxies=parse_networks(settings.trusted_proxies,
                                                                               "CAPTURE_TRUSTED_PROXIES"))

    def context(clients: Clients) -> Capture:
        writer = LeadWriter(clients.engine, settings.write_batch_max, on_commit=clients.wake_relay)
        return Capture(forms=forms, writer=writer, clock=utc_now, limits=limits)

    app = consumer_app(SERVICE, settings, context)
    app.add_exception_handler(Problem, problem_response)  # type: ignore[arg-type]
    app.add_middleware(CrossOrigin, everywhere=settings.origins(), forms=forms)
    document_submission(app)
    return app


def document_submission(app: FastAPI) -> None:
    """capture reads its bodies itself (JSON and both form encodings alike), so FastAPI cannot see their model:
    the routes refer to ``Submission`` and this puts it in the document's schemas."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Submission"] = (
                Submission.model_json_schema(ref_template="#/components/schemas/{model}"))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
