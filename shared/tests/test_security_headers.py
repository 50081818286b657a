"""The shared edge's headers: an answer for a key or a dashboard session is kept by no cache."""

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from leadpipe_common.auth import SESSION_COOKIE
from leadpipe_common.http import SecurityHeaders


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
