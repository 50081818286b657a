"""The CAPTCHA services' "siteverify" call (Cloudflare Turnstile, hCaptcha, reCAPTCHA speak the same protocol).

IO only: a form-encoded POST of ``secret``, ``response`` and ``remoteip``; the
JSON answer is judged by ``capture.domain.captcha_suspicions``. A timeout, a
connection error or an answer holding no verdict (a body that is not a JSON
object; on a non-2xx, one without a true or false ``success``) is "unavailable"
(None), which the form's ``on_error`` turns into an acceptance or a quarantine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import structlog
from prometheus_client import Counter, Histogram

from capture.domain import Captcha, captcha_error_codes

log = structlog.get_logger(__name__)

CHECKS = Counter("capture_captcha_checks_total", "CAPTCHA answers verified, by form and outcome",
                 ["form_id", "outcome"])
LATENCY = Histogram("capture_captcha_verify_seconds", "Time the CAPTCHA verifier took to answer",
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5))
#: How often a form may warn of answers solved under another sitekey: a bot replaying tokens from another site
#: wrote one warning per answer. CHECKS counts each as failed.
MISMATCH_WARNING_EVERY_S = 60.0


class Verifier:
    """Verifies answers with each form's verifier, using the secrets named by the forms (read at start)."""

    def __init__(self, client: httpx.AsyncClient, secrets: Mapping[str, str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._secrets = dict(secrets)
        self._clock = clock
        #: When each form last warned of a sitekey mismatch; its keys are CHECKS' form ids, the forms listed and
        #: "(unlisted)", so ids a bot makes up do not grow it.
        self._mismatch_warned: dict[str, float] = {}

    async def verify(self, form_id: str, captcha: Captcha, answer: str, remote_ip: str | None) -> dict[str, Any] | None:
        data = {"secret": self._secrets[captcha.secret_env], "response": answer}
        if remote_ip:
            data["remoteip"] = remote_ip
        started = time.perf_counter()
        verdict = await self._ask(form_id, captcha, data)
        LATENCY.observe(time.perf_counter() - started)
        if verdict is None:
            CHECKS.labels(form_id, "unavailable").inc()
            return None
        codes = set(captcha_error_codes(verdict))
        CHECKS.labels(form_id, "solved" if verdict.get("success") else "failed").inc()
        if not verdict.get("success") and {"invalid-input-secret", "missing-input-secret"} & codes:
            log.error("the CAPTCHA verifier refuses this form's secret", form_id=form_id, env=captcha.secret_env)
        if not verdict.get("success") and "sitekey-secret-mismatch" in codes and self._may_warn_of_mismatch(form_id):
            # A bot's token from another site, or, if it is every answer, a page showing another account's sitekey.
            log.warning("the CAPTCHA answer was solved under a sitekey this form's secret does not own: a token from "
                        "another site, or the form's page shows the wrong sitekey", form_id=form_id,
                        env=captcha.secret_env)
        return verdict

    def _may_warn_of_mismatch(self, form_id: str) -> bool:
        now = self._clock()
        last = self._mismatch_warned.get(form_id)
        if last is not None and now - last < MISMATCH_WARNING_EVERY_S:
            return False
        self._mismatch_warned[form_id] = now
        return True

    async def _ask(self, form_id: str, captcha: Captcha, data: dict[str, str]) -> dict[str, Any] | None:
        try:
            reply = await self._client.post(captcha.verify_url, data=data, timeout=captcha.timeout_s)
        except httpx.HTTPError as exc:
            log.warning("CAPTCHA verifier unavailable", form_id=form_id, url=captcha.verify_url, error=repr(exc))
            return None
        try:
            verdict = reply.json()
        except ValueError:
            verdict = None
        # A verifier may refuse an answer with a 4xx and its verdict (success false, the error codes): taken for
        # "unavailable", a form failing open let a bad answer in. A non-2xx without one is an outage.
        if not reply.is_success and not (isinstance(verdict, dict) and isinstance(verdict.get("success"), bool)):
            verdict = None
        if not isinstance(verdict, dict):
            log.warning("CAPTCHA verifier gave no verdict", form_id=form_id, url=captcha.verify_url,
                        status=reply.status_code)
            return None
        return verdict
