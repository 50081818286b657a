"""A local stand-in for a CAPTCHA service's "siteverify" endpoint, for the test stacks.

It speaks the protocol Turnstile, hCaptcha and reCAPTCHA share (a form-encoded
POST of ``secret``, ``response``, ``remoteip``; a JSON verdict) and answers by
the ``response`` a test sends: ``human`` is solved, ``bot`` is not, ``slow``
answers after ``SLOW_S`` (longer than the test forms' timeout), ``broken`` is a
``500``. A wrong secret gets ``invalid-input-secret``, as the real services do.

``single_use`` verifies a solved answer once, as the real services do: asked
again, it is ``timeout-or-duplicate``. Its ``siteverify`` answers in-process
too, for a test's ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from leadpipe_common.local.infra import free_port

SECRET = "0x4AAAAAAAtest-siteverify-secret"
SLOW_S = 2.0


class FakeVerifier:
    """Started once per test process (``url`` starts it); records every call it answered."""

    def __init__(self, single_use: bool = False) -> None:
        self.single_use = single_use
        self.calls: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        #: Solved answers verified (``single_use``).
        self._spent: set[str] = set()

    @property
    def url(self) -> str:
        with self._lock:
            if self._server is None:
                self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
                self._server.daemon_threads = True
                threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-siteverify").start()
            port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/siteverify"

    def siteverify(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The status and verdict a call posting ``form`` gets (after ``SLOW_S`` for ``slow``), recorded."""
        answer = form.get("response", "")
        if answer == "slow":
            time.sleep(SLOW_S)
        with self._lock:
            self.calls.append(form)
            return self._judge(form, answer)

    def _judge(self, form: dict[str, str], answer: str) -> tuple[int, dict[str, Any]]:
        if answer == "broken":
            return 500, {"error": "internal"}
        if form.get("secret") != SECRET:
            return 200, {"success": False, "error-codes": ["invalid-input-secret"]}
        if answer in ("human", "slow"):
            if self.single_use and answer in self._spent:
                return 200, {"success": False, "error-codes": ["timeout-or-duplicate"]}
            if self.single_use:
                self._spent.add(answer)
            return 200, {"success": True, "hostname": "127.0.0.1"}
        return 200, {"success": False, "error-codes": ["invalid-input-response"]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Siteverify(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                self._reply(*fake.siteverify(form))

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Siteverify


VERIFIER = FakeVerifier()
