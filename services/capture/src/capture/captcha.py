"""The CAPTCHA services' "siteverify" call (Cloudflare Turnstile, hCaptcha, reCAPTCHA speak the same protocol).

IO only: a form-encoded POST of ``secret``, ``response`` and ``remoteip``; the
JSON answer is judged by ``capture.domain.captcha_suspicions``. A timeout, a
connection error or an answer holding no verdict (a body that is not a JSON
object; on a non-2xx, one without a true or false ``success``) is "unavailable"
(None), which the form's ``on_error`` turns into an acceptance or a quarantine.

The providers verify an answer once; asked again, they refuse it as a duplicate. A submission whose write failed
(a ``503``) is retried with the answer its first post spent, so the verdict of a solved answer is kept, by the
submission it came with (its fingerprint: form, fields and answer), until that submission is stored
(``forget``), for as long as a token lives at most, and a retry of it gets its verdict again without asking.
Only in this process, and only until it is stored: a replay of a stored submission, or any other submission
sent with the same answer, is asked of the provider, which refuses it as a duplicate. (Turnstile's siteverify
takes an ``idempotency_key`` that would carry a retry to another process; made from the submission, it would
carry every replay of it there too, so it is not sent.)
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
#: How long a solved answer's verdict is kept for a retry of its submission not yet stored: no provider's token
#: lives longer (Turnstile's 300 s; hCaptcha's and reCAPTCHA v2's less), so no retry brings it later.
SOLVED_KEPT_S = 300.0
#: ... and how many are kept at most, the oldest dropped first: each costs a solved CAPTCHA, but a flood of them
#: must not grow the process.
SOLVED_KEPT_AT_MOST = 10_000
class Verifier:
    """Verifies answers with each form's verifier, using the secrets named by the forms (read at start)."""

    def __init__(self, client: httpx.AsyncClient, secrets: Mapping[str, str],
                 clock: Callable[[], float] = time.monotonic, solved_kept_s: float = SOLVED_KEPT_S,
                 solved_kept_at_most: int = SOLVED_KEPT_AT_MOST) -> None:
        self._client = client
        self._secrets = dict(secrets)
        self._clock = clock
        #: When each form last warned of a sitekey mismatch; its keys are CHECKS' form ids, the forms listed and
        #: "(unlisted)", so ids a bot makes up do not grow it.
        self._mismatch_warned: dict[str, float] = {}
        self._solved = _Kept(clock, solved_kept_s, solved_kept_at_most)

    async def verify(self, form_id: str, captcha: Captcha, answer: str, remote_ip: str | None,
                     submission: str | None = None) -> dict[str, Any] | None:
        """Siteverify's verdict on ``answer`` (None: unavailable); ``submission``, the fingerprint of what came
        with it, names its retries until it is stored (see the module)."""
        if submission is not None and (kept := self._solved.get(submission)) is not None:
            CHECKS.labels(form_id, "repeated").inc()
            return kept
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
        if verdict.get("success") is True and submission is not None:
            # Kept whatever the form then makes of it (a host or action it does not expect): the retry is judged
            # as the first post was. An unsolved one is not: asked again, the provider refuses it again.
            self._solved.put(submission, verdict)
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

    def forget(self, submission: str) -> None:
        """``submission`` is stored (a lead, or in the quarantine): a solved verdict kept for its retries would
        let every replay of it through unasked, so the next is asked of the provider, which refuses the spent
        answer."""
        self._solved.drop(submission)


class _Kept:
    """Values by key, each for ``keep_s`` from when it was put, at most ``at_most`` of them (the oldest dropped
    first). Each is kept as long, so the order they were put in is the order they expire in."""

    def __init__(self, clock: Callable[[], float], keep_s: float, at_most: int) -> None:
        self._clock = clock
        self._keep_s = keep_s
        self._at_most = at_most
        self._kept: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        self._expire()
        kept = self._kept.get(key)
        return None if kept is None else kept[1]

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._expire()
        if key in self._kept:
            return  # two posts of one submission at once, both verified: the token lives from the first
        if len(self._kept) >= self._at_most:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = (self._clock() + self._keep_s, value)

    def drop(self, key: str) -> None:
        self._kept.pop(key, None)

    def _expire(self) -> None:
        now = self._clock()
        while self._kept:
            oldest = next(iter(self._kept))
            if self._kept[oldest][0] > now:
                return
            del self._kept[oldest]
