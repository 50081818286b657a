"""reporting's JSON and CSV API.

Every report but a lead's timeline takes the same cohort filters: ``since``
and ``until`` (an ISO date or date-time; a bare ``until`` date includes that
whole day) select leads by capture time (spam: submissions by arrival),
``source`` one ``utm_source``. ``format=csv`` (or ``Accept:
text/csv``) answers a CSV of the report's rows instead of JSON.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from leadpipe_common.auth import needs
from leadpipe_common.http import FieldProblem, Problem, StrictRoute, problem_responses
from leadpipe_common.moments import parse_moment
from leadpipe_common.service import runtime_of

from reporting import answers, reports
from reporting.reports import Filters

router = APIRouter(tags=["reports"], route_class=StrictRoute, dependencies=[needs("reports:read")],
                   responses=problem_responses(401, 403, 404, 422, _404="no such lead (timeline)"))


def _moment(value: str | None, name: str, wrong: list[FieldProblem], *, end: bool = False) -> datetime | None:
    """``value`` read; None, with what is wrong with it added to ``wrong``, when it is no moment."""
    try:
        return parse_moment(value, end=end)
    except ValueError as exc:
        wrong.append(FieldProblem(name, str(exc)))
        return None


def filters(since: str | None, until: str | None, source: str | None, fmt: str | None = None) -> Filters:
    """The cohort asked for; a 422 naming every filter that is wrong (and the answer's ``format``), not only the
    first: corrected one at a time, each answer would find the next."""
    wrong: list[FieldProblem] = _format_problems(fmt)
    f = Filters(_moment(since, "since", wrong), _moment(until, "until", wrong, end=True), source or None)
    if f.since and f.until and f.since >= f.until:
        wrong.append(FieldProblem("until", "must be after since"))
    if wrong:
        raise Problem(422, "the report filters are invalid", wrong)
    return f


Since = Query(None, description="leads captured at or after (ISO date or date-time)")
Until = Query(None, description="leads captured before (a bare date includes the whole day)")
Source = Query(None, description="only leads with this utm_source; (none): those that gave none")
#: Attribution's source picks its leads as every report's does; under a later model it names no credited touch.
AttributionSource = Query(None, description=(
    "only leads whose first touch had this utm_source, under every model: under last and linear their credit "
    "goes to the touches that earn it, whatever their source; (none): those that gave none"))
Format = Query(None, description="json (default) or csv")
#: A report grouped by free text (utm_*, the offer, a bot's form id) can have a row a value by the million.
MOST_ROWS = 10_000
Limit = Query(reports.ROWS, ge=1, le=MOST_ROWS, description="at most this many rows, the report's first; `omitted` (the "
                                                    "`Leadpipe-Omitted-Rows` header of a CSV) counts those left out")


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


#: What makes a spreadsheet read a cell as a formula: utm_* and offer are free text from anonymous posts.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        value = "; ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value  # shown as text, never run (OWASP's advice for CSV injection)
    return "" if value is None else value


def _format_problems(fmt: str | None) -> list[FieldProblem]:
    return [] if fmt in (None, "", "json", "csv") else [FieldProblem("format", f"{fmt!r}: use json or csv")]


async def answer(request: Request, fmt: str | None, name: str,
                 build: Callable[[AsyncConnection], Awaitable[dict[str, Any] | None]],
                 rows: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> Response:
    async with runtime_of(request).request_connection() as conn:
        body = await build(conn)
    if body is None:
        raise Problem(404, "not found")
    wants_csv = fmt == "csv" or (fmt in (None, "") and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        # A CSV has no room for what its rows leave out: a header says it (the JSON's ``omitted``).
        omitted = {OMITTED: str(body["omitted"])} if "omitted" in body else {}
        return Response(to_csv(rows(body)), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"', **omitted})
    # As built, not through the route's answer model: that describes it (``reporting.answers``), byte for byte.
    return JSONResponse(body)


#: The header of a CSV whose report left rows out (``limit``): how many.
OMITTED = "Leadpipe-Omitted-Rows"


def _csv(rows: str, *, limited: bool = False) -> dict[int | str, dict[str, Any]]:
    """The 200's other media type: a CSV of the report's ``rows``, with ``format=csv`` or ``Accept: text/csv``."""
    headers = {"headers": {OMITTED: {"description": "the rows past `limit` left out of the CSV (0: none)",
                                     "schema": {"type": "integer"}}}} if limited else {}
    return {200: {"description": f"The report as JSON, or with `format=csv` (or `Accept: text/csv`) {rows} as CSV, "
                                 "a line each under a header of their keys.",
                  "content": {"text/csv": {"schema": {"type": "string"}}}, **headers}}


@router.get("/v1/reports/funnel", summary="The combined funnel: leads that reached each stage, and conversion",
            response_model=answers.Funnel,
            responses=_csv("the `stages`, then each of the `exits` (a `stage` and its `count`)"))
async def funnel(request: Request, since: str | None = Since, until: str | None = Until,
                 source: str | None = Source, format: str | None = Format) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, "funnel", lambda c: reports.funnel(c, f),
                        lambda b: b["stages"] + [{"stage": k, "count": v} for k, v in b["exits"].items()])


@router.get("/v1/reports/funnel/by/{dimension}", summary="The funnel per utm_source, medium, campaign, content, form or offer",
            response_model=answers.Breakdown, responses=_csv("the `rows`", limited=True))
async def breakdown(request: Request, dimension: Literal["source", "medium", "campaign", "content", "form", "offer"],
                    since: str | None = Since, until: str | None = Until, source: str | None = Source,
                    format: str | None = Format, limit: int = Limit) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, f"funnel-by-{dimension}",
                        lambda c: reports.breakdown(c, f, dimension, limit),
                        lambda b: b["rows"])


@router.get("/v1/reports/attribution/{dimension}",
            summary="Closed-loop attribution: won deals and revenue by source, campaign or offer, under a model",
            response_model=answers.AttributionReport,
            responses=_csv("the `rows` (`won_revenue` as `EUR 1200.00; USD 90.00`)", limited=True))
async def attribution(request: Request, dimension: Literal["source", "campaign", "offer"],
                      since: str | None = Since, until: str | None = Until, source: str | None = AttributionSource,
                      model: Literal["first", "last", "linear"] = Query(
                          "first", description="first touch (all credit to the capture), last touch before the win, "
                                               "or linear (an equal share to every touch up to the win)"),
                      format: str | None = Format, limit: int = Limit) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, f"attribution-by-{dimension}-{model}",
                        lambda c: reports.attribution(c, f, dimension, model, limit), lambda b: b["rows"])


@router.get("/v1/reports/velocity", summary="Time from capture to routed, routed to accepted, accepted to won (p50, p90)",
            response_model=answers.Velocity, responses=_csv("the `rows`"))
async def velocity(request: Request, since: str | None = Since, until: str | None = Until,
                   source: str | None = Source, format: str | None = Format) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, "velocity", lambda c: reports.velocity(c, f), lambda b: b["rows"])


@router.get("/v1/reports/sla", summary="Hand-off SLA compliance per team and per rep", response_model=answers.Sla,
            responses=_csv("the `teams` (their `owner_id` `(team)`), then the `reps`"))
async def sla(request: Request, since: str | None = Since, until: str | None = Until,
              source: str | None = Source, format: str | None = Format) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, "sla", lambda c: reports.sla(c, f),
                        lambda b: [{"owner_id": "(team)", **t} for t in b["teams"]] + b["reps"])


@router.get("/v1/reports/rejections", summary="Why sales rejected leads, by source",
            response_model=answers.Rejections, responses=_csv("the `rows`", limited=True))
async def rejections(request: Request, since: str | None = Since, until: str | None = Until,
                     source: str | None = Source, format: str | None = Format, limit: int = Limit) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, "rejections", lambda c: reports.rejections(c, f, limit),
                        lambda b: b["rows"])


@router.get("/v1/reports/spam", summary="Submissions kept out as bots', by form and source, and how many were "
                                       "released as false positives",
            response_model=answers.Spam, responses=_csv("the `rows`", limited=True))
async def spam(request: Request, since: str | None = Query(None, description="quarantined at or after"),
               until: str | None = Query(None, description="quarantined before (a bare date includes the day)"),
               source: str | None = Source, format: str | None = Format, limit: int = Limit) -> Response:
    f = filters(since, until, source, format)
    return await answer(request, format, "spam", lambda c: reports.spam_report(c, f, limit), lambda b: b["rows"])


@router.get("/v1/leads/{lead_id}/timeline", summary="One lead's full history, oldest first",
            response_model=answers.Timeline, responses=_csv("the `steps`"))
async def timeline(request: Request, lead_id: uuid.UUID, format: str | None = Format) -> Response:
    if wrong := _format_problems(format):  # the reports check it with their filters; the timeline has none
        raise Problem(422, "unknown format", wrong)

    async def build(conn: AsyncConnection) -> dict[str, Any] | None:
        found = await reports.timeline(conn, lead_id)
        if found is None:
            raise Problem(404, f"no lifecycle events for lead {lead_id}")
        return found

    return await answer(request, format, f"timeline-{lead_id}", build, lambda b: b["steps"])

