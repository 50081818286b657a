"""The siteverify call as capture makes it, against a verifier answering what each test needs (no network)."""

from typing import Any

import httpx
import structlog.testing

from capture.captcha import Verifier
from capture.domain import captcha_suspicions, parse_captcha

CAPTCHA = parse_captcha({"provider": "hcaptcha", "secret_env": "HCAPTCHA_SECRET"}, "forms.demo.captcha")


async def verdict_of(status: int, body: Any) -> dict[str, Any] | None:
    def siteverify(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(siteverify)) as client:
        return await Verifier(client, {"HCAPTCHA_SECRET": "s"}).verify("demo", CAPTCHA, "answer", "203.0.113.7")


async def test_an_answer_solved_under_another_sitekey_is_logged_as_a_warning_naming_the_form():
    with structlog.testing.capture_logs() as lines:
        verdict = await verdict_of(200, {"success": False, "error-codes": ["sitekey-secret-mismatch"]})
    assert captcha_suspicions(CAPTCHA, "answer", verdict) == ["the CAPTCHA was not solved (sitekey-secret-mismatch)"]
    [line] = [line for line in lines if "sitekey" in line["event"]]
    assert (line["log_level"], line["form_id"]) == ("warning", "demo")
