"""The HTTP edge every service shares: one error shape, a body limit, strict JSON API requests, security headers.

Guarantees:
- Every 4xx/5xx a service answers on purpose has the body
  ``{"error": "<what happened>", "errors": [{"field": ..., "reason": ...}]}``
  (``errors`` only when a field is to blame: ``problems.FieldProblem``),
  FastAPI's own request validation and HTTP errors (404, 405, 413) included,
  so a client parses one shape everywhere; a service may render the same
  problem differently (capture: a page for a browser's form post).
- ``BodyLimit``: no request body over ``<SERVICE>_MAX_BODY_BYTES`` is read,
  whether its length is declared or it arrives chunked: the read fails with
  ``413`` before more than the limit is held in memory. A read that still
  waits for the body ``<SERVICE>_BODY_DEADLINE_S`` after the request's start
  (its headers received) fails with ``408`` and ``Connection: close``,
  however the app reads it (``request.body()``, its stream, a form, a
  route's body model, capture's fast lane): the endpoint never gets the
  body, so nothing of it is stored. What waits on the client afterwards (a
  disconnect, while a response streams) has no deadline.
- ``RefuseNul``: text holding U+0000 (which PostgreSQL cannot store) in the
  query, the path or the body (JSON, a form) is answered ``422`` naming the
  field, as the app answers its other problems; a body's is found as the
  app reads it: capture's public posts after their rate checks; a route
  with a body model before its key check, as FastAPI reads (and parses) a
  body before it runs the route's dependencies. What a body says (its
  fields, each checked against the route's model) is checked only after the
  key: a caller without one learns no field's name from it.
- ``HeadAsGet``: a ``HEAD`` of any path is answered as its ``GET`` is,
  headers whole, without the body.
- ``ServerErrors``: an exception the app raised before it answered is
  answered ``500`` in the same shape (through the app's Problem renderer),
  inside the edge, so the answer carries the security headers and capture's
  CORS headers (without which a site's script saw a network error, not a
  ``500``); then raised on, for the server to log with its traceback.
- ``StrictRoute``: a route of the JSON APIs takes a request as it was meant
  or says why not. A JSON body giving one key twice at any depth
  (``{"email": a, "email": b}``) is answered ``422`` on ``body`` naming the
  key, never read as its last value (an erasure of b, asked as a, is not what
  anyone meant), whether FastAPI reads it for a body model or the route
  itself with ``request.json()``; a query parameter the route does not take
  (``?limt=1``) is answered ``422`` naming it and the one it likely
  misspells, never dropped (a hand-over asked for one lead moved them all),
  and so is one given twice that takes one value (FastAPI read the last).
  The query and a body model's JSON are checked before the route's key (a
  route with its key in its own dependencies cannot be run after them here:
  FastAPI keeps the dependencies of an included route apart); so a caller
  without a key may learn a route's query parameters' names, which the
  README publishes anyway, and never a field's. Every route of a service's
  JSON API (``/v1/``) and every route with a JSON body model is made with
  it, ``Service.check`` refusing one that is not, but for the paths a
  service declares lenient (``Service.lenient_paths``: capture's public
  posts and form tokens, whose forms' action URLs and script tags carry any
  query); the dashboard's pages (links arrive with tracking parameters) are
  not under ``/v1/``.
- ``SecurityHeaders``: every response says ``X-Content-Type-Options:
  nosniff``; every HTML page also carries a Content-Security-Policy that
  allows no script (the Swagger UI at /docs gets the one it needs), forbids
  framing (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``) and
  sends no referrer. A route may let the pages of named origins frame its
  page (``frame_by``): then ``frame-ancestors`` lists exactly those (each
  plain ``scheme://host[:port]``, never a wildcard) and no
  ``X-Frame-Options`` is sent, as it cannot name an origin. Every answer to
  a request that carries a key or a dashboard session says
  ``Cache-Control: no-store``: what a key or a session may read is kept by
  no cache, the browser's included (Back after signing out on a shared
  computer shows nothing).
- A request that meets the database unable to serve it now
  (``db.is_unavailable``) where no route answers that itself is answered
  ``503`` with ``Retry-After: 5`` in the same shape, never ``500``; any
  other database error stays a ``500``.
- ``cross_site``: a browser's form post from another site is recognised (by
  ``Sec-Fetch-Site`` or ``Origin``, the latter compared with each of
  ``<SERVICE>_PUBLIC_ORIGIN``'s origins when set), so a page elsewhere cannot sign a
  visitor in or out; clients that send neither header (curl, SDKs) are not
  browsers and pass.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import json
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from leadpipe_common.db import error_text
from leadpipe_common.origins import PLAIN_ORIGIN
from leadpipe_common.problems import NUL_REASON, FieldProblem, did_you_mean, field_problems, nul_path, sendable

log = structlog.get_logger(__name__)

__all__ = ["FieldProblem", "FieldsRefused", "StrictRoute", "Problem", "ProblemBody", "field_problems",
           "install_problem_handlers", "problem_responses", "takes_json"]


class FieldProblemBody(BaseModel):
    field: str
    reason: str


class ProblemBody(BaseModel):
    """The one error shape, for the OpenAPI documents."""

    error: str
    errors: list[FieldProblemBody] | None = None


_MEANINGS = {
    401: "no API key, or an unknown or revoked one (see WWW-Authenticate)",
    403: "the API key lacks the scope this operation needs",
    404: "no such resource",
    408: "the body did not arrive in full within the deadline from the request's start; the connection is closed",
    409: "not possible in the resource's current state",
    413: "the body is over the limit",
    415: "the content type is not one this operation takes",
    422: "a field is missing or invalid: `errors` names each one",
    429: "too many unknown or revoked API keys from this client address; retry after `Retry-After` seconds",
    503: "a dependency is unavailable; retry after `Retry-After` seconds",
}


def problem_responses(*codes: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, each with the ``ProblemBody`` model (``meanings`` by
    ``_404="..."`` overrides a description). Where a key is checked (401), so is how many wrong ones its client
    sent (429, ``auth.check_key``), and a key that cannot be looked up now is a 503, never a 401; where a body is
    limited (413), so is how long it takes to arrive (408, ``BodyLimit``)."""
    codes = (*codes, *(c for c in (429, 503) if c not in codes)) if 401 in codes else codes
    codes = (*codes, 408) if 413 in codes and 408 not in codes else codes
    return {code: {"model": ProblemBody, "description": meanings.get(f"_{code}", _MEANINGS[code])} for code in codes}


class Problem(Exception):
    def __init__(self, status: int, message: str, errors: Sequence[FieldProblem] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        # Sendable, as each FieldProblem is: a message may quote what the client sent.
        self.status, self.message, self.errors, self.headers = (status, sendable(message), list(errors),
                                                                dict(headers or {}))

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def install_problem_handlers(app: FastAPI, unavailable: Sequence[type[Exception]] = (),
                             retry_later: Callable[[BaseException], bool] = lambda exc: True) -> None:
    """The shared error shape for the app's Problems and FastAPI's own errors; the database's errors
    (``unavailable``, by class) that mean "not now" (``retry_later``) answered ``503`` with ``Retry-After``
    wherever no route answers them itself, the others left to be the server errors they are."""
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return await _render(request, Problem(422, "the request is invalid", field_problems(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        unread = _unread_body(exc)
        if unread is not None:
            return await _render(request, Problem(422, "the request is invalid", [FieldProblem("body", unread)]))
        return await _render(request, Problem(exc.status_code, str(exc.detail), getattr(exc, "problems", ()),
                                              headers=exc.headers))

    @app.exception_handler(RepeatedKey)
    async def _repeated(request: Request, exc: RepeatedKey) -> Response:
        # A route reading ``request.json()`` itself (none does today; StrictRoute promises it for one that will);
        # FastAPI's own read of a body model comes as its 400 (below).
        return await _render(request, Problem(422, "the request is invalid",
                                              [FieldProblem("body", _repeated_reason(exc))]))

    async def _unavailable(request: Request, exc: Exception) -> Response:
        if not retry_later(exc):
            raise exc  # a bug (a missing table, bad SQL): a 500, logged with its traceback, so someone looks
        log.warning("database unavailable", error=error_text(exc), path=request.url.path)
        return await _render(request, Problem(503, "the database cannot serve this right now; please retry",
                                              headers={"Retry-After": "5"}))

    for error in unavailable:  # by class, so the fast lane's lookup finds them too
        app.add_exception_handler(error, _unavailable)

    async def _render(request: Request, problem: Problem) -> Response:
        # Through whatever renders Problems in this app (a service may install its own).
        return await app.exception_handlers[Problem](request, problem)


def _unread_body(exc: HTTPException) -> str | None:
    """Why FastAPI could not read a route's JSON body, when that is what ``exc`` is: it answers a body nested past
    the interpreter's recursion limit (30 KB of "{"a":" does it) or not in any Unicode encoding with a bare ``400``
    "There was an error parsing the body", naming no field and no reason."""
    if exc.status_code != 400 or exc.detail != "There was an error parsing the body":
        return None
    if isinstance(exc.__cause__, RecursionError):
        return "is nested too deeply"
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return "is not text in UTF-8 (nor UTF-16 or UTF-32)"
    if isinstance(exc.__cause__, RepeatedKey):
        return _repeated_reason(exc.__cause__)
    return None


def _repeated_reason(exc: RepeatedKey) -> str:
    return f"gives the key {json.dumps(exc.key, ensure_ascii=False)} more than once"


class RepeatedKey(ValueError):
    """A JSON object giving one key twice. Not a ``json.JSONDecodeError``: FastAPI would word that as "JSON decode
    error" at a character; this way it reaches ``_unread_body`` as the cause of FastAPI's bare 400."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} is given more than once")
        self.key = key


def _one_value_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RepeatedKey(key)
        obj[key] = value
    return obj


class _OneValueEachRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_one_value_each)
        return self._json


def takes_json(route: Any) -> bool:
    """Whether ``route`` is a FastAPI route that reads its body as JSON (not a form's, not none)."""
    return isinstance(route, APIRoute) and route.body_field is not None \
        and not isinstance(route.body_field.field_info, params.Form)


class StrictRoute(APIRoute):
    """A FastAPI route whose JSON body gives each key once and whose query names only parameters it takes (see
    the module's guarantees): a router's ``route_class``. json.loads keeps a repeated key's last value, and
    FastAPI reads the query parameters it knows; the hook sees every pair first, the check every name."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        takes = dict(_query_params(self.dependant))
        taken = sorted(takes)

        async def strictly(request: Request) -> Response:
            problems = [_query_problem(name, request.query_params.getlist(name), takes, taken)
                        for name in dict.fromkeys(request.query_params)]
            if any(problems):
                raise Problem(422, "the request is invalid", [p for p in problems if p is not None])
            return await handler(_OneValueEachRequest(request.scope, request.receive, request._send))

        return strictly


def _query_problem(name: str, values: list[str], takes: Mapping[str, bool], taken: list[str]) -> FieldProblem | None:
    """What is wrong with the query's ``name`` (given ``values``), for a route taking ``takes`` (name: whether it
    takes several values), if anything: FastAPI reads the last of a repeated one (``?limit=1&limit=500``)."""
    if not name:
        return FieldProblem("query", "has a parameter without a name")
    if name not in takes:
        return FieldProblem(name, f"is not a parameter this takes{did_you_mean(name, taken) or ' (misspelt?)'}")
    if len(values) > 1 and not takes[name]:
        return FieldProblem(name, "is given more than once")
    return None


def _query_params(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """The query parameters a route (its dependencies too) reads, by the names a request gives them, each with
    whether it takes several values (a list)."""
    for field in dependant.query_params:
        model = field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):  # a model of query parameters
            yield from ((f.alias or name, _many(f.annotation)) for name, f in model.model_fields.items())
        else:
            yield field.alias, _many(field.field_info.annotation)
    for sub in dependant.dependencies:
        yield from _query_params(sub)


def _many(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values, as FastAPI reads them (``list[str]``,
    ``Sequence[str] | None``, ``Annotated[set[str] | None, Query()]``...)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _many(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_many(arg) for arg in typing.get_args(annotation))
    kind = origin or annotation
    return (isinstance(kind, type) and issubclass(kind, (collections.abc.Sequence, collections.abc.Set, collections.deque))
            and not issubclass(kind, (str, bytes)))


def cross_site(request: Request) -> bool:
    """Whether a browser sent this request on behalf of a page of another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")  # none: the person typed the address
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin not in public_origins(request)


def public_origins(request: Request) -> tuple[str, ...]:
    """The origins browsers reach this service at: ``<SERVICE>_PUBLIC_ORIGIN``'s when set (behind a proxy that
    terminates TLS a request arrives as plain http, whatever the browser used), else the address the request
    came to."""
    configured: tuple[str, ...] = getattr(request.app.state, "public_origins", ())
    return configured or (f"{request.url.scheme}://{request.headers.get('host', '')}",)


def public_origin(request: Request) -> str:
    """The origin the browser that sent this request is at: the one of ``public_origins`` its ``Origin`` names
    (a service reached under two names may serve one over https and the other not), else the canonical first."""
    origins = public_origins(request)
    origin = request.headers.get("origin")
    return origin if origin in origins else origins[0]


def routed_path(scope: dict[str, Any]) -> str:
    """The path a request names under the app, the prefix a proxy serves it at (``root_path``) taken off where the
    server left it in the path (the ASGI spec lets it do either)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` fails its read with ``413`` (declared or chunked), and a read
    still waiting for the body ``deadline_s`` after the request's start with ``408``."""

    def __init__(self, app: Any, max_bytes: int, deadline_s: float) -> None:
        self.app = app
        self._max = max_bytes
        self._deadline_s = deadline_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        over = declared.isdigit() and int(declared) > self._max
        seen = 0
        loop = asyncio.get_running_loop()
        # Counted from the request's start, not per read: a client sending a byte every few seconds would pass any
        # wait between reads, holding its connection and up to the limit in memory for as long as it liked.
        deadline = loop.time() + self._deadline_s
        whole = False

        async def limited() -> dict[str, Any]:
            nonlocal seen, whole
            if over:
                raise self._too_large()
            if whole:
                return await receive()  # the client's disconnect: a streamed response may take its time
            # What asyncio.timeout_at does, at half its cost on Python 3.11 (~2 against ~3.5 us a request).
            # A body already in returns before the timer can run, past the deadline too: only waiting on the
            # client is late.
            task = asyncio.current_task()
            assert task is not None  # an ASGI app runs in a task
            cancelling = task.cancelling()
            late = _Late(task)
            timer = loop.call_at(deadline, late)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if late.passed and task.uncancel() <= cancelling:  # ours alone, not also a stop's
                    # The rest of the body is not waited for: the connection goes with the answer, not kept for it.
                    raise HTTPException(408, f"the request body did not arrive within {self._deadline_s:g} s",
                                        headers={"Connection": "close"}) from None
                raise
            finally:
                timer.cancel()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    raise self._too_large()
                whole = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> HTTPException:
        # An HTTPException, so that FastAPI passes it on instead of calling it a parse error.
        return HTTPException(413, f"request body is larger than {self._max // 1024} KiB")


class _Late:
    """The timer of a body's read: past the deadline, it cancels the reading task and says it did."""

    __slots__ = ("passed", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task, self.passed = task, False

    def __call__(self) -> None:
        self.passed = True
        self.task.cancel()


class FieldsRefused(HTTPException):
    """An HTTPException naming the fields to blame: raised while a body is read, where FastAPI passes
    HTTPExceptions on (anything else it calls a parse error), and answered as a ``Problem``."""

    def __init__(self, status: int, message: str, problems: Sequence[FieldProblem]) -> None:
        super().__init__(status, message)
        self.problems = list(problems)


class RefuseNul:
    """ASGI middleware: U+0000 in a request's query, path or body is answered ``422`` naming the field.

    The query and the path are checked before the app sees the request; the
    body as the app reads it (so a route still authenticates and throttles
    before it reads a body), the read failing with :class:`FieldsRefused`
    once the whole body has arrived. It is parsed only when a NUL could be in
    it: the common request pays one byte scan. JSON (also sent without a
    content type) and form bodies are checked here; a multipart body carries
    files, whose bytes may hold anything, so the app that takes one checks
    its text fields itself.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _nul_in_query(scope.get("query_string", b""), "query")
        if field is None and (b"%00" in scope.get("raw_path", b"") or "\x00" in scope.get("path", "")):
            field = "path"
        if field is not None:
            # Answered the way the app answers its other problems (capture: a page for a browser).
            problem = Problem(422, "the request is invalid", [FieldProblem(field, NUL_REASON)])
            request = Request(scope, receive)
            response = await scope["app"].exception_handlers[Problem](request, problem)
            await response(scope, receive, send)
            return
        content_type = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
        media = content_type.split(b";")[0].strip().lower()
        if not (media in (b"", _FORM) or media.endswith(b"json")):
            await self.app(scope, receive, send)  # multipart (the app's to check) or one the app refuses
            return
        chunks: list[bytes] = []

        async def checked() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and (where := _nul_in_body(media, b"".join(chunks))) is not None:
                    raise FieldsRefused(422, "the request is invalid", [FieldProblem(where, NUL_REASON)])
            return message

        await self.app(scope, checked, send)


def _nul_in_query(query: bytes, where: str) -> str | None:
    """The name whose value holds U+0000 (``where`` when a name itself does), in URL-encoded pairs."""
    if b"%00" not in query and b"\x00" not in query:
        return None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in key:
            return where
        if "\x00" in value:
            return key
    return None


_FORM = b"application/x-www-form-urlencoded"


def _nul_in_body(media: bytes, body: bytes) -> str | None:
    """The field holding U+0000 in a form or JSON body (``media`` is one of those)."""
    if media == _FORM:
        return _nul_in_query(body, "body")
    if b"\\u0000" in body:
        try:
            return nul_path(json.loads(body))
        except (ValueError, RecursionError):
            return None  # not JSON (or nested past parsing): the operation says so itself
    return None


def _page_policy(ancestors: str) -> bytes:
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            f"frame-ancestors {ancestors}; base-uri 'none'").encode()


_PAGE_POLICY = _page_policy("'none'")
# The Swagger UI page loads its script and style from jsDelivr (pinned, by hash: service.swagger_ui).
_DOCS_POLICY = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
                "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data:; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


class ResponseHook:
    """Base of the plain-ASGI middlewares that act as a response starts and when it is done.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: no task and no
    body copy per request on capture's hot path.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def hooked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.starting(scope, message)
            await send(message)

        try:
            await self.app(scope, receive, hooked)
        finally:
            self.finished(scope)

    def starting(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        """Called with the ``http.response.start`` message, which it may change."""

    def finished(self, scope: dict[str, Any]) -> None:
        """Called once the app is done with the request, answered or not."""


#: Where ``frame_by`` leaves, in the request's scope, the page policy naming the origins that may frame its page.
_FRAMED_BY = "leadpipe.framed_by"


def frame_by(scope: dict[str, Any], origins: Iterable[str]) -> None:
    """Let pages of ``origins`` show this request's HTML answer in a frame (none given: it stays unframeable);
    raises ValueError for anything but a plain origin, which the policy would read as more (``*``, another
    directive)."""
    if not (origins := sorted(origins)):
        return
    if wrong := [origin for origin in origins if not PLAIN_ORIGIN.fullmatch(origin)]:
        raise ValueError(f"not origins a page may be framed by: {wrong}")
    scope[_FRAMED_BY] = _page_policy(" ".join(origins))


class SecurityHeaders(ResponseHook):
    """The headers above, added as a response starts."""

    def starting(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        headers = list(message.get("headers", []))
        headers.append((b"x-content-type-options", b"nosniff"))
        if _credentials(scope.get("headers", ())):
            # Over whatever the route said: an answer for a key or a session is no one else's to keep.
            headers = [(k, v) for k, v in headers if k != b"cache-control"] + [(b"cache-control", b"no-store")]
        content_type = next((v for k, v in headers if k == b"content-type"), b"")
        if content_type.startswith(b"text/html"):
            docs = scope.get("path", "") in ("/docs", "/redoc")
            framed = None if docs else scope.get(_FRAMED_BY)
            headers += [(b"content-security-policy", _DOCS_POLICY.encode() if docs else framed or _PAGE_POLICY),
                        (b"referrer-policy", b"no-referrer")]
            if framed is None:
                # Only where no origin may frame the page: X-Frame-Options cannot name one. Current browsers obey
                # frame-ancestors over it; an old one that knows only X-Frame-Options, told DENY, would show the
                # page in no frame at all.
                headers.append((b"x-frame-options", b"DENY"))
        message["headers"] = headers


#: What a 500 says: nothing of the error, which may quote a lead's data; its traceback is in the service's log.
SERVER_ERROR = "the server failed on this request; its operators find why in the service's log"


class ServerErrors(ResponseHook):
    """See the module's guarantees. Starlette's outermost handler answers such an exception too, but outside every
    middleware: a bare text/plain 500 without the headers the edge adds on the way out."""

    def starting(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        scope[_ANSWERING] = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            if scope["type"] == "http" and not scope.get(_ANSWERING):
                problem = Problem(500, SERVER_ERROR)
                render = getattr(scope.get("app"), "exception_handlers", {}).get(Problem)
                response = await render(Request(scope, receive), problem) if render else problem.response()
                await response(scope, receive, send)
            raise  # for the server's log, with its traceback; the answer is out


#: Set in a request's scope once its answer has started.
_ANSWERING = "leadpipe.answering"


class HeadAsGet:
    """``HEAD`` answered as ``GET`` is, its headers whole and no body (RFC 9110, 9.3.2). FastAPI's routes take
    only the methods they name: an uptime monitor or link checker sending ``HEAD /healthz`` or
    ``HEAD /v1/forms/{id}/token.js`` got ``405`` and reported the service down. Plain ASGI: nothing is read or
    copied for another method."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        inner = {**scope, "method": "GET"}  # a copy: the server answers by its own scope, which still says HEAD
        try:
            await self.app(inner, receive, without_body)
        finally:
            if "route" in inner:  # what the router matched, for the metrics outside (RequestMetrics)
                scope["route"] = inner["route"]


#: A session cookie, for the dashboard's browser users (``auth.Sessions``); named here, where the edge tells
#: the requests that carry one.
SESSION_COOKIE = "leadpipe_session"
_SESSION_COOKIE = SESSION_COOKIE.encode() + b"="


def _credentials(headers: Any) -> bool:
    """Whether a request's headers carry a key (right or wrong) or a dashboard session cookie."""
    for name, value in headers:
        if name in (b"authorization", b"x-api-key"):
            return True
        if name == b"cookie" and any(c.strip().startswith(_SESSION_COOKIE) for c in value.split(b";")):
            return True
    return False
