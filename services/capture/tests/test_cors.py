"""capture's answers to a page of another origin, with no stack: ``CrossOrigin`` alone, over an app that answers
``200`` to whatever reaches it; ``PAGE`` is allowed everywhere (``CAPTURE_CORS_ORIGINS``)."""

from typing import Any

from capture.cors import CrossOrigin

PAGE = "https://www.example.com"
#: What htmx 2 sends with a form post (``HX-Prompt`` only after an ``hx-prompt``, ``HX-Boosted`` from a boosted form).
HTMX_HEADERS = "hx-request,hx-current-url,hx-target,hx-trigger,hx-trigger-name,hx-boosted,hx-prompt"


async def answered(**headers: str) -> tuple[int, dict[str, str]]:
    """The status and headers ``CrossOrigin`` answers a request to a form with, ``headers`` given as sent."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    method = headers.pop("method")
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = headers.pop("path", "/v1/forms/whitepaper")
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}
    middleware = CrossOrigin(app, everywhere=frozenset({PAGE}), forms={})
    await middleware(scope, None, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def test_an_htmx_post_from_an_allowed_origin_passes_its_preflight_with_every_header_htmx_sends():
    status, headers = await answered(method="OPTIONS", origin=PAGE, access_control_request_method="POST",
                                     access_control_request_headers=HTMX_HEADERS)
    assert status == 204
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert set(HTMX_HEADERS.split(",")) <= allowed
    assert headers["access-control-allow-origin"] == PAGE
    assert "access-control-allow-credentials" not in headers


async def test_an_htmx_preflight_from_another_origin_is_refused_with_no_cors_headers():
    status, headers = await answered(method="OPTIONS", origin="https://elsewhere.example",
                                     access_control_request_method="POST", access_control_request_headers=HTMX_HEADERS)
    assert status == 403
    assert not any(name.startswith("access-control-") for name in headers)


async def test_a_page_of_an_allowed_origin_may_read_the_thank_you_page_capture_sends_its_htmx_post_to():
    """htmx reads the headers the browser lets it: HX-Redirect unexposed, it swapped the confirmation in instead."""
    status, headers = await answered(method="POST", origin=PAGE, hx_request="true")
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"hx-redirect", "retry-after", "idempotent-replayed"} <= exposed


async def test_a_post_with_a_tracing_sdks_headers_passes_its_preflight():
    """A page whose tracing SDK names capture among its targets adds these to every fetch: refused, the browser
    never sent the post."""
    tracing = "content-type,traceparent,tracestate,baggage,sentry-trace"
    status, headers = await answered(method="OPTIONS", origin=PAGE, access_control_request_method="POST",
                                     access_control_request_headers=tracing)
    assert status == 204
    assert set(tracing.split(",")) <= {h.strip() for h in headers["access-control-allow-headers"].split(",")}


async def test_token_js_loaded_with_crossorigin_from_an_allowed_page_may_be_run():
    """<script crossorigin> (Sentry's advice, any SRI setup) needs an allowed origin on the script: without it the
    browser refused token.js, and every post of a form requiring a token went to quarantine."""
    status, headers = await answered(method="GET", origin=PAGE, path="/v1/forms/whitepaper/token.js")
    assert status == 200 and headers["access-control-allow-origin"] == PAGE
