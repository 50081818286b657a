"""The shared edge's headers: an answer for a key or a dashboard session is kept by no cache; a page only the
origins its route names may frame."""

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from leadpipe_common.auth import SESSION_COOKIE
from leadpipe_common.http import SecurityHeaders, frame_by


def app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(SecurityHeaders)

    @app.get("/report")
    async def report() -> JSONResponse:
        return JSONResponse({"won": 3}, headers={"Cache-Control": "public, max-age=60"})

    return app


async def get(headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://reporting") as client:
        return await client.get("/report", headers=headers)


@pytest.mark.parametrize("headers", [
    {"authorization": "Bearer lpk_abc123_secret"}, {"x-api-key": "lpk_abc123_secret"},
    {"cookie": f"{SESSION_COOKIE}=abc123.1.nonce.signature"},
    {"cookie": f"theme=dark;{SESSION_COOKIE}=abc123.1.nonce.signature; lang=en"},
], ids=["bearer", "x-api-key", "session", "session among other cookies"])
async def test_an_answer_to_a_request_with_a_key_or_a_session_is_no_store_whatever_the_route_said(headers):
    answer = await get(headers)
    assert answer.headers.get_list("cache-control") == ["no-store"]


@pytest.mark.parametrize("headers", [{}, {"cookie": "theme=dark"}, {"cookie": f"{SESSION_COOKIE}x=1"}],
                         ids=["nothing", "another cookie", "a cookie named alike"])
async def test_an_answer_to_a_request_without_credentials_keeps_the_routes_own_caching(headers):
    answer = await get(headers)
    assert answer.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_the_api_docs_page_runs_only_swagger_ui_files_pinned_by_hash_and_fetches_no_image_elsewhere():
    """An admin pastes a key into the page: a script of whatever release the CDN serves now could read it, and
    an image from anywhere could carry it away."""
    import re

    from leadpipe_common.service import SWAGGER_UI, swagger_ui

    docs = FastAPI(docs_url=None)  # FastAPI's own page would answer first
    docs.add_middleware(SecurityHeaders)
    docs.get("/docs")(lambda: swagger_ui("/capture/openapi.json", "leadpipe capture API"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=docs), base_url="http://capture") as client:
        answer = await client.get("/docs")
    page = answer.text
    fetched = re.findall(r'(?:src|href)="(https?:[^"]+)"([^>]*)>', page)
    assert sorted(url.removeprefix(SWAGGER_UI) for url, _ in fetched) == ["swagger-ui-bundle.js", "swagger-ui.css"]
    assert "@5." in SWAGGER_UI and "@5/" not in SWAGGER_UI  # a release, not a range
    assert all(re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}" crossorigin="anonymous"', rest) for _, rest in fetched)
    assert "url: '/capture/openapi.json'" in page and '"validatorUrl": null' in page  # no badge from swagger.io
    policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
    assert policy["img-src"] == "'self' data:"


def framed_page(origins: list[str]) -> FastAPI:
    page = FastAPI()
    page.add_middleware(SecurityHeaders)

    @page.get("/thanks")
    async def thanks(request: Request) -> HTMLResponse:
        frame_by(request.scope, origins)
        return HTMLResponse("<p>Thank you</p>")

    return page


async def policy_of(page: FastAPI) -> tuple[dict[str, str], str | None]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=page), base_url="http://capture") as client:
        answer = await client.get("/thanks")
    policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
    return policy, answer.headers.get("x-frame-options")


async def test_a_page_its_route_lets_origins_frame_names_exactly_them_and_no_x_frame_options_which_cannot():
    policy, frame_options = await policy_of(framed_page(["https://www.example.com", "http://localhost:8080"]))
    assert policy["frame-ancestors"] == "http://localhost:8080 https://www.example.com"
    assert frame_options is None
    assert policy["default-src"] == "'none'" and policy["base-uri"] == "'none'" and "script-src" not in policy


async def test_a_page_its_route_names_no_framing_origin_for_stays_unframeable():
    policy, frame_options = await policy_of(framed_page([]))
    assert (policy["frame-ancestors"], frame_options) == ("'none'", "DENY")


@pytest.mark.parametrize("origin", ["*", "https://*.example.com", "https:", "'self'", "https://www.example.com/",
                                    "https://www.example.com; script-src *", "https://a.example.com https://b.example"])
def test_framing_is_refused_for_anything_a_policy_would_read_as_more_than_one_plain_origin(origin):
    with pytest.raises(ValueError, match="not origins a page may be framed by"):
        frame_by({}, ["https://www.example.com", origin])
