"""One error shape for every service's HTTP API.

Guarantees: every 4xx/5xx a service answers on purpose has the body
``{"error": "<what happened>", "errors": [{"field": ..., "reason": ...}]}``
(``errors`` only when a field is to blame: ``problems.FieldProblem``),
including FastAPI's own request validation, so a client parses one shape
everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from leadpipe_common.problems import FieldProblem, field_problems

__all__ = ["FieldProblem", "Problem", "field_problems", "install_problem_handlers"]


class Problem(Exception):
    def __init__(self, status: int, message: str, errors: Sequence[FieldProblem] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors, self.headers = status, message, list(errors), dict(headers or {})

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return Problem(422, "the request is invalid", field_problems(exc.errors())).response()
