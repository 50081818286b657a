"""Cross-origin posts from web pages: what lets a React, Vue or Next.js form ``fetch()`` capture.

Guarantees: only capture's public endpoints (``/v1/leads``, ``/v1/forms/{id}``
and its token) answer cross-origin requests, and only for origins in ``CAPTURE_CORS_ORIGINS``
or the form's own ``allowed_origins``: a preflight from such an origin gets
``204`` with the methods and headers a form needs; from any other origin it
gets ``403`` and no CORS headers, so the browser blocks the post. Credentials
are never allowed (no cookie or HTTP auth crosses origins). Plain HTML form
posts need no CORS and keep working whatever this says. A form's own
``allowed_origins`` (not ``CAPTURE_CORS_ORIGINS``) may also frame its pages
(``api._framed_by_its_origins``).
"""

from __future__ import annotations

import re
from typing import Any

from leadpipe_common.http import routed_path

from capture.domain import Form, may_post_from

#: A post's path as capture's fast lane takes it (``api.PublicPosts``), a trailing slash allowed.
#: token.js too: a page that loads it with ``<script crossorigin>`` (Sentry's advice, any SRI setup) has the browser
#: refuse it without an allowed origin, and every post of a form that requires a token then went to quarantine.
_PUBLIC = re.compile(r"^/v1/(?:leads/?|forms/(?P<form>[^/]+)(?:/?|/token|/token\.js))$")
#: htmx's headers say which page and element sent the request (``HX-Request`` among them: how capture tells htmx's
#: form posts, which get the thank-you page in ``HX-Redirect`` or the confirmation page, from a ``fetch()``). Not
#: one of them is a credential; without them the preflight of every htmx post from another origin failed. htmx 4
#: adds ``HX-Source`` and ``HX-Request-Type``. Tracing's too (W3C ``tracestate`` and ``baggage`` beside
#: ``traceparent``, Sentry's ``sentry-trace``): a page whose tracing SDK names capture among its targets adds them to
#: every fetch, and a preflight that did not allow them kept the post from being sent at all.
ALLOWED_HEADERS = ("content-type, accept, idempotency-key, traceparent, tracestate, baggage, sentry-trace, "
                   "hx-request, hx-current-url, hx-target, hx-trigger, hx-trigger-name, hx-boosted, hx-prompt, "
                   "hx-source, hx-request-type")
MAX_AGE_S = "600"
#: What a page may read of an answer beyond the safelisted headers: when to retry a 429 or 503, that a repeated
#: Idempotency-Key was answered from before, and the thank-you page an htmx post is sent to (htmx reads no header
#: a cross-origin answer does not expose, and would swap the confirmation page in instead).
EXPOSED_HEADERS = b"Retry-After, Idempotent-Replayed, HX-Redirect"


class CrossOrigin:
    """Pure ASGI middleware over the origins allowed everywhere and the forms (with their own origins)."""

    def __init__(self, app: Any, *, everywhere: frozenset[str], forms: dict[str, Form]) -> None:
        self.app = app
        self._everywhere = everywhere
        self._forms = forms

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        # Under the proxy's prefix when the server keeps it in the path: matched on the whole path, a preflight
        # went on to the router (405) and the post was answered with no CORS header.
        match = _PUBLIC.match(routed_path(scope)) if origin else None
        if origin is None or match is None:
            await self.app(scope, receive, send)
            return
        form = self._forms.get(match.group("form")) if match.group("form") else None
        allowed = may_post_from(origin, form, self._everywhere)
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await _preflight(send, origin if allowed else None)
            return
        if not allowed:
            await self.app(scope, receive, send)  # a browser withholds the answer from the page
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"access-control-allow-origin", origin.encode()),
                                      (b"access-control-expose-headers", EXPOSED_HEADERS), (b"vary", b"Origin")]
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _preflight(send: Any, origin: str | None) -> None:
    headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
    if origin is not None:
        headers += [(b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", b"GET, POST"),
                    (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                    (b"access-control-max-age", MAX_AGE_S.encode())]
    await send({"type": "http.response.start", "status": 204 if origin else 403, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
