"""The shared error shape when the database cannot serve a request: a 503 to retry, whatever the route."""

import json

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from leadpipe_common.db import UNAVAILABLE, is_unavailable
from leadpipe_common.http import FieldProblem, Problem, install_problem_handlers
from leadpipe_common.problems import NUL_REASON


def app_failing_with(error: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app, unavailable=UNAVAILABLE, retry_later=is_unavailable)

    @app.get("/v1/reports/funnel")
    async def funnel() -> dict:
        raise error

    return app


async def get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as client:
        return await client.get("/v1/reports/funnel")


def through_sqlalchemy(error: Exception) -> DBAPIError:
    """``error`` as a statement run through a session raises it."""
    return DBAPIError("SELECT 1", None, error)


@pytest.mark.parametrize("error", [
    PoolTimeout("QueuePool limit of size 10 overflow 10 reached"), ConnectionRefusedError("connection refused"),
    asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
    through_sqlalchemy(asyncpg.QueryCanceledError("canceling statement due to statement timeout")),
    through_sqlalchemy(asyncpg.DeadlockDetectedError("deadlock detected")),
    through_sqlalchemy(asyncpg.TooManyConnectionsError("sorry, too many clients already")),
    through_sqlalchemy(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")),
], ids=["every pooled connection taken", "Postgres unreachable", "a lock held elsewhere", "a statement timeout",
        "a deadlock", "too many connections", "the connection lost"])
async def test_a_request_the_database_cannot_serve_now_is_asked_to_retry_not_failed(error):
    answer = await get(app_failing_with(error))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json() == {"error": "the database cannot serve this right now; please retry"}


@pytest.mark.parametrize("error", [
    KeyError("total"), through_sqlalchemy(asyncpg.UndefinedTableError('relation "auth.ended_sessions" does not exist')),
    asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    through_sqlalchemy(asyncpg.PostgresSyntaxError('syntax error at or near "SELEC"')),
    FileNotFoundError(2, "No such file or directory", "/etc/leadpipe/forms.yaml"),
], ids=["a bug", "a migration not applied", "a constraint", "bad SQL", "a missing file"])
async def test_a_bug_is_still_a_server_error_not_a_request_to_retry_for_ever(error):
    assert (await get(app_failing_with(error))).status_code == 500


def test_an_error_naming_a_value_the_driver_could_not_send_is_told_without_it():
    """asyncpg quotes the value (up to 40 characters) and its reason may quote it again: leads' addresses."""
    import asyncpg

    from leadpipe_common.db import error_text

    for message in ("invalid input for query argument $3: ['Ada (Stripe) ada@stripe.com', 'bo@exam... "
                    "(expected str, got int)",
                    "invalid input for query argument $1: 'x' (invalid UUID 'x': length must be between 32..36)"):
        text = error_text(asyncpg.exceptions.DataError(message))
        assert text == "DataError: invalid input for query argument " + message.split(" ")[5].rstrip(":") + \
            " (its value not shown) [SQLSTATE 22000]"



def _through_sqlalchemy(error: Exception) -> Exception:
    """``error`` as a statement run through SQLAlchemy's asyncpg dialect raises it: its adapter's error (whose
    message repeats it whole), raised from it, wrapped in SQLAlchemy's own, parameters hidden (``make_engine``)."""
    import asyncpg
    import sqlalchemy.exc
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    adapted_type = next(dbapi._asyncpg_error_translate[t] for t in type(error).__mro__
                        if t in dbapi._asyncpg_error_translate)
    try:
        try:
            raise error
        except Exception as exc:
            adapted = adapted_type(f"{type(exc)}: {exc}")
            adapted.sqlstate = exc.sqlstate
            raise adapted from exc
    except Exception as adapted:
        return sqlalchemy.exc.DBAPIError.instance("INSERT INTO scoring.scores VALUES ($1, $2)", ("x", "y"), adapted,
                                                  dbapi.Error, hide_parameters=True)


@pytest.mark.parametrize("fields, told", [
    ({"C": "23502", "M": 'null value in column "grade" of relation "scores" violates not-null constraint',
      "D": "Failing row contains (17b81eab, ada.lovelace@stripe.com, Ada, Lovelace, +44 20 7946 0958, null).",
      "s": "scoring", "t": "scores", "c": "grade"},
     'NotNullViolationError: null value in column "grade" of relation "scores" violates not-null constraint '
     "[SQLSTATE 23502, table scoring.scores, column grade]"),
    ({"C": "23505", "M": 'duplicate key value violates unique constraint "leads_email_key"',
      "D": "Key (email)=(ada.lovelace@stripe.com) already exists.", "s": "capture", "t": "leads",
      "n": "leads_email_key"},
     'UniqueViolationError: duplicate key value violates unique constraint "leads_email_key" '
     "[SQLSTATE 23505, table capture.leads, constraint leads_email_key]"),
    ({"C": "22P02", "M": 'invalid input syntax for type uuid: "ada.lovelace@stripe.com"',
      "H": 'Did you mean "ada.lovelace@stripe.com"?'},
     "InvalidTextRepresentationError: invalid input syntax for type uuid: (value not shown) [SQLSTATE 22P02]"),
    ({"C": "42P01", "M": 'relation "scores" does not exist'},
     'UndefinedTableError: relation "scores" does not exist [SQLSTATE 42P01]'),
], ids=["a row that breaks not-null", "a key taken", "a value of the wrong type", "a missing table"])
def test_an_error_from_postgres_is_told_by_its_code_and_names_never_by_the_values_it_quotes(fields, told):
    """Postgres's DETAIL quotes the failing row or key and a data exception's message the value: the text went to
    logs, dead letters' dlq.error.message and a deadlettered step's reason on leads.lifecycle."""
    import asyncpg

    from leadpipe_common.db import error_text

    error = asyncpg.PostgresError.new({"S": "ERROR", **fields})
    assert error_text(error) == told
    assert error_text(_through_sqlalchemy(error)) == f"{type(_through_sqlalchemy(error)).__name__}: {told}"
    for text in (error_text(error), error_text(_through_sqlalchemy(error))):
        assert "ada" not in text and "7946" not in text and "DETAIL" not in text and "INSERT" not in text

@pytest.mark.parametrize("fields, told", [
    ({"C": "22P02", "M": 'invalid input syntax for type uuid: "ada"@example.com"'},
     "invalid input syntax for type uuid: (value not shown)"),
    ({"C": "22P02", "M": 'invalid input syntax for type integer: "12 Baker St\nLondon ada@example.com"'},
     "invalid input syntax for type integer: (value not shown)"),
    ({"C": "22003", "M": 'value "ada@example.com" is out of range for type integer'},
     "value (value not shown)"),
    ({"C": "22P02", "M": 'invalid input syntax for type uuid: "email"@example.com"', "c": "email"},
     "invalid input syntax for type uuid: (value not shown)"),
    ({"C": "23502", "M": 'null value in column "grade" of relation "scores" violates not-null constraint',
      "t": "scores", "c": "grade"},
     'null value in column "grade" of relation "scores" violates not-null constraint'),
], ids=["a value holding a quote", "a value holding a newline", "the words after a value",
        "a value opening with a name", "names only"])
def test_a_value_postgres_quotes_is_cut_with_all_after_it_whatever_it_holds(fields, told):
    """Postgres quotes a value raw: a quote in it ended the quoted string early (``"ada"@example.com"`` left
    ``@example.com"``), and a newline in it left its first line, the closing quote being on a later one."""
    import asyncpg

    from leadpipe_common.db import error_text

    error = asyncpg.PostgresError.new({"S": "ERROR", **fields})
    assert error_text(error).split(": ", 1)[1].rsplit(" [SQLSTATE", 1)[0] == told


def test_an_error_raised_while_handling_a_postgres_one_is_told_without_the_values_its_message_repeats():
    """``RuntimeError(f"batch failed: {exc}")`` carries the failing row in its message, to a log's error= or a
    dead letter's reason; a message of its own stays."""
    import asyncpg

    from leadpipe_common.db import error_text

    def raised_while_handling(message_of):
        try:
            try:
                raise asyncpg.PostgresError.new({"S": "ERROR", "C": "23502", "M": 'null value in column "grade"',
                                                 "D": "Failing row contains (ada.lovelace@stripe.com).", "c": "grade"})
            except asyncpg.PostgresError as exc:
                raise RuntimeError(message_of(exc))  # no "from": the Postgres error is its context
        except RuntimeError as exc:
            return exc

    repeating = raised_while_handling(lambda exc: f"batch failed: {exc}")
    assert error_text(repeating) == "RuntimeError: (its message repeats a database or validation error's; not shown)"
    assert error_text(raised_while_handling(lambda exc: "batch failed")) == "RuntimeError: batch failed"


def test_a_database_gone_read_only_is_asked_to_retry():
    import asyncpg

    assert is_unavailable(asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"))


async def test_a_problem_naming_a_field_no_utf_8_can_carry_names_it_by_its_escape_not_with_a_server_error():
    """A client's JSON may name a field with a lone surrogate; the answer naming it must still be UTF-8."""
    refused = Problem(422, "the request is invalid", [FieldProblem("x.\ud800", NUL_REASON)])
    answer = await get(app_failing_with(refused))
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "x.\\ud800", "reason": NUL_REASON}]


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"email":', "is not JSON: Expecting value at character 9"),
    (b'{"email": "\xff\xfe"}', "is not text in UTF-8 (nor UTF-16 or UTF-32)"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "is nested too deeply"),
], ids=["cut short", "not utf-8", "nested past the recursion limit"])
async def test_a_json_body_fastapi_cannot_read_is_a_422_on_the_body_saying_why(body, reason):
    """FastAPI named the character it stopped at as a field ("9"), and answered a body nested ~30 KB deep or in no
    Unicode encoding with a bare 400 "There was an error parsing the body"."""
    from pydantic import BaseModel

    class Erasure(BaseModel):
        email: str

    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/people/erase")
    async def erase(erasure: Erasure) -> dict:
        return {"email": erasure.email}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://capture") as client:
        answer = await client.post("/v1/people/erase", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "body", "reason": reason}]


@pytest.mark.parametrize(("body", "key"), [
    (b'{"email": "ada@example.com", "email": "grace@example.com"}', "email"),
    (b'{"email": "ada@example.com", "why": {"ticket": 1, "ticket": 2}}', "ticket"),
    (b'{"email": "ada@example.com", "why": [{}, {"a\\"b": 1, "a\\"b": 2}]}', 'a"b'),
    ('{"email": "ada@example.com", "Straße": 1, "Straße": 2}'.encode(), "Straße"),
], ids=["at the top", "in a nested object", "in an object in a list", "not in ASCII"])
async def test_a_json_body_giving_a_key_twice_is_a_422_naming_the_key_not_its_last_value_taken(body, key):
    """json.loads keeps a repeated key's last value: an erasure asked as {"email": a, "email": b} erased b."""
    from fastapi import APIRouter
    from pydantic import BaseModel

    from leadpipe_common.http import StrictRoute

    class Erasure(BaseModel):
        email: str
        why: object = None

    erased: list[str] = []
    router = APIRouter(route_class=StrictRoute)

    @router.post("/v1/people/erase")
    async def erase(erasure: Erasure) -> dict:
        erased.append(erasure.email)
        return {"email": erasure.email}

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://capture") as client:
        answer = await client.post("/v1/people/erase", content=body, headers={"content-type": "application/json"})
        once = await client.post("/v1/people/erase", json={"email": "ada@example.com", "why": {"ticket": 1}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "body", "reason": f"gives the key {json.dumps(key, ensure_ascii=False)} more than once"}]
    assert once.status_code == 200 and erased == ["ada@example.com"]


async def test_a_route_reading_its_json_itself_refuses_a_key_given_twice_the_same_way_not_with_a_500():
    from fastapi import APIRouter, Request

    from leadpipe_common.http import StrictRoute

    router = APIRouter(route_class=StrictRoute)

    @router.post("/v1/import")
    async def take(request: Request) -> dict:
        return await request.json()

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://capture") as client:
        answer = await client.post("/v1/import", content=b'{"a": 1, "a": 2}', headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "body", "reason": 'gives the key "a" more than once'}]


async def test_a_query_parameter_the_route_does_not_take_is_refused_naming_it_not_dropped():
    from typing import Annotated

    from collections.abc import Sequence

    from fastapi import APIRouter, Depends, Query

    from leadpipe_common.http import StrictRoute

    def paged(limit: int = 100, after: str | None = None) -> tuple[int, str | None]:
        return limit, after

    router = APIRouter(route_class=StrictRoute)

    @router.get("/v1/queues/{team}")
    async def queue(team: str, page: Annotated[tuple[int, str | None], Depends(paged)], grade: str | None = None,
                    teams: Annotated[list[str] | None, Query()] = None,
                    tags: Annotated[Sequence[str] | None, Query()] = None) -> dict:
        return {"team": team, "limit": page[0], "grade": grade, "teams": teams}

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://routing") as client:
        taken = await client.get("/v1/queues/emea", params={"limit": 1, "grade": "A", "after": "x"})
        misspelt = await client.get("/v1/queues/emea", params={"limt": 1, "utm_source": "ads", "grade": "A"})
        twice = await client.get("/v1/queues/emea?limit=1&limit=500&grade=A&teams=a&teams=b&tags=x&tags=y")
        nameless = await client.get("/v1/queues/emea?=1")
    assert taken.status_code == 200 and taken.json() == {"team": "emea", "limit": 1, "grade": "A", "teams": None}
    assert misspelt.status_code == 422
    assert misspelt.json()["errors"] == [
        {"field": "limt", "reason": "is not a parameter this takes: did you mean limit?"},
        {"field": "utm_source", "reason": "is not a parameter this takes (misspelt?)"}]
    # FastAPI read the last of a parameter given twice: ?limit=1&limit=500 was 500 (a list takes them all).
    assert twice.status_code == 422 and twice.json()["errors"] == [{"field": "limit", "reason": "is given more than once"}]
    assert nameless.status_code == 422 and nameless.json()["errors"][0]["field"] == "query"


async def test_a_bug_is_answered_in_the_shared_shape_with_the_edges_headers_and_still_reaches_the_servers_log():
    """Starlette's outermost handler answered it as bare text, outside every middleware: no nosniff, and no CORS
    header on capture, so a site's script saw a network error instead of a 500."""
    from leadpipe_common.http import SERVER_ERROR, SecurityHeaders, ServerErrors

    bug = KeyError("total")
    app = app_failing_with(bug)
    app.add_middleware(ServerErrors)
    app.add_middleware(SecurityHeaders)
    answer = await get(app)
    assert answer.status_code == 500 and answer.json() == {"error": SERVER_ERROR}
    assert answer.headers["x-content-type-options"] == "nosniff"
    transport = httpx.ASGITransport(app=app)  # as the server runs it: what the app raised reaches it
    async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as client:
        with pytest.raises(KeyError) as escaped:
            await client.get("/v1/reports/funnel")
    assert escaped.value is bug
