"""The dashboard: one server-rendered page over the same queries as the JSON API.

No JavaScript and no build step: the funnel is a list of its stages and the
rest are tables, their bars drawn in CSS, so it renders the same in any
browser and in a headless test. It needs the ``reports:read`` scope: a browser signs in once
with an API key on ``/dashboard/login`` and gets a signed, ``HttpOnly``,
``SameSite=Strict`` session cookie (``Secure`` when the page it is signed in
from is https: its ``Origin``, else ``REPORTING_PUBLIC_ORIGIN``) naming the key (never its secret), which
stops working when the key is revoked; ``/dashboard/logout`` ends it on the
server too, so a copy of the cookie stops working as well.
"""

from __future__ import annotations

import html
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from leadpipe_common.auth import SESSION_COOKIE, TooManyWrongKeys, check_key, identify, keys_of
from leadpipe_common.db import UNAVAILABLE, is_unavailable
from leadpipe_common.http import FieldProblem, Problem, cross_site, problem_responses, public_origin, public_origins
from leadpipe_common.service import runtime_of

from reporting import reports
from reporting.api import MOST_ROWS, filters
from reporting.domain import rate

router = APIRouter(tags=["dashboard"])

#: How many sources the filter lists: utm_source is free text from anonymous posts, so a bot posting a new
#: one each time would make the page megabytes.
SOURCES_LISTED = 100
#: How many rows a table keyed by such free text (a source, a campaign) shows; the CSV has them all.
ROWS_SHOWN = 100
MODEL_LABELS = {"first": "First touch", "last": "Last touch", "linear": "Linear (every touch)"}
STAGE_LABELS = {"captured": "Captured", "enriched": "Enriched", "mql": "MQL", "routed": "Routed to sales",
                "accepted": "Accepted (SAL)", "qualified": "Qualified (SQL)", "won": "Won"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds <= 0:
        # The velocity report counts a step dated before the one it follows as reached at once: never below 0.
        return "0 s"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{round(seconds / 86400)} d"  # rounded, as every other unit is: 71.9 h is 3 d, not 2


def money(revenue: dict[str, str]) -> str:
    if not revenue:
        return "–"
    # The currency is whatever a lifecycle event carried, not only a sales tool's checked code: escaped.
    return " · ".join(f"{amount(Decimal(v))} {esc(c)}" for c, v in sorted(revenue.items()))


def amount(value: Decimal) -> str:
    """Whole units when the amount is whole, else with its cents (a part of a cent rounded half up). Rounded to
    whole units, half to even as Decimal formats, a deal of 0.50 read "0"."""
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{cents:,.0f}" if cents == cents.to_integral_value() else f"{cents:,.2f}"


def funnel_chart(stages: list[dict[str, Any]]) -> str:
    """The funnel as a list a screen reader reads and a phone keeps legible: text in the page's font, bars
    drawn by CSS in proportion to the largest stage."""
    top = max((s["count"] for s in stages), default=0) or 1
    rows = []
    for i, s in enumerate(stages):
        width = max(0.5, 100 * s["count"] / top)
        conv = "" if s["conversion"] is None else f'<span class="conv">{pct(s["conversion"])} of previous</span>'
        rows.append(
            f'<li class="stage" data-stage="{s["stage"]}" data-count="{s["count"]}">'
            f'<span class="label">{STAGE_LABELS[s["stage"]]}</span>'
            f'<span class="track" aria-hidden="true"><span class="fill bar-{i}" style="width:{width:.1f}%"></span></span>'
            f'<span class="figure"><strong>{s["count"]:,}</strong> {conv}</span></li>'
        )
    return f'<ol id="funnel-chart" class="funnel" aria-label="Combined funnel">{"".join(rows)}</ol>'


def bar(value: float | None) -> str:
    width = 0 if value is None else max(0, min(100, value * 100))
    return f'<span class="meter"><span style="width:{width:.1f}%"></span></span> {pct(value)}'


def top(report: dict[str, Any], what: str, path: str, asked: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """A table's rows (a report asked for ``ROWS_SHOWN``), and a note saying how many there are and where more of
    them are (``path``'s CSV for the filters ``asked``), when the report left some out."""
    rows, omitted = report["rows"], report["omitted"]
    if not omitted:
        return rows, ""
    csv = f"{path}?{urlencode({**asked, 'format': 'csv', 'limit': MOST_ROWS})}"
    return rows, (f'<p class="hint">The first {len(rows):,} of {len(rows) + omitted:,} {what}; '
                  f'{"all of them" if len(rows) + omitted <= MOST_ROWS else f"the first {MOST_ROWS:,}"}: '
                  f'<a href="{esc(csv)}">CSV</a>.</p>')


def table(head: list[str], body: list[list[str]], empty: str, caption: str = "") -> str:
    """A table that scrolls within its panel on a narrow screen (focusable, so a keyboard can scroll it too)."""
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    ths = "".join(f'<th scope="col">{h}</th>' for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    label = f' aria-label="{esc(caption)}"' if caption else ""
    return (f'<div class="scroll" role="region" tabindex="0"{label}><table><thead><tr>{ths}</tr></thead>'
            f"<tbody>{trs}</tbody></table></div>")


LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadpipe · sign in</title><style>{css}</style></head>
<body><header><div class="brand">lead<b>pipe</b> <span>closed-loop funnel</span></div></header>
<main><section class="panel login"><h1>Sign in</h1>{message}
<form method="post" action="/dashboard/login">
<label for="key">API key with the <code>reports:read</code> scope</label>
<input id="key" name="key" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>
<p class="hint"><code>make run</code> prints a local admin key; <code>leadpipe-keys create --name you --scope reports:read</code>
makes one for a person.</p></section></main></body></html>"""


def login_page(message: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    shown = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    return HTMLResponse(LOGIN.format(css=CSS, message=shown), status_code=status, headers=headers)


SIGN_OUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadpipe · sign out</title><style>{css}</style></head>
<body><header><div class="brand">lead<b>pipe</b> <span>closed-loop funnel</span></div></header>
<main><section class="panel login"><h1>Sign out</h1><p class="error" role="alert">{message}</p>
<form method="post" action="/dashboard/logout"><button type="submit">Sign out</button></form>
</section></main></body></html>"""


def sign_out_page(message: str, status: int) -> HTMLResponse:
    return HTMLResponse(SIGN_OUT.format(css=CSS, message=esc(message)), status_code=status)


SIGNED_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="0; url=/dashboard"><title>leadpipe · signed in</title><style>{css}</style></head>
<body><header><div class="brand">lead<b>pipe</b> <span>closed-loop funnel</span></div></header>
<main><section class="panel login"><h1>Signed in</h1><p><a href="/dashboard">Open the dashboard</a></p>
</section></main></body></html>"""

PROBLEM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadpipe · {title}</title><style>{css}</style></head>
<body><header><div class="brand">lead<b>pipe</b> <span>closed-loop funnel</span></div></header>
<main><section class="panel login"><h1>{title}</h1><p class="error">{message}</p>
<p class="foot">{next}</p></section></main></body></html>"""
#: What a person is told of each kind of refusal, for the page's title.
_TITLES = {400: "the request was refused", 403: "not allowed", 404: "no such page", 408: "the request took too long",
           413: "the request was too large", 422: "the request was refused", 429: "too many requests",
           503: "the reports cannot be read right now"}


def _dashboards(path: str) -> bool:
    return path == "/" or path == "/dashboard" or path.startswith("/dashboard/")


async def problem_response(request: Request, exc: Problem) -> Response:
    """The shared error model, as a page for a person's browser on the dashboard's own paths (a database that
    cannot answer now, a query refused, a cross-site sign-out): it got the API's JSON, with no title, no heading
    and no way on. The API's paths, and a client that asks for JSON, get the JSON."""
    accepts = request.headers.get("accept", "")
    if not _dashboards(request.url.path) or "text/html" not in accepts:
        return exc.response()
    retry = exc.status == 429 or exc.status >= 500
    again = html.escape(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""), quote=True)
    way_on = (f'<a href="{again}">Try again</a>' + (f" in {esc(exc.headers['Retry-After'])} s"
                                                    if "Retry-After" in exc.headers else "")
              if retry and request.method == "GET" else '<a href="/dashboard">Back to the dashboard</a>')
    title = _TITLES.get(exc.status, "the server failed" if exc.status >= 500 else "the request was refused")
    message = exc.message[:1].upper() + exc.message[1:] + "."
    if exc.errors:
        message += " " + "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
    page = PROBLEM.format(css=CSS, title=esc(title[:1].upper() + title[1:]), message=esc(message), next=way_on)
    return HTMLResponse(page, status_code=exc.status, headers=exc.headers)


@router.get("/dashboard/login", response_class=HTMLResponse, summary="The dashboard's sign-in page")
async def login_form() -> HTMLResponse:
    return login_page()


@router.post("/dashboard/login", response_class=HTMLResponse, summary="Sign in to the dashboard with an API key")
async def login(request: Request) -> Response:
    if cross_site(request):
        return login_page("Sign in from this page, not from another site.", 403)
    if request.headers.get("origin", "").startswith("http://") and public_origin(request).startswith("https://"):
        # The cookie would be Secure (REPORTING_PUBLIC_ORIGIN says https), and a browser on an http page drops it:
        # signed in, it would land on this page again without a word. Before the key is read, so it is not spent.
        return login_page(f"This page is plain http; sign in at {public_origins(request)[0]}/dashboard/login.", 400)
    key = str((await request.form()).get("key", "")).strip()
    try:
        # Counted with the wrong keys its address sends to any route: a sign-in is no way to guess keys faster.
        who = await check_key(request, key) if key else None
        if who is None:
            return login_page("That key is unknown or revoked.", 401)
        if not who.may("reports:read"):
            return login_page(f"That key ({who.name}) lacks the reports:read scope.", 403)
        # The session this browser had (another key's, say) ends here, not only its cookie: a copy of it must not
        # outlive the sign-in that replaced it. A refused sign-in leaves it as it was.
        await _end_session(request)
    except TooManyWrongKeys as exc:
        return login_page(f"Too many unknown or revoked keys were sent from here; try again in {exc.wait} s.",
                          429, exc.headers)
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        return login_page("The key cannot be checked right now; please try again.", 503)
    sessions, key_id = request.app.state.sessions, keys_of(request).session_key_id(who)
    # A page that moves on by itself rather than a redirect: the navigation to the dashboard then starts
    # on this site, so the browser sends the SameSite=Strict cookie with it.
    # A page of its own (lang, charset, heading): where a browser blocks refreshes, it is what the person reads.
    page = HTMLResponse(SIGNED_IN.format(css=CSS))
    page.set_cookie(SESSION_COOKIE, sessions.issue(key_id), max_age=sessions.lifetime_s, httponly=True,
                    samesite="strict", secure=_over_https(request), path="/")
    return page


def _over_https(request: Request) -> bool:
    """Whether the sign-in's cookie is ``Secure``: when ``REPORTING_PUBLIC_ORIGIN`` names the origin it came from
    (the first, if none) as https, or when the browser's ``Origin`` says its page is https. A proxy that terminates
    TLS passes the request on as plain http: with the setting unset, the cookie was not ``Secure`` there, and a
    signed-in browser's first plain-http request to the host carried it."""
    return (request.headers.get("origin", "").startswith("https://")
            or public_origin(request).startswith("https://"))


async def _end_session(request: Request) -> None:
    """End the session of the request's cookie for every copy of it; no cookie, or one not signed here or
    expired, has nothing to end."""
    cookie = request.cookies.get(SESSION_COOKIE)
    session = request.app.state.sessions.read(cookie) if cookie else None
    if session is not None:
        await keys_of(request).end(session)


@router.post("/dashboard/logout", summary="Sign out of the dashboard",
             responses=problem_responses(403, _403="posted from another site"))
async def logout(request: Request) -> Response:
    if cross_site(request):
        raise Problem(403, "sign out from the dashboard, not from another site")
    try:
        await _end_session(request)
    except UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        # The cookie stays, so that signing out again can still end the session.
        return sign_out_page("Signing out cannot be recorded right now; please try again.", 503)
    # The pages this browser kept from the session go too (browsers honour it over https and on localhost).
    response = RedirectResponse("/dashboard/login", status_code=303, headers={"Clear-Site-Data": '"cache"'})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse, summary="The dashboard", include_in_schema=False)
@router.get("/dashboard", response_class=HTMLResponse, summary="The dashboard (signed-in browsers and API keys)")
async def dashboard(request: Request, since: str | None = Query(None), until: str | None = Query(None),
                    source: str | None = Query(None),
                    model: str | None = Query(None, description="credit: first (the default), last or linear")
                    ) -> Response:
    # model is checked here with the other filters, not by FastAPI: its 422 JSON would come before the sign-in
    # redirect and instead of the page saying what is wrong.
    who = await identify(request)
    if who is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    if not who.may("reports:read"):
        return login_page(f"That key ({who.name}) lacks the reports:read scope.", 403)
    model = model or "first"
    # Every filter that is wrong, in one page: corrected one at a time, each page would find the next.
    problems = [] if model in MODEL_LABELS else [FieldProblem("model", f"must be one of {', '.join(MODEL_LABELS)}")]
    try:
        f = filters(since, until, source)
    except Problem as exc:
        problems = [*exc.errors, *problems]
    if problems:
        # A person typed the address (the form's date fields send only dates): a page saying what is wrong,
        # with the filters to correct, not the API's JSON.
        wrong = "; ".join(f"{e.field}: {e.reason}" for e in problems)
        return HTMLResponse(f"""{header(since, until, source, [source] if source else [], model)}
<main><h1>Funnel and closed-loop reports</h1><p class="error" role="alert">No report for these filters: \
{esc(wrong)}.</p></main></body></html>""", status_code=422)
    async with runtime_of(request).request_connection() as conn:
        funnel = await reports.funnel(conn, f)
        by_source = await reports.breakdown(conn, f, "source", ROWS_SHOWN)
        by_campaign = await reports.attribution(conn, f, "campaign", model, ROWS_SHOWN)
        velocity = await reports.velocity(conn, f)
        sla = await reports.sla(conn, f)
        rejections = await reports.rejections(conn, f, ROWS_SHOWN)
        spam = await reports.spam_report(conn, f, ROWS_SHOWN)
        sources, more = await reports.sources(conn, f, SOURCES_LISTED)
    reached = {s["stage"]: s["count"] for s in funnel["stages"]}
    close = rate(reached["won"], reached["captured"])
    cards = [("Captured", f"{reached['captured']:,}", "leads in range"),
             ("MQLs", f"{reached['mql']:,}", f"{pct(rate(reached['mql'], reached['captured']))} of captured"),
             ("Won", f"{reached['won']:,}", f"close rate {pct(close)}"),
             # Every campaign's, those past the table's rows too: as credited under the model picked.
             ("Won revenue", money(by_campaign["won_revenue"]), f"credit: {MODEL_LABELS[model].lower()}"),
             ("SLA met", pct(sla["compliance"]), "of hand-offs with a deadline")]
    asked = {k: v for k, v in {"since": since, "until": until, "source": source}.items() if v}
    # A source picks leads by their first touch in every report; under a later model their credit goes where it
    # goes, so a campaign of another source can be credited.
    cohort = (f" Leads first touched via {esc(f.source)}; their credit may go to touches from other sources."
              if f.source is not None and model != "first" else "")
    query, model_query = urlencode(asked), urlencode({**asked, "model": model})
    shown_sources, more_sources = top(by_source, "sources", "/v1/reports/funnel/by/source", asked)
    shown_campaigns, more_campaigns = top(by_campaign, "campaigns", "/v1/reports/attribution/campaign",
                                          {**asked, "model": model})
    shown_rejections, more_rejections = top(rejections, "sources and reasons", "/v1/reports/rejections", asked)
    shown_spam, more_spam = top(spam, "forms and sources", "/v1/reports/spam", asked)
    source_rows = [[esc(r["value"]), f"{r['captured']:,}", f"{r['mql']:,}", f"{r['routed']:,}", f"{r['accepted']:,}",
                    f"{r['won']:,}", bar(rate(r["mql"], r["captured"])), bar(r["close_rate"])]
                   for r in shown_sources]
    campaign_rows = [[esc(r["value"]), f"{r['captured']:,}", f"{r['won']:,}", money(r["won_revenue"]), bar(r["close_rate"])]
                     for r in shown_campaigns]
    velocity_cards = "".join(
        f'<div class="card small"><div class="k">{esc(STAGE_LABELS.get(v["from"], v["from"]))} → '
        f'{esc(STAGE_LABELS.get(v["to"], v["to"]))}</div>'
        f'<div class="v">{duration(v["p50_seconds"])}</div><div class="s">p50 · p90 {duration(v["p90_seconds"])} · '
        f'{v["leads"]:,} leads</div></div>'
        for v in velocity["rows"])
    sla_rows = [[esc(t["team"]), f"{t['handoffs']:,}", f"{t['met']:,}", f"{t['missed']:,}", f"{t['open']:,}",
                 f"{t['handed_over']:,}", bar(t["compliance"])] for t in sla["teams"]]
    rep_rows = [[esc(r["owner_id"]), esc(r["team"]), f"{r['met']:,}", f"{r['missed']:,}", bar(r["compliance"])]
                for r in sla["reps"]]
    rejection_rows = [[esc(r["source"]), esc(r["reason_code"]), f"{r['rejections']:,}", f"{r['leads']:,}"]
                      for r in shown_rejections]
    spam_rows = [[esc(r["form_id"]), esc(r["source"]), f"{r['spam']:,}", f"{r['released']:,}"] for r in shown_spam]
    exits = " · ".join(f"{k} {v:,}" for k, v in funnel["exits"].items())
    page = f"""{header(since, until, f.source, sources, model, more)}
<main>
<h1>Funnel and closed-loop reports</h1>
<section class="cards">{"".join(f'<div class="card"><div class="k">{k}</div><div class="v" data-kpi="{k}">{v}</div><div class="s">{s}</div></div>' for k, v, s in cards)}</section>
<section class="panel"><h2>Combined funnel</h2><p class="hint">Leads captured in the range that reached each stage (or a later one); percentages are conversion from the stage above. Out of the funnel now (each lead where its latest stage left it; one sales rejected, back in nurture, as rejected): {exits}.</p>{funnel_chart(funnel["stages"])}</section>
<section class="panel"><h2>Conversion by source</h2>{table(["Source", "Captured", "MQL", "Routed", "Accepted", "Won", "Captured → MQL", "Close rate"], source_rows, "No leads in this range.")}{more_sources}</section>
<div class="two">
<section class="panel"><h2>Velocity</h2><div class="cards">{velocity_cards}</div></section>
<section class="panel"><h2>Won by campaign</h2><p class="hint">Credit: {MODEL_LABELS[model].lower()}.{cohort}</p>{table(["Campaign", "Captured", "Won", "Revenue", "Close rate"], campaign_rows, "Nothing won yet.")}{more_campaigns}</section>
</div>
<div class="two">
<section class="panel"><h2>Hand-off SLA by team</h2>{table(["Team", "Hand-offs", "Met", "Missed", "Open", "Handed over", "Compliance"], sla_rows, "No hand-offs with a deadline yet.")}
<details><summary>per rep</summary>{table(["Rep", "Team", "Met", "Missed", "Compliance"], rep_rows, "No hand-offs yet.")}</details></section>
<section class="panel"><h2>Rejection reasons by source</h2>{table(["Source", "Reason", "Rejections", "Leads"], rejection_rows, "Sales rejected nothing in this range.")}{more_rejections}</section>
</div>
<section class="panel"><h2>Spam kept out, by form and source</h2><p class="hint">Submissions judged to come from bots (answered as people would be, never made leads): {spam["spam"]:,} kept out; {spam["released"]:,} released by an admin as false positives.</p>{table(["Form", "Source", "Spam", "Released"], spam_rows, "No submission in this range was judged to come from a bot.")}{more_spam}</section>
<p class="foot">JSON and CSV: <a href="/v1/reports/funnel?{query}">funnel</a> · <a href="/v1/reports/funnel/by/source?{query}">by source</a> ·
<a href="/v1/reports/attribution/campaign?{model_query}">attribution</a> · <a href="/v1/reports/velocity?{query}">velocity</a> ·
<a href="/v1/reports/sla?{query}">SLA</a> · <a href="/v1/reports/rejections?{query}">rejections</a> ·
<a href="/v1/reports/spam?{query}">spam</a> · <a href="/docs">API docs</a></p>
</main></body></html>"""
    return HTMLResponse(page)


def header(since: str | None, until: str | None, source: str | None, sources: list[str], model: str,
           more: bool = False) -> str:
    """The page up to its reports: the filters as asked for (a source among ``sources``, ``more``: not all
    there are), and signing out."""
    # The source asked for is listed even when it is not among those: shown as "all sources", it would hide
    # that the figures are one source's.
    listed = sorted({*sources, source} if source else sources)
    options = "".join(f'<option value="{esc(s)}"{" selected" if s == source else ""}>{esc(s)}</option>' for s in listed)
    cut = (f'<span class="more">the {len(sources)} with the most leads in range; any other: '
           f'<code>?source=</code> in the address</span>' if more else "")
    models = "".join(f'<option value="{m}"{" selected" if m == model else ""}>{label}</option>'
                     for m, label in MODEL_LABELS.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadpipe · funnel</title><style>{CSS}</style></head>
<body><header><div class="brand">lead<b>pipe</b> <span>closed-loop funnel</span></div>
<form method="get" action="/dashboard">
<label>From (UTC) {_moment_input("since", since)}</label>
<label>To (UTC) {_moment_input("until", until)}</label>
<label>Source <select name="source"><option value="">all sources</option>{options}</select>{cut}</label>
<label>Credit <select name="model">{models}</select></label>
<button type="submit">Apply</button></form>
<form method="post" action="/dashboard/logout"><button type="submit" class="quiet">Sign out</button></form></header>"""


_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _moment_input(name: str, value: str) -> str:
    """A date picker for a plain date (or none); a moment the address gave (2026-11-23T09:00Z) as text: a date
    input clears a value that is not a date, and Apply then sent the filter empty, widening the report to all
    time."""
    kind = "date" if not value or _PLAIN_DATE.fullmatch(value) else "text"
    return f'<input type="{kind}" name="{name}" value="{esc(value)}">'


CSS = """
:root{--ink:#1d2433;--mute:#667085;--line:#e6e8ee;--bg:#f6f7fb;--card:#fff;--accent:#3b5bdb}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:16px;align-items:center;justify-content:space-between;padding:18px 32px;background:#111827;color:#fff}
.brand{font-size:20px;letter-spacing:.2px}.brand b{color:#8ea2ff}.brand span{color:#9aa3b5;font-size:14px;margin-left:8px}
header form{display:flex;gap:12px;align-items:end;flex-wrap:wrap}header label{display:flex;flex-direction:column;font-size:12px;color:#c6cbd6}
header input,header select{margin-top:3px;padding:6px 8px;border-radius:6px;border:1px solid #6b7280;background:#1f2937;color:#fff}
header select{max-width:min(22rem,100%)}
header button{padding:7px 16px;border:0;border-radius:6px;background:var(--accent);color:#fff;font-weight:600;cursor:pointer}
main{max-width:1240px;margin:0 auto;padding:24px 32px 40px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin-bottom:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px}
.card .k{font-size:12px;text-transform:uppercase;letter-spacing:.6px;color:var(--mute)}.card .v{font-size:28px;font-weight:700;margin:2px 0}
.card .s{font-size:13px;color:var(--mute)}.card.small .v{font-size:22px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 20px;margin-bottom:18px}
.panel h2{margin:0 0 6px;font-size:17px}.hint{margin:0 0 14px;color:var(--mute);font-size:13px;overflow-wrap:anywhere}
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:18px}.two .panel{margin-bottom:18px}@media(max-width:900px){.two{grid-template-columns:1fr}}
h1{font-size:20px;margin:0 0 14px}
.funnel{list-style:none;margin:0;padding:0}.funnel li{display:grid;grid-template-columns:9.5rem 1fr minmax(9rem,auto);gap:12px;align-items:center;margin:8px 0}
.funnel .label{text-align:right;font-size:14px}.funnel .track{height:30px;background:#f0f2f8;border-radius:5px;overflow:hidden}
.funnel .fill{display:block;height:100%;border-radius:5px;background:var(--accent)}.funnel .figure{font-size:14px}.funnel .conv{color:var(--mute);font-size:13px}
.bar-0{background:#91a7ff!important}.bar-1{background:#748ffc!important}.bar-2{background:#5c7cfa!important}.bar-3{background:#4c6ef5!important}
.bar-4{background:#4263eb!important}.bar-5{background:#3b5bdb!important}.bar-6{background:#2f9e44!important}
.scroll{overflow-x:auto;max-width:100%}
@media(max-width:600px){header{padding:14px 16px}main{padding:16px 12px 32px}.panel{padding:14px 12px}
.funnel li{grid-template-columns:1fr;gap:4px}.funnel .label{text-align:left}.card .v{font-size:22px}}
table{width:100%;border-collapse:collapse;font-size:14px}th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.5px;color:var(--mute);font-weight:600;border-bottom:1px solid var(--line);padding:6px 8px}
td{padding:7px 8px;border-bottom:1px solid #f0f1f5;white-space:nowrap}
td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:12ch;max-width:28ch}tbody tr:hover{background:#fafbff}
.meter{display:inline-block;width:70px;height:8px;border-radius:4px;background:#edf0f7;vertical-align:middle;margin-right:6px;overflow:hidden}
.meter span{display:block;height:100%;background:var(--accent)}.empty{color:var(--mute)}details{margin-top:10px}summary{cursor:pointer;color:var(--accent)}
header .more{margin-top:3px;font-size:11px;color:#9aa3b5}header code{color:#c6cbd6}
header button.quiet{background:transparent;border:1px solid #374151;color:#c6cbd6}
.login{max-width:440px;margin:48px auto}.login h1{font-size:22px;margin:0 0 12px}.login label{display:block;font-weight:600;margin-bottom:6px}
.login input{width:100%;padding:9px 10px;border:1px solid #868e9c;border-radius:8px;font:inherit;margin-bottom:12px}
.login button{padding:9px 18px;border:0;border-radius:8px;background:var(--accent);color:#fff;font-weight:600;cursor:pointer}
.error{color:#b42318;background:#fef3f2;border:1px solid #fecdca;border-radius:8px;padding:8px 10px;overflow-wrap:anywhere}
.foot{color:var(--mute);font-size:13px}.foot a{color:var(--accent)}
"""
