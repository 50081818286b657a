"""capture's public posts in-process with no IO (a writer and a quarantine in memory stand where Postgres would be,
so each test sees which one a post went to): the bot checks of posts naming no listed form (the forms file's
``unlisted:``), and the answer each kind of client reads."""

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from leadpipe_common.service import Runtime

from capture.api import Capture, Limits
from capture.app import create_app, load_forms, load_identity, unguarded_warning
from capture.domain import TOKEN_FIELD, issue_form_token
from capture.settings import CaptureSettings
from capture.throttle import parse_rate
from capture.writer import Admitted, answer_for

TOKEN_SECRET = "unlisted-tests-" + uuid.uuid4().hex
FORMS = {"forms": {"demo-request": {"name": "Request a demo", "offer": "demo", "require_token": True,
                                    "min_fill_seconds": 0},
                   "whitepaper": {"thank_you_url": "https://example.com/thanks"}},
         "unlisted": {"require_token": True, "min_fill_seconds": 0, "rate_limit": "2/minute"}}


class Writer:
    def __init__(self) -> None:
        self.written: list[str] = []

    async def write(self, submitted: Any) -> Admitted:
        self.written.append(submitted.lead.attribution.form_id)
        return Admitted(answer_for(submitted.lead.lead_id, submitted, existing=False))


class Quarantine:
    """A unit of work whose store keeps what ``_quarantine`` stores."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []
        self.store = self

    def __call__(self) -> "Quarantine":
        return self

    async def __aenter__(self) -> "Quarantine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def quarantine(self, row: dict[str, Any]) -> None:
        self.kept.append(row)

    def publish(self, messages: Any) -> None:
        pass

    async def commit(self) -> None:
        pass


def serving(tmp_path: Path, forms: dict[str, Any]) -> tuple[FastAPI, Writer, Quarantine, bytes]:
    path = tmp_path / "forms.yaml"
    path.write_text(yaml.safe_dump(forms))
    settings = CaptureSettings(DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none", forms_file=path,
                               token_secret=TOKEN_SECRET)
    app = create_app(settings)
    loaded = load_forms(path)
    from capture.app import token_key

    key = token_key(settings, loaded.guarded())
    writer, quarantine = Writer(), Quarantine()
    limits = Limits(parse_rate("100/minute", "rate"), parse_rate("100/minute", "rate"), {}, (),
                    unlisted=parse_rate(loaded.unlisted.rate_limit, "rate") if loaded.unlisted.rate_limit else None)
    context = Capture(forms=loaded.forms, writer=writer, clock=lambda: datetime.now(UTC), limits=limits,  # type: ignore[arg-type]
                      token_key=key, verifier=None, identity=load_identity(settings.identity_file),  # type: ignore[arg-type]
                      unlisted=loaded.unlisted)
    app.state.runtime = Runtime(settings=settings, context=context, engine=None, producer=None,  # type: ignore[arg-type]
                                unit_of_work=quarantine, wake_relay=lambda: None)
    return app, writer, quarantine, key


def client(app: FastAPI, accept: str = "application/json") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://capture", headers={"accept": accept})


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/forms/demo-requesT", {"email": "bot@example.com", "offer": "demo"}),
    ("/v1/leads", {"email": "bot@example.com", "offer": "demo", "utm_source": "google"}),
    ("/v1/leads", {"email": "bot@example.com", "form_id": "not-listed"}),
], ids=["a-form-id-one-letter-off", "the-json-endpoint", "the-json-endpoint-naming-an-unlisted-form"])
async def test_a_post_naming_no_listed_form_gets_the_unlisted_checks_not_a_way_around_them(tmp_path, path, body):
    app, writer, quarantine, _ = serving(tmp_path, FORMS)
    async with client(app) as capture:
        reply = await capture.post(path, json=body)
    assert reply.status_code == 202  # answered as a person is
    assert writer.written == []
    assert [row["reasons"] for row in quarantine.kept] == [["no form token (the form's token script did not run)"]]


async def test_a_token_for_an_unlisted_form_id_is_handed_out_and_lets_its_post_in(tmp_path):
    app, writer, quarantine, _ = serving(tmp_path, FORMS)
    async with client(app) as capture:
        token = (await capture.get("/v1/forms/landing-page-7/token")).json()["token"]
        reply = await capture.post("/v1/forms/landing-page-7", json={"email": "jo@example.com", TOKEN_FIELD: token})
        stolen = await capture.post("/v1/forms/landing-page-8", json={"email": "jo@example.com", TOKEN_FIELD: token})
    assert (reply.status_code, stolen.status_code) == (202, 202)
    assert writer.written == ["landing-page-7"]
    assert [row["reasons"] for row in quarantine.kept] == [["the form token is forged or belongs to another form"]]


async def test_without_unlisted_checks_an_unlisted_form_has_no_token_to_ask_for_and_only_the_honeypot(tmp_path):
    app, writer, quarantine, key = serving(tmp_path, {"forms": FORMS["forms"]})
    async with client(app) as capture:
        missing = await capture.get("/v1/forms/landing-page-7/token")
        listed = await capture.post("/v1/forms/demo-request", json={
            "email": "jo@example.com", TOKEN_FIELD: issue_form_token("demo-request", datetime.now(UTC), key)})
        unlisted = await capture.post("/v1/forms/landing-page-7", json={"email": "jo@example.com"})
    assert missing.status_code == 404
    assert (listed.status_code, unlisted.status_code) == (202, 202)
    assert writer.written == ["demo-request", "landing-page-7"] and quarantine.kept == []


async def test_posts_naming_no_listed_form_share_the_unlisted_rate_limit(tmp_path):
    app, _, _, _ = serving(tmp_path, FORMS)
    async with client(app) as capture:
        codes = [(await capture.post(path, json={"email": "jo@example.com"})).status_code
                 for path in ("/v1/forms/x1", "/v1/leads", "/v1/forms/x2")]
    assert codes == [202, 202, 429]


def test_a_token_or_captcha_on_listed_forms_alone_is_called_out_at_start():
    from capture.app import FormsFile
    from capture.domain import parse_forms, parse_unlisted

    def warning(raw: dict[str, Any]) -> str | None:
        return unguarded_warning(FormsFile(parse_forms(raw), parse_unlisted(raw)))

    assert "demo-request" in (warning({"forms": FORMS["forms"]}) or "")
    assert warning(FORMS) is None
    assert warning({"forms": {"contact-us": {}}}) is None


@pytest.mark.parametrize(("accept", "send", "status", "type_"), [
    ("*/*", {"json": {"email": "jo@example.com"}}, 202, "application/json"),
    ("*/*", {"data": {"email": "jo@example.com"}}, 303, None),
    ("text/html,*/*", {"json": {"email": "jo@example.com"}}, 303, None),
    ("*/*", {"json": {"email": "not an address"}}, 422, "application/json"),
    ("*/*", {"data": {"email": "not an address"}}, 422, "text/html"),
], ids=["fetch-posting-json", "html-form", "json-asking-for-html", "fetch-refused", "html-form-refused"])
async def test_a_page_posting_json_with_fetchs_default_accept_reads_the_api_answer_and_a_form_the_page(
        tmp_path, accept, send, status, type_):
    app, _, _, _ = serving(tmp_path, FORMS)
    async with client(app, accept=accept) as capture:
        reply = await capture.post("/v1/forms/whitepaper", **send)
    assert reply.status_code == status
    if type_:
        assert reply.headers["content-type"].startswith(type_)
    if status == 303:
        assert reply.headers["location"] == "https://example.com/thanks"
