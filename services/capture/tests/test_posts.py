"""capture's public posts and the quarantine's release in-process, with no broker or Postgres: the app as its
lifespan leaves it, on a writer and a unit of work that record what reaches them."""

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes

import asyncpg
import httpx
import pytest
import structlog
import yaml
from prometheus_client import REGISTRY

from leadpipe_common.auth import Keys, Principal, new_key
from leadpipe_common.envelope import Message, decode, new_traceparent
from leadpipe_common.service import Runtime
from leadpipe_common.testing import factories
from leadpipe_common.testing.captcha import SECRET, FakeVerifier
from leadpipe_common.testing.fakes import NeverAnswers, NoKeysStored
from leadpipe_common.throttle import parse_rate

from capture import api
from capture.api import Capture, Limits
from capture.app import FormsFile, create_app, form_rates, load_forms, load_identity, token_key, unguarded_warning
from capture.captcha import Verifier as SiteverifyClient
from capture.domain import TOKEN_FIELD, issue_form_token, parse_forms, parse_unlisted, person_key
from capture.settings import CaptureSettings
from capture.store import Cleared, Found
from capture.writer import Admitted, Submitted, WriterStopped, WriteTimedOut, answer_for

NOWHERE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
ADMIN = f"test-bootstrap-{uuid.uuid4().hex}"
FORM = "/v1/forms/contact-us"
AS_JSON = {"accept": "application/json"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
URLENCODED = {"content-type": "application/x-www-form-urlencoded", **AS_JSON}


def in_charset(charset: str) -> dict[str, str]:
    return {**URLENCODED, "content-type": f"application/x-www-form-urlencoded; charset={charset}"}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pipeline:
    """Where capture's posts end: the leads written and the submissions quarantined, as stored."""

    def __init__(self) -> None:
        self.written: list[Submitted] = []
        self.quarantined: dict[uuid.UUID, SimpleNamespace] = {}
        #: People with an open lead (``people``), by person key: a test opens one.
        self.open_leads: dict[str, uuid.UUID] = {}
        #: What the next writes or quarantines raise, in turn, storing nothing (a test makes Postgres fail).
        self.failures: list[Exception] = []
        #: Postgres gone silent (a network partition): the quarantine's statements are never answered.
        self.silent = False
        #: What the units of work gave their outbox, committed or not.
        self.published: list[Message] = []
        #: Each person's leads (``people`` and the leads naming them), by person key: a test gives them.
        self.people_leads: dict[str, list[uuid.UUID]] = {}
        #: Leads erased (``erasures``: their ids alone).
        self.erasures: set[uuid.UUID] = set()
        #: Whether an erasure finds an Idempotency-Key to forget once it holds the people, attempt by attempt.
        self.answers_left: list[bool] = []

    async def write(self, submitted: Submitted) -> Admitted:  # LeadWriter.write, answering as admit does
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(submitted)
        open_lead = self.open_leads.get(submitted.person_key)
        if open_lead is not None:
            return Admitted.of(open_lead, submitted, existing=True)
        return Admitted.of(submitted.lead.lead_id, submitted, existing=False)

    @property
    def lead(self) -> Any:
        return self.written[-1].lead

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[SimpleNamespace]:
        yield SimpleNamespace(store=Store(self), publish=self.published.extend, commit=_nothing)


async def _nothing() -> None:
    pass


class Store:
    """capture's store, as far as quarantining and releasing reach it before a lead is written."""

    session = None  # only ever passed to raw_connection, which the tests replace

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def quarantine(self, row: dict[str, Any]) -> None:
        await self._answered()
        if self._pipeline.failures:
            raise self._pipeline.failures.pop(0)
        # As Postgres takes jsonb: text it cannot store (a lone surrogate) fails the insert.
        json.dumps(row["fields"], ensure_ascii=False).encode("utf-8")
        self._pipeline.quarantined[row["lead_id"]] = SimpleNamespace(**row, released_at=None)

    async def lock_quarantined(self, lead_id: uuid.UUID) -> SimpleNamespace | None:
        await self._answered()
        return self._pipeline.quarantined.get(lead_id)

    async def _answered(self) -> None:
        if self._pipeline.silent:
            await asyncio.Event().wait()

    async def mark_released(self, lead_id: uuid.UUID, at: datetime) -> None:
        self._pipeline.quarantined[lead_id].released_at = at

    async def person_found(self, key: str) -> Found | None:
        leads = self._pipeline.people_leads.get(key)
        return None if leads is None else Found(leads=list(leads), touches=[])

    async def erased(self, lead_ids: Any) -> list[uuid.UUID]:
        return [lead for lead in lead_ids if lead in self._pipeline.erasures]

    async def has_lead(self, lead_id: uuid.UUID) -> bool:
        return any(lead_id in leads for leads in self._pipeline.people_leads.values())

    async def forget_quarantined(self, lead_ids: Any, touch_ids: Any = (), *, key: str | None,
                                 same_person: Any) -> int:
        return 0

    async def forget_answers(self, lead_ids: Any, touch_ids: Any = ()) -> None:
        pass

    async def answers_left(self, lead_ids: Any, touch_ids: Any = ()) -> bool:
        return self._pipeline.answers_left.pop(0) if self._pipeline.answers_left else False

    async def released_left(self, lead_ids: Any, touch_ids: Any = ()) -> bool:
        return False

    async def lock_erasure(self, lead_ids: Any, *, key: str | None, by_id: Any) -> SimpleNamespace:
        return SimpleNamespace(rollback=_nothing)

    async def merged_into(self, lead_ids: Any) -> list[uuid.UUID]:
        return []

    async def erase(self, lead_ids: Any, *, key: str | None, by_id: Any, touch_ids: Any = (), at: datetime,
                    by: str) -> Cleared:
        """As the store erases: the person's row goes (their next submission is a new person's), the leads recorded."""
        self._pipeline.people_leads.pop(key, None)
        fresh = [lead for lead in lead_ids if lead not in self._pipeline.erasures]
        self._pipeline.erasures.update(lead_ids)
        return Cleared(recorded=fresh, others_touches=[])

    async def quarantined(self, limit: int, *, before: tuple[datetime, uuid.UUID] | None = None,
                          form_id: str | None = None) -> list[dict[str, Any]]:
        """As the store lists them (its SQL is test_quarantine_store's): newest first, by time then id."""
        await self._answered()
        rows = sorted((vars(r) for r in self._pipeline.quarantined.values()),
                      key=lambda r: (r["received_at"], r["lead_id"]), reverse=True)
        return [dict(r) for r in rows if (before is None or (r["received_at"], r["lead_id"]) < before)
                and (form_id is None or r["form_id"] == form_id)][:limit]


@pytest.fixture
def pipeline(monkeypatch) -> Pipeline:
    pipeline = Pipeline()

    async def admit(connection: None, submitted: list[Submitted], now: datetime) -> None:
        pipeline.written.extend(submitted)

    async def no_connection(session: None) -> None:
        return None

    # A release writes its lead as the writer's rounds do, on the session's connection.
    monkeypatch.setattr(api, "admit", admit)
    monkeypatch.setattr(api, "raw_connection", no_connection)
    return pipeline


@contextlib.asynccontextmanager
async def serving(pipeline: Pipeline, settings: CaptureSettings, per_address: str = "1000/second",
                  accept: str | None = None, verifier: Any = None,
                  keys: Any = None, root_path: str = "",
                  escaped: list[Exception] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """capture's app on ``settings`` (its forms file, its token secret), as its lifespan leaves it, on ``pipeline``
    (``keys``: the API keys it finds, the bootstrap key alone when not given; ``root_path``: the prefix a proxy
    serves it under, as the server tells it; ``escaped``: where the errors the app raises to its server go, which
    the server logs with their tracebacks)."""
    app = create_app(settings)
    app.state.keys = keys or Keys(None, ADMIN)  # type: ignore[arg-type]  # the bootstrap key is never looked up
    loaded = load_forms(settings.forms_file)
    limits = Limits(parse_rate(per_address, "rate"), parse_rate("1000/second", "rate"), form_rates(loaded.forms), (),
                    unlisted=parse_rate(loaded.unlisted.rate_limit, "rate") if loaded.unlisted.rate_limit else None)
    context = Capture(forms=loaded.forms, writer=pipeline, clock=utc_now, limits=limits,  # type: ignore[arg-type]
                      token_key=token_key(settings, loaded.guarded()), verifier=verifier,
                      identity=load_identity(settings.identity_file), unlisted=loaded.unlisted)
    app.state.runtime = Runtime(settings=settings, context=context, engine=None, producer=None,  # type: ignore[arg-type]
                                unit_of_work=pipeline.unit_of_work, wake_relay=lambda: None)  # type: ignore[arg-type]
    async def server(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:  # uvicorn logs it, "Exception in ASGI application", with its traceback
            if escaped is None:
                raise
            escaped.append(exc)

    transport = httpx.ASGITransport(app=server, raise_app_exceptions=False, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://capture",
                                 headers={"accept": accept} if accept else None) as client:
        yield client


@pytest.fixture
async def client(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(pipeline, CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)) as client:
        yield client


def refused(r: httpx.Response, status: int, field: str) -> str:
    """The reason the answer gives for ``field``, once it is the refusal expected."""
    assert r.status_code == status, (r.status_code, r.text)
    reasons = {e["field"]: e["reason"] for e in r.json()["errors"]}
    assert field in reasons, reasons
    return reasons[field]


# -- a form's charset --------------------------------------------------------------


async def test_a_form_from_a_latin_1_page_is_refused_naming_the_field_not_stored_with_its_letters_replaced(
        client, pipeline):
    r = await client.post(FORM, content=b"first_name=Ann&email=j%E9r%F4me@example.fr", headers=URLENCODED)
    reason = refused(r, 422, "email")
    assert "UTF-8" in reason and 'accept-charset="UTF-8"' in reason
    assert pipeline.written == []


async def test_a_form_whose_raw_bytes_are_not_utf_8_is_refused_naming_the_field_too(client, pipeline):
    r = await client.post(FORM, content="email=a@example.com&first_name=Jérôme".encode("latin-1"), headers=URLENCODED)
    assert "UTF-8" in refused(r, 422, "first_name")
    assert pipeline.written == []


async def test_a_field_name_that_is_not_utf_8_is_named_as_well_as_it_can_be(client):
    r = await client.post(FORM, content=b"email=a@example.com&pr%E9nom=Ann", headers=URLENCODED)
    assert "UTF-8" in refused(r, 422, "pr\\xe9nom")


async def test_a_form_naming_its_charset_is_read_in_it(client, pipeline):
    r = await client.post(FORM, content=b"email=j%E9r%F4me@example.fr&company=Soci%E9t%E9",
                          headers=in_charset("ISO-8859-1"))
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.email, pipeline.lead.contact.company) == ("jérôme@example.fr", "Société")


async def test_a_utf_8_form_is_read_as_ever(client, pipeline):
    r = await client.post(FORM, content=b"email=j%C3%A9r%C3%B4me@example.fr&first_name=J\xc3\xa9r\xc3\xb4me",
                          headers=URLENCODED)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.email, pipeline.lead.contact.first_name) == ("jérôme@example.fr", "Jérôme")


@pytest.mark.parametrize("charset", ["klingon", "base64", "utf-16"])
async def test_a_charset_capture_cannot_read_a_form_in_is_refused_naming_it(client, pipeline, charset):
    r = await client.post(FORM, content=b"email=a@example.com",
                          headers=in_charset(charset))
    assert charset in refused(r, 415, "Content-Type")
    assert pipeline.written == []


@pytest.mark.parametrize(("charset", "first_name"), [
    ("idna", b"xn--zz"),  # raised UnicodeError, not UnicodeDecodeError: a 500
    ("unicode_escape", b"%5Cud800"), ("raw_unicode_escape", b"%5Cud800"),  # a lone surrogate: a 500 further on
    ("unicode_escape", b"a%5Cx00b"),  # a NUL from bytes the shared NUL check does not read as one
    ("punycode", b"abc-"), ("rot13", b"Ann")])
async def test_a_codec_no_page_sends_its_form_in_is_refused_as_a_charset_capture_cannot_read(
        client, pipeline, charset, first_name):
    r = await client.post(FORM, content=b"email=a@example.com&first_name=" + first_name, headers=in_charset(charset))
    assert charset in refused(r, 415, "Content-Type")
    assert pipeline.written == []


@pytest.mark.parametrize(("charset", "company"), [
    ("windows-1252", "Café €"), ("iso-8859-15", "Société €"), ("koi8-r", "Иван"), ("windows-1251", "Иван"),
    ("shift_jis", "山田"), ("euc-jp", "山田"), ("iso-2022-jp", "山田"), ("gb18030", "张伟"), ("gbk", "张伟"),
    ("big5", "陳大文"), ("euc-kr", "김민준"), ("us-ascii", "Acme"), ("utf8", "Jérôme")])
async def test_a_form_in_any_of_the_webs_charsets_is_read_in_it(client, pipeline, charset, company):
    body = b"email=a@example.com&company=" + quote_from_bytes(company.encode(charset)).encode()
    r = await client.post(FORM, content=body, headers=in_charset(charset))
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == company


WINDOWS_1252_LABELS = ["iso-8859-1", "ISO-8859-1", "latin1", "l1", "us-ascii", "ascii", "iso_8859-1", "cp1252",
                       "windows-1252", "x-cp1252", "cp819", "ansi_x3.4-1968", " Latin1\t"]


@pytest.mark.parametrize("charset", WINDOWS_1252_LABELS)
async def test_a_form_labelled_latin_1_or_ascii_is_read_as_windows_1252_as_browsers_send_it(client, pipeline,
                                                                                            charset):
    """The WHATWG Encoding Standard makes each of these labels windows-1252: read as Python's latin-1, a page's €
    and curly quotes (0x80-0x9F) were stored as C1 control characters, and as ASCII, refused."""
    r = await client.post(FORM, content=b"email=a@example.com&company=Caf%E9+%93Chez+Ren%E9%94+%80",
                          headers=in_charset(charset))
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == "Café “Chez René” €"


@pytest.mark.parametrize(("charset", "company", "sent_as"), [
    ("windows-874", "ร้าน", "cp874"), ("tis-620", "ร้าน", "cp874"), ("iso-8859-11", "ร้าน", "cp874"),
    ("x-mac-cyrillic", "Иван", "mac_cyrillic"), ("x-mac-ukrainian", "Іван", "mac_cyrillic"),
    ("iso-8859-9", "İstanbul €", "cp1254"), ("latin5", "İstanbul €", "cp1254"),
    ("shift_jis", "①～", "cp932"), ("sjis", "山田", "cp932"), ("windows-31j", "山田", "cp932"),
    ("euc-kr", "똠방각하", "cp949"), ("ks_c_5601-1987", "김민준", "cp949"), ("x-gbk", "张伟", "gbk"),
    ("gb2312", "张伟", "gbk"), ("big5", "陳大文", "big5hkscs"), ("unicode20utf8", "Jérôme", "utf-8")])
async def test_a_form_is_read_in_the_encoding_its_label_names_in_the_whatwg_standard(client, pipeline, charset,
                                                                                      company, sent_as):
    body = b"email=a@example.com&company=" + quote_from_bytes(company.encode(sent_as)).encode()
    r = await client.post(FORM, content=body, headers=in_charset(charset))
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == company


@pytest.mark.parametrize("charset", ["latin-1", "cp874", "mac-cyrillic", "koi8-u", "iso8859_9", "cp932", "utf-16le",
                                     "iso-2022-kr", "x-user-defined"])
async def test_a_name_the_whatwg_standard_gives_no_encoding_it_is_refused_naming_it(client, pipeline, charset):
    """Python's names of the same codecs (latin-1, cp874), KOI8-U (Python's reads two of its letters as box
    drawings), the standard's replacement and UTF-16: none is a charset capture reads a form in."""
    r = await client.post(FORM, content=b"email=a@example.com", headers=in_charset(charset))
    assert charset in refused(r, 415, "Content-Type")
    assert pipeline.written == []


async def test_a_byte_windows_1252_leaves_undefined_is_refused_naming_its_field_not_stored_as_a_control(
        client, pipeline):
    r = await client.post(FORM, content=b"email=a@example.com&company=Acme%81", headers=in_charset("iso-8859-1"))
    assert "is not windows-1252" in refused(r, 422, "company")
    assert pipeline.written == []


# -- attribution a page filled in --------------------------------------------------------------


async def test_a_browser_form_whose_landing_page_is_too_long_is_thanked_and_its_lead_kept_cut_and_counted(pipeline):
    """location.href with long tracking parameters was a 422 "Please check the form" the visitor could not act on,
    and the lead was lost."""
    page = "https://www.example.com/demo?utm_source=ads&fbclid=" + "x" * 3000
    cut = REGISTRY.get_sample_value("capture_attribution_cut_total", {"field": "landing_page"}) or 0.0
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    with structlog.testing.capture_logs() as lines:
        async with serving(pipeline, settings, accept="text/html") as capture:
            r = await capture.post(FORM, data={"email": "ada@example.com", "landing_page": page})
    assert r.status_code == 200 and "Please check the form" not in r.text, r.text  # contact-us's thank-you page
    assert pipeline.lead.attribution.landing_page == page[:2048]
    assert REGISTRY.get_sample_value("capture_attribution_cut_total", {"field": "landing_page"}) == cut + 1
    logged = [line for line in lines if line["event"] == "attribution cut to its limit"]
    assert [line["fields"] for line in logged] == [["landing_page"]]
    assert "ada@example.com" not in str(logged) and "xxxx" not in str(logged)


@pytest.mark.parametrize("sent", [{"utm_campaign": "c" * 300},
                                  {"landing_page": f"https://www.example.com/demo?utm_campaign={'c' * 300}"}],
                         ids=["a-field-of-the-page", "from-the-landing-page"])
async def test_a_utm_campaign_past_its_limit_is_cut_and_counted_wherever_it_came_from(client, pipeline, sent):
    cut = REGISTRY.get_sample_value("capture_attribution_cut_total", {"field": "utm_campaign"}) or 0.0
    r = await client.post(FORM, data={"email": "ada@example.com", **sent}, headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert pipeline.lead.attribution.utm_campaign == "c" * 200
    assert REGISTRY.get_sample_value("capture_attribution_cut_total", {"field": "utm_campaign"}) == cut + 1


@pytest.mark.parametrize("post", ["data", "json", "released"], ids=["form", "json", "released-from-quarantine"])
async def test_a_page_naming_its_visitor_reaches_the_lead_without_them_counted_and_logged_by_field_alone(
        client, pipeline, post):
    page = "https://www.example.com/demo?utm_source=news&email=ada%40stripe.com&gclid=Cj0#/reset?token=abc"
    referrer = "https://ada:hunter2@mail.example.com/inbox?to=ada@stripe.com"
    fields = {"email": "ada@stripe.com", "landing_page": page, "referrer": referrer}
    before = {f: REGISTRY.get_sample_value("capture_attribution_visitor_cut_total", {"field": f}) or 0.0
              for f in ("landing_page", "referrer")}
    with structlog.testing.capture_logs() as lines:
        if post == "released":
            await client.post(FORM, data={**fields, "_gotcha": "x"}, headers=AS_JSON)
            [lead_id] = pipeline.quarantined
            r = await client.post(f"/v1/quarantine/{lead_id}/release", headers=AS_ADMIN)
        else:
            r = await client.post(FORM, **{post: fields}, headers=AS_JSON)
    assert r.status_code in (200, 202), r.text
    attribution = pipeline.lead.attribution
    assert (attribution.landing_page, attribution.referrer, attribution.utm_source) == (
        "https://www.example.com/demo?utm_source=news&gclid=Cj0", "https://mail.example.com/inbox", "news")
    assert {f: REGISTRY.get_sample_value("capture_attribution_visitor_cut_total", {"field": f})
            for f in before} == {f: n + 1 for f, n in before.items()}
    logged = [line for line in lines if line.get("fields") == ["landing_page", "referrer"]]
    assert len(logged) == 1
    assert "ada" not in str(logged) and "abc" not in str(logged) and "hunter2" not in str(logged)


# -- consent --------------------------------------------------------------


@pytest.mark.parametrize(("body", "sent"), [("data", "yes please"), ("json", "checked")])
async def test_a_consent_value_neither_yes_nor_no_keeps_the_lead_saying_nothing_counted_and_logged_without_it(
        client, pipeline, body, sent):
    unread = REGISTRY.get_sample_value("capture_consent_unread_total", {"field": "marketing_consent"}) or 0.0
    with structlog.testing.capture_logs() as lines:
        r = await client.post(FORM, **{body: {"email": "ada@example.com", "marketing_consent": sent}}, headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.marketing_consent, pipeline.written[-1].consent) == (False, None)
    assert REGISTRY.get_sample_value("capture_consent_unread_total", {"field": "marketing_consent"}) == unread + 1
    logged = [line for line in lines if line.get("fields") == ["marketing_consent"]]
    assert len(logged) == 1
    assert sent not in str(logged) and "ada@example.com" not in str(logged)


async def test_json_one_says_yes_to_marketing(client, pipeline):
    r = await client.post(FORM, json={"email": "ada@example.com", "marketing_consent": 1}, headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.marketing_consent, pipeline.written[-1].consent) == (True, True)


# -- numbers --------------------------------------------------------------


async def test_a_json_post_with_numbers_on_text_fields_is_accepted_as_their_text(client, pipeline):
    r = await client.post("/v1/leads", json={"email": "ada@example.com", "phone": 4155552671, "utm_term": 42})
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.phone, pipeline.lead.attribution.utm_term) == ("4155552671", "42")


async def test_a_form_bodys_digits_are_read_as_the_text_they_always_were(client, pipeline):
    r = await client.post(FORM, data={"email": "ada@example.com", "phone": "004155552671", "utm_term": "042"},
                          headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.phone, pipeline.lead.attribution.utm_term) == ("004155552671", "042")


async def test_a_form_named_by_a_json_number_is_the_listed_form_with_its_offer(pipeline, tmp_path):
    async with guarded(pipeline, tmp_path, {"forms": {"2024": {"offer": "demo"}}}) as capture:
        r = await capture.post("/v1/leads", json={"email": "ada@example.com", "form_id": 2024})
    assert r.status_code == 202, r.text
    assert (pipeline.lead.attribution.form_id, pipeline.lead.attribution.offer) == ("2024", "demo")


async def test_a_browser_forms_lead_takes_its_source_from_the_landing_pages_utms_and_so_does_its_quarantine(
        client, pipeline):
    page = "https://www.example.com/demo?utm_source=linkedin&utm_campaign=q4"
    r = await client.post(FORM, data={"email": "ada@example.com", "landing_page": page}, headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.attribution.utm_source, pipeline.lead.attribution.utm_campaign) == ("linkedin", "q4")
    await client.post(FORM, data={"email": "bot@example.com", "landing_page": page, "_gotcha": "x"}, headers=AS_JSON)
    assert [row.utm_source for row in pipeline.quarantined.values()] == ["linkedin"]


# -- what a refusal says --------------------------------------------------------------


@pytest.mark.parametrize("post", [dict(json={"email": None}), dict(json={"email": ""}), dict(data={"email": ""})],
                         ids=["json-null", "json-empty", "form-empty"])
async def test_an_empty_email_is_refused_as_required(client, pipeline, post):
    r = await client.post(FORM, **post, headers=AS_JSON)
    assert refused(r, 422, "email") == "is required"
    assert pipeline.written == []


async def test_a_json_body_starting_with_a_byte_order_mark_is_read(client, pipeline):
    r = await client.post("/v1/leads", content=b'\xef\xbb\xbf{"email": "ada@example.com"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.email == "ada@example.com"


@pytest.mark.parametrize("path", ["/v1/leads", FORM])
@pytest.mark.parametrize(("body", "said"), [
    ('{"email": "ada@example.com", "phone": NaN}', "JSON has no NaN"),
    ('{"email": "ada@example.com", "utm_term": Infinity}', "JSON has no Infinity"),
    ('{"email": "ada@example.com", "company": [-Infinity]}', "JSON has no -Infinity"),
    ('{"email": "ada@example.com", "marketing_consent": NaN, "_gotcha": "x"}', "JSON has no NaN"),
    ('{"email": "ada@example.com", "phone": 1e400}', "the number 1e400 is too large")],
    ids=["nan", "infinity", "minus-infinity-nested", "nan-from-a-bot", "overflowing-to-infinity"])
async def test_json_that_python_reads_as_nan_or_infinity_is_refused_naming_the_body_not_stored_as_nan_or_inf(
        client, pipeline, path, body, said):
    r = await client.post(path, content=body.encode(), headers={"content-type": "application/json", **AS_JSON})
    assert said in refused(r, 422, "body")
    assert pipeline.written == [] and pipeline.quarantined == {}


async def test_json_numbers_with_a_fraction_or_an_exponent_are_read_as_ever(client, pipeline):
    r = await client.post(FORM, content=b'{"email": "ada@example.com", "utm_content": 1.5, "utm_term": 2e3, '
                                        b'"marketing_consent": 1.0}', headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    assert (pipeline.lead.attribution.utm_content, pipeline.lead.attribution.utm_term) == ("1.5", "2000.0")
    assert pipeline.written[-1].consent is True


@pytest.mark.parametrize("path", ["/v1/leads", FORM])
async def test_a_body_of_a_media_type_capture_does_not_read_is_refused_naming_content_type(client, pipeline, path):
    r = await client.post(path, content=b"email=ada@example.com", headers={"content-type": "text/plain", **AS_JSON})
    assert "application/json" in refused(r, 415, "Content-Type")
    assert pipeline.written == []


# -- a name sent twice --------------------------------------------------------------


async def test_a_ticked_checkbox_after_its_hidden_zero_records_consent_in_a_url_encoded_form(client, pipeline):
    r = await client.post(FORM, content=b"email=a@example.com&marketing_consent=0&marketing_consent=1",
                          headers=URLENCODED)
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.marketing_consent is True


async def test_an_unticked_checkbox_leaves_its_hidden_zero_as_refusal(client, pipeline):
    r = await client.post(FORM, content=b"email=a@example.com&marketing_consent=0", headers=URLENCODED)
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.marketing_consent is False


@pytest.mark.parametrize(("body", "consent"), [(b"marketing_consent=0", False),
                                               (b"marketing_consent=0&marketing_consent=on", True), (b"", None),
                                               (b"marketing_consent=", None)],
                         ids=["unticked-after-its-hidden-zero", "ticked", "no-checkbox", "empty-field"])
async def test_what_a_post_said_of_consent_reaches_the_writer_so_a_touch_can_withdraw_it(client, pipeline, body,
                                                                                       consent):
    r = await client.post(FORM, content=b"email=a@example.com&" + body, headers=URLENCODED)
    assert r.status_code == 202, r.text
    assert pipeline.written[-1].consent is consent


async def test_a_released_submission_that_said_no_to_marketing_withdraws_as_it_would_have(client, pipeline):
    await client.post(FORM, json={"email": "a@example.com", "marketing_consent": False, "_gotcha": "x"})
    [lead_id] = pipeline.quarantined
    r = await client.post(f"/v1/quarantine/{lead_id}/release", headers=AS_ADMIN)
    assert r.status_code == 200, r.text
    assert pipeline.written[-1].consent is False


async def test_a_multipart_form_from_a_latin_1_page_is_refused_naming_the_field_as_a_url_encoded_one_is(
        client, pipeline):
    """Starlette reads a part that is not UTF-8 as latin-1, silently: jérôme@ was stored as the page's bytes read
    in another charset (C1 controls and mojibake for cp1252's curly quotes and euro)."""
    latin = await client.post(FORM, files=[("email", (None, "jérôme@example.fr".encode("latin-1"))),
                                           ("first_name", (None, "Jérôme".encode("cp1252")))], headers=AS_JSON)
    assert "is not UTF-8" in refused(latin, 422, "email")
    utf8 = await client.post(FORM, files=[("email", (None, "jérôme@example.fr".encode())),
                                          ("first_name", (None, "Jérôme".encode()))], headers=AS_JSON)
    assert utf8.status_code == 202, utf8.text
    assert (pipeline.lead.contact.email, pipeline.lead.contact.first_name) == ("jérôme@example.fr", "Jérôme")


def multipart(charset: str, **fields: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body whose Content-Type names its charset, as a Java or .NET client may send it."""
    parts = b"".join(b'--XX\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
                     + value.encode(charset) + b"\r\n" for name, value in fields.items())
    return parts + b"--XX--\r\n", {**AS_JSON, "content-type": f"multipart/form-data; boundary=XX; charset={charset}"}


@pytest.mark.parametrize(("charset", "company"), [("windows-1252", "Café €"), ("koi8-r", "Иван"),
                                                  ("iso-8859-1", "Jérôme")])
async def test_a_multipart_form_naming_its_charset_is_read_in_it(client, pipeline, charset, company):
    body, headers = multipart(charset, email="a@example.com", company=company)
    r = await client.post(FORM, content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == company


@pytest.mark.parametrize(("label", "sent_as"), [("iso-8859-1", "cp1252"), ("us-ascii", "cp1252"),
                                                ("x-mac-cyrillic", "mac_cyrillic"), ("windows-874", "cp874")])
async def test_a_multipart_form_is_read_in_the_encoding_its_label_names_in_the_whatwg_standard_too(
        client, pipeline, label, sent_as):
    """Starlette read its parts by Python's meaning of the label (latin-1 for iso-8859-1), or as latin-1 a label
    Python does not know (x-mac-cyrillic)."""
    company = {"cp1252": "“Café” €", "mac_cyrillic": "Иван", "cp874": "ร้าน"}[sent_as]
    body, headers = multipart(sent_as, email="a@example.com", company=company)
    r = await client.post(FORM, content=body, headers={**headers, "content-type": headers["content-type"].replace(
        sent_as, label)})
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == company


async def test_a_multipart_form_whose_charset_is_named_twice_is_read_in_the_one_capture_checked(client, pipeline):
    """Starlette read the parts in the last, capture checked them against the first."""
    body, headers = multipart("koi8-r", email="a@example.com", company="Иван")
    r = await client.post(FORM, content=body, headers={**headers, "content-type": "multipart/form-data; "
                                                       "boundary=XX; charset=koi8-r; charset=windows-1251"})
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.company == "Иван"


async def test_a_multipart_content_type_whose_quote_is_never_closed_is_refused_naming_the_body(client, pipeline):
    body, headers = multipart("utf-8", email="a@example.com")
    r = await client.post(FORM, content=body, headers={**headers, "content-type": 'multipart/form-data; boundary="XX'})
    assert "malformed" in refused(r, 422, "body")
    assert pipeline.written == []


async def test_a_multipart_part_not_in_the_charset_its_form_names_is_refused_naming_it(client):
    body, headers = multipart("latin-1", email="a@example.com", company="Café")  # sent as latin-1 ...
    r = await client.post(FORM, content=body, headers={**headers, "content-type": headers["content-type"].replace(
        "latin-1", "shift_jis")})  # ... saying Shift JIS
    assert "is not Shift_JIS" in refused(r, 422, "company")  # as the WHATWG Encoding Standard names it


@pytest.mark.parametrize(("send", "said"), [
    ({"content": b"--XX--\r\n", "headers": {**AS_JSON, "content-type": "multipart/form-data"}}, "boundary"),
    ({"data": {"email": "a@example.com"}, "files": [(f"cv{i}", ("cv.pdf", b"%PDF")) for i in range(11)]}, "files"),
    ({"data": {"email": "a@example.com"}, "files": [(f"field{i}", (None, "x")) for i in range(201)]}, "fields"),
], ids=["no-boundary", "too-many-files", "too-many-fields"])
async def test_a_malformed_multipart_body_is_refused_naming_the_body_as_any_malformed_body_is(client, pipeline, send,
                                                                                            said):
    """Starlette answered these itself: a 400 naming no field, not the 422 of capture's other malformed bodies."""
    r = await client.post(FORM, **{"headers": AS_JSON, **send})
    assert said in refused(r, 422, "body").lower()
    assert pipeline.written == []


async def test_a_ticked_checkbox_after_its_hidden_zero_records_consent_in_a_multipart_form(client, pipeline):
    r = await client.post(FORM, files=[("marketing_consent", (None, "0")), ("marketing_consent", (None, "on")),
                                       ("email", (None, "a@example.com"))], headers=AS_JSON)
    assert r.status_code == 202, r.text
    assert pipeline.lead.contact.marketing_consent is True


async def test_the_last_of_a_repeated_field_is_the_one_taken(client, pipeline):
    r = await client.post(FORM, content=b"email=&email=a@example.com&company=Old&company=New", headers=URLENCODED)
    assert r.status_code == 202, r.text
    assert (pipeline.lead.contact.email, pipeline.lead.contact.company) == ("a@example.com", "New")


# -- what quarantine keeps, and its release ------------------------------------------------


async def quarantined(client: httpx.AsyncClient, pipeline: Pipeline, **send: Any) -> SimpleNamespace:
    """What a bot's post (its honeypot filled) left in quarantine."""
    r = await client.post(FORM, headers={**AS_JSON, **send.pop("headers", {})}, **send)
    assert r.status_code == 202, r.text
    assert pipeline.written == []
    return pipeline.quarantined[uuid.UUID(r.json()["lead_id"])]


async def release(client: httpx.AsyncClient, kept: SimpleNamespace) -> httpx.Response:
    return await client.post(f"/v1/quarantine/{kept.lead_id}/release", headers=AS_ADMIN)


async def test_a_json_null_is_left_out_of_quarantine_so_a_released_lead_has_no_company_called_none(
        client, pipeline):
    kept = await quarantined(client, pipeline, json={"email": "ann@example.com", "company": None,
                                                     "marketing_consent": None, "_gotcha": "x"})
    assert kept.fields == {"email": "ann@example.com", "_gotcha": "x"}
    r = await release(client, kept)
    assert r.status_code == 200, r.text
    assert (pipeline.lead.contact.company, pipeline.lead.contact.marketing_consent) == (None, False)


async def test_a_quarantined_submission_is_announced_with_where_it_came_from_and_why_not_what_it_said(
        client, pipeline):
    """leads.quarantined is kept for ever and read by reports that count: a false positive is a real person,
    whose address, phone and message stay in the quarantine, for the admin who reviews it."""
    kept = await quarantined(client, pipeline, json={
        "email": "ann@example.com", "phone": "+44 20 7946 0958", "message": "call me", "first_name": "Ann",
        "utm_source": "ads", "_gotcha": "x"})
    assert kept.fields["email"] == "ann@example.com" and kept.fields["message"] == "call me"
    [announced] = pipeline.published
    assert announced.topic == "leads.quarantined" and announced.header("ce_type") == "lead.quarantined"
    assert json.loads(announced.value) == {
        "lead_id": str(kept.lead_id), "received_at": kept.received_at.isoformat().replace("+00:00", "Z"),
        "reasons": ["the hidden field _gotcha was filled in"], "form_id": "contact-us", "utm_source": "ads"}


async def test_a_quarantined_submissions_source_holding_an_address_is_kept_off_its_announcement(client, pipeline):
    """A mail tool's merge tag (utm_source=ann@example.com) put a person's address on leads.quarantined, kept for
    ever and reached by no erasure; the quarantine keeps it for the admin who reviews it."""
    kept = await quarantined(client, pipeline, json={"email": "ann@example.com", "utm_source": "ann@example.com",
                                                     "_gotcha": "x"})
    [announced] = pipeline.published
    assert json.loads(announced.value)["utm_source"] is None and "ann@" not in announced.value.decode()
    assert kept.fields["utm_source"] == "ann@example.com"


async def test_the_known_fields_are_kept_whatever_a_bot_put_before_them(client, pipeline):
    padding = {f"pad{i}": "x" for i in range(150)}
    kept = await quarantined(client, pipeline, json={**padding, "_gotcha": "x", "email": "bob@example.com",
                                                     "marketing_consent": True})
    assert len(kept.fields) == 100
    assert (kept.fields["email"], kept.fields["marketing_consent"]) == ("bob@example.com", "true")
    r = await release(client, kept)
    assert r.status_code == 200, r.text
    assert (pipeline.lead.contact.email, pipeline.lead.contact.marketing_consent) == ("bob@example.com", True)


async def test_a_lone_surrogate_in_a_field_nobody_reads_is_quarantined_not_refused_as_unavailable(client, pipeline):
    body = b'{"email": "eve@example.com", "_gotcha": "x", "\\ud800": "a\\udfffb"}'
    kept = await quarantined(client, pipeline, content=body, headers={"content-type": "application/json"})
    assert kept.fields == {"email": "eve@example.com", "_gotcha": "x", "?": "a?b"}


async def test_a_release_of_what_is_no_valid_lead_is_refused_naming_the_field_and_stays_quarantined(
        client, pipeline):
    kept = await quarantined(client, pipeline, json={"email": "cy@example.com", "_gotcha": "x"})
    kept.fields = {"email": "None", "first_name": "Cy"}  # as quarantine kept a null before
    r = await release(client, kept)
    assert refused(r, 409, "email")
    assert kept.released_at is None and pipeline.written == []


async def test_a_release_of_a_null_consent_kept_as_none_becomes_a_lead_that_said_nothing_of_consent(
        client, pipeline):
    kept = await quarantined(client, pipeline, json={"email": "cy@example.com", "_gotcha": "x"})
    kept.fields = {"email": "cy@example.com", "marketing_consent": "None"}  # as quarantine kept a null before
    r = await release(client, kept)
    assert r.status_code == 200, r.text
    assert (pipeline.lead.contact.marketing_consent, pipeline.written[-1].consent) == (False, None)


@pytest.mark.parametrize(("sent", "said"), [(1.0, True), (0.0, False), (True, True), (1, True), (False, False),
                                            ("1.0", None)])
async def test_a_released_submission_says_of_consent_what_it_said_when_it_was_sent(client, pipeline, sent, said):
    """Quarantine keeps text: a JSON 1.0, a yes when it was sent, was kept as "1.0", which its release read as
    nothing said."""
    kept = await quarantined(client, pipeline, json={"email": "ada@example.com", "marketing_consent": sent,
                                                      "_gotcha": "x"})
    r = await release(client, kept)
    assert r.status_code == 200, r.text
    released = (pipeline.written[-1].consent, pipeline.lead.contact.marketing_consent)
    await client.post(FORM, json={"email": "ada@example.com", "marketing_consent": sent}, headers=AS_JSON)
    assert released == (pipeline.written[-1].consent, pipeline.lead.contact.marketing_consent) == (said, bool(said))


async def test_what_capture_made_of_a_quarantined_submissions_fields_is_counted_once_when_it_is_released(
        client, pipeline):
    """Counted when quarantined, a bot's unread consent or long landing page said a form needed mending, and a
    released submission was counted twice."""
    def counted() -> tuple[float | None, float | None]:
        return (REGISTRY.get_sample_value("capture_consent_unread_total", {"field": "marketing_consent"}),
                REGISTRY.get_sample_value("capture_attribution_cut_total", {"field": "landing_page"}))

    before = counted()
    kept = await quarantined(client, pipeline, json={"email": "ada@example.com", "marketing_consent": "yes please",
                                                      "landing_page": "https://example.com/?q=" + "x" * 3000,
                                                      "_gotcha": "x"})
    assert counted() == before
    assert (await release(client, kept)).status_code == 200
    assert counted() == tuple((n or 0.0) + 1 for n in before)
    assert (await release(client, kept)).json()["repeated"]
    assert counted() == tuple((n or 0.0) + 1 for n in before)


async def test_a_released_submission_is_written_as_of_when_it_was_sent_not_when_it_was_released(client, pipeline):
    """Its yes or no counts only if newer than the person's word on record: dated by its release, a yes caught days
    ago would outweigh the no they gave since."""
    kept = await quarantined(client, pipeline, json={"email": "di@example.com", "marketing_consent": True,
                                                      "_gotcha": "x"})
    kept.received_at -= timedelta(days=3)
    r = await release(client, kept)
    assert r.status_code == 200, r.text
    assert (pipeline.lead.captured_at, pipeline.written[-1].consent) == (kept.received_at, True)


# -- what a bot is answered ----------------------------------------------------------------


async def test_a_bot_posting_the_address_of_a_person_with_an_open_lead_is_answered_as_their_touch_is(
        client, pipeline):
    """Each with the id it is kept under, and neither with the lead's: had the touch's answer named the lead, a bot
    answered with an id of its own would learn it was caught (and a person wrongly caught would be told of a lead
    their release never makes); had both, anyone would learn the person is in the pipeline."""
    open_lead = uuid.uuid4()
    pipeline.open_leads["ann@example.com"] = open_lead
    touch = await client.post(FORM, json={"email": "ann@example.com"}, headers=AS_JSON)
    caught = await client.post(FORM, json={"email": "Ann+offer@Example.com", "_gotcha": "x"}, headers=AS_JSON)
    assert touch.status_code == caught.status_code == 202
    kept, = pipeline.quarantined.values()
    [written] = pipeline.written
    assert (touch.json()["lead_id"], caught.json()["lead_id"]) == (str(written.lead.lead_id), str(kept.lead_id))
    assert open_lead not in (written.lead.lead_id, kept.lead_id)
    # Field for field the touch's answer, but for the id and when each was received.
    assert ({**caught.json(), "lead_id": None, "captured_at": None}
            == {**touch.json(), "lead_id": None, "captured_at": None})
    assert datetime.fromisoformat(caught.json()["captured_at"]) == kept.received_at


async def test_a_person_with_an_open_lead_caught_twice_is_kept_twice_under_the_ids_they_were_answered_with(
        client, pipeline):
    """Under the open lead's id, the second would collide with the first; a release hands the id to admit, which
    makes it a touch of the person's open lead then (or a lead under that id, none being open)."""
    open_lead = uuid.uuid4()
    pipeline.open_leads["bo@example.com"] = open_lead
    answers = [await client.post(FORM, json={"email": "bo@example.com", "_gotcha": str(i)}, headers=AS_JSON)
               for i in range(2)]
    first, second = pipeline.quarantined.values()
    assert [r.json()["lead_id"] for r in answers] == [str(first.lead_id), str(second.lead_id)]
    assert len({first.lead_id, second.lead_id, open_lead}) == 3
    r = await release(client, first)
    assert r.status_code == 200, r.text
    assert (pipeline.lead.lead_id, pipeline.written[-1].person_key) == (first.lead_id, "bo@example.com")


async def test_a_keyless_touch_is_logged_under_its_open_lead_and_its_own_id_while_answered_with_its_own(
        client, pipeline):
    """Only operators read the logs: the request's lines name the lead it touched as lead_id, and the touch as
    touch_id. Under lead_id, the touch's id (the answer's) sent whoever read them to a lead that does not exist.
    (The request runs in this test's own task, httpx's transport awaiting the app: what it bound for its later
    lines is in this context after it, as in the server's task of its own.)"""
    open_lead = uuid.uuid4()
    pipeline.open_leads["ann@example.com"] = open_lead

    async def post(email: str) -> tuple[str, dict[str, Any]]:
        structlog.contextvars.clear_contextvars()
        try:
            answer = await client.post(FORM, json={"email": email}, headers=AS_JSON)
            return answer.json()["lead_id"], structlog.contextvars.get_contextvars()
        finally:
            structlog.contextvars.clear_contextvars()

    touch, new = await post("ann@example.com"), await post("bo@example.com")
    touched, opened = (str(sub.lead.lead_id) for sub in pipeline.written)
    assert touch == (touched, {"lead_id": str(open_lead), "touch_id": touched})
    assert new == (opened, {"lead_id": opened})


async def test_a_bot_posting_the_address_of_a_person_without_an_open_lead_is_answered_with_its_own_id(
        client, pipeline):
    caught = await client.post(FORM, json={"email": "cy@example.com", "_gotcha": "x"}, headers=AS_JSON)
    kept, = pipeline.quarantined.values()
    assert caught.json()["lead_id"] == str(kept.lead_id) and "existing" not in caught.json()


# -- whether a person was known, and who is told ----------------------------------------------------


def importer() -> tuple["OneKey", dict[str, str]]:
    """A capture:write key (a server importing leads), and the header that sends it."""
    key = OneKey("1000/second")
    return key, {"Authorization": f"Bearer lpk_{key.holder.key_id}_secret"}


@pytest.mark.parametrize("path", ["/v1/leads", FORM])
async def test_an_anonymous_post_naming_a_person_with_an_open_lead_is_not_told_they_were_known(
        client, pipeline, path):
    """Anyone may post ceo@rival.com: told `existing`, they learned whether that person is in the sales pipeline."""
    pipeline.open_leads["ceo@rival.com"] = uuid.uuid4()
    known = await client.post(path, json={"email": "ceo@rival.com"}, headers=AS_JSON)
    new = await client.post(path, json={"email": "nobody@rival.com"}, headers=AS_JSON)
    assert known.status_code == new.status_code == 202
    assert set(known.json()) == set(new.json()) == {"lead_id", "status", "captured_at", "form_id"}
    # Each its own submission's id (the touch's, the new lead's), not the open lead's.
    assert [r.json()["lead_id"] for r in (known, new)] == [str(sub.lead.lead_id) for sub in pipeline.written]


async def test_which_anonymous_answers_name_one_id_says_nothing_of_whether_the_address_had_an_open_lead(
        client, pipeline):
    """Two answers naming one id told that the address had an open lead: two posts caught on purpose (a honeypot
    filled) named it only then, and so did one caught and one let through, without leaving a lead of their own."""
    open_lead = uuid.uuid4()
    pipeline.open_leads["known@rival.com"] = open_lead

    async def ids(email: str) -> list[str]:
        person, bot = {"email": email}, {"email": email, "_gotcha": "x"}
        return [(await client.post(FORM, json=body, headers=AS_JSON)).json()["lead_id"]
                for body in (bot, bot, person, person, bot)]

    known, new = await ids("known@rival.com"), await ids("new@rival.com")
    assert [known.index(i) for i in known] == [new.index(i) for i in new] == [0, 1, 2, 3, 4]
    assert str(open_lead) not in known


async def test_a_key_holder_is_told_whether_the_person_was_known(pipeline):
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    open_lead = uuid.uuid4()
    pipeline.open_leads["ceo@rival.com"] = open_lead
    key, sent = importer()
    async with serving(pipeline, settings, keys=key) as capture:
        known = await capture.post("/v1/leads", json={"email": "ceo@rival.com"}, headers=sent)
        new = await capture.post("/v1/leads", json={"email": "nobody@rival.com"}, headers=sent)
    assert (known.json()["lead_id"], known.json()["existing"]) == (str(open_lead), True)
    assert new.json()["existing"] is False


def test_the_answer_an_anonymous_posts_idempotency_key_keeps_says_nothing_of_its_person_either():
    """What the writer keeps for a key is the answer it gives: a retry hours later, in another process, is told no
    more than the first post was."""
    def sent(keyed: bool) -> Submitted:
        return Submitted(lead=factories.captured("ceo@rival.com"), person_key="ceo@rival.com",
                         request_id=uuid.uuid4(), traceparent=new_traceparent(), keyed=keyed)

    open_lead = uuid.uuid4()
    assert "existing" not in answer_for(open_lead, sent(keyed=False), existing=True)
    assert answer_for(open_lead, sent(keyed=True), existing=True)["existing"] is True


async def test_an_answer_kept_for_an_idempotency_key_by_an_earlier_version_is_replayed_without_existing(
        client, pipeline):
    """Earlier versions kept `existing` in every answer, an anonymous caller's too: replayed as it was kept, the
    retry would be told what the first post no longer is."""
    kept = {"lead_id": str(uuid.uuid4()), "status": "accepted", "captured_at": utc_now().isoformat(),
            "form_id": "contact-us", "existing": True}

    async def replay(submitted: Submitted) -> Admitted:
        return Admitted(kept, repeated=True)

    pipeline.write = replay  # type: ignore[method-assign]
    r = await client.post(FORM, json={"email": "ceo@rival.com"}, headers={**AS_JSON, "idempotency-key": "k1"})
    assert r.status_code == 202 and r.headers["idempotent-replayed"] == "true"
    assert r.json() == {k: v for k, v in kept.items() if k != "existing"}


# -- a body nested deep ---------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A lead whose field nobody reads is ``depth`` levels deep, the body around it one more."""
    return b'{"email": "a@example.com", "x": ' + b"[" * depth + b"]" * depth + b"}"


async def test_a_keyed_post_of_a_body_nested_too_deep_to_hash_is_refused_naming_the_body_at_any_depth(client):
    """json.loads takes a body a few levels deeper than the fingerprint's json.dumps can hash: that was a 500."""
    answers = {}
    for depth in range(850, 1050):
        r = await client.post("/v1/leads", content=nested(depth),
                              headers={"content-type": "application/json", "idempotency-key": f"deep-{depth}"})
        answers[depth] = r.status_code
        if r.status_code == 422:
            assert "nested" in refused(r, 422, "body")
    assert set(answers.values()) == {422}, {d: s for d, s in answers.items() if s != 422}


async def test_a_body_nested_past_the_limit_is_refused_and_one_within_it_taken(client, pipeline):
    headers = {"content-type": "application/json"}
    r = await client.post("/v1/leads", content=nested(api.MAX_NESTING), headers=headers)
    assert "nested" in refused(r, 422, "body")
    r = await client.post("/v1/leads", content=nested(api.MAX_NESTING - 1), headers=headers)
    assert r.status_code == 202, r.text


# -- a key's own rate limit -------------------------------------------------------------------


class OneKey:
    """The API keys capture finds: any key sent is one capture:write key, with ``rate_limit`` stored as its own."""

    def __init__(self, rate_limit: str) -> None:
        # An id of its own: capture warns of a key's invalid limit once a process.
        self.holder = Principal(uuid.uuid4().hex[:12], "importer", frozenset({"capture:write"}), rate_limit=rate_limit)

    async def authenticate(self, token: str) -> Principal:
        return self.holder

    def seen_valid(self, token: str) -> bool:
        return True


async def test_a_key_whose_stored_rate_limit_lets_nothing_through_posts_under_the_default_not_into_a_server_error(
        pipeline):
    """leadpipe-keys took --rate-limit 0/second, which capture cannot count by: each of the key's posts was a 500."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    key = OneKey("0/second")
    with structlog.testing.capture_logs() as lines:
        async with serving(pipeline, settings, keys=key) as capture:
            answers = [(await capture.post("/v1/leads", json={"email": f"a{i}@example.com"},
                                           headers={"Authorization": f"Bearer lpk_{key.holder.key_id}_secret"})
                        ).status_code for i in range(2)]
    assert answers == [202, 202] and len(pipeline.written) == 2
    warned = [line for line in lines if line["log_level"] == "warning" and line.get("key_id") == key.holder.key_id]
    assert len(warned) == 1 and "CAPTURE_KEY_RATE_LIMIT" in warned[0]["event"]


# -- wrong keys ------------------------------------------------------------------------------------


def made_up() -> dict[str, str]:
    """A key of the right shape that no database holds."""
    return {"Authorization": f"Bearer {new_key()[1]}"}


async def test_wrong_keys_to_the_posts_and_to_the_quarantine_add_to_one_count_per_address_each_once(pipeline):
    """The quarantine, served by the same internet-facing process, took made-up keys at any rate, each one a
    lookup; the posts' own count must not count a wrong key a second time."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, bad_key_rate_limit="3/minute")
    stored = NoKeysStored()
    async with serving(pipeline, settings, keys=Keys(stored, ADMIN)) as capture:
        codes = [(await capture.post("/v1/leads", json={"email": "a@example.com"}, headers=made_up())).status_code,
                 (await capture.get("/v1/quarantine", headers=made_up())).status_code,
                 (await capture.post(FORM, json={"email": "a@example.com"}, headers=made_up())).status_code,
                 (await capture.get("/v1/quarantine", headers=made_up())).status_code]
        looked_up = stored.lookups
        refused = await capture.post("/v1/leads", json={"email": "a@example.com"}, headers=made_up())
        browser = await capture.post("/v1/leads", json={"email": "b@example.com"})
        admin = await capture.post("/v1/leads", json={"email": "c@example.com"}, headers=AS_ADMIN)
    # The fourth within its address's lookups while over the limit (auth.THROTTLED_LOOKUPS_PER_ADDRESS).
    assert codes == [401, 401, 401, 429] and looked_up == 3 + 1
    assert refused.status_code == 429 and refused.headers["retry-after"].isdigit()
    assert browser.status_code == 202  # no key: not held up
    # The bootstrap key is held up from this address until the window ends: let through, it would tell a guesser.
    assert admin.status_code == 429


# -- a field's name no answer can carry ----------------------------------------------------


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
async def test_a_field_named_with_a_lone_surrogate_is_refused_naming_its_escape_not_with_a_server_error(
        client, pipeline, accept):
    """JSON lets a name hold a lone surrogate, which no UTF-8 answer can carry: the 422 naming it was a 500."""
    body = b'{"\\ud800": "a\\u0000", "email": "a@example.com"}'
    r = await client.post(FORM, content=body, headers={"content-type": "application/json", "accept": accept})
    assert r.status_code == 422, r.text
    if accept == "text/html":
        assert "<strong>\\ud800</strong>: must not contain the NUL character" in r.text
    else:
        assert "NUL" in refused(r, 422, "\\ud800")
    assert pipeline.written == []


# -- posts naming no listed form (the forms file's unlisted:) and what each client reads -----------------------

TOKEN_SECRET = "unlisted-tests-" + uuid.uuid4().hex
FORMS = {"forms": {"demo-request": {"name": "Request a demo", "offer": "demo", "require_token": True,
                                    "min_fill_seconds": 0},
                   "whitepaper": {"thank_you_url": "https://example.com/thanks"}},
         "unlisted": {"require_token": True, "min_fill_seconds": 0, "rate_limit": "2/minute"}}


def guarded(pipeline: Pipeline, tmp_path, forms: dict[str, Any] = FORMS, accept: str = "application/json",  # noqa: ANN001, ANN201
            verifier: Any = None):
    path = tmp_path / "forms.yaml"
    path.write_text(yaml.safe_dump(forms))
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, forms_file=path,
                               token_secret=TOKEN_SECRET)
    return serving(pipeline, settings, per_address="100/minute", accept=accept, verifier=verifier)


def written(pipeline: Pipeline) -> list[str | None]:
    return [sub.lead.attribution.form_id for sub in pipeline.written]


def reasons(pipeline: Pipeline) -> list[list[str]]:
    return [row.reasons for row in pipeline.quarantined.values()]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/forms/demo-requesT", {"email": "bot@example.com", "offer": "demo"}),
    ("/v1/leads", {"email": "bot@example.com", "offer": "demo", "utm_source": "google"}),
    ("/v1/leads", {"email": "bot@example.com", "form_id": "not-listed"}),
], ids=["a-form-id-one-letter-off", "the-json-endpoint", "the-json-endpoint-naming-an-unlisted-form"])
async def test_a_post_naming_no_listed_form_gets_the_unlisted_checks_not_a_way_around_them(pipeline, tmp_path, path,
                                                                                          body):
    async with guarded(pipeline, tmp_path) as capture:
        reply = await capture.post(path, json=body)
    assert reply.status_code == 202  # answered as a person is
    assert written(pipeline) == []
    assert reasons(pipeline) == [["no form token (the form's token script did not run)"]]


async def test_a_token_for_an_unlisted_form_id_is_handed_out_and_lets_its_post_in(pipeline, tmp_path):
    async with guarded(pipeline, tmp_path) as capture:
        token = (await capture.get("/v1/forms/landing-page-7/token")).json()["token"]
        reply = await capture.post("/v1/forms/landing-page-7", json={"email": "jo@example.com", TOKEN_FIELD: token})
        stolen = await capture.post("/v1/forms/landing-page-8", json={"email": "jo@example.com", TOKEN_FIELD: token})
    assert (reply.status_code, stolen.status_code) == (202, 202)
    assert written(pipeline) == ["landing-page-7"]
    assert reasons(pipeline) == [["the form token is forged or belongs to another form"]]


async def test_without_unlisted_checks_an_unlisted_form_has_no_token_to_ask_for_and_only_the_honeypot(pipeline,
                                                                                                     tmp_path):
    key = token_key(CaptureSettings(DATABASE_URL=NOWHERE, token_secret=TOKEN_SECRET), [])
    async with guarded(pipeline, tmp_path, {"forms": FORMS["forms"]}) as capture:
        missing = await capture.get("/v1/forms/landing-page-7/token")
        listed = await capture.post("/v1/forms/demo-request", json={
            "email": "jo@example.com", TOKEN_FIELD: issue_form_token("demo-request", datetime.now(UTC), key)})
        unlisted = await capture.post("/v1/forms/landing-page-7", json={"email": "jo@example.com"})
    assert missing.status_code == 404
    assert (listed.status_code, unlisted.status_code) == (202, 202)
    assert written(pipeline) == ["demo-request", "landing-page-7"] and pipeline.quarantined == {}


async def test_posts_naming_no_listed_form_share_the_unlisted_rate_limit(pipeline, tmp_path):
    async with guarded(pipeline, tmp_path) as capture:
        codes = [(await capture.post(path, json={"email": "jo@example.com"})).status_code
                 for path in ("/v1/forms/x1", "/v1/leads", "/v1/forms/x2")]
    assert codes == [202, 202, 429]


@pytest.mark.parametrize(("name", "text", "line", "key"), [
    # The second demo-request, pasted in to add a CAPTCHA, replaced the first and its offer: demo went unscored.
    ("forms.yaml", "forms:\n  demo-request: {offer: demo}\n  demo-request: {captcha: {provider: turnstile}}\n", 3,
     "demo-request"),
    ("identity.yaml", "plus_tags: true\nproviders:\n  gmail.com: {ignore_dots: true}\nplus_tags: false\n", 4,
     "plus_tags"),
])
def test_a_key_given_twice_in_the_forms_or_identity_file_is_refused_naming_the_key_and_its_line(tmp_path, name, text,
                                                                                                line, key):
    path = tmp_path / name
    path.write_text(text)
    load = load_forms if name == "forms.yaml" else load_identity
    with pytest.raises(ValueError, match=rf"^{path}:{line}:\d+: '{key}' is given again"):
        load(path)


def test_a_quoted_false_in_the_identity_file_stops_capture_naming_the_file_the_entry_and_the_key(tmp_path):
    """ignore_dots: "false" was read as true: j.doe@acme.com and jdoe@acme.com were one person, and one's post a
    touch of the other's lead."""
    path = tmp_path / "identity.yaml"
    path.write_text('plus_tags: true\nproviders:\n  acme.com: {ignore_dots: "false"}\n')
    with pytest.raises(ValueError, match=rf"^{path}: providers.acme.com.ignore_dots: expected true or false, not "
                                         r"'false' \(leave out the quotes\)$"):
        load_identity(path)


def test_a_setting_left_empty_in_the_identity_file_is_its_default(tmp_path):
    """ignore_dots: ~ (or nothing after the colon) is YAML's null: earlier versions read it as the default, false;
    refused as no true or false, a file kept from them stopped capture."""
    path = tmp_path / "identity.yaml"
    path.write_text("plus_tags: ~\nproviders:\n  acme.com: {ignore_dots: ~, plus_tags: ~}\n  gmail.com:\n"
                    "    ignore_dots: true\n  googlemail.com:\n    same_as: gmail.com\n    ignore_dots:\n")
    rules = load_identity(path)
    assert person_key("J.Doe+news@acme.com", rules) == "j.doe@acme.com"  # dots kept, +tags dropped
    assert person_key("j.doe+news@googlemail.com", rules) == "jdoe@gmail.com"  # an alias, with no rules of its own


def test_a_token_or_captcha_on_listed_forms_alone_is_called_out_at_start():
    def warning(raw: dict[str, Any]) -> str | None:
        return unguarded_warning(FormsFile(parse_forms(raw), parse_unlisted(raw)))

    assert "demo-request" in (warning({"forms": FORMS["forms"]}) or "")
    assert warning(FORMS) is None
    assert warning({"forms": {"contact-us": {}}}) is None


def test_a_captcha_on_a_listed_form_is_called_out_while_unlisted_asks_only_for_a_token_a_bot_fetches_for_free():
    """A bot fetched the token of /v1/forms/contact-uz and posted there: the CAPTCHA of contact-us was walked around
    with no word at start."""
    def warning(raw: dict[str, Any]) -> str | None:
        return unguarded_warning(FormsFile(parse_forms(raw), parse_unlisted(raw)))

    captcha = {"provider": "turnstile", "secret_env": "TEST_TURNSTILE_SECRET"}
    forms = {"contact-us": {"captcha": captcha}, "demo-request": {"require_token": True}}
    called_out = warning({"forms": forms, "unlisted": {"require_token": True}}) or ""
    assert "['contact-us'] require a CAPTCHA" in called_out and "unlisted: a captcha" in called_out
    assert "demo-request" not in called_out  # its token is asked of every post there too
    assert "a captcha too" in (warning({"forms": forms}) or "")
    assert warning({"forms": forms, "unlisted": {"captcha": captcha}}) is None


@pytest.mark.parametrize(("accept", "send", "status", "type_"), [
    ("*/*", {"json": {"email": "jo@example.com"}}, 202, "application/json"),
    ("*/*", {"data": {"email": "jo@example.com"}}, 303, None),
    ("text/html,*/*", {"json": {"email": "jo@example.com"}}, 303, None),
    ("*/*", {"json": {"email": "not an address"}}, 422, "application/json"),
    ("*/*", {"data": {"email": "not an address"}}, 422, "text/html"),
], ids=["fetch-posting-json", "html-form", "json-asking-for-html", "fetch-refused", "html-form-refused"])
async def test_a_page_posting_json_with_fetchs_default_accept_reads_the_api_answer_and_a_form_the_page(
        pipeline, tmp_path, accept, send, status, type_):
    async with guarded(pipeline, tmp_path, accept=accept) as capture:
        reply = await capture.post("/v1/forms/whitepaper", **send)
    assert reply.status_code == status
    if type_:
        assert reply.headers["content-type"].startswith(type_)
    if status == 303:
        assert reply.headers["location"] == "https://example.com/thanks"


#: What a browser marks a page's fetch() or XMLHttpRequest with, and a form's navigation.
FETCH = {"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "sec-fetch-site": "cross-site"}
NAVIGATION = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-site": "cross-site"}
NAVIGATION_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(("accept", "marks", "send", "status", "type_"), [
    ("*/*", FETCH, {"data": {"email": "jo@example.com"}}, 202, "application/json"),
    ("*/*", FETCH, {"files": {"email": (None, "jo@example.com")}}, 202, "application/json"),
    ("*/*", FETCH, {"data": {"email": "not an address"}}, 422, "application/json"),
    ("*/*", {"sec-fetch-mode": "same-origin", "sec-fetch-dest": "empty"}, {"data": {"email": "jo@example.com"}}, 202,
     "application/json"),
    ("text/html, text/event-stream", FETCH, {"data": {"email": "jo@example.com"}}, 303, None),
    (NAVIGATION_ACCEPT, NAVIGATION, {"data": {"email": "jo@example.com"}}, 303, None),
    (NAVIGATION_ACCEPT, NAVIGATION, {"data": {"email": "not an address"}}, 422, "text/html"),
], ids=["fetch-posting-form-data", "fetch-posting-multipart", "fetch-refused", "same-origin-fetch",
        "script-asking-for-html", "form-navigation", "form-navigation-refused"])
async def test_a_page_posting_a_form_body_with_fetch_reads_the_api_answer_and_a_form_navigation_is_redirected(
        pipeline, tmp_path, accept, marks, send, status, type_):
    """fetch(url, {method: "POST", body: new FormData(form)}) was redirected to a thank-you page on another site,
    which failed the fetch with a CORS error after the lead was stored: the page may send it again."""
    async with guarded(pipeline, tmp_path, accept=accept) as capture:
        reply = await capture.post("/v1/forms/whitepaper", headers=marks, **send)
    answered_as(reply, status, type_)
    if status == 202:
        assert reply.json()["lead_id"] == str(pipeline.lead.lead_id)


def answered_as(reply, status: int, type_: str | None) -> None:  # noqa: ANN001
    """The whitepaper form's answer: its status, its media type if given, the thank-you page if redirected."""
    assert reply.status_code == status, reply.text
    if type_:
        assert reply.headers["content-type"].startswith(type_)
    if status == 303:
        assert reply.headers["location"] == "https://example.com/thanks"


#: What htmx 1 and 2 send from a page on capture's own site: XMLHttpRequest's Accept, and HX-Request.
HTMX = {"hx-request": "true", "sec-fetch-mode": "same-origin", "sec-fetch-dest": "empty",
        "sec-fetch-site": "same-origin"}


@pytest.mark.parametrize(("send", "status", "type_"), [
    ({"data": {"email": "jo@example.com"}}, 200, "text/html"),
    ({"data": {"email": "not an address"}}, 422, "text/html"),
    ({"json": {"email": "jo@example.com"}}, 202, "application/json"),
], ids=["htmx-posting-a-form", "htmx-refused", "htmx-posting-json"])
async def test_htmx_posting_a_form_gets_the_pages_it_swaps_in_not_json(pipeline, tmp_path, send, status, type_):
    """htmx 1 and 2 send Accept: */* and the marks of a script's request: answered as a fetch(), they swapped the
    JSON answer into the page. A JSON body (htmx's json-enc) still reads the JSON answer, as before."""
    async with guarded(pipeline, tmp_path, accept="*/*") as capture:
        reply = await capture.post("/v1/forms/whitepaper", headers=HTMX, **send)
    answered_as(reply, status, type_)


#: The whitepaper form, posted to by htmx on a page of another site that the form allows.
HTMX_PAGE = "https://www.example.org"
FROM_HTMX_PAGE = {"forms": {"whitepaper": {"thank_you_url": "https://example.com/thanks",
                                           "allowed_origins": [HTMX_PAGE]}}}


@pytest.mark.parametrize("accept", ["*/*", "text/html"], ids=["htmx-2", "htmx-4"])
async def test_htmx_posting_to_a_form_with_a_thank_you_page_is_sent_there_by_hx_redirect_not_a_redirect_it_follows(
        pipeline, tmp_path, accept):
    """htmx followed the 303 inside its own request: to a thank-you page on another site that failed (CORS), and
    the visitor saw an error though the lead was stored. htmx reads HX-Redirect only on a 2xx, and only if a page
    of another origin may read it."""
    async with guarded(pipeline, tmp_path, FROM_HTMX_PAGE, accept=accept) as capture:
        reply = await capture.post("/v1/forms/whitepaper", data={"email": "jo@example.com"},
                                   headers={**HTMX, "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors",
                                            "origin": HTMX_PAGE})
    assert reply.status_code == 200, reply.text
    assert reply.headers["hx-redirect"] == "https://example.com/thanks"
    assert "location" not in reply.headers
    exposed = {h.strip().lower() for h in reply.headers["access-control-expose-headers"].split(",")}
    assert "hx-redirect" in exposed
    assert written(pipeline) == ["whitepaper"]


async def test_htmx_is_sent_to_a_thank_you_page_at_a_host_beyond_latin_1_not_answered_500_after_the_lead_is_stored(
        pipeline, tmp_path):
    jp = {"forms": {"whitepaper": {"thank_you_url": "https://例え.jp/ありがとう"}}}
    async with guarded(pipeline, tmp_path, jp, accept="*/*") as capture:
        reply = await capture.post("/v1/forms/whitepaper", data={"email": "jo@example.com"}, headers=HTMX)
    assert reply.status_code == 200, reply.text
    assert reply.headers["hx-redirect"] == "https://xn--r8jz45g.jp/%E3%81%82%E3%82%8A%E3%81%8C%E3%81%A8%E3%81%86"
    assert written(pipeline) == ["whitepaper"]


async def test_a_browsers_own_form_post_is_still_redirected_to_the_thank_you_page_not_told_it_in_hx_redirect(
        pipeline, tmp_path):
    async with guarded(pipeline, tmp_path, FROM_HTMX_PAGE, accept=NAVIGATION_ACCEPT) as capture:
        reply = await capture.post("/v1/forms/whitepaper", data={"email": "jo@example.com"},
                                   headers={**NAVIGATION, "origin": HTMX_PAGE})
    answered_as(reply, 303, None)
    assert "hx-redirect" not in reply.headers


# -- a form's action as sites write it, and capture behind a proxy's path prefix ------------------------------

#: A page of another site that may post every form and the JSON API (``CAPTURE_CORS_ORIGINS``).
CORS_PAGE = "https://www.example.net"


def cross_origin(pipeline: Pipeline, tmp_path, accept: str = "*/*", root_path: str = ""):  # noqa: ANN001, ANN201
    path = tmp_path / "forms.yaml"
    path.write_text(yaml.safe_dump({"forms": {"whitepaper": {"thank_you_url": "https://example.com/thanks"}}}))
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, forms_file=path,
                               cors_origins=CORS_PAGE)
    return serving(pipeline, settings, accept=accept, root_path=root_path)


@pytest.mark.parametrize(("path", "send"), [
    ("/v1/forms/whitepaper/", {"data": {"email": "jo@example.com"}}),
    ("/v1/leads/", {"json": {"email": "jo@example.com"}}),
], ids=["form-action", "json-endpoint"])
async def test_a_post_to_a_public_path_with_a_trailing_slash_is_taken_with_its_cors_headers_not_redirected(
        pipeline, tmp_path, path, send):
    """Starlette answered 307 to the path without the slash, built with the scheme this process sees (http://
    behind a TLS proxy, whose 301 to https made the POST a GET) and without CORS headers (the fetch failed)."""
    async with cross_origin(pipeline, tmp_path) as capture:
        preflight = await capture.options(path, headers={"origin": CORS_PAGE,
                                                         "access-control-request-method": "POST"})
        reply = await capture.post(path, headers={**FETCH, "origin": CORS_PAGE}, **send)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == CORS_PAGE
    assert reply.status_code == 202, reply.text
    assert reply.headers["access-control-allow-origin"] == CORS_PAGE
    assert len(pipeline.written) == 1


async def test_a_browsers_form_post_to_an_action_with_a_trailing_slash_is_sent_to_the_thank_you_page(
        pipeline, tmp_path):
    async with cross_origin(pipeline, tmp_path, accept=NAVIGATION_ACCEPT) as capture:
        reply = await capture.post("/v1/forms/whitepaper/", data={"email": "jo@example.com"}, headers=NAVIGATION)
    answered_as(reply, 303, None)
    assert written(pipeline) == ["whitepaper"]


async def test_a_retry_to_the_path_with_a_trailing_slash_is_the_same_post_for_its_idempotency_key(pipeline, tmp_path):
    async with cross_origin(pipeline, tmp_path, accept="application/json") as capture:
        sent = [await capture.post(path, data={"email": "jo@example.com"}, headers={"idempotency-key": "k-1"})
                for path in ("/v1/forms/whitepaper", "/v1/forms/whitepaper/")]
    assert [r.status_code for r in sent] == [202, 202]
    first, retry = (sub.idempotency_key for sub in pipeline.written)
    assert first == retry  # the writer answers the retry from the first post


@pytest.mark.parametrize("path", ["/leads/v1/forms/whitepaper", "/leads/v1/forms/whitepaper/", "/leads/v1/leads"])
async def test_behind_a_proxys_path_prefix_kept_in_the_path_a_page_of_an_allowed_origin_may_post(
        pipeline, tmp_path, path):
    """CORS matched the whole path, prefix and all: the preflight went to the router (405) and the post was
    answered without access-control-allow-origin, so the browser withheld it from the page."""
    async with cross_origin(pipeline, tmp_path, root_path="/leads") as capture:
        preflight = await capture.options(path, headers={"origin": CORS_PAGE,
                                                         "access-control-request-method": "POST"})
        reply = await capture.post(path, json={"email": "jo@example.com"}, headers={**FETCH, "origin": CORS_PAGE})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == CORS_PAGE
    assert reply.status_code == 202, reply.text
    assert reply.headers["access-control-allow-origin"] == CORS_PAGE


async def test_behind_a_proxys_path_prefix_kept_in_the_path_a_refused_form_post_is_a_page_a_person_reads(
        pipeline, tmp_path):
    async with cross_origin(pipeline, tmp_path, accept=NAVIGATION_ACCEPT, root_path="/leads") as capture:
        reply = await capture.post("/leads/v1/forms/whitepaper", data={"email": "not an address"}, headers=NAVIGATION)
    answered_as(reply, 422, "text/html")


# -- token.js, run in Node over a stand-in for the DOM -----------------------------------------------------------

HARNESS = Path(__file__).with_name("token_js_harness.js")
RENEWED = {"forms": {"demo-request": {"require_token": True, "min_fill_seconds": 3, "token_max_age_seconds": 100}}}


def run_token_script(script: str, renewals: list[str], forms: list[str],
                     steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each step saw: each form's token, the renewals asked for, ``window.leadpipeTokens``'s."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    given = {"form": "demo-request", "forms": forms, "first": script, "renewals": renewals, "steps": steps}
    ran = subprocess.run([node, str(HARNESS)], input=json.dumps(given), capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def first_token(script: str) -> str:
    return json.loads(script.split("token = ", 1)[1].split(",", 1)[0])


def issued_after(script: str, seconds: float, name: str) -> str:
    """A token of the form as issued ``seconds`` after the script's own (the script reads only the time it starts
    with, not its signature), for a renewal to hand over."""
    stamp = int(first_token(script).split(".")[0], 16) + int(seconds * 1000)
    return f"{stamp:x}.{name}"


def renewal(script: str, token: str) -> str:
    """The script as a renewal loads it, carrying ``token``."""
    return script.replace(json.dumps(first_token(script)), json.dumps(token))


async def test_the_token_script_is_the_forms_own_and_never_cached(pipeline, tmp_path):
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = await capture.get("/v1/forms/demo-request/token.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-store"  # a cached token says the form was shown long ago
    assert "maxAgeMs = 100.0 * 1000, minFillMs = 3.0 * 1000" in script.text


async def test_the_token_script_fills_forms_rendered_later_at_submit_and_renews_a_token_half_its_max_age_old(
        pipeline, tmp_path):
    """It filled the forms present at DOMContentLoaded, once: a form rendered later (React, a modal) got no token,
    and a tab left open past the token's max age sent an expired one; both quarantined while the visitor saw the
    thanks. A renewed token is used only once it is min_fill_seconds old: sooner, it would be taken for a bot's."""
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = (await capture.get("/v1/forms/demo-request/token.js")).text
    first, renewed = first_token(script), issued_after(script, 51, "renewed")
    seen = run_token_script(script, [renewal(script, renewed)], [
        "https://capture.example/v1/forms/demo-request/", "https://capture.example/v1/forms/demo-request-other"], [
        {"at": 10, "add": "/v1/forms/demo-request?src=ads"},
        {"at": 20, "submit": 2},
        {"at": 51, "submit": 2},  # half the max age: a renewal is asked for
        {"at": 52, "load": True, "submit": 2},
        {"at": 55, "submit": 0},
    ])
    assert [s["tokens"] for s in seen] == [[first, None, None], [first, None, first], [first, None, first],
                                           [first, None, first], [renewed, None, renewed]]
    assert [s["asked"] for s in seen] == [0, 0, 1, 0, 0]
    assert [s["global"] for s in seen] == [first] * 4 + [renewed]


async def test_a_renewal_run_long_after_it_was_issued_is_sent_at_once_on_waking_and_renewed_again(pipeline, tmp_path):
    """A renewal asked for just before a laptop slept runs when it wakes, as old as the sleep: taken for a new token,
    it was held back for min_fill_seconds while the token sent instead had expired in the sleep, then sent expired
    itself until half the max age after the wake, the next renewal not asked for until then."""
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = (await capture.get("/v1/forms/demo-request/token.js")).text
    first, slept, woke = (first_token(script), issued_after(script, 60, "slept"), issued_after(script, 150, "woke"))
    seen = run_token_script(script, [renewal(script, slept), renewal(script, woke)], ["/v1/forms/demo-request"], [
        {"at": 60, "submit": 0},  # past half the max age (100 s): a renewal is asked for, and the laptop sleeps
        {"at": 150, "load": True, "submit": 0},  # it runs on waking, 90 s old; the first, 150 s old, has expired
        {"at": 151, "load": True},
        {"at": 154.5, "submit": 0},
    ])
    assert [s["tokens"] for s in seen] == [[first], [slept], [slept], [woke]]
    assert [s["asked"] for s in seen] == [1, 1, 0, 0]


async def test_the_token_script_fills_a_form_rendered_later_when_the_person_moves_into_it_or_types_in_it(
        pipeline, tmp_path):
    """A page's script sending the form with form.submit() fires no submit event: a form rendered after load was
    sent without a token, and quarantined."""
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = (await capture.get("/v1/forms/demo-request/token.js")).text
    first = first_token(script)
    seen = run_token_script(script, [], [], [
        {"at": 1, "add": "/v1/forms/demo-request"}, {"at": 2, "add": "/v1/forms/demo-request"},
        {"at": 3, "add": "/v1/forms/somewhere-else"},
        {"at": 10, "focusin": 0}, {"at": 11, "input": 1}, {"at": 12, "focusin": 2, "input": 2},
    ])
    assert [s["tokens"] for s in seen[3:]] == [[first, None, None], [first, first, None], [first, first, None]]


async def test_the_token_script_fills_a_form_sent_to_capture_by_its_buttons_formaction(pipeline, tmp_path):
    """Where the button a form is sent with says (formaction), not the form's own action, is where it posts."""
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = (await capture.get("/v1/forms/demo-request/token.js")).text
    first = first_token(script)
    seen = run_token_script(script, [], ["/search", "/search", "/search"], [
        {"at": 5, "submit": 0, "submitter": "https://capture.example/v1/forms/demo-request"},
        {"at": 6, "submit": 1, "submitter": "/v1/forms/demo-request-other"},
        {"at": 7, "submit": 2},
    ])
    assert seen[-1]["tokens"] == [first, None, None]


async def test_a_page_reading_the_token_as_it_sends_with_fetch_gets_a_renewal_no_timer_handed_over_while_asleep(
        pipeline, tmp_path):
    """window.leadpipeTokens changed only when a timer or an event of the page's ran the script: read on waking,
    before any had, it was the token that expired in the sleep while the renewal at hand was valid."""
    async with guarded(pipeline, tmp_path, RENEWED) as capture:
        script = (await capture.get("/v1/forms/demo-request/token.js")).text
    first, renewed = first_token(script), issued_after(script, 60, "renewed")
    seen = run_token_script(script, [renewal(script, renewed)], [], [
        {"at": 60, "focusin": None},  # the person moves into a field of a page posting with fetch(): a renewal
        {"at": 61, "load": True},  # arrives, and the laptop sleeps before the timer that would hand it over
        {"at": 140},  # on waking the page reads the token to send: the first, 140 s old, has expired
        {"at": 141},
    ])
    assert [s["asked"] for s in seen] == [1, 0, 1, 1]
    assert [s["global"] for s in seen] == [first, first, renewed, renewed]


class Verifier:
    """Siteverify as capture calls it: every answer solved; notes what each check was counted under."""

    def __init__(self) -> None:
        self.counted_as: list[str] = []

    async def verify(self, form_id: str, captcha: Any, answer: str, remote_ip: str | None,
                     submission: str | None = None) -> dict[str, Any]:
        self.counted_as.append(form_id)
        return {"success": True}

    def forget(self, submission: str) -> None:
        pass


async def test_captcha_checks_of_made_up_form_ids_are_counted_together_not_as_a_series_each(
        pipeline, tmp_path, monkeypatch):
    """Each id a caller made up was a metric series of its own that capture kept for ever."""
    monkeypatch.setenv("TEST_TURNSTILE_SECRET", "s")
    captcha = {"provider": "turnstile", "secret_env": "TEST_TURNSTILE_SECRET"}
    verifier = Verifier()
    async with guarded(pipeline, tmp_path, {"forms": {"contact-us": {"captcha": captcha}}, "unlisted": {"captcha": captcha}},
                       verifier=verifier) as capture:
        for path in ("/v1/forms/contact-us", "/v1/forms/made-up-1", "/v1/forms/made-up-2"):
            reply = await capture.post(path, json={"email": "jo@example.com", "cf-turnstile-response": "ok"})
            assert reply.status_code == 202
    assert verifier.counted_as == ["contact-us", "(unlisted)", "(unlisted)"]
    assert written(pipeline) == ["contact-us", "made-up-1", "made-up-2"]


# -- what no widget or token script sends --------------------------------------------------------------------

TURNSTILE = {"provider": "turnstile", "secret_env": "TEST_TURNSTILE_SECRET"}


def siteverify(verdict: dict[str, Any], asked: list[httpx.Request]) -> SiteverifyClient:
    """capture's siteverify client, the verifier answering ``verdict`` to each request, noted in ``asked``."""
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=verdict)

    return SiteverifyClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), {"TEST_TURNSTILE_SECRET": "s"})


def with_field(name: str, json_text: bytes) -> dict[str, Any]:
    """A lead's post with ``name`` set to ``json_text`` as written in the body (a lone surrogate survives)."""
    return {"content": b'{"email": "jo@example.com", "' + name.encode() + b'": ' + json_text + b"}",
            "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("token", [b'"\\ud800"', b'"1.\\ud800"'])
async def test_a_form_token_holding_a_lone_surrogate_is_taken_for_a_forged_one_not_a_server_error(
        pipeline, tmp_path, token):
    async with guarded(pipeline, tmp_path) as capture:
        reply = await capture.post("/v1/forms/demo-request", **with_field(TOKEN_FIELD, token))
    assert reply.status_code == 202  # answered as a person is
    assert written(pipeline) == []
    assert reasons(pipeline) == [["the form token is forged or belongs to another form"]]


async def test_a_captcha_answer_no_widget_gives_is_unsolved_without_a_call_to_the_verifier(
        pipeline, tmp_path, monkeypatch):
    """A lone surrogate could not be sent to the verifier (a 500); a Turnstile token is at most 2,048 characters."""
    monkeypatch.setenv("TEST_TURNSTILE_SECRET", "s")
    asked: list[httpx.Request] = []
    async with guarded(pipeline, tmp_path, {"forms": {"contact-us": {"captcha": TURNSTILE}}},
                       verifier=siteverify({"success": True}, asked)) as capture:
        for answer in (b'"\\ud800"', json.dumps("x" * 2049).encode(), b'"solved"'):
            reply = await capture.post("/v1/forms/contact-us", **with_field("cf-turnstile-response", answer))
            assert reply.status_code == 202, reply.text
    assert len(asked) == 1 and written(pipeline) == ["contact-us"]
    assert reasons(pipeline) == [
        ["the CAPTCHA was not solved (the answer is not text a widget gives)"],
        ["the CAPTCHA was not solved (the answer is 2,049 characters long; the widget's are at most 2,048)"]]


@pytest.mark.parametrize("codes", [5, [{"code": "bad"}], "invalid-input-response"])
async def test_a_verifier_answering_error_codes_in_another_shape_leaves_the_post_unsolved_not_failed(
        pipeline, tmp_path, monkeypatch, codes):
    """A number there was a 500 (a dict among them too, in the client's own count of refused secrets)."""
    monkeypatch.setenv("TEST_TURNSTILE_SECRET", "s")
    verdict = {"success": False, "error-codes": codes}
    async with guarded(pipeline, tmp_path, {"forms": {"contact-us": {"captcha": TURNSTILE}}},
                       verifier=siteverify(verdict, [])) as capture:
        reply = await capture.post("/v1/forms/contact-us", json={"email": "jo@example.com",
                                                                 "cf-turnstile-response": "token"})
    assert reply.status_code == 202, reply.text
    assert written(pipeline) == [] and len(reasons(pipeline)) == 1
    assert reasons(pipeline)[0][0].startswith("the CAPTCHA was not solved")


# -- when a submission cannot be stored -----------------------------------------------------------------------


async def posted_while_storing_fails(pipeline: Pipeline, error: Exception,
                                     sender: str) -> tuple[httpx.Response, list[Exception]]:
    """A post (a person's lead, or a bot's submission for the quarantine) while writing it raises ``error``: the
    answer, and what reached the server."""
    pipeline.failures.append(error)
    escaped: list[Exception] = []
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    async with serving(pipeline, settings, escaped=escaped) as capture:
        reply = await capture.post(FORM, json={"email": "jo@example.com", "_gotcha": "x" if sender == "a bot" else ""},
                                   headers=AS_JSON)
    return reply, escaped


@pytest.mark.parametrize("error", [
    WriterStopped("the writer has stopped"), WriteTimedOut(1.0),
    asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
    ConnectionRefusedError("connection refused")],
    ids=["the writer stopping", "Postgres silent", "a person's row held elsewhere", "Postgres unreachable"])
@pytest.mark.parametrize("sender", ["a person", "a bot"])
async def test_a_submission_the_database_cannot_store_now_is_answered_503_to_retry(pipeline, error, sender):
    reply, escaped = await posted_while_storing_fails(pipeline, error, sender)
    assert (reply.status_code, reply.headers.get("retry-after")) == (503, "5"), reply.text
    assert reply.json()["error"] == "leads cannot be stored right now; please retry"
    assert escaped == []


@pytest.mark.parametrize("error", [
    asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.UndefinedTableError('relation "capture.leads" does not exist')],
    ids=["a constraint", "a migration not applied"])
@pytest.mark.parametrize("sender", ["a person", "a bot"])
async def test_a_submission_postgres_refuses_for_good_is_a_server_error_with_its_traceback_logged(
        pipeline, error, sender):
    """Answered 503 "please retry", an error Postgres gives again was retried by every client for ever, and logged
    nowhere."""
    reply, escaped = await posted_while_storing_fails(pipeline, error, sender)
    assert reply.status_code == 500 and "retry-after" not in reply.headers
    assert escaped == [error]  # to the server, which logs it with its traceback
    assert pipeline.written == [] and pipeline.quarantined == {}


async def test_a_server_error_reaches_a_sites_script_with_its_cors_headers(pipeline, tmp_path):
    """Answered by Starlette's outermost handler, outside capture's CORS, the 500 reached the site's script as a
    network error: it could neither tell the visitor the form failed nor read why."""
    pipeline.failures.append(asyncpg.UndefinedTableError('relation "capture.leads" does not exist'))
    async with cross_origin(pipeline, tmp_path) as capture:
        reply = await capture.post("/v1/leads", json={"email": "jo@example.com"}, headers={**FETCH, "origin": CORS_PAGE})
    assert reply.status_code == 500 and reply.headers["access-control-allow-origin"] == CORS_PAGE
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "log" in reply.json()["error"]


@pytest.mark.parametrize("error", [
    asyncpg.InternalClientError("got result for unknown protocol state 3"), RuntimeError("a bug")],
    ids=["the client's own error on a lost connection", "a bug"])
@pytest.mark.parametrize("sender", ["a person", "a bot"])
async def test_a_submission_failing_for_an_unexpected_reason_is_answered_503_to_retry_and_its_traceback_logged(
        pipeline, error, sender):
    """Answered 500, a lead posted while Postgres restarted was refused for asyncpg's own error on a connection
    lost mid-round (the fault tests saw one), which a retry cures: such an error, like a bug, is a 503 to retry,
    and logged with its traceback so that a bug is seen."""
    with structlog.testing.capture_logs() as lines:
        reply, escaped = await posted_while_storing_fails(pipeline, error, sender)
    assert (reply.status_code, reply.headers.get("retry-after")) == (503, "5"), reply.text
    assert escaped == []
    [logged] = [line for line in lines if line["event"].startswith("a lead could not be stored")]
    assert logged["log_level"] == "error" and logged.get("exc_info") is True


SILENT_FOR_A_MOMENT = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN,
                                     db_request_deadline_s=0.05)


@pytest.mark.parametrize("request_", [
    ("POST", FORM, {"json": {"email": "jo@example.com", "_gotcha": "x"}, "headers": AS_JSON}),
    ("GET", "/v1/quarantine", {"headers": AS_ADMIN}),
    ("POST", f"/v1/quarantine/{uuid.uuid4()}/release", {"headers": AS_ADMIN})],
    ids=["a bot's submission, quarantined", "the quarantine listed", "a quarantined submission released"])
async def test_quarantine_work_postgres_never_answers_is_answered_503_to_retry_at_its_deadline(pipeline, request_):
    """A write round gives up on a silent Postgres (a network partition); the quarantine waited until the operating
    system gave up on its connection, minutes later, holding the request and its client."""
    method, path, send = request_
    pipeline.silent = True
    started = time.monotonic()
    async with serving(pipeline, SILENT_FOR_A_MOMENT) as capture:
        reply = await asyncio.wait_for(capture.request(method, path, **send), timeout=5)
    assert (reply.status_code, reply.headers.get("retry-after")) == (503, "5"), reply.text
    assert time.monotonic() - started < 1


async def test_a_post_whose_key_postgres_does_not_look_up_in_time_is_answered_503_to_retry_never_401(pipeline):
    """On the fast lane too, which finds the app's answer to an error by its class."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    async with serving(pipeline, settings, keys=Keys(NeverAnswers(), ADMIN, deadline_s=0.05)) as capture:
        reply = await asyncio.wait_for(capture.post("/v1/leads", json={"email": "jo@example.com"},
                                                    headers={"Authorization": f"Bearer {new_key()[1]}"}), timeout=5)
    assert (reply.status_code, reply.headers.get("retry-after")) == (503, "5"), reply.text
    assert pipeline.written == []


# -- the page a browser's refused form post gets -------------------------------------------------------------

AS_A_BROWSER = {"accept": "text/html"}
CORRECT_IT = "correct it and send it again"


@pytest.mark.parametrize("media", ["application/json", "multipart/form-data; boundary=x"])
async def test_a_client_gone_before_its_body_was_whole_is_a_refusal_not_a_server_error(media):
    """A tab closed mid-submit raised ClientDisconnect past capture's fast lane: a traceback at ERROR and a 500 for
    every such visitor, an alert on normal behaviour."""
    from starlette.requests import Request

    from capture.api import _parse_fields
    from leadpipe_common.http import Problem

    messages = [{"type": "http.request", "body": b'{"email": "ann@exa', "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request({"type": "http", "method": "POST", "path": "/v1/leads", "headers": [
        (b"content-type", media.encode()), (b"content-length", b"40")]}, receive)
    with pytest.raises(Problem) as refused:
        await _parse_fields(request, ("application/json", "multipart/form-data"))
    assert refused.value.status == 400 and [e.field for e in refused.value.errors] == ["body"]


@pytest.mark.parametrize("retry_after, said", [("1", "in 1 second"), ("90", "in 90 seconds"), ("91", "in 2 minutes"),
                                               ("3600", "in 60 minutes"), ("5401", "in 2 hours"), ("soon", "in a few seconds")])
def test_when_to_send_a_form_again_is_said_in_the_unit_a_person_reads(retry_after, said):
    """A form's rate of 5/hour told a person to send it again "in 3600 seconds"."""
    from capture.api import _wait
    from leadpipe_common.http import Problem

    assert _wait(Problem(429, "slow down", headers={"Retry-After": retry_after})) == said


async def test_a_form_post_with_a_large_attached_file_asks_the_person_to_remove_it(client, pipeline):
    """A form with a file field: the body limit refused the post, and the person was told to correct a form whose
    every field was right."""
    reply = await client.post(FORM, data={"email": "jo@example.com"}, files={"brief": ("brief.pdf", b"%" * 100_000)},
                              headers=AS_A_BROWSER)
    assert reply.status_code == 413 and "An attached file is not sent with this form: remove it" in reply.text
    assert pipeline.written == []


@pytest.mark.parametrize("path, send", [
    ("/v1/forms/Contact%20Us", {"data": {"email": "jo@example.com"}}),
    (FORM, {"content": b"email=jo@example.com", "headers": {"content-type": "text/plain"}}),
], ids=["form id", "content type"])
async def test_a_form_post_refused_for_how_the_site_sends_it_tells_the_person_to_let_the_site_know(
        client, path, send):
    """Told to correct the form, a person changed what they typed, which was not what was wrong."""
    sent = {**send, "headers": {**AS_A_BROWSER, **send.get("headers", {})}}
    reply = await client.post(path, **sent)
    assert reply.status_code in (415, 422) and "text/html" in reply.headers["content-type"]
    assert "a problem with the site's form, not with what you entered" in reply.text and CORRECT_IT not in reply.text


async def test_a_form_post_refused_for_what_it_sent_asks_the_person_to_correct_it_naming_the_field(client):
    reply = await client.post(FORM, data={"email": "not an address"}, headers=AS_A_BROWSER)
    assert reply.status_code == 422 and "text/html" in reply.headers["content-type"]
    assert "<title>Please check the form</title>" in reply.text and CORRECT_IT in reply.text
    assert "<strong>email</strong>" in reply.text


async def test_a_form_post_that_cannot_be_stored_now_asks_the_person_to_send_it_again_when_retry_after_says(
        pipeline, client):
    """Every refusal said "Please check the form ... correct it": told so for a 503, people changed a form they
    had right, or gave up."""
    pipeline.failures.append(WriterStopped("the writer has stopped"))
    reply = await client.post(FORM, data={"email": "jo@example.com"}, headers=AS_A_BROWSER)
    assert (reply.status_code, reply.headers["retry-after"]) == (503, "5")
    assert "<title>Please try again shortly</title>" in reply.text and "send it again in 5 seconds" in reply.text
    assert "check the form" not in reply.text and CORRECT_IT not in reply.text


async def test_a_form_post_over_the_rate_limit_asks_the_person_to_wait_as_long_as_retry_after_says(pipeline):
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    async with serving(pipeline, settings, per_address="1/minute", accept="text/html") as capture:
        await capture.post(FORM, data={"email": "jo@example.com"})
        reply = await capture.post(FORM, data={"email": "jo@example.com"})
    assert reply.status_code == 429
    wait = int(reply.headers["retry-after"])
    assert "<title>Please try again shortly</title>" in reply.text
    assert f"send it again in {wait} second{'s' if wait > 1 else ''}" in reply.text
    assert "check the form" not in reply.text and CORRECT_IT not in reply.text


# -- capture's pages in a frame on a form's own origins --------------------------------------------------------

EMBEDDERS = ["https://www.example.com", "https://builder.example.net:8443"]
FRAMED_FORMS = {"forms": {"embedded": {"name": "Embedded", "allowed_origins": EMBEDDERS},
                          "embedded-thanks": {"thank_you_url": "https://www.example.com/thanks",
                                              "allowed_origins": EMBEDDERS},
                          "plain": {"name": "Plain"}}}


@contextlib.asynccontextmanager
async def framing_forms(pipeline: Pipeline, tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "forms.yaml"
    path.write_text(yaml.safe_dump(FRAMED_FORMS))
    async with serving(pipeline, CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, forms_file=path,
                                                 **settings), accept="text/html") as capture:
        yield capture


def framing(reply: httpx.Response) -> tuple[str, str | None]:
    """Who may frame the page: its policy's ``frame-ancestors``, and its ``X-Frame-Options``."""
    assert reply.headers["content-type"].startswith("text/html"), (reply.status_code, reply.text)
    policy = dict(part.strip().split(" ", 1) for part in reply.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and "script-src" not in policy  # framed, it is as locked down
    return policy["frame-ancestors"], reply.headers.get("x-frame-options")


FORMS_OWN_PAGES = {
    "thanks": ("post", "/v1/forms/embedded", {"data": {"email": "jo@example.com"}}, 200),
    "thanks-to-htmx-naming-hx-redirect": ("post", "/v1/forms/embedded-thanks",
                                          {"data": {"email": "jo@example.com"}, "headers": {"hx-request": "true"}},
                                          200),
    "refused-field": ("post", "/v1/forms/embedded", {"data": {"email": "not an address"}}, 422),
    "refused-body-over-the-limit": ("post", "/v1/forms/embedded", {"data": {"email": "jo@example.com",
                                                                            "message": "x" * 70_000}}, 413),
    "a-get-of-the-form": ("get", "/v1/forms/embedded", {}, 405),
}


@pytest.mark.parametrize(("method", "path", "send", "status"), FORMS_OWN_PAGES.values(), ids=FORMS_OWN_PAGES.keys())
async def test_a_page_for_a_form_with_allowed_origins_may_be_framed_by_exactly_them_and_by_no_other(
        pipeline, tmp_path, method, path, send, status):
    """A landing page builder or a CMS widget embeds the form in an iframe: with X-Frame-Options: DENY, the thanks
    or the refusal its post is answered with showed as a browser's error in the frame, unless the form posted with
    target="_top". X-Frame-Options cannot name an origin, so it is left off."""
    async with framing_forms(pipeline, tmp_path) as capture:
        reply = await capture.request(method, path, **send)
    assert reply.status_code == status
    assert framing(reply) == ("https://builder.example.net:8443 https://www.example.com", None)


NO_FORMS_PAGES = {
    "a-form-without-allowed-origins": ("post", "/v1/forms/plain", {"data": {"email": "jo@example.com"}}, 200),
    "a-form-without-allowed-origins-refused": ("post", "/v1/forms/plain", {"data": {"email": "not an address"}}, 422),
    "a-form-not-listed": ("post", "/v1/forms/not-listed", {"data": {"email": "jo@example.com"}}, 200),
    "a-token-of-a-form-not-listed": ("get", "/v1/forms/not-listed/token", {}, 404),
    "a-path-no-route-takes": ("post", "/v1/forms/embedded/nowhere", {"data": {"email": "jo@example.com"}}, 404),
}


@pytest.mark.parametrize(("method", "path", "send", "status"), NO_FORMS_PAGES.values(), ids=NO_FORMS_PAGES.keys())
async def test_a_page_for_no_form_with_allowed_origins_may_be_framed_by_no_one_even_with_cors_origins_set(
        pipeline, tmp_path, method, path, send, status):
    """CAPTURE_CORS_ORIGINS lets pages post every form (an unlisted one too) and the JSON API from a script; which
    sites may show a form's pages is the form's own choice, made in its allowed_origins."""
    async with framing_forms(pipeline, tmp_path, cors_origins="https://www.example.com") as capture:
        reply = await capture.request(method, path, **send)
    assert reply.status_code == status
    assert framing(reply) == ("'none'", "DENY")


# -- a body that takes too long to arrive ---------------------------------------------------------------------

SLOW = 0.2  # the body deadline of these tests, in seconds


def trickled(body: bytes) -> Any:
    """``body`` as a client sends it that sends its first bytes and then, for longer than the deadline, nothing."""
    async def pieces() -> AsyncIterator[bytes]:
        yield body[:8]
        await asyncio.sleep(30)
        yield body[8:]

    return pieces()


@pytest.mark.parametrize(("path", "body", "content_type"), [
    ("/v1/leads", b'{"email": "slow@example.com"}', "application/json"),
    (FORM, b"email=slow%40example.com", "application/x-www-form-urlencoded"),
    (FORM, b'--XX\r\nContent-Disposition: form-data; name="email"\r\n\r\nslow@example.com\r\n--XX--\r\n',
     "multipart/form-data; boundary=XX"),
], ids=["json", "form", "multipart"])
async def test_a_post_whose_body_is_still_arriving_at_the_deadline_gets_408_and_nothing_is_stored(
        pipeline, path, body, content_type):
    """capture counts a post against its rate limit before it reads the body: a body trickled in held its
    connection and up to 64 KiB of memory for as long as its client liked."""
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, body_deadline_s=SLOW)
    async with serving(pipeline, settings) as capture:
        reply = await capture.post(path, content=trickled(body), headers={**AS_JSON, "content-type": content_type})
    assert (reply.status_code, reply.headers["connection"]) == (408, "close")
    assert reply.json() == {"error": f"the request body did not arrive within {SLOW:g} s"}
    assert pipeline.written == [] and pipeline.quarantined == {}


async def test_a_browsers_form_post_that_arrived_too_slowly_asks_the_person_to_send_it_again(pipeline):
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN, body_deadline_s=SLOW)
    async with serving(pipeline, settings, accept="text/html") as capture:
        reply = await capture.post(FORM, content=trickled(b"email=slow%40example.com"),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 408 and "text/html" in reply.headers["content-type"]
    assert "<title>Please try again shortly</title>" in reply.text and "took too long to reach us" in reply.text
    assert CORRECT_IT not in reply.text


# -- a CAPTCHA form retried after a 503 ---------------------------------------------------------------------


def one_process(fake: FakeVerifier) -> SiteverifyClient:
    """A capture process's siteverify client, calling ``fake`` (in-process)."""
    def answer(request: httpx.Request) -> httpx.Response:
        status, verdict = fake.siteverify(dict(parse_qsl(request.content.decode())))
        return httpx.Response(status, json=verdict)

    return SiteverifyClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), {"TEST_CAPTCHA_SECRET": SECRET})


def captcha_form(provider: str) -> dict[str, Any]:
    return {"forms": {"contact-us": {"captcha": {"provider": provider, "secret_env": "TEST_CAPTCHA_SECRET"}}}}


ANSWER_FIELDS = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response",
                 "recaptcha": "g-recaptcha-response"}


def solved(provider: str, email: str = "jo@example.com") -> dict[str, Any]:
    return {"email": email, ANSWER_FIELDS[provider]: "human"}


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha", "recaptcha"])
async def test_a_captcha_form_retried_after_a_503_is_written_as_a_lead_not_quarantined_for_its_spent_answer(
        pipeline, tmp_path, monkeypatch, provider):
    """The providers verify an answer once: the retry of a post whose write failed brought the answer the first
    post had spent, the verifier said timeout-or-duplicate, and the person was quarantined as a bot (answered 202)."""
    monkeypatch.setenv("TEST_CAPTCHA_SECRET", SECRET)
    fake = FakeVerifier(single_use=True)
    pipeline.failures.append(WriterStopped("the writer has stopped"))
    async with guarded(pipeline, tmp_path, captcha_form(provider), verifier=one_process(fake)) as capture:
        first = await capture.post("/v1/forms/contact-us", json=solved(provider))
        retry = await capture.post("/v1/forms/contact-us", json=solved(provider))
    assert first.status_code == 503 and retry.status_code == 202, (first.text, retry.text)
    assert written(pipeline) == ["contact-us"] and reasons(pipeline) == []
    assert len(fake.calls) == 1  # the retry was answered by what this process was told


async def test_an_answer_kept_for_a_retry_is_spent_for_any_other_submission_a_bot_sends_with_it(
        pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CAPTCHA_SECRET", SECRET)
    fake = FakeVerifier(single_use=True)
    async with guarded(pipeline, tmp_path, captcha_form("turnstile"), verifier=one_process(fake)) as capture:
        for email in ("jo@example.com", "bot-1@example.com"):
            reply = await capture.post("/v1/forms/contact-us", json=solved("turnstile", email))
            assert reply.status_code == 202, reply.text
    assert [sub.lead.contact.email for sub in pipeline.written] == ["jo@example.com"]
    assert reasons(pipeline) == [["the CAPTCHA was not solved (timeout-or-duplicate)"]]


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha", "recaptcha"])
async def test_a_stored_submission_replayed_with_its_spent_answer_is_quarantined_not_written_again(
        pipeline, tmp_path, monkeypatch, provider):
    """The verdict kept for a retry after a 503 was kept 5 minutes whatever became of the submission: the same
    post replayed from anywhere within them was written again and again (a touch each) without the provider
    being asked; for Turnstile, the idempotency_key made from the submission had every process's replay answered
    "solved". Kept only until its submission is stored, and no key sent, a replay is the duplicate it is."""
    monkeypatch.setenv("TEST_CAPTCHA_SECRET", SECRET)
    fake = FakeVerifier(single_use=True)
    pipeline.failures.append(WriterStopped("the writer has stopped"))
    async with guarded(pipeline, tmp_path, captcha_form(provider), verifier=one_process(fake)) as capture:
        replies = [await capture.post("/v1/forms/contact-us", json=solved(provider)) for _ in range(4)]
    assert [r.status_code for r in replies] == [503, 202, 202, 202], [r.text for r in replies]
    assert written(pipeline) == ["contact-us"]
    assert reasons(pipeline) == [["the CAPTCHA was not solved (timeout-or-duplicate)"]] * 2
    assert all("idempotency_key" not in call for call in fake.calls)


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha", "recaptcha"])
async def test_a_retry_landing_on_another_process_is_quarantined_for_an_admin_to_release(
        pipeline, tmp_path, monkeypatch, provider):
    """The other process, never told the answer was solved, gets timeout-or-duplicate (as the README says: an
    admin releases it from the quarantine)."""
    monkeypatch.setenv("TEST_CAPTCHA_SECRET", SECRET)
    fake = FakeVerifier(single_use=True)  # the provider both processes ask
    pipeline.failures.append(WriterStopped("the writer has stopped"))
    async with guarded(pipeline, tmp_path, captcha_form(provider), verifier=one_process(fake)) as one:
        first = await one.post("/v1/forms/contact-us", json=solved(provider))
    async with guarded(pipeline, tmp_path, captcha_form(provider), verifier=one_process(fake)) as another:
        retry = await another.post("/v1/forms/contact-us", json=solved(provider))
    assert first.status_code == 503 and retry.status_code == 202, (first.text, retry.text)
    assert written(pipeline) == [] and reasons(pipeline) == [["the CAPTCHA was not solved (timeout-or-duplicate)"]]


# -- listing the quarantine ---------------------------------------------------------------------


def kept_at(pipeline: Pipeline, at: datetime, form_id: str = "contact-us") -> uuid.UUID:
    lead_id = uuid.uuid4()
    pipeline.quarantined[lead_id] = SimpleNamespace(lead_id=lead_id, received_at=at, reasons=["a bot's"],
                                                    form_id=form_id, utm_source=None, fields={}, released_at=None)
    return lead_id


def next_page(r: httpx.Response) -> str | None:
    """The path and query of the answer's ``Link: <...>; rel="next"``, if any."""
    assert r.status_code == 200, r.text
    return r.links.get("next", {}).get("url")


async def every_page(client: httpx.AsyncClient, first: str) -> list[list[str]]:
    pages, url = [], first
    while url is not None:
        r = await client.get(url, headers=AS_ADMIN)
        pages.append([q["lead_id"] for q in r.json()])
        url = next_page(r)
    return pages


async def test_a_flood_past_one_page_is_listed_page_by_page_newest_first_to_the_earliest_false_positive(
        client, pipeline):
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    person = kept_at(pipeline, at)
    flood = [kept_at(pipeline, at + timedelta(seconds=1)) for _ in range(4)]  # one moment: the id orders them
    newest = [str(i) for i in sorted(flood, reverse=True)]
    assert await every_page(client, "/v1/quarantine?limit=2") == [newest[:2], newest[2:], [str(person)]]


async def test_one_forms_submissions_are_listed_and_its_next_page_keeps_to_that_form(client, pipeline):
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    mine = [kept_at(pipeline, at + timedelta(seconds=i), "webinar") for i in range(3)]
    for i in range(3):
        kept_at(pipeline, at + timedelta(seconds=i, milliseconds=500))
    r = await client.get("/v1/quarantine", params={"limit": 2, "form_id": "webinar"}, headers=AS_ADMIN)
    assert "form_id=webinar" in next_page(r)
    assert await every_page(client, "/v1/quarantine?limit=2&form_id=webinar") == [
        [str(mine[2]), str(mine[1])], [str(mine[0])]]


@pytest.mark.parametrize("asked", ["/v1/quarantine", "/leads/v1/quarantine"],
                         ids=["prefix-out-of-the-path", "prefix-in-the-path"])
async def test_behind_a_proxys_path_prefix_the_next_page_is_named_under_that_prefix(pipeline, asked):
    """Named by the path this process saw, the next page was /v1/quarantine, which the proxy does not route to
    capture, wherever a server keeps its root path out of the request's path (the ASGI spec lets it do either)."""
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for i in range(2):
        kept_at(pipeline, at + timedelta(seconds=i))
    settings = CaptureSettings(DATABASE_URL=NOWHERE, LEADPIPE_BOOTSTRAP_KEY=ADMIN)
    async with serving(pipeline, settings, root_path="/leads") as client:
        r = await client.get(asked, params={"limit": 1}, headers=AS_ADMIN)
    assert next_page(r).startswith("/leads/v1/quarantine?limit=1&before=")


async def test_the_last_page_names_no_next_one(client, pipeline):
    kept_at(pipeline, datetime(2026, 12, 1, 9, tzinfo=UTC))
    r = await client.get("/v1/quarantine", params={"limit": 1}, headers=AS_ADMIN)
    assert len(r.json()) == 1 and next_page(r) is None


@pytest.mark.parametrize(("query", "field"), [
    ({"before": "page-2"}, "before"),
    # 0001-01-01T00:00:00+14:00, before the calendar in UTC, and an id
    ({"before": "MDAwMS0wMS0wMVQwMDowMDowMCsxNDowMCAwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDE"}, "before"),
    ({"form_id": "contact us"}, "form_id"), ({"form_id": ""}, "form_id"),
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
])
async def test_a_page_asked_for_with_a_value_the_list_does_not_take_is_refused_naming_it(client, query, field):
    refused(await client.get("/v1/quarantine", params=query, headers=AS_ADMIN), 422, field)


# -- erasing a person (GDPR art. 17) -------------------------------------------------------------------------


def erased_events(pipeline: Pipeline) -> list[Any]:
    return [decode(m.headers, m.key, m.value) for m in pipeline.published if m.header("ce_type") == "lead.erased"]


async def test_an_admin_erases_every_lead_of_a_person_by_any_spelling_of_their_address_once(client, pipeline):
    first, second = uuid.uuid4(), uuid.uuid4()
    pipeline.people_leads["janedoe@gmail.com"] = [first, second]
    with structlog.testing.capture_logs() as lines:
        r = await client.post("/v1/people/erase", json={"email": "Jane.Doe+news@GoogleMail.com"}, headers=AS_ADMIN)
    assert r.status_code == 202, r.text
    assert r.json() == {"lead_ids": [str(first), str(second)], "touched_leads": [], "merged_leads": [],
                        "others_touches": []}
    events = erased_events(pipeline)
    assert [(e.data.lead_id, e.data.by, m.topic) for e, m in zip(events, pipeline.published, strict=True)] == [
        (first, "LEADPIPE_BOOTSTRAP_KEY", "leads.captured"), (second, "LEADPIPE_BOOTSTRAP_KEY", "leads.captured")]
    # Who asked is logged, and the leads; the address being erased is not.
    assert any(line.get("by") == "LEADPIPE_BOOTSTRAP_KEY" for line in lines)
    assert "jane" not in repr(lines).lower()

    # Nothing leads from the address to the erased leads any more; their ids still answer, sending nothing.
    again = await client.post("/v1/people/erase", json={"email": "jane.doe@gmail.com"}, headers=AS_ADMIN)
    assert "An erasure keeps nothing of the address" in refused(again, 404, "email")
    assert str(first) not in again.text
    by_id = await client.post("/v1/people/erase", json={"lead_id": str(first)}, headers=AS_ADMIN)
    assert by_id.status_code == 202 and by_id.json()["lead_ids"] == [str(first)]
    assert len(pipeline.published) == 2  # nothing sent again


async def test_a_persons_lead_since_their_erasure_is_erased_alone_by_their_address_again(client, pipeline):
    old, new = uuid.uuid4(), uuid.uuid4()
    pipeline.people_leads["ada@example.com"] = [old]
    await client.post("/v1/people/erase", json={"email": "ada@example.com"}, headers=AS_ADMIN)
    pipeline.people_leads["ada@example.com"] = [new]  # she submitted again: a new person's lead
    r = await client.post("/v1/people/erase", json={"email": "ada@example.com"}, headers=AS_ADMIN)
    assert r.json()["lead_ids"] == [str(new)]
    assert [e.data.lead_id for e in erased_events(pipeline)] == [old, new]


async def test_a_lead_is_erased_by_its_id_and_an_unknown_one_or_address_is_named_in_a_404(client, pipeline):
    lead = uuid.uuid4()
    pipeline.people_leads["ada@example.com"] = [lead]
    r = await client.post("/v1/people/erase", json={"lead_id": str(lead)}, headers=AS_ADMIN)
    assert r.status_code == 202 and r.json()["lead_ids"] == [str(lead)]
    assert "capture keeps no record of a person under this address" in refused(
        await client.post("/v1/people/erase", json={"email": "nobody@example.com"}, headers=AS_ADMIN), 404, "email")
    refused(await client.post("/v1/people/erase", json={"lead_id": str(uuid.uuid4())}, headers=AS_ADMIN),
            404, "lead_id")
    assert len(erased_events(pipeline)) == 1


@pytest.mark.parametrize("body", [{}, {"email": "not an address"}, {"email": "a@example.com", "phone": "1"}],
                         ids=["nobody", "no-address", "unknown-field"])
async def test_an_erasure_naming_nobody_or_no_address_is_refused_and_sends_nothing(client, pipeline, body):
    r = await client.post("/v1/people/erase", json=body, headers=AS_ADMIN)
    assert r.status_code == 422, r.text
    assert "not an address" not in r.text and pipeline.published == []


async def test_an_erasure_naming_the_address_twice_is_refused_not_taken_as_the_second(client, pipeline):
    """JSON's last value wins where nothing checks: {"email": a, "email": b} erased b, whom nobody asked to erase."""
    pipeline.people_leads["grace@example.com"] = [uuid.uuid4()]
    r = await client.post("/v1/people/erase", content=b'{"email": "ada@example.com", "email": "grace@example.com"}',
                          headers={**AS_ADMIN, "content-type": "application/json"})
    assert refused(r, 422, "body") == 'gives the key "email" more than once'
    assert pipeline.published == []


async def test_an_erasure_the_persons_submissions_keep_overtaking_answers_503_to_ask_again(client, pipeline):
    pipeline.people_leads["ada@example.com"] = [uuid.uuid4()]
    pipeline.answers_left = [True] * 3
    r = await client.post("/v1/people/erase", json={"email": "ada@example.com"}, headers=AS_ADMIN)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "ask again" in r.json()["error"] and pipeline.published == []


async def test_only_an_admin_key_erases(client, pipeline):
    assert (await client.post("/v1/people/erase", json={"email": "a@example.com"})).status_code == 401
