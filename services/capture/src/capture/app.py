"""capture's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from fastapi import FastAPI

from leadpipe_common.files import parse_yaml, read_text
from leadpipe_common.http import Problem
from leadpipe_common.pacing import Linger
from leadpipe_common.service import Clients, consumer_app, utc_now
from leadpipe_common.throttle import Rate, parse_networks, parse_rate

from capture.api import Capture, Limits, problem_response
from capture.captcha import Verifier
from capture.cors import CrossOrigin
from capture.domain import Form, IdentityRules, Submission, parse_forms, parse_identity, parse_unlisted
from capture.service import SERVICE
from capture.settings import CaptureSettings
from capture.writer import LeadWriter

log = structlog.get_logger(__name__)


class FormsFile(NamedTuple):
    #: The forms listed, by id.
    forms: dict[str, Form]
    #: The checks of a post to a form id not listed, or to ``/v1/leads`` without a key.
    unlisted: Form

    def guarded(self) -> list[Form]:
        """Every set of checks in the file, the unlisted one included."""
        return [*self.forms.values(), self.unlisted]


def load_forms(path: Any, setting: str = "CAPTURE_FORMS_FILE") -> FormsFile:
    """Raises ValueError naming the file and the entry that is wrong (or, read, its setting and why)."""
    raw = parse_yaml(read_text(Path(path), setting), path) or {}
    try:
        if not isinstance(raw, Mapping):
            raise ValueError("expected a mapping with forms: (and unlisted:)")
        loaded = FormsFile(parse_forms(raw), parse_unlisted(raw))
        form_rates(loaded.forms)
        if loaded.unlisted.rate_limit:
            parse_rate(loaded.unlisted.rate_limit, "unlisted.rate_limit")
        return loaded
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def unguarded_warning(loaded: FormsFile) -> str | None:
    """Why a form's token or CAPTCHA may be walked around: the same post to a form id not listed (or to
    ``/v1/leads``) gets only the checks of ``unlisted:``. A form token there does not stand in for a form's CAPTCHA:
    a bot fetches a token for any form id it makes up, and needs no person for it.

    Posts to ids not listed do not take a listed form's CAPTCHA themselves: forms may use different providers and
    keys, and a landing page without the widget would have every post quarantined. The forms file says."""
    unlisted = loaded.unlisted
    if unlisted.captcha:
        return None
    captcha = [f.form_id for f in loaded.forms.values() if f.captcha]
    token = [] if unlisted.require_token else [f.form_id for f in loaded.forms.values() if f.require_token]
    walked = sorted({*captcha, *token})
    if not walked:
        return None
    if unlisted.require_token:
        return (f"forms {walked} require a CAPTCHA, but a post to a form id not listed (or to /v1/leads without a "
                "key) is checked for a form token alone, which a bot fetches for any id it makes up: give the forms "
                "file's unlisted: a captcha too, or bots walk around them")
    return (f"forms {walked} require a form token or a CAPTCHA, but a post to a form id not listed (or to /v1/leads "
            "without a key) is checked for the honeypot alone: give the forms file's unlisted: "
            f"{'a captcha' if captcha else 'a require_token or captcha'} too, or bots walk around them")


def load_identity(path: Any, setting: str = "CAPTURE_IDENTITY_FILE") -> IdentityRules:
    """Raises ValueError naming the file and the entry that is wrong (or, read, its setting and why)."""
    raw = parse_yaml(read_text(Path(path), setting), path) or {}
    try:
        return parse_identity(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def form_rates(forms: dict[str, Form]) -> dict[str, Rate]:
    return {form_id: parse_rate(form.rate_limit, f"forms.{form_id}.rate_limit")
            for form_id, form in forms.items() if form.rate_limit}


def token_key(settings: CaptureSettings, forms: Sequence[Form]) -> bytes:
    """The key form tokens are signed with: the same in every capture process, or tokens fail between them."""
    secret = settings.token_secret or settings.session_secret
    if secret is None:
        requiring = sorted(_where(form) for form in forms if form.require_token)
        if requiring:
            raise ValueError(f"{', '.join(requiring)} require a form token: set CAPTURE_TOKEN_SECRET (or "
                             "LEADPIPE_SESSION_SECRET), the same in every capture process")
        return os.urandom(32)  # no form checks tokens: the ones handed out are never verified
    # Its own key, so a form token can never pass for a session cookie signed with the same secret.
    return hmac.new(secret.get_secret_value().encode(), b"leadpipe capture form tokens", hashlib.sha256).digest()


def captcha_secrets(forms: Sequence[Form], environ: Mapping[str, str]) -> dict[str, str]:
    """The secret key of each CAPTCHA the forms use, from the environment variable each names."""
    needed = {form.captcha.secret_env: _where(form) for form in forms if form.captcha}
    missing = [f"{env} ({where}.captcha)" for env, where in needed.items() if not environ.get(env)]
    if missing:
        raise ValueError(f"the CAPTCHA secret is not set: {', '.join(missing)}")
    return {env: environ[env] for env in needed}


def _where(form: Form) -> str:
    return f"forms.{form.form_id}" if form.form_id else "unlisted"


def check(settings: CaptureSettings) -> None:
    """Refuse a configuration capture cannot serve with, before it starts (raises ValueError saying why)."""
    loaded = load_forms(settings.forms_file)
    load_identity(settings.identity_file)
    token_key(settings, loaded.guarded())
    captcha_secrets(loaded.guarded(), os.environ)


def create_app(settings: CaptureSettings | None = None) -> FastAPI:
    settings = settings or CaptureSettings()
    loaded = load_forms(settings.forms_file)
    forms, unlisted = loaded
    key = token_key(settings, loaded.guarded())
    secrets = captcha_secrets(loaded.guarded(), os.environ)
    identity = load_identity(settings.identity_file)
    if warning := unguarded_warning(loaded):
        log.warning(warning, forms_file=str(settings.forms_file))

    limits = Limits(per_address=parse_rate(settings.rate_limit, "CAPTURE_RATE_LIMIT"),
                    per_key=parse_rate(settings.key_rate_limit, "CAPTURE_KEY_RATE_LIMIT"),
                    per_form=form_rates(forms), trusted_proxies=parse_networks(settings.trusted_proxies,
                                                                               "CAPTURE_TRUSTED_PROXIES"),
                    unlisted=parse_rate(unlisted.rate_limit, "unlisted.rate_limit") if unlisted.rate_limit else None)

    def context(clients: Clients) -> Capture:
        writer = LeadWriter(clients.engine, settings.write_batch_max, on_commit=clients.wake_relay, clock=utc_now,
                            linger=Linger(settings.write_linger_ms / 1000, settings.write_round_target),
                            statement_deadline_s=settings.write_statement_deadline_s())
        return Capture(forms=forms, writer=writer, clock=utc_now, limits=limits, token_key=key,
                       verifier=Verifier(clients.http, secrets), identity=identity, unlisted=unlisted)

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
