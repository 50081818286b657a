"""capture's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

import yaml
from fastapi import FastAPI
from limits import RateLimitItem

from leadpipe_common.http import Problem
from leadpipe_common.pacing import Linger
from leadpipe_common.service import Clients, consumer_app, utc_now

from capture.api import Capture, Limits, problem_response
from capture.captcha import Verifier
from capture.cors import CrossOrigin
from capture.domain import Form, IdentityRules, Submission, parse_forms, parse_identity
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


def load_identity(path: Any) -> IdentityRules:
    """Raises ValueError naming the file and the entry that is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_identity(yaml.safe_load(f) or {})
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def form_rates(forms: dict[str, Form]) -> dict[str, RateLimitItem]:
    return {form_id: parse_rate(form.rate_limit, f"forms.{form_id}.rate_limit")
            for form_id, form in forms.items() if form.rate_limit}


def token_key(settings: CaptureSettings, forms: dict[str, Form]) -> bytes:
    """The key form tokens are signed with: the same in every capture process, or tokens fail between them."""
    secret = settings.token_secret or settings.session_secret
    if secret is None:
        requiring = sorted(f for f, form in forms.items() if form.require_token)
        if requiring:
            raise ValueError(f"forms {requiring} require a form token: set CAPTURE_TOKEN_SECRET (or "
                             "LEADPIPE_SESSION_SECRET), the same in every capture process")
        return os.urandom(32)  # no form checks tokens: the ones handed out are never verified
    # Its own key, so a form token can never pass for a session cookie signed with the same secret.
    return hmac.new(secret.get_secret_value().encode(), b"leadpipe capture form tokens", hashlib.sha256).digest()


def captcha_secrets(forms: dict[str, Form], environ: Mapping[str, str]) -> dict[str, str]:
    """The secret key of each CAPTCHA the forms use, from the environment variable each names."""
    needed = {form.captcha.secret_env: form_id for form_id, form in forms.items() if form.captcha}
    missing = [f"{env} (forms.{form_id}.captcha)" for env, form_id in needed.items() if not environ.get(env)]
    if missing:
        raise ValueError(f"the CAPTCHA secret is not set: {', '.join(missing)}")
    return {env: environ[env] for env in needed}


def check(settings: CaptureSettings) -> None:
    """Refuse a configuration capture cannot serve with, before it starts (raises ValueError saying why)."""
    forms = load_forms(settings.forms_file)
    load_identity(settings.identity_file)
    token_key(settings, forms)
    captcha_secrets(forms, os.environ)


def create_app(settings: CaptureSettings | None = None) -> FastAPI:
    settings = settings or CaptureSettings()
    forms = load_forms(settings.forms_file)
    key = token_key(settings, forms)
    secrets = captcha_secrets(forms, os.environ)
    identity = load_identity(settings.identity_file)

    limits = Limits(per_address=parse_rate(settings.rate_limit, "CAPTURE_RATE_LIMIT"),
                    per_key=parse_rate(settings.key_rate_limit, "CAPTURE_KEY_RATE_LIMIT"),
                    per_form=form_rates(forms), trusted_proxies=parse_networks(settings.trusted_proxies,
                                                                               "CAPTURE_TRUSTED_PROXIES"))

    def context(clients: Clients) -> Capture:
        writer = LeadWriter(clients.engine, settings.write_batch_max, on_commit=clients.wake_relay, clock=utc_now,
                            linger=Linger(settings.write_linger_ms / 1000, settings.write_round_target))
        return Capture(forms=forms, writer=writer, clock=utc_now, limits=limits, token_key=key,
                       verifier=Verifier(clients.http, secrets), identity=identity)

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
