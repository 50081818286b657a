"""The siteverify call as capture makes it, against a verifier answering what each test needs (no network)."""

from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog.testing

from capture.captcha import Verifier
from capture.domain import captcha_suspicions, parse_captcha

CAPTCHA = parse_captcha({"provider": "hcaptcha", "secret_env": "HCAPTCHA_SECRET"}, "forms.demo.captcha")


async def verdict_of(status: int, body: Any) -> dict[str, Any] | None:
    def siteverify(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body) if isinstance(body, bytes) else httpx.Response(status, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(siteverify)) as client:
        return await Verifier(client, {"HCAPTCHA_SECRET": "s"}).verify("demo", CAPTCHA, "answer", "203.0.113.7")


async def test_an_answer_solved_under_another_sitekey_is_logged_as_a_warning_naming_the_form():
    with structlog.testing.capture_logs() as lines:
        verdict = await verdict_of(200, {"success": False, "error-codes": ["sitekey-secret-mismatch"]})
    assert captcha_suspicions(CAPTCHA, "answer", verdict) == ["the CAPTCHA was not solved (sitekey-secret-mismatch)"]
    [line] = [line for line in lines if "sitekey" in line["event"]]
    assert (line["log_level"], line["form_id"]) == ("warning", "demo")


async def test_answers_solved_under_another_sitekey_are_warned_of_once_a_minute_per_form_and_all_counted():
    """A bot replaying tokens from another site wrote a warning per answer, flooding the log."""
    from prometheus_client import REGISTRY

    def failed(form_id: str) -> float:
        labels = {"form_id": form_id, "outcome": "failed"}
        return REGISTRY.get_sample_value("capture_captcha_checks_total", labels) or 0.0

    def siteverify(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": False, "error-codes": ["sitekey-secret-mismatch"]})

    now = [1000.0]
    before = {form_id: failed(form_id) for form_id in ("demo", "pricing")}
    async with httpx.AsyncClient(transport=httpx.MockTransport(siteverify)) as client:
        verifier = Verifier(client, {"HCAPTCHA_SECRET": "s"}, clock=lambda: now[0])
        with structlog.testing.capture_logs() as lines:
            for form_id, at in [("demo", 1000.0), ("demo", 1030.0), ("pricing", 1030.0), ("demo", 1059.9),
                                ("demo", 1060.0), ("demo", 1061.0)]:
                now[0] = at
                await verifier.verify(form_id, CAPTCHA, "answer", None)
    assert [line["form_id"] for line in lines if "sitekey" in line["event"]] == ["demo", "pricing", "demo"]
    assert {form_id: failed(form_id) - count for form_id, count in before.items()} == {"demo": 5, "pricing": 1}


@pytest.mark.parametrize("status", [400, 403, 500])
async def test_a_verdict_in_a_refusal_is_the_verdict_not_an_outage_the_form_fails_open_on(status):
    """A 4xx carrying success false was taken for a verifier down: the default on_error: open let the answer in."""
    verdict = await verdict_of(status, {"success": False, "error-codes": ["invalid-input-response"]})
    assert captcha_suspicions(CAPTCHA, "answer", verdict) == ["the CAPTCHA was not solved (invalid-input-response)"]


@pytest.mark.parametrize("body", [{"error": "overloaded"}, ["success", False], b"<html>Bad Gateway</html>"])
async def test_a_refusal_without_a_verdict_is_an_outage_the_forms_on_error_decides(body):
    assert await verdict_of(502, body) is None


async def test_a_verifier_failing_itself_is_an_outage_the_forms_on_error_decides_whatever_its_status():
    """Now that a refusal's verdict counts, Turnstile's internal-error must not quarantine a form failing open."""
    for status in (200, 500):
        verdict = await verdict_of(status, {"success": False, "error-codes": ["internal-error"]})
        assert captcha_suspicions(CAPTCHA, "answer", verdict) == []  # the form fails open



def answering(verdict: dict[str, Any], answers: list[str]) -> httpx.AsyncClient:
    """A client of a verifier answering ``verdict`` to each call, the answer of each noted in ``answers``."""
    def siteverify(request: httpx.Request) -> httpx.Response:
        answers.append(dict(parse_qsl(request.content.decode()))["response"])
        return httpx.Response(200, json=verdict)

    return httpx.AsyncClient(transport=httpx.MockTransport(siteverify))


async def test_a_solved_answer_is_kept_for_its_submissions_retries_as_long_as_a_token_lives_and_no_longer():
    asked: list[str] = []
    now = [0.0]
    async with answering({"success": True}, asked) as client:
        verifier = Verifier(client, {"HCAPTCHA_SECRET": "s"}, clock=lambda: now[0])
        calls = []
        for at in (0.0, 1.0, 299.9, 300.0, 301.0):
            now[0] = at
            await verifier.verify("demo", CAPTCHA, "answer", None, submission="jo's post")
            calls.append(len(asked))
    assert calls == [1, 1, 1, 2, 2]


async def test_no_more_solved_answers_are_kept_than_the_bound_the_oldest_dropped_first():
    asked: list[str] = []
    async with answering({"success": True}, asked) as client:
        verifier = Verifier(client, {"HCAPTCHA_SECRET": "s"}, clock=lambda: 0.0, solved_kept_at_most=2)
        for post in ("a", "b", "c", "c", "b", "a"):
            await verifier.verify("demo", CAPTCHA, post, None, submission=post)
    assert asked == ["a", "b", "c", "a"]


async def test_a_solved_answer_is_forgotten_once_its_submission_is_stored_its_replay_asked_again():
    asked: list[str] = []
    async with answering({"success": True}, asked) as client:
        verifier = Verifier(client, {"HCAPTCHA_SECRET": "s"}, clock=lambda: 0.0)
        await verifier.verify("demo", CAPTCHA, "answer", None, submission="jo's post")
        await verifier.verify("demo", CAPTCHA, "answer", None, submission="jo's post")  # a retry: kept
        verifier.forget("jo's post")
        verifier.forget("never kept")
        await verifier.verify("demo", CAPTCHA, "answer", None, submission="jo's post")
    assert asked == ["answer", "answer"]


async def test_an_unsolved_answer_is_not_kept_its_retry_is_asked_again():
    asked: list[str] = []
    async with answering({"success": False, "error-codes": ["invalid-input-response"]}, asked) as client:
        verifier = Verifier(client, {"HCAPTCHA_SECRET": "s"})
        for _ in range(2):
            await verifier.verify("demo", CAPTCHA, "answer", None, submission="jo's post")
    assert asked == ["answer", "answer"]
