"""A web page posts a lead with fetch() in real headless Chromium: allowed from an allowed origin, blocked from another.

The test stack allows one origin (``PAGE_ORIGIN``, 127.0.0.1 on a port of its
own); the same page served as ``localhost`` on that port is another origin.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from leadpipe_common.testing.browser import chromium, chromium_or_skip
from leadpipe_common.testing.plugin import PAGE_ORIGIN, PAGE_PORT, TOKEN_FILL_S, TOKEN_FORM

PAGE = """<!doctype html><html><body><script>
fetch("{capture}/v1/leads", {{method: "POST", headers: {{"content-type": "application/json"}},
                               body: JSON.stringify({{email: "cors@example.com", utm_source: "react-form"}})}})
  .then(r => r.json().then(b => {{ document.body.dataset.result = "status " + r.status + " lead " + b.lead_id; }}))
  .catch(e => {{ document.body.dataset.result = "blocked " + e.name; }});
</script></body></html>"""

#: A plain HTML form with the form-token script, as the README shows it; its action tagged for the campaign, as
#: sites tag it.
TOKEN_PAGE = """<!doctype html><html><body>
<form action="{capture}/v1/forms/{form}?src=ads#top" method="post"><input name="email" value="{email}"></form>
<script src="{capture}/v1/forms/{form}/token.js"></script>
</body></html>"""
TOKEN_EMAIL = "token-script@example.com"
#: Forms of every shape a site writes, each saying whether the form's token script must fill it.
TOKEN_FORMS_PAGE = """<!doctype html><html><body>
<form data-filled="yes" action="{capture}/v1/forms/{form}"></form>
<form data-filled="yes" action="{capture}/v1/forms/{form}?src=ads&amp;utm_medium=cpc"></form>
<form data-filled="yes" action="{capture}/v1/forms/{form}#thanks"></form>
<form data-filled="yes" action="/v1/forms/{form}?src=ads"></form>
<form data-filled="yes" action="{capture}/v1/forms/{form}"><input name="action" value="subscribe"></form>
<form data-filled="no" action="{capture}/v1/forms/{form}-other"></form>
<form data-filled="no" action="{capture}/v1/forms/other?next=/v1/forms/{form}"></form>
<form data-filled="no"></form>
<script src="{capture}/v1/forms/{form}/token.js"></script>
</body></html>"""

#: A form that posts to capture only by its button's formaction.
TOKEN_BUTTON_PAGE = """<!doctype html><html><body>
<form action="/search"><input name="q"><button formaction="{capture}/v1/forms/{form}">Send</button></form>
<script src="{capture}/v1/forms/{form}/token.js"></script>
</body></html>"""


@pytest.fixture(scope="module")
def pages(capture_url: str) -> Iterator[None]:
    bodies = {"/": PAGE.format(capture=capture_url).encode(),
              "/token-form": TOKEN_PAGE.format(capture=capture_url, form=TOKEN_FORM, email=TOKEN_EMAIL).encode(),
              "/token-forms": TOKEN_FORMS_PAGE.format(capture=capture_url, form=TOKEN_FORM).encode(),
              "/token-button": TOKEN_BUTTON_PAGE.format(capture=capture_url, form=TOKEN_FORM).encode(),
              "/blank": b"<!doctype html><html><body></body></html>"}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", PAGE_PORT), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield
    server.shutdown()


def result_of(page: str, profile: Path) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=15000", "--dump-dom"]
    dom = subprocess.run([chromium_or_skip(), *flags, page], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = 'data-result="'
    assert marker in dom.stdout, dom.stdout[-2000:]
    return dom.stdout.split(marker, 1)[1].split('"', 1)[0]


async def test_a_page_on_an_allowed_origin_posts_json_with_fetch_and_reads_the_202(pages, tmp_path, capture_url):
    result = result_of(f"{PAGE_ORIGIN}/", tmp_path / "allowed")
    assert result.startswith("status 202 lead ")


async def test_a_page_posting_form_data_with_fetch_reads_the_202_not_a_redirect_to_another_sites_thank_you_page(
        pages, tmp_path, capture_url):
    """fetch() sends Accept: */* with a FormData body: capture answered the browser-form way, 303 to the form's
    thank-you page on another site, and the fetch failed with a CORS error after the lead was stored."""
    async with chromium(tmp_path / "form-data") as page:
        await page.goto(f"{PAGE_ORIGIN}/blank")
        answer = await page.evaluate(f"""(() => {{
            const body = new FormData(); body.append("email", "form-data@example.com");
            return fetch("{capture_url}/v1/forms/whitepaper-lead-scoring", {{method: "POST", body}})
              .then(r => r.json().then(b => "status " + r.status + " lead " + b.lead_id))
              .catch(e => "blocked " + e.name); }})()""")
    assert answer.startswith("status 202 lead "), answer


async def test_a_page_on_another_origin_is_blocked_by_the_browser(pages, tmp_path):
    assert result_of(f"http://localhost:{PAGE_PORT}/", tmp_path / "other") == "blocked TypeError"


async def test_preflights_are_answered_for_allowed_origins_only_and_never_allow_credentials(capture_url):
    ask = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    async with httpx.AsyncClient(base_url=capture_url) as client:
        allowed = await client.options("/v1/forms/demo-request", headers={"origin": PAGE_ORIGIN, **ask})
        other = await client.options("/v1/leads", headers={"origin": "https://evil.example", **ask})
        post = await client.post("/v1/leads", json={"email": "x@example.com"}, headers={"origin": "https://evil.example"})
        ours = await client.post("/v1/leads", json={"email": "x@example.com"}, headers={"origin": PAGE_ORIGIN})
    assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    assert post.status_code == 202 and "access-control-allow-origin" not in post.headers
    # A page reads when to retry a 429 or 503, whether a retried key was answered from before, and where htmx
    # is sent to thank the visitor.
    assert ours.status_code == 202 and ours.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert ours.headers["access-control-expose-headers"] == "Retry-After, Idempotent-Replayed, HX-Redirect"


async def test_the_token_script_lets_a_person_who_took_their_time_through(pages, tmp_path, db):
    async with chromium(tmp_path / "token") as page:
        await page.goto(f"{PAGE_ORIGIN}/token-form")
        await page.wait_for("(document.querySelector('input[name=_token]') || {}).value")
        await asyncio.sleep(TOKEN_FILL_S + 0.2)  # as long as a person takes
        lead_id = await page.evaluate("""fetch(document.forms[0].action, {method: "POST",
            body: new FormData(document.forms[0]), headers: {accept: "application/json"}})
            .then(r => r.json()).then(b => b.lead_id)""")
    async with db.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT email FROM capture.leads WHERE lead_id = :id"),
                                     {"id": lead_id})).scalar_one_or_none()
    assert stored == TOKEN_EMAIL  # a lead, not a quarantined submission


async def test_the_token_script_fills_every_form_posting_to_its_form_whatever_its_action_carries(pages, tmp_path):
    """It compared the end of form.action, the resolved URL: an action tagged ?src=ads got no token, and every
    submission of it was quarantined while the person saw their thanks."""
    async with chromium(tmp_path / "token-forms") as page:
        await page.goto(f"{PAGE_ORIGIN}/token-forms")
        await page.wait_for("!!window.leadpipeTokens")
        filled = await page.evaluate("""Array.from(document.forms, f => [f.dataset.filled,
            !!(f.querySelector('input[name=_token]') || {}).value])""")
    assert filled == [["yes", True]] * 5 + [["no", False]] * 3


async def test_the_token_script_fills_a_form_sent_by_its_buttons_formaction_and_one_rendered_later_as_it_is_typed_in(
        pages, tmp_path, capture_url):
    """A button's formaction, not the form's action, says where a form goes; and a form a page's script renders
    later and sends with form.submit() fires no submit event: both went without a token, and were quarantined."""
    async with chromium(tmp_path / "token-button") as page:
        await page.goto(f"{PAGE_ORIGIN}/token-button")
        await page.wait_for("!!window.leadpipeTokens")
        filled = await page.evaluate(f"""(() => {{
            document.addEventListener("submit", e => e.preventDefault());  // after the script's, which captures
            const later = document.createElement("form");
            later.action = "{capture_url}/v1/forms/{TOKEN_FORM}";
            later.appendChild(document.createElement("input"));
            document.body.appendChild(later);
            const before = Array.from(document.forms, f => !!f.querySelector("input[name=_token]"));
            later.firstChild.dispatchEvent(new Event("input", {{bubbles: true}}));
            document.forms[0].requestSubmit(document.forms[0].querySelector("button"));
            return [before, Array.from(document.forms, f => !!(f.querySelector("input[name=_token]") || {{}}).value)];
        }})()""")
    assert filled == [[False, False], [True, True]]
