"""capture's fast lane for its public posts, with no IO: what it refuses to skip, and whose errors it renders."""

import pytest
from fastapi import APIRouter, Depends
from starlette.exceptions import HTTPException

from leadpipe_common.http import FieldsRefused, Problem

from capture.api import PublicPosts, _exception_handler, post_form, post_lead


def test_the_fast_lane_refuses_routes_that_declare_a_dependency_it_would_skip():
    guarded = APIRouter(dependencies=[Depends(lambda: None)])
    guarded.add_api_route("/v1/leads", post_lead, methods=["POST"])
    guarded.add_api_route("/v1/forms/{form_id}", post_form, methods=["POST"])
    with pytest.raises(RuntimeError, match="dependencies it would skip"):
        PublicPosts(app=None, routes=guarded.routes)
    PublicPosts(app=None)  # capture's own routes declare none


def test_errors_go_to_the_handlers_the_router_would_use_and_the_rest_to_the_server_error_middleware():
    def handler(name):
        return lambda request, exc: name

    handlers = {Problem: handler("problem"), HTTPException: handler("http"), 429: handler("429"),
                500: handler("500"), Exception: handler("any")}
    assert _exception_handler(handlers, Problem(422, "no"))(None, None) == "problem"
    assert _exception_handler(handlers, FieldsRefused(422, "nul", []))(None, None) == "http"  # by its class
    assert _exception_handler(handlers, HTTPException(429))(None, None) == "429"  # by its status first
    assert _exception_handler(handlers, HTTPException(500))(None, None) == "http"  # 500 is not the status's
    assert _exception_handler(handlers, RuntimeError("bug")) is None  # Exception is ServerErrorMiddleware's


def test_the_lane_sits_inside_the_shared_edge_so_its_limits_and_checks_still_apply():
    from leadpipe_common.http import BodyLimit, RefuseNul, SecurityHeaders
    from leadpipe_common.ops import RequestMetrics

    from capture.app import create_app
    from capture.settings import CaptureSettings

    app = create_app(CaptureSettings(DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    outermost_first = [m.cls for m in app.user_middleware]
    assert outermost_first[-1] is PublicPosts  # innermost: every shared middleware wraps it
    assert {RefuseNul, BodyLimit, SecurityHeaders, RequestMetrics} <= set(outermost_first[:-1])
